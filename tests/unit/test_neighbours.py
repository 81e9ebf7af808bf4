"""common.neighbours against a brute-force numpy top-k: every similarity of every pair,
sorted by (similarity desc, neighbour id asc)."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import types as T

from common.errors import ConfigError
from common.neighbours import check_dense_size, dense_top_k, select_top_k, sparse_top_k


def brute_force(matrix: np.ndarray, ids: list, k: int, *, nonzero: bool = False, min_similarity=None) -> dict:
    """``{id: [(neighbour, similarity), ...]}`` from the full cosine matrix (rows are items)."""
    norms = np.linalg.norm(matrix, axis=1)
    unit = matrix / np.where(norms > 0, norms, 1.0)[:, None]
    sims = np.clip(np.round(unit @ unit.T, 9), -1.0, 1.0)
    out = {}
    for i, a in enumerate(ids):
        cands = [
            (-sims[i, j], ids[j])
            for j in range(len(ids))
            if j != i and (not nonzero or sims[i, j] != 0) and (min_similarity is None or sims[i, j] > min_similarity)
        ]
        best = sorted(cands)[:k]
        if best:
            out[a] = [(b, -s) for s, b in best]
    return out


def collected(df, id_col: str, out_col: str) -> dict:
    rows = df.collect()
    out: dict = {}
    for r in sorted(rows, key=lambda r: (r[id_col], r["rank"])):
        out.setdefault(r[id_col], []).append((r["rank"], r[out_col], r["similarity"]))
    for lst in out.values():
        assert [rank for rank, _, _ in lst] == list(range(1, len(lst) + 1))
    return {a: [(b, s) for _, b, s in lst] for a, lst in out.items()}


def assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for a in want:
        assert [b for b, _ in got[a]] == [b for b, _ in want[a]], a
        np.testing.assert_allclose([s for _, s in got[a]], [s for _, s in want[a]], atol=1e-6, rtol=0)


def dense_df(spark, matrix, ids, id_type: T.DataType | None = None):
    schema = T.StructType(
        [T.StructField("item", id_type or T.StringType()), T.StructField("v", T.ArrayType(T.DoubleType()))]
    )
    return spark.createDataFrame([(a, [float(x) for x in row]) for a, row in zip(ids, matrix)], schema)


@pytest.mark.parametrize(
    ("n", "dim", "k", "block", "chunk", "seed"),
    [
        (1, 4, 3, 8, 8, 0),  # a single item has no neighbours
        (5, 3, 10, 2, 3, 1),  # k above every item's neighbour count
        (60, 6, 7, 16, 13, 2),  # several query blocks and candidate chunks, uneven
        (211, 16, 10, 64, 50, 3),
    ],
)
def test_dense_matches_brute_force(spark, n, dim, k, block, chunk, seed):
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(n, dim))
    ids = [f"i{x:04d}" for x in rng.permutation(n)]  # input order is not id order
    got = dense_top_k(dense_df(spark, matrix, ids), k, "item", "v", "other", query_block=block, candidate_chunk=chunk)
    assert_same(collected(got, "item", "other"), brute_force(matrix, ids, k))
    assert got.count() == n * min(k, n - 1)


def test_dense_exact_ties_go_to_the_smaller_id(spark):
    """Small integer vectors with repeats: many equal cosines, broken by neighbour id."""
    rng = np.random.default_rng(11)
    matrix = rng.integers(0, 3, size=(80, 3)).astype(float)
    matrix[5] = 0.0  # a zero vector: similarity 0 with everything
    ids = [int(x) * 7 for x in rng.permutation(80)]
    df = dense_df(spark, matrix, ids, T.LongType())
    got = collected(dense_top_k(df, 9, "item", "v", "other", query_block=16, candidate_chunk=24), "item", "other")
    want = brute_force(matrix, ids, 9)
    assert_same(got, want)
    # The data really has ties inside the top 9, so the id rule was exercised.
    assert any(len({s for _, s in lst}) < len(lst) for lst in want.values())


def test_dense_min_similarity_leaves_short_lists(spark):
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(40, 3))
    ids = [f"p{x}" for x in range(40)]
    got = collected(
        dense_top_k(dense_df(spark, matrix, ids), 25, "item", "v", "other", min_similarity=0.0), "item", "other"
    )
    want = brute_force(matrix, ids, 25, min_similarity=0.0)
    assert_same(got, want)
    assert any(len(lst) < 25 for lst in want.values())
    assert all(s > 0 for lst in got.values() for _, s in lst)


def test_dense_reads_ml_vectors(spark):
    rng = np.random.default_rng(9)
    matrix = rng.normal(size=(30, 4))
    ids = [f"v{x}" for x in range(30)]
    schema = T.StructType([T.StructField("item", T.StringType()), T.StructField("features", VectorUDT())])
    df = spark.createDataFrame([(a, Vectors.dense(row.tolist())) for a, row in zip(ids, matrix)], schema)
    got = collected(dense_top_k(df, 4, "item"), "item", "neighbour")
    assert_same(got, brute_force(matrix, ids, 4))


def test_dense_rejects_duplicate_ids(spark):
    df = dense_df(spark, np.eye(3), ["a", "b", "a"])
    with pytest.raises(ValueError, match="duplicate"):
        dense_top_k(df, 2, "item", "v")


def test_dense_bound_names_items_pairs_and_bytes(spark):
    with pytest.raises(ConfigError, match=r"300,000 items x 64 dimensions is 146 MiB .* 89,999,700,000 ordered pairs"):
        check_dense_size(300_000, 64, max_bytes=100 * 2**20)
    check_dense_size(300_000, 64, max_bytes=200 * 2**20)  # within the bound: no error
    df = dense_df(spark, np.eye(4), list("abcd"))
    with pytest.raises(ConfigError, match="4 items x 4 dimensions"):
        dense_top_k(df, 2, "item", "v", max_bytes=100)


def sparse_case(rng, users: int, items: int, density: float, integer: bool):
    mask = rng.random((items, users)) < density
    values = rng.integers(1, 4, size=mask.shape).astype(float) if integer else rng.random(mask.shape) + 0.1
    return np.where(mask, values, 0.0)


def triplets_df(spark, matrix, ids, users):
    rows = [(users[u], ids[i], float(matrix[i, u])) for i, u in zip(*np.nonzero(matrix))]
    schema = T.StructType(
        [
            T.StructField("user", T.StringType()),
            T.StructField("item", T.StringType()),
            T.StructField("x", T.DoubleType()),
        ]
    )
    return spark.createDataFrame(rows, schema)


@pytest.mark.parametrize(
    ("users", "items", "density", "k", "budget", "integer", "seed"),
    [
        (12, 9, 0.15, 5, 10_000, False, 0),  # sparse enough that many items have fewer than k neighbours
        (40, 70, 0.08, 6, 50, True, 1),  # integer values: ties; a small budget makes many blocks
        (200, 150, 0.02, 10, 400, False, 2),
    ],
)
def test_sparse_matches_brute_force(spark, users, items, density, k, budget, integer, seed):
    rng = np.random.default_rng(seed)
    matrix = sparse_case(rng, users, items, density, integer)
    ids = [f"item{x:03d}" for x in rng.permutation(items)]
    user_ids = [f"u{x}" for x in range(users)]
    got = sparse_top_k(
        triplets_df(spark, matrix, ids, user_ids), k, "user", "item", "x", "other", pairs_per_block=budget
    )
    want = brute_force(matrix, ids, k, nonzero=True)
    assert_same(collected(got, "item", "other"), want)
    assert any(len(lst) < k for lst in want.values())


def test_sparse_sums_repeated_pairs_and_ties_by_id(spark):
    # Items b, c and d share user u1 with a, identically: three equal similarities to a.
    rows = [("u1", "a", 1.0), ("u1", "d", 1.0), ("u1", "c", 1.0), ("u1", "b", 0.5), ("u1", "b", 0.5), ("u2", "e", 1.0)]
    df = spark.createDataFrame(rows, "user string, item string, x double")
    got = collected(sparse_top_k(df, 2, "user", "item", "x", "other"), "item", "other")
    assert got["a"] == [("b", 1.0), ("c", 1.0)]
    assert got["d"] == [("a", 1.0), ("b", 1.0)]
    assert "e" not in got  # shares no user with anyone


def test_sparse_bound_names_items_and_non_zeros(spark):
    df = spark.createDataFrame(
        [("u1", "a", 1.0), ("u1", "b", 1.0), ("u2", "b", 2.0)], "user string, item string, x double"
    )
    with pytest.raises(ConfigError, match="2 items with 3 non-zeros"):
        sparse_top_k(df, 2, "user", "item", "x", max_bytes=10)


def test_select_top_k_orders_each_row_by_similarity_then_column():
    rows = np.array([1, 0, 0, 0, 1, 0])
    cols = np.array([3, 5, 2, 4, 2, 1])
    vals = np.array([0.5, 0.9, 0.9, 0.1, 0.5, 0.3])
    r, c, v = select_top_k(rows, cols, vals, 2)
    assert r.tolist() == [0, 0, 1, 1]
    assert c.tolist() == [2, 5, 2, 3]
    assert v.tolist() == [0.9, 0.9, 0.5, 0.5]


def test_recommend_checks_the_bound_up_front_and_zero_skips_it():
    from common.config import load_config
    from jobs.recommend.similar import check_similar_items_size

    rc = load_config("local", ["recommend.similar_max_mb=64", "recommend.grid.rank=[16, 64]"]).recommend
    with pytest.raises(ConfigError, match=r"200,000 items x 64 dimensions .*recommend.similar_items: 0"):
        check_similar_items_size(rc, 200_000)
    check_similar_items_size(rc, 100_000)  # 49 MiB: within 64
    skipped = load_config("local", ["recommend.similar_items=0", "recommend.similar_max_mb=64"]).recommend
    check_similar_items_size(skipped, 10_000_000)  # the table is skipped, so nothing is too large
