"""`shoplake report` on a real lake, opened in headless Chromium.

The shared silver lake (ingest + clean) is copied, small gold tables are written by
hand through the store with the contract schemas, and a run that "wrote" them is
recorded in ops.run_log with metrics for the per-job charts. The report must load in
Chromium without console messages, every section must hold its charts, and the
numbers shown must be the ones written. A screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from common.asof import publish_as_of
from common.runlog import JobResult, record_run
from common.tables import (
    GOLD_CHURN_SCORES,
    GOLD_PROFILES,
    GOLD_RECOMMENDATIONS,
    GOLD_SEGMENTS,
    OPS_RUN_LOG,
    SILVER_CUSTOMERS,
)
from tests.conftest import PROJECT_ROOT, with_missing_columns
from tests.report_dom import ReportDom
from tests.unit.test_report import CHURN_METRICS

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
AS_OF = date(2024, 4, 29)
RUN_ID = "pipeline-20990101T000000Z-report01"
SEGMENT_NAMES = ("vip_frequent", "regular", "bargain_hunter")
TIERS = ((0.3, "low"), (0.7, "medium"), (1.01, "high"))


def chromium() -> str:
    """The Chromium binary, or a failure that says how to get it (never a skip: CI must run this)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "headless Chromium not found: install the Debian package (`apt-get install -y chromium`); "
        "`make test` installs it when apt-get is available"
    )


def open_in_chromium(page: Path, screenshot: Path | None = None) -> tuple[str, list[str]]:
    """Load ``page`` headless; returns the DOM after the load event and every console line."""
    base = [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--window-size=1400,5200"]
    run = subprocess.run(
        [*base, "--enable-logging=stderr", "--v=1", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    # Chromium logs every console message (errors, failed loads) at INFO with a CONSOLE tag.
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    if screenshot is not None:
        shot = subprocess.run([*base, f"--screenshot={screenshot}", page.as_uri()], capture_output=True, timeout=120)
        assert shot.returncode == 0, shot.stderr[-2000:]
    return run.stdout, console


def test_console_check_catches_a_script_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><p>x</p><script>no_such_function();</script></body></html>", encoding="utf-8")
    _, console = open_in_chromium(page)
    assert any("no_such_function is not defined" in line for line in console), console


@pytest.fixture(scope="module")
def report_lake(spark, silver_lake, tmp_path_factory):
    """A copy of the shared silver lake with hand-written gold tables and a recorded run.
    Returns (cfg, expected numbers)."""
    from common.delta import open_store

    lake = silver_lake()
    cfg = lake.copy_to(tmp_path_factory.mktemp("report"))
    store = open_store(spark, cfg)
    customers = store.read(SILVER_CUSTOMERS).select("user_key", "marketing_consent").orderBy("user_key").collect()
    keys = [r["user_key"] for r in customers]

    profiles, segments, churn, recs = [], [], [], []
    for i, row in enumerate(customers):
        scored = i % 11 != 0  # every 11th customer has no R/F score (e.g. never bought)
        r, f = (i % 5 + 1, (i // 5) % 4 + 1) if scored else (None, None)
        profiles.append((row["user_key"], AS_OF, row["marketing_consent"], 10 + i % 50, i % 9, r, f, "active", []))
        segments.append((row["user_key"], AS_OF, i % 7 % 3, SEGMENT_NAMES[i % 7 % 3]))
        p = (i * 37 % 100) / 100
        churn.append((row["user_key"], AS_OF, p, next(t for limit, t in TIERS if p < limit), "churn-v1"))
    for i, key in enumerate(keys[:40]):
        for rank in (1, 2, 3):
            recs.append((key, AS_OF, rank, f"P{(i + rank) % 17:04d}", 1.0 / rank, "als" if i % 4 else "popular"))

    prof_df = spark.createDataFrame(
        profiles,
        "user_key string, as_of date, marketing_consent boolean, recency_days int, frequency long, r_score int, "
        "f_score int, lifecycle_stage string, tags array<string>",
    ).select(
        "user_key", "marketing_consent", "recency_days", "frequency",
        F.lit(12.5).cast("decimal(18,2)").alias("monetary"), "r_score", "f_score", F.lit(3).alias("m_score"),
        F.lit("x").alias("rfm_segment"), "lifecycle_stage", "tags",
    )  # fmt: skip
    seg_df = spark.createDataFrame(segments, "user_key string, as_of date, segment_id int, segment_name string")
    churn_df = spark.createDataFrame(
        churn, "user_key string, as_of date, probability double, risk_tier string, model_version string"
    )
    rec_df = spark.createDataFrame(
        recs, "user_key string, as_of date, rank int, item_id string, score double, reason string"
    )
    written = {"profile": (GOLD_PROFILES, prof_df), "segment": (GOLD_SEGMENTS, seg_df),
               "recommend": (GOLD_RECOMMENDATIONS, rec_df), "churn": (GOLD_CHURN_SCORES, churn_df)}  # fmt: skip
    versions = {
        job: {spec.name: publish_as_of(store, spec, with_missing_columns(df.drop("as_of"), spec), AS_OF)}
        for job, (spec, df) in written.items()
    }
    metrics = {
        "profile": {"as_of": AS_OF.isoformat()},
        "segment": {"as_of": AS_OF.isoformat(), "silhouette": {"3": 0.41, "4": 0.38, "5": 0.33}},
        "recommend": {"as_of": AS_OF.isoformat(), "at_k": 10, "evaluation": {
            "als": {"precision": 0.21, "ndcg": 0.3}, "popularity": {"precision": 0.1, "ndcg": 0.14}}},
        "churn": {"as_of": AS_OF.isoformat(), **CHURN_METRICS},
    }  # fmt: skip
    # Recorded after the silver lake's own ingest and clean runs, so it is the latest run.
    start = datetime.now(timezone.utc) + timedelta(seconds=1)
    for n, job in enumerate(("profile", "segment", "recommend", "churn")):
        result = JobResult(job, RUN_ID, outputs=versions[job], metrics=metrics[job],
                           row_counts={t: 0 for t in versions[job]})  # fmt: skip
        t0 = start + timedelta(seconds=3 * n)
        record_run(spark, store, run_id=RUN_ID, job=job, env="local", parameters={}, started_at=t0,
                   finished_at=t0 + timedelta(seconds=2 + n), status="succeeded", result=result)  # fmt: skip

    scored = [p for p in profiles if p[5] is not None]
    expected = {
        "rfm": {(r, f): sum(1 for p in scored if (p[5], p[6]) == (r, f)) for r in range(1, 6) for f in range(1, 5)},
        "unscored": len(profiles) - len(scored),
        "segments": {name: sum(1 for s in segments if s[3] == name) for name in SEGMENT_NAMES},
        "tiers": {t: sum(1 for c in churn if c[3] == t) for _, t in TIERS},
        "histogram_total": len(churn),
        "reasons": {r: sum(1 for x in recs if x[5] == r) for r in ("als", "popular")},
        "clean_run": store.read(OPS_RUN_LOG).where("job = 'clean'").orderBy(F.desc("started_at")).first()["run_id"],
    }
    return cfg, expected


def test_report_renders_in_chromium_with_every_chart(spark, report_lake):
    from shoplake.report import write_report

    cfg, expected = report_lake
    path, data = write_report(spark, cfg)  # default: the latest pipeline run
    assert data.run_id == RUN_ID
    assert [s.job for s in data.steps] == ["profile", "segment", "recommend", "churn"]
    assert Path(path) == Path(cfg.lake_root) / "reports" / "report" / f"{RUN_ID}.html"

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    dom_text, console = open_in_chromium(Path(path), screenshot)
    assert console == [], "the report logged console messages in Chromium:\n" + "\n".join(console)
    dom = ReportDom(dom_text)

    charts = {name: view.charts for name, view in dom.sections.items()}
    assert charts == {
        "pipeline": ["pipeline_durations"],
        "quality": ["quality_checks"],
        "rfm": ["rfm_heatmap"],
        "segments": ["segment_sizes"],
        "churn": ["churn_histogram", "churn_tiers"],
        "rules": [],  # gold.association_rules is not declared on this branch
        "recommendations": ["recommendation_reasons"],
        "streaming": [],
        "metrics": [
            "segment_silhouette_chart",
            "recommend_comparison_chart",
            "churn_roc_chart",
            "churn_calibration_chart",
            "churn_lift_chart",
        ],
    }
    # The load handler counted charts with a visible size: every chart was laid out.
    assert dom.body_attrs.get("data-charts-drawn") == str(sum(map(len, charts.values())))
    assert "Not available" in dom.sections["rules"].text

    rfm = dom.table_with_header("rfm", "r_score")
    shown = {(int(row["r_score"]), int(k[2:])): int(v) for row in rfm for k, v in row.items() if k.startswith("f=")}
    assert shown == expected["rfm"]
    assert f"{expected['unscored']} customer(s) without an R or F score" in dom.sections["rfm"].text

    segment_rows = dom.table_with_header("segments", "segment_id")
    sizes = {r["segment_name"]: int(r["customers"].replace(",", "")) for r in segment_rows}
    assert sizes == expected["segments"]
    profiles = {r["segment_name"]: int(r["customers"]) for r in dom.table_with_header("segments", "segment_name")}
    assert profiles == expected["segments"]  # segments joined to the same date's profiles

    tiers = {r["risk_tier"]: int(r["count"]) for r in dom.table_with_header("churn", "risk_tier")}
    assert tiers == expected["tiers"]
    assert sum(data.churn["histogram"]) == expected["histogram_total"]

    reasons = {r["reason"]: int(r["rows"]) for r in dom.table_with_header("recommendations", "reason")}
    assert reasons == expected["reasons"]

    # This run has no clean step: quality comes from the lake's clean run, every silver gate passed.
    quality = dom.table_with_header("quality", "table")
    assert expected["clean_run"] in dom.sections["quality"].text
    assert {r["table"] for r in quality} >= {"silver.customers", "silver.orders", "silver.events"}
    assert {r["gate"] for r in quality} == {"passed"}

    # A screenshot of the page as Chromium drew it, kept for people to look at.
    from PIL import Image

    with Image.open(screenshot) as image:
        assert image.size == (1400, 5200)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50  # charts, not a blank page


def test_report_for_an_unknown_run_names_recent_runs(spark, report_lake):
    from common.errors import InputError
    from shoplake.report import write_report

    cfg, _ = report_lake
    with pytest.raises(InputError, match=r"--run-id nope: not in ops.run_log; recent runs: " + RUN_ID):
        write_report(spark, cfg, "nope")
