"""Probabilistic identity resolution: Splink (Fellegi-Sunter) on Spark.

Used by ``clean`` when ``clean.identity.method`` is ``splink``. It runs on the
normalised identifiers while they are still in the job, before pseudonymisation:

- the prior (share of matching pairs) comes from deterministic rules (exact
  normalised phone, e-mail, resident ID);
- u-probabilities from seeded random sampling, m-probabilities from EM over the
  configured training blocking rules;
- pairs compared only within the configured blocking rules, linked at or above
  ``threshold``, people = Splink's connected components.

Splink writes its intermediate tables (raw identifiers) as Parquet into a scratch
folder; the result is checkpointed in memory and the folder deleted before
returning, so nothing raw stays on disk. The trained model (settings and m/u
parameters, no term-frequency tables) goes to the run's report folder.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from common.config import IdentityComparisons, SplinkConfig

log = logging.getLogger(__name__)

SPLINK_JAR_NAME = "scala-udf-similarity-0.2.1_spark4.x.jar"


def splink_jar() -> str | None:
    """Path of the string-similarity UDF jar shipped in the splink wheel (Spark 4), or None
    when splink is not installed. Sessions need it on ``spark.jars`` for Jaro-Winkler."""
    try:
        from importlib.resources import files

        path = files("splink") / "internals" / "files" / "spark_jars" / SPLINK_JAR_NAME
    except ModuleNotFoundError:
        return None
    return str(path) if path.is_file() else None


def _blank_to_null(col: Column) -> Column:
    return F.when(F.length(col) > 0, col)


def identity_frame(customers: DataFrame, tail_digits: int = 8) -> DataFrame:
    """The identifiers Splink compares, one row per registration (``unique_id`` = record id).

    ``customers`` is :func:`jobs.clean.identity.prepare_customers` output. Names are compared
    lower-cased without spaces; their first and last tokens allow a swapped-order level.
    An e-mail that fails validation is still evidence, so it is kept trimmed and lower-cased.
    """
    tokens = F.split(F.lower(F.trim(F.col("name_text"))), r"\s+")
    digits = F.regexp_replace("phone_e164", r"\D", "")
    email = F.coalesce(F.col("email_norm"), _blank_to_null(F.lower(F.trim(F.col("email")))))
    return customers.withColumn("name_text", F.regexp_replace(F.col("name"), r"\s+", " ")).select(
        F.col("record_id").alias("unique_id"),
        _blank_to_null(F.lower(F.col("name_norm"))).alias("name"),
        _blank_to_null(F.element_at(tokens, 1)).alias("name_first"),
        F.when(F.size(tokens) > 1, F.element_at(tokens, -1)).alias("name_last"),
        F.col("birth_date_any").alias("birth_date"),
        _blank_to_null(F.lower(F.col("city"))).alias("city"),
        email.alias("email"),
        _blank_to_null(F.substring_index(email, "@", 1)).alias("email_user"),
        F.col("phone_e164").alias("phone"),
        F.when(F.length(digits) >= tail_digits, F.substring(digits, -tail_digits, tail_digits)).alias("phone_tail"),
        F.when(F.col("id_valid"), F.col("id_norm")).alias("id_number"),
    )


def comparisons(spec: IdentityComparisons, present: set[str]) -> list[Any]:
    """Splink comparisons for the configured identifiers that occur in the data."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import ColumnExpression

    out: list[Any] = []
    if spec.name is not None and "name" in present:
        exact = cll.ExactMatchLevel("name")
        if spec.name.term_frequency:
            exact = exact.configure(tf_adjustment_column="name")
        levels = [cll.NullLevel("name"), exact]
        if spec.name.swapped and {"name_first", "name_last"} <= present:
            levels.append(cll.ColumnsReversedLevel("name_first", "name_last", symmetrical=True))
        similar = [cll.JaroWinklerLevel("name", t) for t in sorted(spec.name.jaro_winkler, reverse=True)]
        if spec.name.one_edit:
            # After the closest Jaro-Winkler band, which already holds one typo in a long name.
            similar.insert(1, cll.DamerauLevenshteinLevel("name", 1))
        levels += similar
        out.append(cl.CustomComparison(levels + [cll.ElseLevel()], output_column_name="name"))
    if spec.birth_date is not None and "birth_date" in present:
        levels = [cll.NullLevel("birth_date"), cll.ExactMatchLevel("birth_date")]
        if spec.birth_date.one_edit:
            levels.append(cll.LevenshteinLevel(ColumnExpression("birth_date").cast_to_string(), 1))
        if spec.birth_date.day_month_swapped:
            levels.append(
                cll.CustomLevel(
                    "year(birth_date_l) = year(birth_date_r) AND month(birth_date_l) = dayofmonth(birth_date_r) "
                    "AND dayofmonth(birth_date_l) = month(birth_date_r)",
                    label_for_charts="Day and month swapped",
                    base_dialect_str="spark",
                )
            )
        levels += [
            cll.AbsoluteDateDifferenceLevel("birth_date", threshold=m, metric="month", input_is_string=False)
            for m in sorted(spec.birth_date.within_months)
        ]
        out.append(cl.CustomComparison(levels + [cll.ElseLevel()], output_column_name="birth_date"))
    if spec.city is not None and "city" in present:
        out.append(cl.ExactMatch("city").configure(term_frequency_adjustments=spec.city.term_frequency))
    if spec.email is not None and "email" in present:
        levels = [cll.NullLevel("email"), cll.ExactMatchLevel("email")]
        if spec.email.user_part:
            levels.append(cll.ExactMatchLevel("email_user").configure(label_for_charts="Same user part"))
        levels += [cll.JaroWinklerLevel("email", t) for t in sorted(spec.email.jaro_winkler, reverse=True)]
        out.append(cl.CustomComparison(levels + [cll.ElseLevel()], output_column_name="email"))
    if spec.phone is not None and "phone" in present:
        levels = [cll.NullLevel("phone"), cll.ExactMatchLevel("phone")]
        if spec.phone.last_digits:
            levels.append(cll.ExactMatchLevel("phone_tail").configure(label_for_charts="Same last digits"))
        out.append(cl.CustomComparison(levels + [cll.ElseLevel()], output_column_name="phone"))
    if spec.id_number is not None and "id_number" in present:
        out.append(cl.ExactMatch("id_number").configure(term_frequency_adjustments=spec.id_number.term_frequency))
    return out


def present_columns(frame: DataFrame) -> set[str]:
    """Identifier columns with at least one value (a source may lack phones or IDs)."""
    counts = frame.agg(*[F.count(c).alias(c) for c in frame.columns if c != "unique_id"]).first().asDict()
    return {c for c, n in counts.items() if n}


def _usable(rules: list[list[str]], present: set[str]) -> list[list[str]]:
    return [rule for rule in rules if set(rule) <= present]


def splink_clusters(spark: SparkSession, customers: DataFrame, cfg: SplinkConfig) -> tuple[DataFrame, dict]:
    """(record_id, cluster) for every registration, plus facts for the run log.

    The result is checkpointed in memory (``localCheckpoint``): it does not depend on
    the scratch folder, which is deleted before returning.
    """
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.spark import SparkAPI

    started = time.monotonic()
    tail = (cfg.comparisons.phone.last_digits if cfg.comparisons.phone else None) or 8
    frame = identity_frame(customers, tail).localCheckpoint()
    present = present_columns(frame)
    records = frame.count()
    facts: dict[str, Any] = {"method": "splink", "records": records, "identifiers": sorted(present)}
    blocking = _usable(cfg.blocking, present)
    deterministic = _usable(cfg.deterministic_rules, present)
    training = _usable(cfg.training_blocking, present)
    chosen = comparisons(cfg.comparisons, present)
    if records < 2 or not blocking or not chosen:
        facts["skipped"] = "fewer than two records or no identifier to block or compare on"
        return frame.select(F.col("unique_id").alias("record_id"), F.col("unique_id").alias("cluster")), facts

    scratch = tempfile.mkdtemp(prefix="shoplake-splink-", dir=cfg.scratch_dir)
    views_before = {t.name for t in spark.catalog.listTables() if t.isTemporary}
    try:
        # Splink breaks lineage by writing Parquet under the checkpoint directory.
        spark.sparkContext.setCheckpointDir(scratch)
        db = SparkAPI(spark_session=spark, break_lineage_method="parquet")
        settings = SettingsCreator(
            link_type="dedupe_only",
            comparisons=chosen,
            blocking_rules_to_generate_predictions=[block_on(*rule) for rule in blocking],
            max_iterations=cfg.em_max_iterations,
            retain_matching_columns=False,
            retain_intermediate_calculation_columns=False,
        )
        linker = Linker(db.register(frame), settings)
        if deterministic:
            linker.training.estimate_probability_two_random_records_match(
                [block_on(*rule) for rule in deterministic], recall=cfg.deterministic_recall
            )
        linker.training.estimate_u_using_random_sampling(
            max_pairs=cfg.u_max_pairs, seed=cfg.seed, num_chunks=cfg.u_chunks
        )
        for rule in training:
            linker.training.estimate_parameters_using_expectation_maximisation(block_on(*rule))
        predictions = linker.inference.predict(threshold_match_probability=cfg.threshold)
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=cfg.threshold
        )
        result = (
            clusters.as_spark_dataframe()
            .select(F.col("unique_id").alias("record_id"), F.col("cluster_id").cast("string").alias("cluster"))
            .localCheckpoint()
        )
        # Splink tags each pair with the index of the blocking rule that produced it.
        by_rule = predictions.as_spark_dataframe().groupBy("match_key").count().collect()
        per_key = {r["match_key"]: r["count"] for r in by_rule}
        facts["links"] = sum(per_key.values())
        facts["links_by_rule"] = {" & ".join(rule): per_key.get(str(i), 0) for i, rule in enumerate(blocking)}
        facts["prior"] = linker._settings_obj._probability_two_random_records_match
        facts["match_weights"] = _match_weights(linker)
        # Settings and m/u parameters: SQL conditions and labels, no values. Term-frequency
        # tables (raw identifiers with counts) live apart in Splink and are never saved.
        facts["model"] = linker.misc.save_model_to_json()
    finally:
        for table in spark.catalog.listTables():
            if table.isTemporary and table.name not in views_before:
                spark.catalog.dropTempView(table.name)
        shutil.rmtree(scratch, ignore_errors=True)
    facts["people"] = result.select("cluster").distinct().count()
    facts["seconds"] = round(time.monotonic() - started, 1)
    log.info("identity (splink): %s records -> %s people, %s links", records, facts["people"], facts["links"])
    return result, facts


def _match_weights(linker: Any) -> dict[str, dict[str, float | None]]:
    """Match weight of each comparison level: parameters and labels only, no values
    (term-frequency tables, which hold raw identifiers, are not included)."""
    weights: dict[str, dict[str, float | None]] = {}
    for comparison in linker._settings_obj.comparisons:
        levels = {}
        for level in comparison.comparison_levels:
            if level.is_null_level:
                continue
            factor = level._bayes_factor
            levels[level.label_for_charts] = round(math.log2(factor), 3) if factor and factor > 0 else None
        weights[comparison.output_column_name] = levels
    return weights


# ---------------------------------------------------------------------------- evaluation
def _groups(labels: dict[str, str]) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = {}
    for record, label in labels.items():
        groups.setdefault(label, set()).add(record)
    return groups


def pairwise_scores(truth: dict[str, str], predicted: dict[str, str]) -> dict[str, float]:
    """Precision, recall and F1 over same-person record pairs (records in both mappings)."""
    records = truth.keys() & predicted.keys()
    # Pairs counted from cluster sizes, never enumerated (large clusters stay cheap).
    pairs_in = {
        name: sum(len(g) * (len(g) - 1) // 2 for g in _groups({r: labels[r] for r in records}).values())
        for name, labels in (("truth", truth), ("predicted", predicted))
    }
    both = sum(
        len(g) * (len(g) - 1) // 2 for g in _groups({r: f"{truth[r]}\x00{predicted[r]}" for r in records}).values()
    )
    precision = both / pairs_in["predicted"] if pairs_in["predicted"] else 1.0
    recall = both / pairs_in["truth"] if pairs_in["truth"] else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def bcubed_scores(truth: dict[str, str], predicted: dict[str, str]) -> dict[str, float]:
    """B-cubed precision, recall and F1 (Bagga and Baldwin): per-record overlap of its
    predicted and true clusters, averaged over records."""
    records = truth.keys() & predicted.keys()
    true_size = {k: len(v) for k, v in _groups({r: truth[r] for r in records}).items()}
    pred_size = {k: len(v) for k, v in _groups({r: predicted[r] for r in records}).items()}
    overlap = {k: len(v) for k, v in _groups({r: f"{truth[r]}\x00{predicted[r]}" for r in records}).items()}
    precision = recall = 0.0
    for r in records:
        shared = overlap[f"{truth[r]}\x00{predicted[r]}"]
        precision += shared / pred_size[predicted[r]]
        recall += shared / true_size[truth[r]]
    n = len(records) or 1
    precision, recall = precision / n, recall / n
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
