"""Comparing clusterings: the adjusted Rand index (Hubert & Arabie 1985).

Computed from the contingency table of two labellings, which Spark builds with
one group-by; only the k x k counts reach the driver. scikit-learn is not a
dependency, so the formula lives here (tests check it against hand-computed
values and its known properties).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def _pairs(n: int | float) -> float:
    return n * (n - 1) / 2.0


def adjusted_rand_index_from_counts(counts: Mapping[tuple[object, object], int]) -> float:
    """ARI from ``{(label_a, label_b): count}``.

    1.0 for identical partitions (up to renaming), about 0 for independent ones,
    negative when worse than chance. When both labellings put everything in one
    cluster (or every item in its own) the index is 1.0 by convention.
    """
    rows: dict[object, int] = defaultdict(int)
    cols: dict[object, int] = defaultdict(int)
    n = 0
    same_both = 0.0
    for (a, b), count in counts.items():
        rows[a] += count
        cols[b] += count
        n += count
        same_both += _pairs(count)
    if n < 2:
        return 1.0
    same_a = sum(_pairs(c) for c in rows.values())
    same_b = sum(_pairs(c) for c in cols.values())
    expected = same_a * same_b / _pairs(n)
    maximum = (same_a + same_b) / 2.0
    if maximum == expected:
        return 1.0
    return (same_both - expected) / (maximum - expected)


def adjusted_rand_index_labels(a: Iterable[object], b: Iterable[object]) -> float:
    """ARI of two equally long label sequences (small data, e.g. tests)."""
    counts: dict[tuple[object, object], int] = defaultdict(int)
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"label sequences differ in length: {len(a)} != {len(b)}")
    for pair in zip(a, b, strict=True):
        counts[pair] += 1
    return adjusted_rand_index_from_counts(counts)


def adjusted_rand_index(df: DataFrame, col_a: str, col_b: str) -> float:
    """ARI between two label columns of ``df`` (rows with a null label are left out)."""
    rows = df.where(F.col(col_a).isNotNull() & F.col(col_b).isNotNull()).groupBy(col_a, col_b).count().collect()
    return adjusted_rand_index_from_counts({(r[0], r[1]): r[2] for r in rows})
