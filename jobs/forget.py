"""Forget: erase people from every layer (right to erasure).

Given source customer ids (``shop:C10000203`` or a bare ``C10000203``) or
silver ``user_key`` s, it finds each person (all registrations merged into the
same ``user_key``), deletes their rows from every bronze, silver and gold table
(quarantined raw records mentioning them included), then vacuums every touched
table with zero retention so time travel cannot bring them back. The run log
records counts per table, never identities.

Landing files are the source system's deliveries and are not touched: delete
them at the source too, or a re-delivery under new content would bring the
person back.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from common import privacy
from common.config import ShopLakeConfig
from common.delta import DeltaStore, open_store
from common.errors import InputError
from common.runlog import JobResult, new_run_id
from common.tables import (
    ALL_TABLES,
    BRONZE_CAMPAIGN_TOUCHES,
    BRONZE_CUSTOMERS,
    BRONZE_EVENTS,
    BRONZE_ORDER_LINES,
    BRONZE_ORDERS,
    BRONZE_QUARANTINE,
    SILVER_ORDER_LINES,
    SILVER_ORDERS,
    SILVER_REJECTED,
    SILVER_USER_KEY_MAP,
    TableSpec,
)

log = logging.getLogger(__name__)
_USER_KEY = re.compile(r"^[0-9a-f]{64}$")


def read_ids(path: str) -> list[str]:
    """One id per line; blank lines and ``#`` comments ignored."""
    try:
        with open(path, encoding="utf-8") as handle:
            ids = [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
    except OSError as exc:
        raise InputError(f"--ids {path}: cannot read: {exc}") from None
    if not ids:
        raise InputError(f"--ids {path}: no ids in the file (one source id or user_key per line)")
    return ids


def _sql_list(values) -> str:
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in sorted(set(values)))


def _by_source(pairs: set[tuple[str, str]], id_column: str) -> str | None:
    """``(source_system = 'a' AND col IN (...)) OR ...`` for (source, id) pairs."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for source, value in pairs:
        grouped[source].append(value)
    if not grouped:
        return None
    return " OR ".join(
        f"(source_system = '{source}' AND {id_column} IN ({_sql_list(values)}))" for source, values in grouped.items()
    )


def resolve(spark: SparkSession, store: DeltaStore, cfg: ShopLakeConfig, ids: list[str]) -> dict:
    """The people behind ``ids``: their user_keys, source ids, order ids and identity values."""
    secret = cfg.pseudonym_secret()
    keys = {i for i in ids if _USER_KEY.match(i)}
    wanted = [i for i in ids if i not in keys]
    registrations = (
        store.read(BRONZE_CUSTOMERS).select("source_system", "customer_id", "phone", "email", "id_number", "name")
        if store.exists(BRONZE_CUSTOMERS)
        else None
    )
    key_map = store.read(SILVER_USER_KEY_MAP) if store.exists(SILVER_USER_KEY_MAP) else None
    pairs: set[tuple[str, str]] = set()
    for value in wanted:
        if ":" in value:
            source, _, customer = value.partition(":")
            pairs.add((source, customer))
        elif registrations is not None:
            matches = registrations.where(F.col("customer_id") == value).select("source_system", "customer_id")
            pairs.update((r.source_system, r.customer_id) for r in matches.collect())
    # Source ids -> their persons' keys (through the map), keys -> all their registrations.
    if key_map is not None and pairs:
        source_keys = [privacy.pseudonym(secret, f"{s}:{c}", "source") for s, c in pairs]
        keys.update(r.user_key for r in key_map.where(F.col("source_key").isin(source_keys)).collect())
    for source, customer in pairs:
        keys.add(privacy.pseudonym(secret, f"{source}:{customer}", "user"))  # ids never registered
    identities: set[str] = set()
    if registrations is not None and key_map is not None and keys:
        mine = {r.source_key for r in key_map.where(F.col("user_key").isin(list(keys))).collect()}
        rows = registrations.collect()
        for r in rows:
            if privacy.pseudonym(secret, f"{r.source_system}:{r.customer_id}", "source") in mine:
                pairs.add((r.source_system, r.customer_id))
        for r in rows:
            if (r.source_system, r.customer_id) in pairs:
                identities.update(v for v in (r.phone, r.email, r.id_number, r.name) if v)
                phone = privacy.normalise_phone(r.phone)
                if phone:
                    identities.update({phone, phone[-11:]})
    orders: set[tuple[str, str]] = set()
    predicate = _by_source(pairs, "user_id")
    if predicate and store.exists(BRONZE_ORDERS):
        orders = {(r.source_system, r.order_id) for r in store.read(BRONZE_ORDERS).where(predicate).collect()}
    if keys and store.exists(SILVER_ORDERS):
        orders.update(
            (r.source_system, r.order_id)
            for r in store.read(SILVER_ORDERS).where(F.col("user_key").isin(list(keys))).collect()
        )
    return {"user_keys": keys, "source_ids": pairs, "orders": orders, "identities": identities}


def erasure_predicates(people: dict) -> dict[str, str]:
    """Table name -> SQL predicate matching the people's rows."""
    preds: dict[str, str] = {}
    by_customer = _by_source(people["source_ids"], "customer_id")
    by_user = _by_source(people["source_ids"], "user_id")
    by_order = _by_source(people["orders"], "order_id")
    keys = people["user_keys"]
    if by_customer:
        preds[BRONZE_CUSTOMERS.name] = by_customer
    if by_user:
        for spec in (BRONZE_EVENTS, BRONZE_ORDERS, BRONZE_CAMPAIGN_TOUCHES):
            preds[spec.name] = by_user
    if by_order:
        preds[BRONZE_ORDER_LINES.name] = by_order
        preds[SILVER_ORDER_LINES.name] = by_order
    # Quarantined raw text may mention them in any field.
    needles = {c for _, c in people["source_ids"]} | people["identities"]
    if needles:
        preds[BRONZE_QUARANTINE.name] = " OR ".join(
            f"raw LIKE '%{n.replace(chr(39), chr(39) * 2).replace('%', '').replace('_', '')}%'" for n in sorted(needles)
        )
    if keys:
        key_list = _sql_list(keys)
        for spec in ALL_TABLES.values():
            if spec.layer in ("silver", "gold") and "user_key" in spec.columns:
                preds[spec.name] = f"user_key IN ({key_list})"
        preds[SILVER_REJECTED.name] = " OR ".join(f"record LIKE '%{k}%'" for k in sorted(keys))
    return preds


def run(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    run_id: str | None = None,
    store: DeltaStore | None = None,
    ids: list[str] | None = None,
) -> JobResult:
    """Erase the people behind ``ids`` from every table and vacuum old versions."""
    run_id = run_id or new_run_id("forget")
    store = store or open_store(spark, cfg)
    if not ids:
        raise InputError("forget needs at least one id (--ids FILE)")
    people = resolve(spark, store, cfg, ids)
    result = JobResult("forget", run_id)
    touched: list[TableSpec] = []
    for name, predicate in erasure_predicates(people).items():
        spec = ALL_TABLES[name]
        if not store.exists(spec):
            continue
        current = store.read(spec)
        removed = current.where(predicate).count()
        result.row_counts[name] = removed
        if removed:
            # Rewrite rather than delete_where: a delete records its predicate (the
            # people's ids) in the transaction log, which vacuum never removes.
            result.outputs[name] = store.overwrite(spec, current.where(f"NOT coalesce(({predicate}), false)"))
            touched.append(spec)
    for spec in touched:
        # Zero retention: the deleted rows' old files go now, so no version can be read back.
        store.vacuum(spec, retention_hours=0)
    result.metrics = {"people": len(people["user_keys"]), "tables_vacuumed": [t.name for t in touched]}
    removed = ", ".join(f"{n}={c}" for n, c in sorted(result.row_counts.items()) if c) or "nothing found"
    result.summary = f"forget: {len(ids)} id(s) -> rows removed: {removed}; vacuumed {len(touched)} table(s)"
    return result
