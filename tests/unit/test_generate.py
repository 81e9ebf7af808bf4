"""The sample-data generator: determinism, realistic formats, and planted truth that holds.

The quarantine counts are checked with a small classifier written here from the
ingest rules (codecs, csv and json only), independent of the ingest job's code.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import re
import unicodedata
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from shoplake.generate import (
    CITIES,
    DISTINCT_NEW_DAYS,
    PHONE_STYLES,
    default_products,
    format_phone,
    generate,
    id_check_digit,
    id_number_facts,
    is_valid_id_number,
    normalise_phone,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHOP_YAML = PROJECT_ROOT / "conf" / "sources" / "shop.yaml"
USERS, DAYS, SEED, START = 300, 20, 7, date(2024, 3, 1)
SHANGHAI = timezone(timedelta(hours=8))
MOBILE = re.compile(r"^1[3-9][0-9]{9}$")


# ---------------------------------------------------------------------------- an independent classifier
def _feeds() -> list[dict[str, Any]]:
    return yaml.safe_load(SHOP_YAML.read_text(encoding="utf-8"))["feeds"]


def _field_specs(feed: dict[str, Any]) -> list[tuple[str, str, list[str], bool, str]]:
    """(name, type, formats, required, path) in declaration order."""
    out = []
    for name, spec in feed["fields"].items():
        spec = {"type": spec} if isinstance(spec, str) else dict(spec)
        kind = spec.get("type", "string")
        out.append(
            (
                name,
                "decimal" if kind.startswith("decimal") else kind,
                spec.get("formats", []),
                bool(spec.get("required", False)),
                spec.get("path", name),
            )
        )
    return out


def _number_text(value: str) -> str:
    text = unicodedata.normalize("NFKC", value.strip())
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?", text):
        text = text.replace(",", "")
    return text


def _is_datetime(text: str) -> bool:
    """A real date-time written exactly as yyyy-MM-dd HH:mm:ss."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", text):
        return False
    try:
        datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return False
    return True


def _typed_ok(kind: str, formats: list[str], value: Any) -> bool:
    if kind in ("int", "long"):
        return bool(re.fullmatch(r"[+-]?\d+", _number_text(str(value))))
    if kind in ("decimal", "double"):
        return bool(re.fullmatch(r"[+-]?\d+(\.\d+)?", _number_text(str(value))))
    if kind == "boolean":
        return str(value).strip().lower() in {"true", "false", "1", "0", "yes", "no", "y", "n", "t", "f"}
    if kind == "date":
        text = str(value).strip()
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return False
        try:
            datetime.strptime(text, "%Y-%m-%d")
        except ValueError:
            return False
        return True
    if kind == "timestamp":
        for fmt in formats:
            if fmt == "epoch_ms":
                if isinstance(value, int) and not isinstance(value, bool):
                    return True
                if isinstance(value, str) and re.fullmatch(r"\d+", value.strip()):
                    return True
            elif fmt == "yyyy-MM-dd HH:mm:ss" and isinstance(value, str) and _is_datetime(value.strip()):
                return True
        return False
    return True


def _reason(specs, values: dict[str, Any]) -> str | None:
    def is_null(v: Any) -> bool:
        return v is None or (isinstance(v, str) and not v.strip())

    for name, _, _, required, _ in specs:
        if required and is_null(values.get(name)):
            return "missing_key"
    reasons = {
        "int": "unparseable_number",
        "long": "unparseable_number",
        "decimal": "unparseable_number",
        "double": "unparseable_number",
        "boolean": "unparseable_boolean",
        "date": "unparseable_date",
        "timestamp": "unparseable_timestamp",
    }
    for name, kind, formats, _, _ in specs:
        v = values.get(name)
        if not is_null(v) and kind in reasons and not _typed_ok(kind, formats, v):
            return reasons[kind]
    return None


def _json_path(obj: dict[str, Any], path: str) -> Any:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def classify_feed(root: Path, feed: dict[str, Any]) -> tuple[Counter, list[dict[str, Any]], int]:
    """(reason counts, valid records as dicts, number of records) over all of a feed's files."""
    specs = _field_specs(feed)
    encoding = feed.get("encoding", "utf-8")
    reasons: Counter = Counter()
    valid: list[dict[str, Any]] = []
    n = 0
    for path in sorted((root / "shop").glob(feed["pattern"])):
        data = path.read_bytes()
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        texts = []
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            try:
                texts.append(raw.decode(encoding) + "\n")
            except UnicodeDecodeError:
                n += 1
                reasons["encoding_error"] += 1
        if feed["format"] == "jsonl":
            rows: list[tuple[str | None, dict[str, Any]]] = []
            for text in texts:
                try:
                    obj = json.loads(text)
                except ValueError:
                    obj = None
                if not isinstance(obj, dict):
                    rows.append(("malformed_json", {}))
                else:
                    rows.append((None, {name: _json_path(obj, p) for name, _, _, _, p in specs}))
        else:
            records = list(csv.reader(texts))
            header = records[0]
            rows = []
            for rec in records[1:]:
                if len(rec) != len(header):
                    rows.append(("wrong_column_count", {}))
                else:
                    rows.append((None, dict(zip(header, rec))))
        for reason, values in rows:
            n += 1
            reason = reason or _reason(specs, values)
            if reason:
                reasons[reason] += 1
            else:
                valid.append(values)
    return reasons, valid, n


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("landing")
    return root, generate(root, USERS, DAYS, SEED, START)


@pytest.fixture(scope="module")
def parsed(shop) -> dict[str, tuple[Counter, list[dict[str, Any]], int]]:
    root, _ = shop
    return {feed["outputs"][0]["table"]: classify_feed(root, feed) for feed in _feeds()}


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "shop").rglob("*"))
        if p.is_file()
    }


def _epoch_ms(local: str) -> int:
    return int(datetime.strptime(local, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI).timestamp() * 1000)


def _unique_orders(parsed) -> dict[str, dict[str, Any]]:
    """Latest version of each valid order."""
    latest: dict[str, dict[str, Any]] = {}
    for row in parsed["bronze.orders"][1]:
        cur = latest.get(row["order_id"])
        if cur is None or row["updated_at"] > cur["updated_at"]:
            latest[row["order_id"]] = row
    return latest


def _unique_lines(parsed) -> dict[str, list[dict[str, Any]]]:
    lines: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in parsed["bronze.order_lines"][1]:
        lines[row["order_id"]][row["line_no"]] = row
    return {k: list(v.values()) for k, v in lines.items()}


# ---------------------------------------------------------------------------- pure helpers
def test_id_check_digit_matches_published_examples():
    # Examples from GB 11643-1999 teaching material: check characters X and 4.
    assert id_check_digit("11010519491231002") == "X"
    assert id_check_digit("44052418800101001") == "4"
    assert is_valid_id_number("11010519491231002X")
    assert not is_valid_id_number("110105194912310021")
    assert not is_valid_id_number("11010519491231002x")  # lower-case x is not what we write
    with pytest.raises(ValueError, match="17 ASCII digits"):
        id_check_digit("1101051949")


@pytest.mark.parametrize("style", PHONE_STYLES)
def test_every_phone_style_normalises_back(style):
    written = format_phone("13800138000", style)
    assert written != "13800138000"
    assert normalise_phone(written) == "13800138000"


def test_normalise_phone_rejects_non_mobiles():
    assert normalise_phone("010-12345678") is None
    assert normalise_phone("12800138000") is None


# ---------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_files_and_another_seed_does_not(shop, tmp_path):
    root, manifest = shop
    again = generate(tmp_path / "same", USERS, DAYS, SEED, START)
    assert _hashes(tmp_path / "same") == _hashes(root)
    assert again == manifest
    generate(tmp_path / "other", USERS, DAYS, SEED + 1, START)
    other = _hashes(tmp_path / "other")
    differing = [k for k, v in _hashes(root).items() if other.get(k) != v]
    assert len(differing) == len(other)  # every file changes with the seed


# SHA-256 of every file of two small shops, computed with the generator as it was before it
# became a package (jobs/generate.py at 4fcb05a): the default options, and every option at once
# (attrition, distinct segments, a catalogue size, varied duplicates, a start that crosses 11.11).
# Any change to what the generator writes fails here; if the change is meant, say so in the
# commit and update the hashes. (numpy's Generator streams are part of the contract: a numpy
# upgrade that changes them shows up here first.) The manifests' hashes changed once since, when
# the generator moved to shoplake/generate/: its `generator` field names the module.
PINNED_SHOPS = {
    "defaults": (
        {"users": 120, "days": 5, "seed": 1, "start_date": date(2024, 3, 1)},
        {
            "_manifest.json": "3b954af258bf41e956edf21a66a5709b7fad5ab179fa7ada261621182d63fd43",
            "campaign_touches/touches.csv": "87182969cdfff61c366b5634200e8e6e74df8217d904415320fdf05a9b4c2391",
            "customers/customers.csv": "9a937a0041568c3f97e0e6c828ce2cc146c548de1fc5ecc2d875fadf8172f33c",
            "events/events_2024-03-01.jsonl": "073edb366046f2e8bcf4458e981b79a7847b2474230526827d3cb521038a1ef6",
            "events/events_2024-03-02.jsonl": "32362b2f2a4a104a5978bf921a15fb4157c2f54b7fadae16dbfb3dcc8f482fe7",
            "events/events_2024-03-03.jsonl": "4a7af4879688ee7bca989af3ee122b7dada2464c6637f134b3f081f63dd2539a",
            "events/events_2024-03-04.jsonl": "f8f7146c9907410eda7bad3eceb671ea1679c10614016a08e391a26bf5e17085",
            "events/events_2024-03-05.jsonl": "f3e712626146931c7133ca62a3a837d7534b7b1b47fff2081dabed03405a4cd0",
            "order_lines/order_lines.csv": "ac18efcf58f69733a27d004db208d04256878857d3877d0b42796b9ea49f0262",
            "orders/orders.csv": "64af89c2c0731f4c1bdc8e1e34799d9fa0c5823c6b0b2aa2888d9df42a8b4177",
            "products/products.csv": "a4e0d818805982dfdb3e5e992850b7c24edfea0a8e1d82ca9a064b1ae2331a9d",
        },
    ),
    "every_option": (
        {
            "users": 150,
            "days": 8,
            "seed": 5,
            "start_date": date(2024, 11, 8),
            "attrition": 1.0,
            "segment_style": "distinct",
            "products": 120,
            "duplicates": "varied",
        },
        {
            "_manifest.json": "06932be6230a507ac3cb82e6d3edbdad88d768be296d457f8bfb93f2090096fb",
            "campaign_touches/touches.csv": "b425457eba7fd509c47eba6312b749df1f7a89bb24161e7b6f64b9986804fe31",
            "customers/customers.csv": "4cc04d1212451aa912f3d0db8b9c6877d30cb6d73f313fa1bc04936ddfda609a",
            "events/events_2024-11-08.jsonl": "52328957319c23d402d99086239f3145144681b5618e930a145d9c492af13ff4",
            "events/events_2024-11-09.jsonl": "a62d0ceb733a8e617e1eb265e474872b552518160b5641d25d50e871d63f6cff",
            "events/events_2024-11-10.jsonl": "7d7b6c68cdb3be240fe9c88cad80d682d2eb5f9dafd930769398a2f7898f7e8e",
            "events/events_2024-11-11.jsonl": "236be47fd7cee414e1b9e95158f5255168d35481f48420a9e72d16f554855d95",
            "events/events_2024-11-12.jsonl": "33d317d35f6f7e5ad0193b3640a4b4991f180b7cd3e5c843dafb6796e98a5eb4",
            "events/events_2024-11-13.jsonl": "7c6bb87539b342e34e461df9e3c71ba00c17e8274d87335b9947d1bc493fea92",
            "events/events_2024-11-14.jsonl": "11b4abeba7f1e864575f3836af9864f3cd43280fde74a878acdd950bf8bca581",
            "events/events_2024-11-15.jsonl": "1ca1cfb2671105ccc73879994d7bf8adc1926f56bb3d03eb853139664fc8dfc5",
            "order_lines/order_lines.csv": "b05200f3c868668af8ddfb7cac0c6a25aa6da07b71722548e4baf1dd3334a771",
            "orders/orders.csv": "06322ada27890fa109fd11fd45dbdff2a30b28c014154d15a8fbc8e428a75109",
            "products/products.csv": "53f191aa6b2d741d5c6d8a366a8baf682832f5818f59b8b5211b445a978ee5ea",
        },
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED_SHOPS))
def test_generated_files_are_byte_identical_to_the_pinned_ones(name, tmp_path):
    params, expected = PINNED_SHOPS[name]
    generate(tmp_path, **params)
    written = {k.removeprefix("shop/"): v for k, v in _hashes(tmp_path).items()}
    assert written == expected


def test_generation_prints_nothing_and_rejects_empty_worlds(tmp_path, capsys):
    generate(tmp_path, 20, 2, 1, START)
    assert capsys.readouterr() == ("", "")  # the CLI owns the terminal; the generator only logs
    with pytest.raises(ValueError, match="users and days must be positive"):
        generate(tmp_path, 0, 5, 1, START)


def test_rerun_into_the_same_folder_leaves_no_stale_day_files(tmp_path):
    generate(tmp_path, 50, 5, 1, START)
    generate(tmp_path, 50, 3, 1, START)
    assert len(list((tmp_path / "shop" / "events").glob("*.jsonl"))) == 3


def test_manifest_file_list_matches_disk(shop):
    root, manifest = shop
    written = json.loads((root / "shop" / "_manifest.json").read_text(encoding="utf-8"))
    assert written == manifest
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {k: v for k, v in _hashes(root).items() if not k.endswith("_manifest.json")}
    assert {k: v["sha256"] for k, v in listed.items()} == on_disk
    assert len([p for p in listed if p.startswith("shop/events/")]) == DAYS
    assert manifest["params"] == {
        "users": USERS,
        "days": DAYS,
        "seed": SEED,
        "start_date": START.isoformat(),
        "attrition": 0.0,
        "segment_style": "overlapping",
    }


# ---------------------------------------------------------------------------- formats
def test_customers_file_starts_with_a_bom_and_the_declared_header(shop):
    root, _ = shop
    data = (root / "shop" / "customers" / "customers.csv").read_bytes()
    assert data.startswith(codecs.BOM_UTF8)
    header = data[3:].split(b"\n", 1)[0].decode("utf-8").split(",")
    declared = next(f for f in _feeds() if f["name"] == "customers")["fields"]
    assert header == list(declared)


def test_products_file_is_gbk_not_utf8(shop):
    root, manifest = shop
    data = (root / "shop" / "products" / "products.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    undecodable = 0
    for line in data.split(b"\n"):
        try:
            line.decode("gbk")
        except UnicodeDecodeError:
            undecodable += 1
    assert undecodable == manifest["quarantine_expected"]["bronze.products"]["encoding_error"]
    assert "连衣裙".encode("gbk") in data or "智能手机".encode("gbk") in data


def test_awkward_product_names_are_valid_csv(shop, parsed):
    _, manifest = shop
    special = manifest["special_rows"]["bronze.products"]
    names = {r["product_id"]: r["product_name"] for r in parsed["bronze.products"][1]}
    assert "," in names[special["comma"]]
    assert "\n" in names[special["newline"]]
    assert '"' in names[special["double_quote"]]


def test_resident_ids_are_valid_and_agree_with_birth_date_gender_and_city(parsed):
    codes_by_city = defaultdict(set)
    for province, city, _, districts in CITIES:
        for code, _ in districts:
            codes_by_city[(province, city)].add(code)
    rows = [r for r in parsed["bronze.customers"][1] if r["id_number"]]
    assert len(rows) >= USERS
    for r in rows:
        idn = r["id_number"]
        # Independent MOD 11-2: sum of digit * (2^(17-i) mod 11) plus the check value is 1 mod 11.
        check = 10 if idn[17] == "X" else int(idn[17])
        assert (sum(int(c) * pow(2, 17 - i, 11) for i, c in enumerate(idn[:17])) + check) % 11 == 1, idn
        birth, gender = id_number_facts(idn)
        assert birth.isoformat() == r["birth_date"]
        assert gender == r["gender"]
        assert idn[:6] in codes_by_city[(r["province"], r["city"])]
        assert 16 <= (START - birth).days / 365.25 <= 75
    assert any(r["id_number"].endswith("X") for r in rows) or len(rows) < 200


def test_phones_are_mainland_mobiles_and_emails_look_real(parsed):
    rows = parsed["bronze.customers"][1]
    for r in rows:
        assert MOBILE.match(normalise_phone(r["phone"]) or ""), r["phone"]
        assert re.fullmatch(r"[^@\s]+@[A-Za-z0-9.]+\.[A-Za-z]+", r["email"]), r["email"]
    plain = sum(1 for r in rows if MOBILE.match(r["phone"]))
    assert plain / len(rows) > 0.85
    consent = sum(r["marketing_consent"] == "true" for r in rows) / len(rows)
    assert 0.7 < consent < 0.9


def test_events_carry_the_declared_shape(parsed):
    events = parsed["bronze.events"][1]
    per_user_day = len(events) / USERS / DAYS
    assert 0.8 < per_user_day < 1.5
    types = Counter(e["event_type"] for e in events)
    assert set(types) == {"view", "search", "add_to_cart", "remove_from_cart", "favourite", "share", "purchase"}
    assert types["view"] > types["add_to_cart"] > types["purchase"]
    for e in events:
        assert (e["product_id"] is None) == (e["event_type"] == "search")
        assert (e["query"] is not None) == (e["event_type"] == "search")
        assert e["channel"] in ("app", "web", "mini_program")
    ips = [e["ip"] for e in events]
    assert any(":" in ip for ip in ips) and sum(":" in ip for ip in ips) < 0.2 * len(ips)
    assert sum(e["user_id"] is None for e in events) > 0


def test_event_files_hold_their_local_day_in_time_order(shop):
    root, _ = shop
    late = total = 0
    for path in sorted((root / "shop" / "events").glob("events_*.jsonl")):
        day = path.stem.removeprefix("events_")
        previous = 0
        for raw in path.read_bytes().split(b"\n"):
            try:
                event = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue
            if not isinstance(event, dict) or not isinstance(event.get("ts"), int):
                continue
            assert datetime.fromtimestamp(event["ts"] / 1000, SHANGHAI).date().isoformat() == day
            total += 1
            late += event["ts"] < previous  # only re-delivered or corrupted copies break the order
            previous = event["ts"]
    assert late < 0.01 * total


# ---------------------------------------------------------------------------- quarantine truth
def test_quarantine_counts_match_an_independent_classifier(shop, parsed):
    _, manifest = shop
    for table, expected in manifest["quarantine_expected"].items():
        found = dict(parsed[table][0])
        assert found == expected, table
        assert all(v >= 2 for v in expected.values()), table


def test_records_expected_counts_every_non_blank_record(shop, parsed):
    _, manifest = shop
    assert manifest["records_expected"] == {t: parsed[t][2] for t in manifest["records_expected"]}
    assert manifest["valid_records_expected"] == {t: len(parsed[t][1]) for t in manifest["records_expected"]}


# ---------------------------------------------------------------------------- planted truth
def test_duplicate_registrations_share_a_normalised_phone(shop, parsed):
    _, manifest = shop
    by_id = {r["customer_id"]: r for r in parsed["bronze.customers"][1]}
    pairs = manifest["customer_duplicates"]
    assert len(pairs) >= 2
    for first, second in pairs:
        assert first != second
        a, b = by_id[first], by_id[second]
        assert normalise_phone(a["phone"]) == normalise_phone(b["phone"])
        assert b["phone"] != a["phone"]
        assert b["registered_at"] > a["registered_at"]
    phones = Counter(normalise_phone(r["phone"]) for r in by_id.values())
    assert sum(c - 1 for c in phones.values() if c > 1) == len(pairs)


def test_segments_partition_the_people_and_behave_differently(shop, parsed):
    _, manifest = shop
    segments = manifest["segments"]
    ids = [i for members in segments.values() for i in members]
    assert len(ids) == len(set(ids)) == USERS
    seconds = {b for _, b in manifest["customer_duplicates"]}
    assert not seconds & set(ids)
    seg_of = {i: s for s, members in segments.items() for i in members}
    night, total = Counter(), Counter()
    for e in parsed["bronze.events"][1]:
        if e["user_id"]:
            hour = datetime.fromtimestamp(e["ts"] / 1000, SHANGHAI).hour
            total[seg_of[e["user_id"]]] += 1
            night[seg_of[e["user_id"]]] += hour >= 22 or hour < 3
    assert night["night_owl"] / total["night_owl"] > 1.5 * night["occasional"] / total["occasional"]
    orders = Counter(seg_of[o["user_id"]] for o in _unique_orders(parsed).values())
    per_user = {s: orders[s] / len(m) for s, m in segments.items() if m}
    assert per_user["vip_frequent"] > per_user["occasional"] > per_user["browser_rarely_buys"]


def test_order_totals_reconcile_with_their_lines(parsed):
    orders = _unique_orders(parsed)
    lines = _unique_lines(parsed)
    assert set(orders) == set(lines)
    for oid, o in orders.items():
        for line in lines[oid]:
            assert Decimal(line["line_amount"]) == int(line["quantity"]) * Decimal(line["unit_price"])
        subtotal = sum(Decimal(line["line_amount"]) for line in lines[oid])
        assert Decimal(o["total_amount"]) == subtotal - Decimal(o["discount_amount"]), oid
        assert Decimal(o["discount_amount"]) < subtotal
        assert (o["coupon_code"] == "") == (Decimal(o["discount_amount"]) == 0)
        assert sorted(int(line["line_no"]) for line in lines[oid]) == list(range(1, len(lines[oid]) + 1))


def test_refunded_orders_have_an_earlier_paid_version(parsed):
    versions = defaultdict(list)
    for row in parsed["bronze.orders"][1]:
        versions[row["order_id"]].append(row)
    refunded = [v for v in versions.values() if any(r["status"] == "refunded" for r in v)]
    assert refunded
    for rows in refunded:
        statuses = {r["status"]: r for r in {tuple(r.items()): r for r in rows}.values()}
        assert set(statuses) == {"paid", "refunded"}
        assert statuses["refunded"]["updated_at"] > statuses["paid"]["updated_at"]
    assert 0.01 < len(refunded) / len(versions) < 0.1


def test_purchase_events_are_the_orders(parsed):
    seen = set()
    purchases = defaultdict(set)
    for e in parsed["bronze.events"][1]:
        if e["event_type"] != "purchase":
            continue
        key = e["event_id"] or (e["session_id"], e["product_id"], e["ts"])
        if key in seen:
            continue
        seen.add(key)
        purchases[(e["user_id"], e["ts"])].add(e["product_id"])
    lines = _unique_lines(parsed)
    from_orders = {
        (o["user_id"], _epoch_ms(o["order_time"])): {line["product_id"] for line in lines[oid]}
        for oid, o in _unique_orders(parsed).items()
    }
    assert purchases == from_orders


def test_exact_and_near_duplicate_counts(shop, parsed):
    _, manifest = shop
    events = parsed["bronze.events"][1]
    ids = Counter(e["event_id"] for e in events if e["event_id"])
    assert sum(c - 1 for c in ids.values()) == manifest["duplicates"]["exact_duplicate_events"]
    groups = defaultdict(list)
    for e in events:
        who = e["user_id"] or e["session_id"]
        groups[(who, e["event_type"], e["product_id"], e["query"])].append(e)
    near, too_close = 0, 0
    for group in groups.values():
        group.sort(key=lambda e: e["ts"])
        kept = group[0]  # the latest genuine event of this content
        for b in group[1:]:
            gap = b["ts"] - kept["ts"]
            if kept["event_id"] and kept["event_id"] == b["event_id"]:
                continue
            if not kept["event_id"] and not b["event_id"] and 1000 <= gap <= 3000:
                assert kept["session_id"] == b["session_id"]
                near += 1
                continue
            too_close += gap < 30_000
            kept = b
    assert near == manifest["duplicates"]["near_duplicate_events"] >= 2
    assert too_close == 0  # genuine events never look like retries


def test_planted_pairs_are_bought_together_far_above_chance(shop, parsed):
    _, manifest = shop
    baskets = [{line["product_id"] for line in lines} for lines in _unique_lines(parsed).values()]
    n = len(baskets)
    count = Counter(p for b in baskets for p in b)
    observed = expected = 0.0
    for pair in manifest["co_purchased_pairs"]:
        a, b = pair["product_ids"]
        together = sum(1 for basket in baskets if a in basket and b in basket)
        observed += together
        expected += count[a] * count[b] / n
        if together:
            assert together * n / (count[a] * count[b]) > 5, pair
    assert observed >= 0.15 * n
    assert observed > 10 * expected


def _assert_nothing_on_or_after_stop(manifest, parsed) -> None:
    stop = {c["customer_id"]: _epoch_ms(c["stop_date"] + " 00:00:00") for c in manifest["churners"]}
    for e in parsed["bronze.events"][1]:
        assert e["user_id"] not in stop or e["ts"] < stop[e["user_id"]]
    for o in _unique_orders(parsed).values():
        assert o["user_id"] not in stop or _epoch_ms(o["order_time"]) < stop[o["user_id"]]


def test_churners_stop_at_their_date(shop, parsed):
    _, manifest = shop
    churners = manifest["churners"]
    assert churners
    assert {c["customer_id"] for c in churners} <= set(manifest["segments"]["regular"])
    _assert_nothing_on_or_after_stop(manifest, parsed)
    # They bought regularly before stopping.
    assert all(c["orders_before"] >= 1 for c in churners)
    assert sum(c["orders_before"] for c in churners) >= 1.5 * len(churners)


def test_attrition_lets_every_segment_lapse_without_reshuffling_the_people(tmp_path):
    days = 60
    base = generate(tmp_path / "base", USERS, days, SEED, START)
    manifest = generate(tmp_path / "lapse", USERS, days, SEED, START, attrition=1.0)
    assert manifest["params"]["attrition"] == 1.0
    # Attrition draws from its own stream: the same people in the same segments.
    assert manifest["segments"] == base["segments"]
    parsed = {
        feed["outputs"][0]["table"]: classify_feed(tmp_path / "lapse", feed)
        for feed in _feeds()
        if feed["outputs"][0]["table"] in ("bronze.events", "bronze.orders")
    }
    _assert_nothing_on_or_after_stop(manifest, parsed)
    lapsed = {c["customer_id"] for c in manifest["churners"]}
    assert {c["customer_id"] for c in base["churners"]} < lapsed
    share = {name: len(lapsed & set(ids)) / len(ids) for name, ids in manifest["segments"].items()}
    # A daily hazard h over about 60 days leaves 1 - exp(-60 h): 0.45 of occasional
    # buyers (h = 0.010), 0.11 of VIPs (0.002; 15 people, so only "fewer").
    assert 0.30 <= share["occasional"] <= 0.60, share
    assert share["vip_frequent"] < share["occasional"] and share["browser_rarely_buys"] >= 0.30, share
    with pytest.raises(ValueError, match="attrition must be between 0 and 100"):
        generate(tmp_path / "bad", 20, 2, 1, START, attrition=-1.0)


def test_distinct_segment_style_draws_the_planted_segments_apart(tmp_path):
    days = 60
    base = generate(tmp_path / "base", USERS, days, SEED, START)
    manifest = generate(tmp_path / "distinct", USERS, days, SEED, START, segment_style="distinct")
    assert manifest["params"]["segment_style"] == "distinct"
    assert len(manifest["segments"]["vip_frequent"]) == round(0.08 * USERS)  # DISTINCT_SEGMENTS' share

    def facts(root: Path, manifest: dict) -> tuple[dict[str, float], dict[str, float], dict[str, date]]:
        tables = {
            f["outputs"][0]["table"]: classify_feed(root, f)
            for f in _feeds()
            if f["outputs"][0]["table"] in ("bronze.orders", "bronze.customers", "bronze.events")
        }
        seg_of = {i: s for s, members in manifest["segments"].items() for i in members}
        orders = Counter(seg_of[o["user_id"]] for o in _unique_orders(tables).values() if o["user_id"] in seg_of)
        buyers = {o["user_id"] for o in _unique_orders(tables).values()}
        per_user = {s: orders[s] / len(m) for s, m in manifest["segments"].items()}
        never = {s: sum(i not in buyers for i in m) / len(m) for s, m in manifest["segments"].items()}
        registered = {
            c["customer_id"]: date.fromisoformat(c["registered_at"][:10]) for c in tables["bronze.customers"][1]
        }
        return per_user, never, registered

    base_orders, base_never, _ = facts(tmp_path / "base", base)
    orders, never, registered = facts(tmp_path / "distinct", manifest)
    # Occasional buyers buy when they come, browsers hardly ever: in the default shop
    # most of both never order.
    assert never["occasional"] < 0.25 < base_never["occasional"], (never, base_never)
    assert never["browser_rarely_buys"] > 0.75
    assert orders["vip_frequent"] > 1.5 * base_orders["vip_frequent"]
    # New customers joined in the window's last DISTINCT_NEW_DAYS days.
    first = START + timedelta(days=days - DISTINCT_NEW_DAYS)
    assert all(registered[c] >= first for c in manifest["segments"]["new"])
    with pytest.raises(ValueError, match="segment_style must be one of"):
        generate(tmp_path / "bad", 20, 2, 1, START, segment_style="blurred")


def test_converted_touches_are_followed_by_an_order(shop, parsed):
    _, manifest = shop
    by_user = defaultdict(list)
    for o in _unique_orders(parsed).values():
        by_user[o["user_id"]].append(_epoch_ms(o["order_time"]))
    touches = {t["touch_id"]: t for t in parsed["bronze.campaign_touches"][1]}.values()
    converted = [t for t in touches if t["converted"] == "true"]
    assert converted
    for t in converted:
        sent = _epoch_ms(t["sent_at"])
        assert any(sent <= ts <= sent + 4 * 86_400_000 for ts in by_user[t["user_id"]]), t
    for t in touches:
        if t["variant"] == "control":
            assert t["opened"] == t["clicked"] == "false" and Decimal(t["cost"]) == 0
    campaigns = manifest["campaigns"]
    assert any(c["null_effect"] for c in campaigns.values())
    assert any(abs(e["absolute"]) > 0 for c in campaigns.values() for e in c["true_effects"].values())
    for c in campaigns.values():
        rates = {v: x["true_conversion_rate"] for v, x in c["variants"].items()}
        if c["null_effect"]:
            assert rates["A"] == rates["B"]
        assert c["true_effects"]["B_vs_A"]["absolute"] == pytest.approx(rates["B"] - rates["A"])


def test_people_browse_and_buy_mostly_in_their_taste_clusters(shop, parsed):
    _, manifest = shop
    tastes = manifest["tastes"]
    product, person = tastes["product_cluster"], tastes["person_clusters"]
    clusters = set(range(tastes["clusters"]))
    assert len(product) == manifest["silver_expected"]["products"] and set(product.values()) == clusters
    assert len(person) == manifest["silver_expected"]["persons"]
    assert all(1 <= len(c) <= 2 and set(c) <= clusters and len(set(c)) == len(c) for c in person.values())
    brand_of = {p["product_id"]: p["brand"] for p in parsed["bronze.products"][1]}
    assert all(tastes["brand_cluster"][brand_of[p]] == k for p, k in product.items() if p in brand_of)
    people = sorted(person)
    other = dict(zip(people, people[1:] + people[:1]))  # somebody else's clusters: what chance gives
    for kind in ("view", "purchase"):
        touches = [
            (e["user_id"], product[e["product_id"]])
            for e in parsed["bronze.events"][1]
            if e["event_type"] == kind and e.get("user_id") in person and e.get("product_id") in product
        ]
        own = sum(k in person[u] for u, k in touches) / len(touches)
        chance = sum(k in person[other[u]] for u, k in touches) / len(touches)
        assert own > 0.5, (kind, own)  # views about 0.73, purchases 0.58 (planted pairs fill a quarter of baskets)
        assert chance < 0.35 and own > 2 * chance, (kind, own, chance)


def test_products_sets_the_catalogue_size_and_the_default_is_unchanged(tmp_path):
    """Issue #25: a catalogue size for the similar-items bench; asking for the default size
    writes the very same data files as not asking (only the manifest records the request)."""
    generate(tmp_path / "default", 50, 3, 1, START)
    generate(tmp_path / "asked", 50, 3, 1, START, products=default_products(50))
    data = {k: v for k, v in _hashes(tmp_path / "default").items() if not k.endswith("_manifest.json")}
    asked = {k: v for k, v in _hashes(tmp_path / "asked").items() if not k.endswith("_manifest.json")}
    assert asked == data
    manifest = generate(tmp_path / "big", 50, 3, 1, START, products=1_234)
    assert manifest["params"]["products"] == 1_234 and manifest["silver_expected"]["products"] == 1_234
    text = (
        (tmp_path / "big" / "shop" / "products" / "products.csv").read_bytes().decode("gbk", errors="replace")
    )  # planted bad bytes stay bad
    assert len(set(re.findall(r"^(P\d{6}),", text, re.M))) == 1_234
    with pytest.raises(ValueError, match="products must be at least 100"):
        generate(tmp_path / "bad", 20, 2, 1, START, products=99)


def test_varied_duplicates_differ_as_the_manifest_says(tmp_path):
    """Issue #20: duplicates="varied" plants 3% second registrations whose differences are
    exactly the kinds listed for the pair; new phones and e-mails are nobody else's, so no
    exact key links two different people."""
    from shoplake.generate import DUPLICATE_VARIATIONS

    manifest = generate(tmp_path, 1500, 1, 5, START, duplicates="varied")
    assert manifest["params"]["duplicates"] == "varied"
    feed = next(f for f in _feeds() if f["outputs"][0]["table"] == "bronze.customers")
    rows = {r["customer_id"]: r for r in classify_feed(tmp_path, feed)[1]}
    pairs, variations = manifest["customer_duplicates"], manifest["customer_duplicate_variations"]
    assert len(pairs) == len(variations) == 45
    # Most kinds occur (city and gender never vary; a swap needs a day <= 12).
    seen = Counter(k for kinds in variations for k in kinds)
    assert set(seen) >= {k for choices in DUPLICATE_VARIATIONS.values() for k, _ in choices} - {"name_missing"}
    for (first, second), kinds in zip(pairs, variations):
        a, b = rows[first], rows[second]
        assert b["registered_at"] > a["registered_at"] and (a["city"], a["gender"]) == (b["city"], b["gender"])
        name_kind = next((k for k in kinds if k.startswith("name_")), None)
        if name_kind is None:
            assert b["name"] == a["name"]
        elif name_kind == "name_typo":
            assert len(b["name"]) == len(a["name"]) and sum(x != y for x, y in zip(a["name"], b["name"])) == 1
        elif name_kind == "name_transposed":
            assert b["name"] == a["name"][0] + a["name"][2] + a["name"][1] != a["name"]
        elif name_kind == "name_missing":
            assert b["name"] == ""
        else:
            assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", b["name"])
        if "phone_missing" in kinds:
            assert b["phone"] == ""
        elif "phone_different" in kinds:
            assert normalise_phone(b["phone"]) != normalise_phone(a["phone"])
        else:
            assert normalise_phone(b["phone"]) == normalise_phone(a["phone"])
            assert (b["phone"] != a["phone"]) == ("phone_format" in kinds)
        email_a, email_b = a["email"], b["email"]
        if "email_missing" in kinds:
            assert email_b == ""
        elif "email_different" in kinds:
            assert email_b.lower() != email_a.lower()
        elif "email_dots" in kinds:
            assert email_b != email_a and email_b.replace(".", "") == email_a.replace(".", "")
        else:
            assert email_b.lower() == email_a.lower() and (email_b != email_a) == ("email_case" in kinds)
        assert b["id_number"] == ("" if "id_missing" in kinds else a["id_number"])
        y, m, d = a["birth_date"].split("-")
        expected = {"birth_missing": "", "birth_day_month_swapped": f"{y}-{d}-{m}"}
        assert b["birth_date"] == next((expected[k] for k in kinds if k in expected), a["birth_date"])
    person = {c: c for c in rows} | {second: first for first, second in pairs}
    for key in ("phone", "email", "id_number"):
        owners = defaultdict(set)
        for c, r in rows.items():
            value = normalise_phone(r[key]) if key == "phone" else r[key].lower()
            if value:
                owners[value].add(person[c])
        assert max(len(o) for o in owners.values()) == 1, key
