"""common.content on tiny catalogues with hand-computed cosines.

Catalogue (price in yuan):
    p1  "red shirt"  A / X / Y  Acme   10
    p2  "red hat"    A / X / Z  Acme   10
    p3  "blue hat"   A / W / V  Other  100
    p4  "red shirt"  B / X / Y  Acme   10   (another top-level category: another block)

Category blocks have the tokens l1, l1/l2, l1/l2/l3 (1/sqrt(3) each): same l1 and l2 = 2/3,
same l1 only = 1/3. Brand: same = 1. With features [category, brand] the vector is the two unit
blocks over sqrt(2), so cos = (cos_category + cos_brand) / 2:
    cos(p1, p2) = (2/3 + 1) / 2 = 5/6,  cos(p1, p3) = cos(p2, p3) = (1/3 + 0) / 2 = 1/6.
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from common.content import content_neighbours, content_scores, item_vectors

SCHEMA = (
    "item_id string, product_name string, category_l1 string, category_l2 string, category_l3 string,"
    " brand string, price decimal(18,2)"
)
ROWS = [
    ("p1", "red shirt", "A", "X", "Y", "Acme", Decimal("10.00")),
    ("p2", "red hat", "A", "X", "Z", "Acme", Decimal("10.00")),
    ("p3", "blue hat", "A", "W", "V", "Other", Decimal("100.00")),
    ("p4", "red shirt", "B", "X", "Y", "Acme", Decimal("10.00")),
]
BIG = 1 << 14  # no hash collisions among this handful of tokens (murmur3 is deterministic)


def products(spark, rows=ROWS):
    return spark.createDataFrame(rows, SCHEMA)


def pair_cosines(vectors) -> dict:
    rows = {r["item_id"]: r["features"] for r in vectors.collect()}
    return {(a, b): float(rows[a].dot(rows[b])) for a in rows for b in rows if a < b}


def test_category_and_brand_cosines_are_the_mean_of_the_blocks(spark):
    vectors = products(spark).transform(item_vectors(["category", "brand"], BIG))
    cos = pair_cosines(vectors)
    assert cos[("p1", "p2")] == pytest.approx(5 / 6)
    assert cos[("p1", "p3")] == pytest.approx(1 / 6)
    assert cos[("p2", "p3")] == pytest.approx(1 / 6)
    # p4 differs from p1 only in l1, so no category token is shared: brand only.
    assert cos[("p1", "p4")] == pytest.approx(1 / 2)
    assert {r["item_id"]: r["block"] for r in vectors.collect()} == {"p1": "A", "p2": "A", "p3": "A", "p4": "B"}


def test_name_tokens_are_tf_idf_of_words_and_bigrams(spark):
    """Three products (block A): tokens red, shirt, "red shirt" / red, hat, "red hat" / blue, hat,
    "blue hat". IDF = ln((3 + 1) / (df + 1)): a = ln(4/3) for red and hat (df 2), b = ln 2 otherwise.
    p1 . p2 = p2 . p3 = a^2 (red; hat), so cos(p1, p2) = cos(p2, p3) = a^2 / (sqrt(a^2 + 2b^2) sqrt(2a^2 + b^2));
    p1 and p3 share nothing: 0."""
    vectors = products(spark, ROWS[:3]).transform(item_vectors(["name"], BIG))
    a, b = math.log(4 / 3), math.log(2)
    cos = pair_cosines(vectors)
    assert cos[("p1", "p2")] == pytest.approx(a * a / (math.sqrt(a * a + 2 * b * b) * math.sqrt(2 * a * a + b * b)))
    assert cos[("p2", "p3")] == pytest.approx(cos[("p1", "p2")])
    assert cos[("p1", "p3")] == pytest.approx(0.0)


def test_price_band_is_the_quantile_within_the_top_level_category(spark):
    # ntile(2) over A's prices 10, 10, 100: p1 and p2 in band 1, p3 in band 2; p4 alone in B.
    vectors = products(spark).transform(item_vectors(["price_band"], BIG, price_bands=2))
    cos = pair_cosines(vectors)
    assert cos[("p1", "p2")] == pytest.approx(1.0)
    assert cos[("p1", "p3")] == pytest.approx(0.0)
    assert cos[("p1", "p4")] == pytest.approx(0.0)


def test_neighbours_are_the_top_k_of_the_block_ties_to_the_smaller_id(spark):
    vectors = products(spark).transform(item_vectors(["category", "brand"], BIG))
    got = {
        (r["item_id"], r["rank"], r["similar_item_id"], r["similarity"])
        for r in vectors.transform(content_neighbours(1)).collect()
    }
    # p4 shares the brand with p1 and p2 but sits in another block: no neighbour.
    assert got == {("p1", 1, "p2", round(5 / 6, 6)), ("p2", 1, "p1", round(5 / 6, 6)), ("p3", 1, "p1", round(1 / 6, 6))}
    two = vectors.transform(content_neighbours(5)).where("item_id = 'p3'").orderBy("rank").collect()
    assert [(r["similar_item_id"], r["similarity"]) for r in two] == [("p1", round(1 / 6, 6)), ("p2", round(1 / 6, 6))]


def test_user_scores_sum_the_cosines_to_the_users_items(spark):
    vectors = products(spark).transform(item_vectors(["category", "brand"], BIG))
    history = spark.createDataFrame([("u1", "p1"), ("u2", "p1"), ("u2", "p2")], "user_key string, item_id string")
    candidates = spark.createDataFrame([("p2",), ("p3",), ("p4",)], "item_id string")
    got = {(r["user_key"], r["item_id"]): r["score"] for r in content_scores(vectors, history, candidates).collect()}
    assert set(got) == {("u1", "p2"), ("u1", "p3"), ("u2", "p2"), ("u2", "p3")}  # p4: another block
    assert got[("u1", "p2")] == pytest.approx(5 / 6)
    assert got[("u1", "p3")] == pytest.approx(1 / 6)
    assert got[("u2", "p2")] == pytest.approx(5 / 6 + 1.0)  # p2 with itself counts too
    assert got[("u2", "p3")] == pytest.approx(2 / 6)


def test_unknown_feature_is_refused(spark):
    with pytest.raises(ValueError, match="colour"):
        products(spark).transform(item_vectors(["name", "colour"], BIG))
