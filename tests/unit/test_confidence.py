"""common.confidence on a 3 users x 3 items matrix, against values worked by hand.

    strength   a   b   c    row sum
    u1         1   2   .    3
    u2         3   .   .    3
    u3         1   .   4    5         N = 3 users, mean row sum 11/3

Item document frequencies: a 3, b 1, c 1, so (implicit's idf = log N - log1p(df))
idf_a = log(3/4) = -0.287682 and idf_b = idf_c = log(3/2) = 0.405465.
"""

from __future__ import annotations

import pytest
from pyspark.testing import assertDataFrameEqual

from common.confidence import apply_confidence

SCHEMA = "user_key string, item_id string, strength double, purchases int"
ROWS = [("u1", "a", 1.0, 0), ("u1", "b", 2.0, 1), ("u2", "a", 3.0, 1), ("u3", "a", 1.0, 0), ("u3", "c", 4.0, 2)]


def _check(spark, name, strengths, **params):
    matrix = spark.createDataFrame(ROWS, SCHEMA)
    expected = spark.createDataFrame([(u, i, s, p) for (u, i, _, p), s in zip(ROWS, strengths, strict=True)], SCHEMA)
    out = apply_confidence(matrix, name, **params)
    assert out.columns == matrix.columns  # other columns kept, in order
    assertDataFrameEqual(out, expected, rtol=1e-5, atol=1e-6)


def test_raw_keeps_the_strength(spark):
    _check(spark, "raw", [1.0, 2.0, 3.0, 1.0, 4.0])


def test_log1p_is_log_of_one_plus_the_strength(spark):
    # log 2, log 3, log 4, log 2, log 5
    _check(spark, "log1p", [0.693147, 1.098612, 1.386294, 0.693147, 1.609438])


def test_bm25_normalises_rows_and_weights_by_item_idf(spark):
    # u1,b: length norm 0.2 + 0.8 * 3 / (11/3) = 0.854545; 2 * 101 / (100 * 0.854545 + 2) * 0.405465
    # = 0.936532. u3 (row sum 5) has norm 1.290909: c -> 4 * 101 / (129.0909 + 4) * 0.405465.
    _check(spark, "bm25", [-0.336083, 0.936532, -0.985452, -0.223351, 1.230797])


def test_bm25_parameters_change_the_weights(spark):
    # K1 = 1, B = 0: no length normalisation; u1,b = 2 * 2 / (1 + 2) * 0.405465 = 0.540620.
    _check(spark, "bm25", [-0.287682, 0.540620, -0.431523, -0.287682, 0.648744], k1=1.0, b=0.0)


def test_tfidf_is_sqrt_strength_times_item_idf(spark):
    # u1,b: sqrt(2) * 0.405465 = 0.573414; u3,c: 2 * 0.405465 = 0.810930
    _check(spark, "tfidf", [-0.287682, 0.573414, -0.498280, -0.287682, 0.810930])


def test_unknown_transform_names_the_choices(spark):
    with pytest.raises(ValueError, match="'bm42'.*raw, log1p, bm25, tfidf"):
        apply_confidence(spark.createDataFrame(ROWS, SCHEMA), "bm42")
