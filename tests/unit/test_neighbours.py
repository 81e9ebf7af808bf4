"""common.neighbours against a brute-force numpy top-k: every similarity of every pair,
sorted by (similarity desc, neighbour id asc)."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import types as T

from common.errors import ConfigError
from common.neighbours import (
    check_dense_size,
    dense_top_k,
    select_top_k,
    sparse_top_k,
    top_unseen,
    top_unseen_neighbours,
)


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


def brute_force_unseen(users: np.ndarray, items: np.ndarray, item_ids: list, seen: dict, n: int) -> dict:
    """``{user: [(item, score), ...]}``: every dot product, seen items out, (score desc, id asc)."""
    scores = np.round(users @ items.T, 9)
    out = {}
    for u in range(len(users)):
        best = sorted((-scores[u, j], item_ids[j]) for j in range(len(item_ids)) if item_ids[j] not in seen.get(u, ()))
        if best[:n]:
            out[u] = [(b, -s) for s, b in best[:n]]
    return out


@pytest.mark.parametrize(
    ("users", "items", "dim", "n", "block", "chunk", "integer", "seed"),
    [
        (7, 5, 2, 10, 4, 3, False, 0),  # n above the items: everyone gets what is unseen
        (90, 60, 4, 7, 16, 13, False, 1),  # several user blocks and item chunks, uneven
        (120, 40, 1, 5, 512, 8192, True, 2),  # one dimension of small integers: ties by id
    ],
)
def test_top_unseen_matches_brute_force(spark, users, items, dim, n, block, chunk, integer, seed):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 3, size=(users, dim)).astype(float) if integer else rng.normal(size=(users, dim))
    v = rng.integers(0, 4, size=(items, dim)).astype(float) if integer else rng.normal(size=(items, dim))
    item_ids = [f"p{x:03d}" for x in rng.permutation(items)]  # input order is not id order
    # Some users have seen nothing, some most of the catalogue, and some pairs name unknown items.
    seen = {i: set(rng.choice(item_ids, size=rng.integers(0, items), replace=False)) for i in range(users) if i % 5}
    pairs = [(i, item) for i, items_seen in seen.items() for item in items_seen] + [(1, "unknown"), (1, "unknown")]
    user_df = spark.createDataFrame(
        [(i, [float(x) for x in row]) for i, row in enumerate(u)], "user int, v array<double>"
    )
    item_df = dense_df(spark, v, item_ids)
    seen_df = spark.createDataFrame(pairs, "user int, item string")
    got_df = top_unseen(user_df, item_df, seen_df, n, vector_col="v", query_block=block, candidate_chunk=chunk)
    assert [f.name for f in got_df.schema] == ["user", "rank", "item", "score"]
    assert [f.dataType for f in got_df.schema][:3] == [T.IntegerType(), T.IntegerType(), T.StringType()]
    got: dict = {}
    for r in sorted(got_df.collect(), key=lambda r: (r["user"], r["rank"])):
        got.setdefault(r["user"], []).append((r["rank"], r["item"], r["score"]))
    for lst in got.values():
        assert [rank for rank, _, _ in lst] == list(range(1, len(lst) + 1))
    want = brute_force_unseen(u, v, item_ids, seen, n)
    assert set(got) == set(want)
    for user in want:
        assert [b for _, b, _ in got[user]] == [b for b, _ in want[user]], user
        np.testing.assert_allclose([s for _, _, s in got[user]], [s for _, s in want[user]], atol=1e-6, rtol=0)
        assert not {b for _, b, _ in got[user]} & seen.get(user, set())
        assert len(got[user]) == min(n, items - len(seen.get(user, ())))


def test_top_unseen_bound_vector_lengths_and_no_items(spark):
    users = spark.createDataFrame([(1, [1.0, 0.0])], "user int, features array<double>")
    items = spark.createDataFrame([("a", [1.0, 2.0]), ("b", [0.0, 1.0])], "item string, features array<double>")
    seen = spark.createDataFrame([], "user int, item string")
    with pytest.raises(ConfigError, match="top_unseen: 2 items x 2 dimensions"):
        top_unseen(users, items, seen, 1, max_bytes=10)
    assert top_unseen(users, items.limit(0), seen, 3).collect() == []  # no items: no lists, no error
    wrong = spark.createDataFrame([(1, [1.0, 0.0, 3.0])], "user int, features array<double>")
    with pytest.raises(Exception, match="must be non-null vectors of length 2"):
        top_unseen(wrong, items, seen, 1).collect()


@pytest.mark.parametrize(("users", "items", "n", "budget", "seed"), [(40, 30, 5, 10_000_000, 4), (60, 25, 3, 7, 5)])
def test_top_unseen_neighbours_matches_brute_force(spark, users, items, n, budget, seed):
    """Scores = weights x neighbour similarities summed per (user, neighbour), seen items out,
    best n by (score desc, id asc); a budget of 7 cuts the users into many blocks."""
    rng = np.random.default_rng(seed)
    ids = [f"p{x:03d}" for x in range(items)]
    similar = np.where(rng.random((items, items)) < 0.2, rng.integers(1, 4, size=(items, items)) / 4.0, 0.0)
    np.fill_diagonal(similar, 0.0)
    weights = np.where(rng.random((users, items)) < 0.15, rng.integers(1, 3, size=(users, items)).astype(float), 0.0)
    seen = (weights > 0) | (rng.random((users, items)) < 0.1)  # seen: weighted items and a few others
    scores = np.round(weights @ similar, 9)
    reached = (weights > 0).astype(int) @ (similar != 0).astype(int) > 0
    want = {}
    for u in range(users):
        best = sorted((-scores[u, j], ids[j]) for j in range(items) if reached[u, j] and not seen[u, j])[:n]
        if best:
            want[f"u{u}"] = [(b, -v) for v, b in best]
    pair_rows = [(ids[i], ids[j], float(similar[i, j])) for i, j in zip(*np.nonzero(similar))]
    weight_rows = [(f"u{u}", ids[i], float(weights[u, i])) for u, i in zip(*np.nonzero(weights))]
    seen_rows = [(f"u{u}", ids[i]) for u, i in zip(*np.nonzero(seen))]
    got_df = top_unseen_neighbours(
        spark.createDataFrame(weight_rows, "user string, item string, weight double"),
        spark.createDataFrame(pair_rows, "item string, neighbour string, similarity double"),
        spark.createDataFrame(seen_rows, "user string, item string"),
        n,
        pairs_per_block=budget,
    )
    got: dict = {}
    for r in sorted(got_df.collect(), key=lambda r: (r["user"], r["rank"])):
        got.setdefault(r["user"], []).append((r["rank"], r["item"], r["score"]))
    assert set(got) == set(want)
    for user, lst in got.items():
        assert [rank for rank, _, _ in lst] == list(range(1, len(lst) + 1))
        assert [b for _, b, _ in lst] == [b for b, _ in want[user]], user
        np.testing.assert_allclose([v for _, _, v in lst], [v for _, v in want[user]], atol=1e-9, rtol=0)


def test_top_unseen_neighbours_bound_names_the_pairs_and_no_pairs_give_no_lists(spark):
    pairs = spark.createDataFrame(
        [("a", "b", 1.0), ("b", "a", 1.0)], "item string, neighbour string, similarity double"
    )
    weights = spark.createDataFrame([("u", "a", 1.0)], "user string, item string, weight double")
    with pytest.raises(ConfigError, match="2 neighbour pairs"):
        top_unseen_neighbours(weights, pairs, weights.select("user", "item"), 3, max_bytes=10)
    assert top_unseen_neighbours(weights, pairs.limit(0), weights.select("user", "item"), 3).collect() == []


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


def test_recommend_checks_the_factor_bound_up_front_unless_nothing_uses_als():
    from common.config import load_config
    from jobs.recommend.similar import check_item_factors_size

    rc = load_config("local", ["recommend.similar_max_mb=64", "recommend.grid.rank=[16, 64]"]).recommend
    with pytest.raises(ConfigError, match=r"200,000 items x 64 dimensions .*recommend.similar_items: 0"):
        check_item_factors_size(rc, 200_000)
    check_item_factors_size(rc, 100_000)  # 49 MiB: within 64
    without_table = load_config("local", ["recommend.similar_items=0", "recommend.similar_max_mb=64"]).recommend
    with pytest.raises(ConfigError, match="ALS item factors"):  # ALS's lists broadcast them too
        check_item_factors_size(without_table, 200_000)
    skipped = load_config(
        "local",
        ["recommend.similar_items=0", "recommend.similar_max_mb=64", "recommend.candidates=[item_knn, most_popular]"],
    ).recommend
    check_item_factors_size(skipped, 10_000_000)  # no ALS anywhere, so nothing is too large
