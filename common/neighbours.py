"""Exact top-k nearest neighbours by cosine similarity, without materialising all pairs.

One routine for every item-to-item feature (similar items from ALS factors; item-kNN
and content-based neighbours reuse it), and its user-to-item twin for lists:

- :func:`dense_top_k`: rows of dense vectors (ALS item factors, embeddings).
- :func:`sparse_top_k`: ``(row, item, value)`` triplets of a sparse matrix (users x
  items); cosine between the item columns, or (SAR) Jaccard or lift of their
  co-occurrence counts on the binarised matrix.
- :func:`top_unseen`: each user's best unseen items by the dot product of user and
  item vectors (ALS recommendations; the popularity fallback), the item vectors
  broadcast the same way, the users' vectors and seen items streamed past them.

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


def block_top_k(
    query: np.ndarray,
    candidates: np.ndarray,
    k: int,
    decimals: int,
    exclude: tuple[np.ndarray, np.ndarray] | None = None,
    chunk: int = CANDIDATE_CHUNK,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each ``query`` row's best ``k`` ``candidates`` rows by dot product, rounded to ``decimals``.

    ``exclude``: ``(row, column)`` pairs that are never chosen (an item itself, items a user
    has seen). Returns ``(row, column, score)`` in :func:`select_top_k` order, rows numbered
    within ``query``; a row with fewer than ``k`` allowed candidates gets the ones it has.
    """
    n = candidates.shape[0]
    tol = 10.0**-decimals
    best = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    ex_rows, ex_cols = exclude if exclude is not None else (np.empty(0, np.int64), np.empty(0, np.int64))
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        scores = query @ candidates[c0:c1].T
        inside = (ex_cols >= c0) & (ex_cols < c1)
        scores[ex_rows[inside], ex_cols[inside] - c0] = -np.inf
        width = c1 - c0
        keep = min(k, width)
        # Anything that could round to at least the k-th largest value stays a candidate:
        # rounding decides ties, so the cut must not split values equal after rounding.
        kth = np.partition(scores, width - keep, axis=1)[:, width - keep]
        r, c = np.nonzero((scores >= (kth - tol)[:, None]) & np.isfinite(scores))
        v = np.round(scores[r, c], decimals)
        rows = np.concatenate([best[0], r])
        cols = np.concatenate([best[1], c + c0])
        vals = np.concatenate([best[2], v])
        best = select_top_k(rows, cols, vals, k)
    return best


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
    local = np.arange(stop - start)
    rows, cols, vals = block_top_k(unit[start:stop], unit, k, decimals, (local, local + start), chunk)
    return _finish(rows + start, cols, vals, decimals, min_similarity, nonzero=False)


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


def _vector_array(df: DataFrame, vector_col: str):
    """``vector_col`` as ``array<double>`` (an ml Vector is converted)."""
    vec = F.col(vector_col)
    if isinstance(df.schema[vector_col].dataType, VectorUDT):
        vec = vector_to_array(vec)
    return vec.cast("array<double>")


def _collect_vectors(
    df: DataFrame, id_col: str, vector_col: str, max_bytes: int, what: str
) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """The rows of ``df`` on the driver, sorted by id: ids (numpy and Arrow) and the
    vectors as a rows x dimensions matrix; the bound is checked before anything is collected."""
    prepared = df.select(F.col(id_col).alias("_id"), _vector_array(df, vector_col).alias("_v"))
    sizes = prepared.agg(F.count("*").alias("n"), F.max(F.size("_v")).alias("d")).first()
    count, dim = sizes["n"], max(sizes["d"] or 0, 0)
    check_dense_size(count, dim, max_bytes, what=what)
    table = prepared.toArrow()
    ids = _ids_of(table)
    lengths = pc.list_value_length(table.column("_v")).to_numpy(zero_copy_only=False)
    if table.column("_v").null_count or (len(lengths) and (lengths != dim).any()):
        raise ValueError(f"{what}: {vector_col} must be non-null vectors of one length ({dim})")
    matrix = pc.list_flatten(table.column("_v")).to_numpy(zero_copy_only=False).astype(np.float64)
    matrix = matrix.reshape(len(ids), dim)
    order = _sorted_ids(ids)
    arrow_ids = table.column("_id").combine_chunks().take(pa.array(order))
    ids, matrix = ids[order], matrix[order]
    if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
        raise ValueError(f"{what}: {id_col} has duplicate ids")
    return ids, arrow_ids, matrix


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
    id_type = df.schema[id_col].dataType
    ids, _, matrix = _collect_vectors(df, id_col, vector_col, max_bytes, "dense_top_k")
    norms = np.linalg.norm(matrix, axis=1)
    # A zero vector stays zero: similarity 0 with everything rather than NaN.
    unit = matrix / np.where(norms > 0, norms, 1.0)[:, None]
    del matrix
    bounds = [(s, min(len(ids), s + query_block)) for s in range(0, len(ids), query_block)]

    def block(value, start: int, stop: int):
        return dense_block(value[1], start, stop, k, decimals, min_similarity, candidate_chunk)

    return _run_blocks(df, bounds, (ids, unit), block, id_type, id_col, out_col)


def top_unseen(
    users: DataFrame,
    items: DataFrame,
    seen: DataFrame,
    n: int,
    user_col: str = "user",
    item_col: str = "item",
    vector_col: str = "features",
    score_col: str = "score",
    *,
    decimals: int = DEFAULT_DECIMALS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    query_block: int = QUERY_BLOCK,
    candidate_chunk: int = CANDIDATE_CHUNK,
) -> DataFrame:
    """Each user's best ``n`` items by the dot product of user and item vectors, leaving out
    the items the user has seen (ALS lists; a popularity list with one-dimensional vectors).

    The item vectors are broadcast as :func:`dense_top_k` broadcasts them; each user row
    carries its vector and its seen items, so a task scores a block of users against the
    items with a matrix product, sets the seen cells to minus infinity and keeps the best
    ``n``: exactly ``n`` per user whatever they have seen, no margin asked for and no
    seen-item join over the candidates afterwards.

    Args:
        users: One row per user: ``user_col`` and ``vector_col`` (array or ml Vector).
        items: One row per item: ``item_col`` (unique, not null) and ``vector_col``, of the users' length.
        seen: ``user_col, item_col`` pairs to leave out (items not in ``items`` are ignored).
        n: Items per user (positive).
        user_col: User column; the output keeps its name and type.
        item_col: Item column; the output keeps its name and type.
        vector_col: Vector column of ``users`` and ``items``.
        score_col: Name of the score column in the output.
        decimals: Scores are rounded to this many decimals before ranking (ties go to the smaller item id).
        max_bytes: Bound on the broadcast item vectors (items x dimensions x 8 bytes).
        query_block: Users per matrix product.
        candidate_chunk: Items scored per matrix product.

    Returns:
        ``user_col, rank, item_col, score_col``: up to ``n`` rows per user (fewer when fewer are
        unseen), rank 1 the highest score.

    Raises:
        ConfigError: when the item vectors would exceed ``max_bytes``.
        ValueError: on null or duplicate item ids, or vectors of different lengths.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    item_type = items.schema[item_col].dataType
    schema = _list_schema(users.schema[user_col].dataType, item_type, user_col, item_col, score_col)
    _, arrow_ids, matrix = _collect_vectors(items, item_col, vector_col, max_bytes, "top_unseen")
    if not len(matrix):  # nothing to recommend (e.g. no interactions yet): no lists
        return users.sparkSession.createDataFrame([], schema)
    dim = matrix.shape[1]
    shared = users.sparkSession.sparkContext.broadcast((arrow_ids, matrix))
    seen_lists = _seen_lists(seen, user_col, item_col, item_type)
    queries = users.select(F.col(user_col).alias("_u"), _vector_array(users, vector_col).alias("_v")).join(
        seen_lists, "_u", "left"
    )

    def best(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ids, candidates = shared.value
        for batch in batches:
            vectors, seen_col = batch.column("_v"), batch.column("_seen")
            lengths = pc.list_value_length(vectors).to_numpy(zero_copy_only=False)
            if vectors.null_count or (len(lengths) and (lengths != dim).any()):
                raise ValueError(f"top_unseen: {vector_col} of the users must be non-null vectors of length {dim}")
            query = pc.list_flatten(vectors).to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, dim)
            flat = pc.list_flatten(seen_col)
            owners, positions, _ = _positions(seen_col, flat, ids if ids.type == flat.type else ids.cast(flat.type))
            for start in range(0, batch.num_rows, query_block):
                stop = min(batch.num_rows, start + query_block)
                mine = (owners >= start) & (owners < stop)
                rows, cols, vals = block_top_k(
                    query[start:stop], candidates, n, decimals, (owners[mine] - start, positions[mine]), candidate_chunk
                )
                yield _list_batch(batch.column("_u"), rows, start, ids, cols, vals, seen_col.type.value_type, schema)

    return queries.mapInArrow(best, schema)


def top_unseen_neighbours(
    weights: DataFrame,
    neighbours: DataFrame,
    seen: DataFrame,
    n: int,
    user_col: str = "user",
    item_col: str = "item",
    neighbour_col: str = "neighbour",
    weight_col: str = "weight",
    score_col: str = "score",
    *,
    decimals: int = DEFAULT_DECIMALS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    pairs_per_block: int = SPARSE_PAIRS_PER_BLOCK,
) -> DataFrame:
    """Each user's best ``n`` unseen items by neighbourhood scoring (item-kNN, SAR, content):
    score(user, j) = sum over the user's items i of weight(user, i) x similarity(i, j), for
    the neighbours j of the user's items.

    The neighbour table is broadcast as a sparse items x items matrix; each user row
    carries its weighted items and its seen items, so a task multiplies a block of users'
    sparse weights by it (scipy), drops the seen cells and keeps the best ``n``. No row
    pairs a user's item with its neighbours, which at 100 items x 200 neighbours per user
    would be 20,000 rows per user before any aggregation.

    Args:
        weights: ``user_col, item_col, weight_col`` (one row per pair).
        neighbours: ``item_col, neighbour_col, similarity`` (one row per pair).
        seen: ``user_col, item_col`` pairs to leave out.
        n: Items per user (positive).
        user_col, item_col, neighbour_col, weight_col: Column names; the output keeps the
            user's and the item's names and types.
        score_col: Name of the score column in the output.
        decimals: Scores are rounded to this many decimals before ranking (ties go to the smaller item id).
        max_bytes: Bound on the broadcast neighbour table (its pairs at 24 bytes each).
        pairs_per_block: Users are cut into blocks whose product has at most about this many entries.

    Returns:
        ``user_col, rank, item_col, score_col``: up to ``n`` rows per user that has a weighted
        item with an unseen neighbour, rank 1 the highest score.

    Raises:
        ConfigError: when the neighbour table would exceed ``max_bytes``.
    """
    import scipy.sparse as sp

    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    item_type = weights.schema[item_col].dataType
    pairs = neighbours.select(
        F.col(item_col).cast(item_type).alias("_i"), F.col(neighbour_col).cast(item_type).alias("_j"),
        F.col(SIMILARITY).cast("double").alias("_s"),
    ).where(F.col("_i").isNotNull() & F.col("_j").isNotNull() & F.col("_s").isNotNull())  # fmt: skip
    schema = _list_schema(weights.schema[user_col].dataType, item_type, user_col, item_col, score_col)
    count = pairs.count()
    if not count:  # no item has a neighbour: no lists
        return weights.sparkSession.createDataFrame([], schema)
    if count * 24 > max_bytes:
        raise ConfigError(
            f"top_unseen_neighbours: {count:,} neighbour pairs is {_fmt_bytes(count * 24)} to broadcast, "
            f"above the bound of {_fmt_bytes(max_bytes)}; use fewer neighbours per item"
        )
    table = pairs.toArrow()
    both = pa.concat_arrays([table.column("_i").combine_chunks(), table.column("_j").combine_chunks()])
    ids, index = np.unique(both.to_numpy(zero_copy_only=False), return_inverse=True)  # sorted: id order
    arrow_ids = pa.array(ids, type=both.type)
    rows, cols = index[:count], index[count:]
    similarity = table.column("_s").to_numpy(zero_copy_only=False).astype(np.float64)
    matrix = sp.csr_matrix((similarity, (rows, cols)), shape=(len(ids), len(ids)))
    del table, both
    shared = weights.sparkSession.sparkContext.broadcast((arrow_ids, matrix))
    per_user = (
        weights.select(
            F.col(user_col).alias("_u"),
            F.struct(F.col(item_col).alias("_i"), F.col(weight_col).cast("double").alias("_w")).alias("_c"),
        )
        .where(F.col("_u").isNotNull() & F.col(item_col).isNotNull())
        .groupBy("_u")
        .agg(F.collect_list("_c").alias("_items"))
    )
    seen_lists = _seen_lists(seen, user_col, item_col, item_type)

    def best(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ids, similar = shared.value
        size = len(ids)
        fan_out = np.diff(similar.indptr)  # neighbours per item: a weighted item's product entries
        for batch in batches:
            users = batch.num_rows
            items = batch.column("_items")
            flat = pc.list_flatten(items)
            item_values = pc.struct_field(flat, "_i")  # struct_field, unlike .field(), keeps slice offsets
            known = ids if ids.type == item_values.type else ids.cast(item_values.type)
            owner, position, kept = _positions(items, item_values, known)
            weight = pc.struct_field(flat, "_w").fill_null(0.0).to_numpy(zero_copy_only=False)[kept]
            user_items = sp.csr_matrix((weight, (owner, position)), shape=(users, size))
            seen_col = batch.column("_seen")
            seen_owner, seen_position, _ = _positions(seen_col, pc.list_flatten(seen_col), known)
            cost = (user_items != 0).astype(np.int64) @ fan_out
            for start, stop in _cut(cost, pairs_per_block):
                product = (user_items[start:stop] @ similar).tocoo()
                r, c = product.row.astype(np.int64), product.col.astype(np.int64)
                mine = (seen_owner >= start) & (seen_owner < stop)
                unseen = ~np.isin(r * size + c, (seen_owner[mine] - start) * size + seen_position[mine])
                r, c, v = select_top_k(r[unseen], c[unseen], np.round(product.data[unseen], decimals), n)
                yield _list_batch(batch.column("_u"), r, start, ids, c, v, item_values.type, schema)

    return per_user.join(seen_lists, "_u", "left").mapInArrow(best, schema)


def _seen_lists(seen: DataFrame, user_col: str, item_col: str, item_type: T.DataType) -> DataFrame:
    """``_u, _seen``: each user's seen items as one list."""
    return (
        seen.select(F.col(user_col).alias("_u"), F.col(item_col).cast(item_type).alias("_s"))
        .where(F.col("_u").isNotNull() & F.col("_s").isNotNull())
        .groupBy("_u")
        .agg(F.collect_list("_s").alias("_seen"))
    )


def _list_schema(
    user_type: T.DataType, item_type: T.DataType, user_col: str, item_col: str, score_col: str
) -> T.StructType:
    return T.StructType(
        [
            T.StructField(user_col, user_type, False),
            T.StructField(RANK, T.IntegerType(), False),
            T.StructField(item_col, item_type, False),
            T.StructField(score_col, T.DoubleType(), False),
        ]
    )


def _list_batch(
    users: pa.Array,
    rows: np.ndarray,
    start: int,
    ids: pa.Array,
    cols: np.ndarray,
    vals: np.ndarray,
    item_type: pa.DataType,
    schema: T.StructType,
) -> pa.RecordBatch:
    """The kept ``(row, column, score)`` triplets (rows from ``start`` of the batch's ``users``,
    in :func:`select_top_k` order) as a batch of ``user, rank, item, score``."""
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left") + 1
    return pa.RecordBatch.from_arrays(
        [
            users.take(pa.array(rows + start)),
            pa.array(rank.astype(np.int32)),
            ids.take(pa.array(cols)).cast(item_type),
            pa.array(vals, pa.float64()),
        ],
        names=schema.names,
    )


def _positions(lists: pa.Array, flat: pa.Array, ids: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(row, position, kept)`` of the values of the list column that are among ``ids``
    (``flat``: its flattened values; ``kept`` marks them among ``flat``); null lists hold nothing."""
    counts = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
    positions = pc.index_in(flat, value_set=ids).fill_null(-1).to_numpy(zero_copy_only=False)
    owners = np.repeat(np.arange(len(lists)), counts)
    kept = positions >= 0
    return owners[kept], positions[kept].astype(np.int64), kept


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
