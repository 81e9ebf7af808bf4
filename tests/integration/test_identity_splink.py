"""Identity resolution with Splink on real labelled data (issue #20): Splink's
fake_1000 (1,000 registrations of 181 people) through the ``splink_fake_1000``
source mapping, cleaned with ``clean.identity.method=splink``, scored against the
``cluster`` labels. One run (about 2 minutes on 2 cores), shared by the tests.
It is also a customers-only export without registration times: the as-of date
must come from the data, not a 1970 fallback."""

from __future__ import annotations

import csv
import json
import re
from datetime import date
from pathlib import Path

import pytest

from common import privacy
from common.identity import bcubed_scores, pairwise_scores
from common.tables import get_table
from shoplake.registry import run_job
from tests.conftest import TEST_SECRET, make_config, string_cells

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fake_people(splink_spark, shared_data, tmp_path_factory):
    spark = splink_spark
    from common.delta import open_store

    tmp = tmp_path_factory.mktemp("splink_fake")
    scratch = tmp / "scratch"
    scratch.mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("SHOPLAKE_PSEUDONYM_SECRET", TEST_SECRET)
    cfg = make_config(
        tmp,
        f"landing.root={shared_data}",
        "landing.sources=[splink_fake_1000]",
        "clean.identity.method=splink",
        f"clean.identity.splink.scratch_dir={scratch}",
    )
    run_job(spark, cfg, "ingest")
    result = run_job(spark, cfg, "clean")
    with open(shared_data / "splink_fake_1000" / "fake_1000.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    yield {"cfg": cfg, "store": open_store(spark, cfg), "result": result, "rows": rows, "scratch": scratch}
    mp.undo()


def predicted_people(store, rows) -> tuple[dict[str, str], dict[str, str]]:
    """(truth, predicted): record id -> true cluster, record id -> user_key."""
    key_of = {r.source_key: r.user_key for r in store.read(get_table("silver.user_key_map")).collect()}
    secret = TEST_SECRET.encode()
    truth, predicted = {}, {}
    for row in rows:
        record = f"splink_fake_1000:{row['unique_id']}"
        truth[record] = row["cluster"]
        predicted[record] = key_of[privacy.pseudonym(secret, record, "source")]
    return truth, predicted


def test_splink_finds_the_labelled_people(fake_people):
    truth, predicted = predicted_people(fake_people["store"], fake_people["rows"])
    pairwise, bcubed = pairwise_scores(truth, predicted), bcubed_scores(truth, predicted)
    print(f"pairwise {pairwise}, B-cubed {bcubed}, people {len(set(predicted.values()))} of {len(set(truth.values()))}")
    assert len(predicted) == 1000
    assert pairwise["f1"] >= 0.95 and bcubed["f1"] >= 0.95, (pairwise, bcubed)
    # Far better than exact keys alone (pairwise F1 0.70 on e-mail here): the model links.
    assert pairwise["recall"] >= 0.9


def test_run_log_and_saved_model_hold_no_raw_values(fake_people):
    from common import quality

    identity = fake_people["result"].metrics["identity"]
    assert identity["method"] == "splink" and identity["records"] == 1000
    assert {"name", "birth_date", "city", "email"} <= set(identity["match_weights"])
    assert "phone" not in identity["match_weights"]  # no phones in this source: comparison skipped
    assert "model" not in identity
    # Links counted per blocking rule (those usable without phones and ID numbers), adding up.
    assert list(identity["links_by_rule"]) == ["name_first", "name_last", "birth_date", "email", "email_user"]
    assert sum(identity["links_by_rule"].values()) == identity["links"] > 0
    model_file = Path(quality.default_reports_dir(fake_people["cfg"])) / fake_people["result"].run_id
    model = json.loads((model_file / "identity_model.json").read_text())
    names = [c["output_column_name"] for c in model["comparisons"]]
    assert names == ["name", "birth_date", "city", "email"]
    assert all(level.get("m_probability") is not None for c in model["comparisons"] for level in c["comparison_levels"]
               if not level.get("is_null_level"))  # fmt: skip
    text = json.dumps(identity) + json.dumps(model)
    raw = {v.strip().lower() for row in fake_people["rows"] for v in row.values() if len(v.strip()) >= 4}
    raw -= {str(n) for n in range(10_000)}  # record ids and counts are not identifiers
    words = set(re.findall(r"[\w.@+-]+", text.lower()))  # whole values: "King" is not in "blocking"
    assert [v for v in raw if v in words] == []


def test_nothing_raw_stays_on_disk_or_in_silver(fake_people):
    assert list(fake_people["scratch"].iterdir()) == []  # Splink's Parquet is deleted
    store = fake_people["store"]
    names = {(r["first_name"] + " " + r["surname"]).strip() for r in fake_people["rows"]}
    emails = {r["email"] for r in fake_people["rows"] if r["email"]}
    cells = list(string_cells(store, ("silver",)))
    leaks = [c for c in cells if c[2] and (c[2] in names or c[2] in emails or privacy.find_pii(c[2]))]
    assert len(cells) > 1000 and leaks == []


def test_customers_only_export_is_dated_from_the_data(fake_people):
    """No orders, events or registration times: the as-of day is the day bronze was
    ingested (today here), never 1970, and the quality gates passed."""
    as_of = date.fromisoformat(fake_people["result"].metrics["as_of"])
    assert (date.today() - as_of).days <= 1
    assert all(fake_people["result"].metrics["quality_gates"].values())


def test_report_does_not_take_the_saved_model_for_a_gate(fake_people, spark):
    from types import SimpleNamespace

    from shoplake.report import read_quality

    result = fake_people["result"]
    quality = read_quality(
        spark, fake_people["store"], fake_people["cfg"], result.run_id, [SimpleNamespace(job="clean")]
    )
    assert quality["gates"] and all("comparisons" not in gate for gate in quality["gates"])
