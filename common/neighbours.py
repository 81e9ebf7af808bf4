"""Exact top-k nearest neighbours by cosine similarity, without materialising all pairs.

One routine for every item-to-item feature (similar items from ALS factors; item-kNN
and content-based neighbours reuse it):

- :func:`dense_top_k`: rows of dense vectors (ALS item factors, embeddings).
- :func:`sparse_top_k`: ``(row, item, value)`` triplets of a sparse matrix (users x
  items); cosine between the item columns, or (SAR) Jaccard or lift of their
  co-occurrence counts on the binarised matrix.

How it scales. The unit-normalised vectors (items x rank doubles, or the sparse
matrix's non-zeros) are collected once and broadcast to the executors. The items are
cut into query blocks (one Spark task works through a few of them); a task scores its
block against the candidates one chunk at a time with a matrix product (BLAS, or a
scipy sparse product), keeps each row's best k with ``np.partition`` and merges them
into the block's running top k. Memory per task is the broadcast plus one block x
chunk of scores; nothing is shuffled and the output is exactly items x k rows, so no
O(items^2) intermediate exists anywhere. Compute is still items^2 x rank (exact
search), spread over the cores.

Contract (both variants):

- similarities (cosines unless another measure is asked for) are rounded to ``decimals`` (default 9) before ranking, so
  values equal at that resolution are ties, and ties go to the smaller neighbour id:
  order is similarity descending, then neighbour id ascending (ids compare as Spark
  compares them: numbers by value, strings by code point);
- an item is never its own neighbour; a row with fewer than ``k`` neighbours returns
  the ones it has;
- dense: every other item is a neighbour (a zero vector has similarity 0 with all);
  sparse: items whose rounded similarity is non-zero (for non-negative values: that
  share a row);
- ``min_similarity``: when given, only pairs with a similarity strictly above it count.

Bounds. The broadcast must fit in memory on the driver and on every executor:
:func:`check_dense_size` and :func:`sparse_top_k` raise :class:`~common.errors.ConfigError`
before any work when it would exceed ``max_bytes`` (default 1 GiB: about 2 million
items at rank 64), naming the items, the pairs the exact search scores and the bytes.
The broadcast uses the SparkContext, so a Spark Connect session is not supported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.errors import ConfigError

RANK, SIMILARITY = "rank", "similarity"
COSINE, JACCARD, LIFT = "cosine", "jaccard", "lift"
SPARSE_SIMILARITIES = (COSINE, JACCARD, LIFT)
DEFAULT_DECIMALS = 9
DEFAULT_MAX_BYTES = 1 << 30
# 512 query rows x 8,192 candidates of float64 scores is 32 MB per task, and large
# enough products keep BLAS efficient.
QUERY_BLOCK = 512
CANDIDATE_CHUNK = 8192
# Sparse blocks are cut so each block's product holds at most this many entries
# (about 16 bytes each before selection).
SPARSE_PAIRS_PER_BLOCK = 10_000_000
# Spark tasks per core: blocks are spread over a few tasks per core so a slow task
# does not hold up the stage, without paying per-task overhead for every block.
TASKS_PER_CORE = 4


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB" if n < 2**30 else f"{n / 2**30:,.1f} GiB"


def check_dense_size(
    items: int,
    dim: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    what: str = "dense_top_k",
    advice: str = "raise the bound if the driver and executors have the memory, or skip the feature",
) -> None:
    """Raise before any work when ``items`` vectors of ``dim`` doubles would exceed ``max_bytes``.

    Args:
        items: Number of vectors.
        dim: Their length.
        max_bytes: The bound.
        what: What the message names as the caller.
        advice: What the message tells the user to do.

    Raises:
        ConfigError: naming the items, the pairs an exact search scores and the bytes.
    """
    need = items * dim * 8
    if need > max_bytes:
        raise ConfigError(
            f"{what}: {items:,} items x {dim} dimensions is {_fmt_bytes(need)} of vectors to broadcast "
            f"(an exact top-k search scores {items * (items - 1):,} ordered pairs), above the bound of "
            f"{_fmt_bytes(max_bytes)}; {advice}"
        )


# ---------------------------------------------------------------------------- selection (pure numpy)
def select_top_k(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's best ``k`` of the triplets: similarity descending, then column ascending.

    Columns index the candidates sorted by id, so column order is id order.
    Returns the kept triplets sorted by row, then rank.
    """
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    position = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    keep = position < k
    return rows[keep], cols[keep], vals[keep]


def _finish(
    rows: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    decimals: int,
    min_similarity: float | None,
    nonzero: bool,
    bounded: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vals = np.round(vals, decimals)
    if bounded:  # cosine and Jaccard: rounding error only; lift has no upper bound
        vals = np.clip(vals, -1.0, 1.0)
    keep = np.isfinite(vals)
    if nonzero:
        keep &= vals != 0.0
    if min_similarity is not None:
        keep &= vals > min_similarity
    return rows[keep], cols[keep], vals[keep]


def dense_block(
    unit: np.ndarray,
    start: int,
    stop: int,
    k: int,
    decimals: int,
    min_similarity: float | None,
    chunk: int = CANDIDATE_CHUNK,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` neighbours of rows ``start:stop`` of ``unit`` (unit rows, sorted by id).

    Returns ``(row, neighbour, similarity)`` with global row numbers, ``select_top_k`` order.
    """
    query = unit[start:stop]
    n = unit.shape[0]
    tol = 10.0**-decimals
    best = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    local = np.arange(stop - start)
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        scores = query @ unit[c0:c1].T
        self_in_chunk = (local + start >= c0) & (local + start < c1)
        scores[local[self_in_chunk], local[self_in_chunk] + start - c0] = -np.inf
        width = c1 - c0
        keep = min(k, width)
        # Anything that could round to at least the k-th largest value stays a candidate:
        # rounding decides ties, so the cut must not split values equal after rounding.
        kth = np.partition(scores, width - keep, axis=1)[:, width - keep]
        r, c = np.nonzero((scores >= (kth - tol)[:, None]) & np.isfinite(scores))
        v = np.round(scores[r, c], decimals)
        rows = np.concatenate([best[0], r + start])
        cols = np.concatenate([best[1], c + c0])
        vals = np.concatenate([best[2], v])
        best = select_top_k(rows, cols, vals, k)
    return _finish(*best, decimals, min_similarity, nonzero=False)


def sparse_block(
    matrix,
    transposed,
    start: int,
    stop: int,
    k: int,
    decimals: int,
    min_similarity: float | None,
    similarity: str = COSINE,
    counts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` neighbours of rows ``start:stop`` of the CSR ``matrix`` (items x rows, sorted by id;
    unit rows for cosine, 0/1 for Jaccard and lift, whose ``counts`` are each item's rows);
    ``transposed`` is ``matrix.T`` as CSR. Returns triplets as :func:`dense_block` does."""
    product = (matrix[start:stop] @ transposed).tocoo()
    rows = product.row.astype(np.int64) + start
    cols = product.col.astype(np.int64)
    vals = product.data.astype(np.float64)
    if similarity == JACCARD:  # co-occurrences / rows holding either item
        vals = vals / (counts[rows] + counts[cols] - vals)
    elif similarity == LIFT:  # co-occurrences / (rows holding one x rows holding the other)
        vals = vals / (counts[rows] * counts[cols])
    vals = np.round(vals, decimals)
    keep = (cols != rows) & (vals != 0.0)
    rows, cols, vals = select_top_k(rows[keep], cols[keep], vals[keep], k)
    return _finish(rows, cols, vals, decimals, min_similarity, nonzero=True, bounded=similarity != LIFT)


# ---------------------------------------------------------------------------- Spark plumbing
def _out_schema(id_type: T.DataType, id_col: str, out_col: str) -> T.StructType:
    return T.StructType(
        [
            T.StructField(id_col, id_type, False),
            T.StructField(RANK, T.IntegerType(), False),
            T.StructField(out_col, id_type, False),
            T.StructField(SIMILARITY, T.DoubleType(), False),
        ]
    )


def _sorted_ids(ids: np.ndarray) -> np.ndarray:
    """Positions that sort ``ids`` as Spark orders them (strings by code point, numbers by value)."""
    return np.argsort(ids, kind="stable")


def _run_blocks(
    df: DataFrame,
    bounds: list[tuple[int, int]],
    payload: object,
    block_fn: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]],
    id_type: T.DataType,
    id_col: str,
    out_col: str,
) -> DataFrame:
    """One row per block bound, spread over a few tasks per core; each task reads the broadcast
    ``payload`` (ids first) and emits its blocks' neighbours."""
    spark = df.sparkSession
    sc = spark.sparkContext
    shared = sc.broadcast(payload)
    table = spark.createDataFrame(
        [(i, s, e) for i, (s, e) in enumerate(bounds)], "block int, start long, stop long"
    ).repartition(max(1, min(len(bounds), sc.defaultParallelism * TASKS_PER_CORE)), "block")
    schema = _out_schema(id_type, id_col, out_col)

    def neighbours(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        value = shared.value
        ids = value[0]
        for batch in batches:
            for start, stop in zip(batch["start"].tolist(), batch["stop"].tolist()):
                rows, cols, vals = block_fn(value, start, stop)
                rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left") + 1
                yield pd.DataFrame(
                    {id_col: ids[rows], RANK: rank.astype(np.int32), out_col: ids[cols], SIMILARITY: vals}
                )

    return table.mapInPandas(neighbours, schema)


def _ids_of(table: pa.Table) -> np.ndarray:
    column = table.column("_id")
    if column.null_count:
        raise ValueError("neighbours: ids must not be null")
    return column.to_numpy(zero_copy_only=False)


def dense_top_k(
    df: DataFrame,
    k: int,
    id_col: str = "id",
    vector_col: str = "features",
    out_col: str = "neighbour",
    *,
    min_similarity: float | None = None,
    decimals: int = DEFAULT_DECIMALS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    query_block: int = QUERY_BLOCK,
    candidate_chunk: int = CANDIDATE_CHUNK,
) -> DataFrame:
    """Exact cosine top-k neighbours of every row of ``df`` among all rows.

    Args:
        df: One row per item: ``id_col`` (unique, not null) and ``vector_col`` (array of numbers or
            an ml Vector, all the same length).
        k: Neighbours per item (positive).
        id_col: Id column; the output keeps its name and type.
        vector_col: Vector column.
        out_col: Name of the neighbour id column in the output.
        min_similarity: Keep only neighbours with a similarity strictly above this.
        decimals: Similarities are rounded to this many decimals before ranking (ties).
        max_bytes: Bound on the broadcast vectors (items x dimensions x 8 bytes).
        query_block: Items per query block.
        candidate_chunk: Candidates scored per matrix product (a task holds query_block x this many scores).

    Returns:
        ``id_col, rank, out_col, similarity``: up to ``k`` rows per item, rank 1 the most similar.

    Raises:
        ConfigError: when the vectors would exceed ``max_bytes`` (checked before collecting them).
        ValueError: on null or duplicate ids, null vectors or vectors of different lengths.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    vec = F.col(vector_col)
    if isinstance(df.schema[vector_col].dataType, VectorUDT):
        vec = vector_to_array(vec)
    id_type = df.schema[id_col].dataType
    prepared = df.select(F.col(id_col).alias("_id"), vec.cast("array<double>").alias("_v"))
    # One pass for the bound check, before anything is collected.
    sizes = prepared.agg(F.count("*").alias("n"), F.max(F.size("_v")).alias("d")).first()
    count, dim = sizes["n"], max(sizes["d"] or 0, 0)
    check_dense_size(count, dim, max_bytes)
    table = prepared.toArrow()
    ids = _ids_of(table)
    lengths = pc.list_value_length(table.column("_v")).to_numpy(zero_copy_only=False)
    if table.column("_v").null_count or (len(lengths) and (lengths != dim).any()):
        raise ValueError(f"dense_top_k: {vector_col} must be non-null vectors of one length ({dim})")
    matrix = pc.list_flatten(table.column("_v")).to_numpy(zero_copy_only=False).astype(np.float64)
    matrix = matrix.reshape(len(ids), dim)
    del table
    order = _sorted_ids(ids)
    ids, matrix = ids[order], matrix[order]
    if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
        raise ValueError(f"dense_top_k: {id_col} has duplicate ids")
    norms = np.linalg.norm(matrix, axis=1)
    # A zero vector stays zero: similarity 0 with everything rather than NaN.
    unit = matrix / np.where(norms > 0, norms, 1.0)[:, None]
    del matrix
    bounds = [(s, min(len(ids), s + query_block)) for s in range(0, len(ids), query_block)]

    def block(value, start: int, stop: int):
        return dense_block(value[1], start, stop, k, decimals, min_similarity, candidate_chunk)

    return _run_blocks(df, bounds, (ids, unit), block, id_type, id_col, out_col)


def sparse_top_k(
    df: DataFrame,
    k: int,
    row_col: str = "user",
    id_col: str = "item",
    value_col: str = "value",
    out_col: str = "neighbour",
    *,
    min_similarity: float | None = None,
    decimals: int = DEFAULT_DECIMALS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    pairs_per_block: int = SPARSE_PAIRS_PER_BLOCK,
    similarity: str = COSINE,
) -> DataFrame:
    """Exact top-k neighbours between the items (columns) of a sparse rows x items matrix.

    Args:
        df: ``row_col, id_col, value_col`` triplets (repeated pairs are summed; nulls dropped).
        k: Neighbours per item (positive).
        row_col: Row column (e.g. the user).
        id_col: Item column; the output keeps its name and type.
        value_col: Numeric value column.
        out_col: Name of the neighbour id column in the output.
        min_similarity: Keep only neighbours with a similarity strictly above this.
        decimals: Similarities are rounded to this many decimals before ranking (ties).
        max_bytes: Bound on the broadcast matrix (its non-zeros, twice, at 12 bytes each).
        pairs_per_block: Items are cut into blocks whose product has at most about this many entries.
        similarity: ``cosine`` of the value columns; ``jaccard`` (co-occurrences / rows with either
            item) or ``lift`` (co-occurrences / the product of the items' row counts), both counting
            rows that hold the items, whatever the values (SAR's item similarities).

    Returns:
        ``id_col, rank, out_col, similarity`` as :func:`dense_top_k`; items without a non-zero
        similarity to any other item have no rows.

    Raises:
        ConfigError: when the matrix would exceed ``max_bytes``; the message names the items, the
            non-zeros and the co-occurring pairs.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if similarity not in SPARSE_SIMILARITIES:
        raise ValueError(f"similarity must be one of {', '.join(SPARSE_SIMILARITIES)}, got {similarity!r}")
    id_type = df.schema[id_col].dataType
    cells = _nonzero_cells(df, row_col, id_col, value_col, max_bytes)
    ids, matrix, counts = _item_matrix(cells, similarity)
    transposed = matrix.T.tocsr()
    # Entries of an item's product row: the sum of its rows' item counts (an upper bound).
    per_row = np.diff(transposed.indptr)
    weight = (matrix != 0).astype(np.int64) @ per_row
    bounds = _cut(weight, pairs_per_block)

    def block(value, start: int, stop: int):
        return sparse_block(value[1], value[2], start, stop, k, decimals, min_similarity, similarity, value[3])

    return _run_blocks(df, bounds, (ids, matrix, transposed, counts), block, id_type, id_col, out_col)


def _nonzero_cells(df: DataFrame, row_col: str, id_col: str, value_col: str, max_bytes: int) -> DataFrame:
    """``_r, _id, _x``: the matrix's non-zero cells, repeated pairs summed; raises
    :class:`~common.errors.ConfigError` before anything is collected when they exceed ``max_bytes``."""
    triplets = df.select(
        F.col(row_col).alias("_r"), F.col(id_col).alias("_id"), F.col(value_col).cast("double").alias("_x")
    ).where(F.col("_r").isNotNull() & F.col("_id").isNotNull() & F.col("_x").isNotNull() & (F.col("_x") != 0))
    grouped = triplets.groupBy("_r", "_id").agg(F.sum("_x").alias("_x"))
    stats = grouped.agg(F.count("*").alias("nnz"), F.countDistinct("_id").alias("items")).first()
    need = stats["nnz"] * 24
    if need > max_bytes:
        raise ConfigError(
            f"sparse_top_k: {stats['items']:,} items with {stats['nnz']:,} non-zeros is {_fmt_bytes(need)} "
            f"to broadcast, above the bound of {_fmt_bytes(max_bytes)}; raise the bound or skip the feature"
        )
    return grouped


def _item_matrix(cells: DataFrame, similarity: str):
    """The collected cells as sorted item ids and an items x rows CSR matrix: rows unit-normalised
    for cosine, binarised for jaccard and lift (with each item's row count, else None)."""
    import scipy.sparse as sp

    table = cells.toArrow()
    item_ids = _ids_of(table)
    row_keys = table.column("_r").to_numpy(zero_copy_only=False)
    values = table.column("_x").to_numpy(zero_copy_only=False).astype(np.float64)
    del table
    ids, item_index = np.unique(item_ids, return_inverse=True)  # sorted: index order is id order
    _, row_index = np.unique(row_keys, return_inverse=True)
    matrix = sp.csr_matrix((values, (item_index, row_index)), shape=(len(ids), int(row_index.max(initial=-1)) + 1))
    matrix.sum_duplicates()
    counts = None
    if similarity == COSINE:
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        matrix = sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ matrix)
    else:
        matrix.data = (matrix.data != 0).astype(np.float64)
        matrix.eliminate_zeros()
        counts = np.diff(matrix.indptr).astype(np.float64)
    return ids, matrix, counts


def _cut(weight: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` blocks whose weights sum to at most ``budget`` (a heavier
    single item gets a block of its own)."""
    bounds, start, total = [], 0, 0
    for i, w in enumerate(weight.tolist()):
        if i > start and total + w > budget:
            bounds.append((start, i))
            start, total = i, 0
        total += w
    if len(weight):
        bounds.append((start, len(weight)))
    return bounds
