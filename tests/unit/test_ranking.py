"""Ranking metrics against hand-computed values.

Users (k = 3):
- a: list i1 i2 i3 i4, relevant {i1, i3, i9}: hits at ranks 1 and 3.
- b: fewer relevant items than k: list x1 x2 x3, relevant {x2}: a hit at rank 2.
- c: relevant {y1} but no recommendations: zero everywhere, still averaged.
- d: recommendations but no relevant items: not averaged (undefined), counted apart.
- e: list z1..z4, relevant {z4, z5}: a hit only beyond k (rank 4).
"""

from __future__ import annotations

import math

import pytest

from common.ranking import Columns, catalogue_coverage, evaluate, per_user_metrics

K = 3
L2 = math.log2


@pytest.fixture(scope="module")
def frames(spark):
    recs = [("a", f"i{r}", r) for r in range(1, 5)]
    recs += [("b", f"x{r}", r) for r in range(1, 4)]
    recs += [("d", "w1", 1)]
    recs += [("e", f"z{r}", r) for r in range(1, 5)]
    relevant = [("a", "i1"), ("a", "i3"), ("a", "i9"), ("b", "x2"), ("c", "y1"), ("e", "z4"), ("e", "z5")]
    return (
        spark.createDataFrame(recs, "user string, item string, rank int"),
        spark.createDataFrame(relevant, "user string, item string"),
    )


EXPECTED = {
    # user: precision, recall, ndcg, map@k, map, hit
    "a": (2 / 3, 2 / 3, (1 + 1 / L2(4)) / (1 + 1 / L2(3) + 1 / L2(4)), (1 + 2 / 3) / 3, (1 + 2 / 3) / 3, 1.0),
    "b": (1 / 3, 1.0, (1 / L2(3)) / 1.0, 0.5, 0.5, 1.0),
    "c": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "e": (0.0, 0.0, 0.0, 0.0, (1 / 4) / 2, 0.0),
}


def test_per_user_metrics_match_hand_computed_values(frames):
    recs, relevant = frames
    rows = {r["user"]: r for r in per_user_metrics(recs, relevant, K).collect()}
    assert sorted(rows) == sorted(EXPECTED)  # d has no relevant items: no row
    for user, expected in EXPECTED.items():
        row = rows[user]
        got = (row["precision"], row["recall"], row["ndcg"], row["map_at_k"], row["map"], row["hit_rate"])
        assert got == pytest.approx(expected, abs=1e-12), user


def test_summary_averages_over_users_with_relevant_items(frames):
    recs, relevant = frames
    out = evaluate(recs, relevant, K, catalogue_size=20, users_without_relevant=1)
    mean = [sum(v[i] for v in EXPECTED.values()) / 4 for i in range(6)]
    assert out["users"] == 4
    assert out["users_without_relevant"] == 1
    assert out["precision@3"] == pytest.approx(mean[0]) == pytest.approx(0.25)
    assert out["recall@3"] == pytest.approx(mean[1]) == pytest.approx(5 / 12)
    assert out["ndcg@3"] == pytest.approx(mean[2])
    assert out["map@3"] == pytest.approx(mean[3])
    assert out["map"] == pytest.approx(mean[4])
    assert out["hit_rate@3"] == pytest.approx(0.5)
    # Top 3 of a, b, e (3 items each) and d's single item: 10 distinct of 20.
    assert out["coverage@3"] == pytest.approx(0.5)


def test_coverage_counts_only_the_top_k_and_custom_column_names(spark):
    recs = spark.createDataFrame([("u", "p1", 1), ("u", "p2", 2), ("v", "p1", 1)], "uk string, it string, rk int")
    cols = Columns(user="uk", item="it", rank="rk")
    assert catalogue_coverage(recs, 4, 1, cols) == 0.25
    assert catalogue_coverage(recs, 4, 2, cols) == 0.5


def test_a_perfect_list_scores_one_even_when_shorter_than_k(spark):
    recs = spark.createDataFrame([("u", "p1", 1), ("u", "p2", 2), ("u", "p3", 3)], "user string, item string, rank int")
    relevant = spark.createDataFrame([("u", "p1"), ("u", "p2")], "user string, item string")
    row = per_user_metrics(recs, relevant, 3).first()
    assert (row["ndcg"], row["map_at_k"], row["recall"], row["precision"]) == pytest.approx((1.0, 1.0, 1.0, 2 / 3))
