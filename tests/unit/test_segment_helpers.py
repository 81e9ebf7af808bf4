"""Adjusted Rand index and segment naming: pure functions, exact values."""

from __future__ import annotations

import math

import pytest
from pyspark.ml.feature import SQLTransformer

from common.clustering import adjusted_rand_index, adjusted_rand_index_labels
from jobs import segment as S


def test_ari_hand_computed():
    # Contingency (0,0)=2 (0,1)=1 (1,1)=1 (1,2)=2: index 2, expected 6*3/15 = 1.2, max 4.5.
    assert adjusted_rand_index_labels([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) == pytest.approx(0.8 / 3.3)
    # Perfectly crossed halves are worse than chance.
    assert adjusted_rand_index_labels([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)


def test_ari_ignores_label_names_and_handles_degenerate_cases():
    assert adjusted_rand_index_labels(["a", "a", "b", "c"], [7, 7, 1, 3]) == 1.0
    assert adjusted_rand_index_labels([1, 1, 1], [2, 2, 2]) == 1.0
    assert adjusted_rand_index_labels([1], [2]) == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        adjusted_rand_index_labels([1, 2], [1])


def test_ari_in_spark_matches_the_driver_formula(spark):
    a = [0, 0, 0, 1, 1, 1, 2, 2]
    b = [0, 0, 1, 1, 2, 2, 2, None]
    df = spark.createDataFrame(list(zip(a, b, strict=True)), "a int, b int")
    # The row with a null label is left out.
    assert adjusted_rand_index(df, "a", "b") == pytest.approx(adjusted_rand_index_labels(a[:7], b[:7]))


def test_centroid_names_use_the_strongest_coordinates():
    name, detail = S.describe_centroid(
        ["frequency", "monetary", "night_share", "views"], [1.5, 2.0, -0.2, -0.7], threshold=0.5, terms=2
    )
    assert name == "high spend, frequent"
    assert detail == "monetary +2.00 sd, frequency +1.50 sd, views -0.70 sd, night_share -0.20 sd"
    assert S.describe_centroid(["frequency", "x"], [0.1, -0.6], 0.5, 3)[0] == "low x"
    assert S.describe_centroid(["frequency"], [0.1], 0.5, 3)[0] == "typical"


def test_cluster_labels_are_ordered_by_size_and_unique():
    labels = S.label_clusters(["frequency"], [[1.0], [0.1], [0.2]], sizes={0: 10, 1: 30, 2: 20}, threshold=0.5, terms=2)
    assert labels == {
        1: {"segment_id": 0, "name": "typical", "description": "frequency +0.10 sd"},
        2: {"segment_id": 1, "name": "typical (2)", "description": "frequency +0.20 sd"},
        0: {"segment_id": 2, "name": "frequent", "description": "frequency +1.00 sd"},
    }


def test_naming_stage_maps_clusters_to_ids_and_names(spark):
    stage = S.naming_stage({0: {"segment_id": 1, "name": "o'brien"}, 1: {"segment_id": 0, "name": "b"}})
    df = spark.createDataFrame([(0,), (1,)], f"{S.CLUSTER_COL} int")
    got = sorted((r.segment_id, r.segment_name) for r in stage.transform(df).collect())
    assert got == [(0, "b"), (1, "o'brien")]


def test_feature_sql_logs_and_fills(spark):
    df = spark.createDataFrame([(None, 3.0), (-2.0, None)], "a double, b double")
    got = SQLTransformer(statement=S.feature_sql(["a", "b"], ["b"])).transform(df).collect()
    # Nulls count as 0; only the log feature is transformed (negatives floored at 0 first).
    assert [(r._f_a, r._f_b) for r in got] == [(0.0, math.log(4.0)), (-2.0, 0.0)]


def test_each_fit_keeps_the_cheapest_of_its_restarts(spark):
    import random

    from pyspark.ml.linalg import Vectors

    from common.config import SegmentConfig

    assert S.restart_seeds(7, 1) == [7] and S.restart_seeds(7, 3) == [7, 7001, 7002]
    rng = random.Random(3)
    rows = [(Vectors.dense([rng.random(), rng.random()]),) for _ in range(300)]  # no true clusters
    data = spark.createDataFrame(rows, [S.SCALED_COL])
    cfg = SegmentConfig(restarts=4, max_iter=20)
    costs = [S.kmeans(6, s, cfg.max_iter).fit(data).summary.trainingCost for s in S.restart_seeds(11, 4)]
    assert len(set(costs)) > 1  # the runs do land in different local optima here
    assert S.fit_kmeans(data, 6, 11, cfg).summary.trainingCost == min(costs)
