"""jobs.recommend pieces on tiny DataFrames with hand-computed answers: the catalogue
behind coverage@k, and the item-kNN and SAR candidates (similarities and user scores)."""

from __future__ import annotations

import math
from datetime import date, datetime

import pytest
from pyspark.sql import functions as F

from common.config import ItemKnnConfig, RecommendConfig, SarConfig
from common.interactions import aggregate
from common.neighbours import sparse_top_k
from jobs.recommend.candidates import (
    catalogue_size,
    fit_candidate,
    knn_neighbours,
    model_candidates,
    sar_affinity,
    sar_neighbours,
)
from jobs.recommend.evaluation import sample_users

RAW = "user_key string, item_id string, kind string, ts timestamp, weight double, quantity int"


def test_catalogue_is_the_touched_items_when_there_is_no_product_table(spark):
    raw = spark.createDataFrame(
        [
            ("u1", "a", "view", datetime(2024, 1, 1), 1.0, 0),
            ("u2", "b", "purchase", datetime(2024, 1, 2, 23, 59), 5.0, 1),
            ("u2", "a", "purchase", datetime(2024, 1, 2), 5.0, 1),
            ("u3", "c", "view", datetime(2024, 1, 3), 1.0, 0),  # after the as-of day
        ],
        RAW,
    )
    no_products = spark.createDataFrame([], "item_id string")
    assert catalogue_size(no_products, raw, date(2024, 1, 2)) == 2
    # A product table adds its untouched items; touched items it lacks still count.
    products = spark.createDataFrame([("a",), ("x",)], "item_id string")
    assert catalogue_size(products, raw, date(2024, 1, 2)) == 3


# ---------------------------------------------------------------------------- item-kNN and SAR
# Strengths of the tiny user x item matrix (rows users, columns items):
#        a  b  c
#   u1   1  2  .
#   u2   1  1  2
#   u3   .  .  1
# Item columns a = (1,1,0), b = (2,1,0), c = (0,2,1):
#   cos(a,b) = 3/sqrt(10) = 0.948683, cos(a,c) = 2/sqrt(10) = 0.632456, cos(b,c) = 2/5 = 0.4.
# Users per item a {u1,u2}, b {u1,u2}, c {u2,u3}; co-occurrences ab 2, ac 1, bc 1:
#   Jaccard ab 2/(2+2-2) = 1, ac = bc = 1/(2+2-1) = 1/3; lift ab 2/(2x2) = 0.5, ac = bc = 1/4.
TRAIN = [("u1", "a", 1.0), ("u1", "b", 2.0), ("u2", "a", 1.0), ("u2", "b", 1.0), ("u2", "c", 2.0), ("u3", "c", 1.0)]
COS_AB, COS_AC = 3 / math.sqrt(10), 2 / math.sqrt(10)


def train_df(spark, rows=TRAIN):
    return spark.createDataFrame(rows, "user_key string, item_id string, strength double")


def table(df, key: str, value: str) -> dict:
    """``{(item or user, other item): value}`` rounded to 6 decimals."""
    return {(r[0], r[1]): round(r[2], 6) for r in df.select(*key.split(","), value).collect()}


def test_item_knn_neighbours_are_the_cosines_of_the_item_columns(spark):
    got = table(knn_neighbours(train_df(spark), 2), "item_id,neighbour_id", "similarity")
    want = {("a", "b"): COS_AB, ("a", "c"): COS_AC, ("b", "a"): COS_AB, ("b", "c"): 0.4}
    want |= {("c", "a"): COS_AC, ("c", "b"): 0.4}
    assert got == {key: round(v, 6) for key, v in want.items()}
    # K = 1 keeps each item's single best neighbour.
    assert table(knn_neighbours(train_df(spark), 1), "item_id,neighbour_id", "similarity") == {
        ("a", "b"): round(COS_AB, 6),
        ("b", "a"): round(COS_AB, 6),
        ("c", "a"): round(COS_AC, 6),
    }


def test_item_knn_scores_sum_the_similarities_to_the_users_items(spark):
    rc = RecommendConfig(knn=ItemKnnConfig(neighbours=2))
    train = train_df(spark)
    fitted = fit_candidate("item_knn", train, rc)
    scores = model_candidates(fitted, train, train.limit(0), date(2024, 1, 1), rc, None, 10)
    # u1 touched a and b: c scores cos(a,c) + cos(b,c); u2 has seen everything.
    assert table(scores, "user_key,item_id", "score") == {
        ("u1", "c"): round(COS_AC + 0.4, 6),
        ("u3", "a"): round(COS_AC, 6),
        ("u3", "b"): 0.4,
    }
    # Scoring a subset of users scores only them.
    only = model_candidates(
        fitted, train, train.limit(0), date(2024, 1, 1), rc, spark.createDataFrame([("u3",)], "user_key string"), 10
    )
    assert sorted(r["item_id"] for r in only.collect()) == ["a", "b"]


def test_sar_similarities_are_jaccard_or_lift_of_co_occurrence_counts(spark):
    jaccard = table(sar_neighbours(train_df(spark), 2, "jaccard"), "item_id,neighbour_id", "similarity")
    third = round(1 / 3, 6)
    assert jaccard == {("a", "b"): 1.0, ("a", "c"): third, ("b", "a"): 1.0, ("b", "c"): third,
                       ("c", "a"): third, ("c", "b"): third}  # fmt: skip
    lift = table(sar_neighbours(train_df(spark), 2, "lift"), "item_id,neighbour_id", "similarity")
    assert lift == {("a", "b"): 0.5, ("a", "c"): 0.25, ("b", "a"): 0.5, ("b", "c"): 0.25,
                    ("c", "a"): 0.25, ("c", "b"): 0.25}  # fmt: skip
    # A tie (c's two neighbours at 1/3) goes to the smaller id.
    ranked = sparse_top_k(train_df(spark), 1, "user_key", "item_id", "strength", "n", similarity="jaccard")
    assert {(r["item_id"], r["n"]) for r in ranked.collect()} == {("a", "b"), ("b", "a"), ("c", "a")}


def test_sar_scores_weigh_similarities_by_time_decayed_affinity(spark):
    """Half-life 1 day, training up to 2024-01-10 (its end: 2024-01-11 00:00). u1 bought a
    one day before the end (5 x 0.5 = 2.5) and viewed b two days before (1 x 0.25); u3 added
    c to a favourite one day before (2 x 0.5 = 1). c scores 2.5/3 + 0.25/3 for u1."""
    raw = spark.createDataFrame(
        [
            ("u1", "a", "purchase", datetime(2024, 1, 10), 5.0, 1),
            ("u1", "b", "view", datetime(2024, 1, 9), 1.0, 0),
            ("u2", "a", "view", datetime(2024, 1, 10), 1.0, 0),
            ("u2", "b", "view", datetime(2024, 1, 10), 1.0, 0),
            ("u2", "c", "view", datetime(2024, 1, 10), 1.0, 0),
            ("u3", "c", "favourite", datetime(2024, 1, 10), 2.0, 0),
            ("u3", "a", "view", datetime(2024, 1, 12), 1.0, 0),  # after training: neither seen nor weighed
        ],
        RAW,
    )
    until = date(2024, 1, 10)
    train = aggregate(raw, until)
    affinity = table(sar_affinity(raw, train, until, 1.0), "user_key,item_id", "weight")
    assert affinity[("u1", "a")] == 2.5 and affinity[("u1", "b")] == 0.25 and affinity[("u3", "c")] == 1.0
    rc = RecommendConfig(sar=SarConfig(similarity="jaccard", neighbours=2, half_life_days=1.0))
    fitted = fit_candidate("sar", train, rc)
    scores = model_candidates(fitted, train, raw, until, rc, None, 10)
    third = 1 / 3
    assert table(scores, "user_key,item_id", "score") == {
        ("u1", "c"): round(2.75 * third, 6),
        ("u3", "a"): round(third, 6),
        ("u3", "b"): round(third, 6),
    }


# ---------------------------------------------------------------------------- similar items
def test_items_als_has_not_seen_take_content_neighbours_before_the_category_fallback(spark):
    """d and e are in the product table but nobody touched them: d has content neighbours
    (reason content, their similarity), e has none and gets its category's most popular
    items (reason fallback, similarity 0). Content rows of items ALS knows are ignored."""
    from jobs.recommend.candidates import AlsParams, fit_als
    from jobs.recommend.similar import similar_items

    train = train_df(spark)
    products = spark.createDataFrame(
        [("a", "X"), ("b", "X"), ("c", "Y"), ("d", "X"), ("e", "Y")], "item_id string, category_l1 string"
    )
    content = spark.createDataFrame(
        [("d", 1, "a", 0.9), ("d", 2, "e", 0.5), ("d", 3, "b", 0.25), ("a", 1, "d", 0.9)],
        "item_id string, rank int, similar_item_id string, similarity double",
    )
    model, ids = fit_als(train, AlsParams(rank=2, reg_param=0.1, alpha=1.0, max_iter=2), seed=1)
    rows = similar_items(model, ids, train, products, 2, content=content).collect()
    cold = sorted(
        (r["item_id"], r["rank"], r["similar_item_id"], r["similarity"], r["reason"])
        for r in rows
        if r["item_id"] in "de"
    )
    assert cold == [("d", 1, "a", 0.9, "content"), ("d", 2, "e", 0.5, "content"), ("e", 1, "c", 0.0, "fallback")]
    assert {r["reason"] for r in rows if r["item_id"] in "abc"} == {"model"}


def test_fit_als_fits_the_confidence_transformed_strength(spark):
    """ALS sees the transformed strength: a log1p fit equals a raw fit of log1p strengths
    (same seed), and an unknown transform fails before fitting."""
    from jobs.recommend.candidates import AlsParams, fit_als

    train = train_df(spark)
    point = {"rank": 2, "reg_param": 0.1, "alpha": 1.0, "max_iter": 2}

    def factors(df, confidence):
        model, _ = fit_als(df, AlsParams(**point, confidence=confidence), seed=1)
        return [v for r in model.userFactors.orderBy("id").collect() for v in r["features"]]

    logged = factors(train, "log1p")
    assert logged == pytest.approx(factors(train.withColumn("strength", F.log1p("strength")), "raw"), abs=1e-5)
    assert logged != pytest.approx(factors(train, "raw"), abs=1e-3)
    with pytest.raises(ValueError, match="bm42"):
        fit_als(train, AlsParams(**point, confidence="bm42"), seed=1)


# ------------------------------------------------------- content picks for sparse users
def test_sparse_users_get_content_picks_where_validation_placed_them(spark):
    """u1 touched one item, u2 three: with fill_below 2 only u1 is sparse. u1's content
    picks are the neighbours of its item it has not seen, scored by cosine (b 0.9, c 0.5);
    placed before the model they lead the list, after it they top it up ahead of the
    popular fallback, and an item in two tiers is listed once, from the earlier."""
    from jobs.recommend.candidates import (
        FILL_AFTER,
        FILL_BEFORE,
        FILL_NONE,
        NEIGHBOUR,
        content_fill_candidates,
        sparse_users,
        top_n_with_fallback,
    )

    train = spark.createDataFrame(
        [("u1", "a", 1.0), ("u2", "a", 1.0), ("u2", "b", 1.0), ("u2", "d", 1.0)],
        "user_key string, item_id string, strength double",
    )
    neighbours = spark.createDataFrame(
        [("a", "b", 0.9), ("a", "c", 0.5), ("b", "a", 0.9), ("d", "e", 0.3)],
        f"item_id string, {NEIGHBOUR} string, similarity double",
    )
    sparse = sparse_users(train, 2)
    assert [r.user_key for r in sparse.collect()] == ["u1"]
    content = content_fill_candidates(train, neighbours, sparse, 10)
    assert sorted((r.user_key, r.item_id, r.score) for r in content.collect()) == [("u1", "b", 0.9), ("u1", "c", 0.5)]

    schema = "user_key string, item_id string, score double"
    primary = spark.createDataFrame([("u1", "c", 3.0), ("u2", "e", 2.0)], schema)
    fallback = spark.createDataFrame([("u1", "f", 9.0), ("u2", "f", 9.0), ("u1", "g", 8.0)], schema)

    def lists(placement):
        rows = top_n_with_fallback(primary, fallback, 3, content, placement).orderBy("user_key", "rank").collect()
        return [(r.user_key, r.rank, r.item_id, r.reason) for r in rows]

    assert lists(FILL_NONE) == [
        ("u1", 1, "c", "model"), ("u1", 2, "f", "fallback"), ("u1", 3, "g", "fallback"),
        ("u2", 1, "e", "model"), ("u2", 2, "f", "fallback"),
    ]  # fmt: skip
    assert lists(FILL_AFTER) == [
        ("u1", 1, "c", "model"), ("u1", 2, "b", "content"), ("u1", 3, "f", "fallback"),
        ("u2", 1, "e", "model"), ("u2", 2, "f", "fallback"),
    ]  # fmt: skip
    assert lists(FILL_BEFORE) == [
        ("u1", 1, "b", "content"), ("u1", 2, "c", "content"), ("u1", 3, "f", "fallback"),
        ("u2", 1, "e", "model"), ("u2", 2, "f", "fallback"),
    ]  # fmt: skip


def test_the_placement_is_the_best_on_validation_and_a_tie_keeps_content_out():
    from jobs.recommend.evaluation import choose_placement

    def scores(none, after, before):
        return {
            p: {"ndcg@10": v, "users": 40}
            for p, v in (("none", none), ("after_model", after), ("before_model", before))
        }

    assert choose_placement(scores(0.2, 0.2, 0.3), 10) == "before_model"
    assert choose_placement(scores(0.2, 0.25, 0.1), 10) == "after_model"
    assert choose_placement(scores(0.2, 0.2, 0.2), 10) == "none"
    assert choose_placement({"skipped": "no sparse user bought anything"}, 10) == "none"
    few = {p: {"ndcg@10": v, "users": 29} for p, v in (("none", 0.1), ("after_model", 0.5), ("before_model", 0.2))}
    assert choose_placement(few, 10, min_users=30) == "none"  # 29 users: the gain is not trusted
    assert choose_placement(few, 10, min_users=29) == "after_model"


def test_evaluation_sample_keeps_whole_users_and_is_seeded(spark):
    # Ten users with 1..10 interactions each.
    rows = [(f"u{u}", f"i{j}", "view", datetime(2024, 1, 1), 1.0, 0) for u in range(10) for j in range(u + 1)]
    raw = spark.createDataFrame(rows, RAW)
    sampled, described = sample_users(raw, 4, seed=7)
    assert described == {"users": 4, "of": 10, "seed": 7}
    per_user = {r["user_key"]: r["count"] for r in sampled.groupBy("user_key").count().collect()}
    assert len(per_user) == 4
    # Every interaction of a drawn user stays: user uN had N + 1.
    assert all(n == int(u[1:]) + 1 for u, n in per_user.items())
    again, _ = sample_users(raw, 4, seed=7)
    assert {r["user_key"] for r in again.select("user_key").distinct().collect()} == set(per_user)
    draws = {frozenset(r["user_key"] for r in sample_users(raw, 4, s)[0].select("user_key").distinct().collect())
             for s in range(1, 6)}  # fmt: skip
    assert len(draws) > 1  # the seed decides who is drawn
    # No more users than the bound (or no bound): the interactions themselves.
    assert sample_users(raw, 10, seed=7) == (raw, {"users": 10, "of": 10})
    assert sample_users(raw, None, seed=7)[0] is raw
