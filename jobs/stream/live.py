"""The live gold tables refreshed from silver.events while the stream runs: funnel,
trending items, due triggers; refresh ranges kept across restarts."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from common.config import ShopLakeConfig
from common.delta import DeltaStore
from common.live import abandoned_carts, live_funnel, live_trending, within_frequency_cap
from common.paths import is_local, local_path, write_atomically
from common.tables import (
    GOLD_CART_ABANDONMENT_TRIGGERS,
    GOLD_LIVE_FUNNEL,
    GOLD_LIVE_TRENDING,
    SILVER_CAMPAIGN_TOUCHES,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    TableSpec,
)
from common.touches import was_sent

log = logging.getLogger(__name__)


class LiveRefresh:
    """The live tables' refresh, off the silver query's thread: each silver micro-batch
    notes its event-time range (``note_batch``, its after-batch hook) and the driver's
    loop refreshes from the ranges noted since (``refresh``) while the next batch runs, so
    silver never waits for the live tables. gold.live_funnel is refreshed whenever a batch
    was noted; gold.live_trending and the cart-abandonment triggers (an hour's window, a
    30-minute rule: seconds do not matter to them) at most every
    ``stream.live.trending_refresh_seconds``, so they do not hold the funnel back.

    What is pending is also kept in ``<checkpoints>/live_pending.json``, written before
    the batch's checkpoint commit: a run stopped or killed before refreshing leaves it
    for the next run. Each refresh that completes appends the table, the silver batch ids
    it covered and when to ``live_refreshes.jsonl`` there (``bench/stream.py`` reads it)."""

    def __init__(self, store: DeltaStore, cfg: ShopLakeConfig, checkpoints: str) -> None:
        self.store, self.cfg = store, cfg
        self.lock = threading.Lock()
        # Per part ("funnel", "trending"): the event-time range and batch ids not refreshed yet.
        self.pending: dict[str, dict[str, Any] | None] = {"funnel": None, "trending": None}
        self.last_trending = float("-inf")
        self.noted = threading.Event()  # set by each noted batch: wakes the driver's loop
        # Checkpoints in an object store (a cluster): no local file to keep the pending range
        # in, so each batch refreshes before it commits, on the query's thread.
        self.in_batch = not is_local(checkpoints)
        if self.in_batch:
            return
        folder = Path(local_path(checkpoints))
        folder.mkdir(parents=True, exist_ok=True)
        self.pending_file = folder / "live_pending.json"
        self.refreshes_file = folder / "live_refreshes.jsonl"
        if self.pending_file.exists():
            self.pending.update(json.loads(self.pending_file.read_text(encoding="utf-8")))

    def note_batch(self, batch: DataFrame, batch_id: int) -> None:
        since, newest = batch.agg(F.min("event_time"), F.max("event_time")).first()
        if since is None:  # no rows (all duplicates or late): the live tables are up to date with it
            if not self.in_batch:
                for table in (GOLD_LIVE_FUNNEL, GOLD_LIVE_TRENDING):
                    self._log(table, [batch_id])
            return
        if self.in_batch:
            refresh_live_tables(self.store, self.cfg, since, newest)
            return
        with self.lock:
            for part, pending in self.pending.items():
                self.pending[part] = _widen(pending, _iso(since), _iso(newest), batch_id)
            self._save()
        self.noted.set()

    def refresh(self, every_table: bool = False) -> bool:
        """Refresh what is pending: the funnel, and trending and triggers when their interval
        has passed or ``every_table``. False when nothing was refreshed."""
        self.noted.clear()  # a batch noted from here on wakes the next wait
        done = False
        if funnel := self._take("funnel"):
            refresh_live_funnel(self.store, datetime.fromisoformat(funnel["since"]))
            self._finished(GOLD_LIVE_FUNNEL, funnel)
            done = True
        due = every_table or time.monotonic() - self.last_trending >= self.cfg.stream.live.trending_refresh_seconds
        if due and (trending := self._take("trending")):
            refresh_trending_and_triggers(self.store, self.cfg, datetime.fromisoformat(trending["newest"]))
            self.last_trending = time.monotonic()
            self._finished(GOLD_LIVE_TRENDING, trending)
            done = True
        return done

    def _take(self, part: str) -> dict[str, Any] | None:
        with self.lock:
            todo, self.pending[part] = self.pending[part], None
            return todo  # still on disk until refreshed: a kill meanwhile leaves it for the next run

    def _finished(self, table: TableSpec, todo: dict[str, Any]) -> None:
        with self.lock:
            self._save()  # ranges noted during the refresh stay pending (in memory and on disk)
        self._log(table, todo["batches"])

    def _log(self, table: TableSpec, batches: list[int]) -> None:
        with self.lock, self.refreshes_file.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"table": table.name, "batches": batches, "finished": time.time()}) + "\n")

    def _save(self) -> None:
        if any(self.pending.values()):
            write_atomically(self.pending_file, json.dumps(self.pending).encode())
        else:
            self.pending_file.unlink(missing_ok=True)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")  # fixed width: the strings order as the times


def _widen(pending: dict[str, Any] | None, since: str, newest: str, batch_id: int) -> dict[str, Any]:
    if pending is None:
        return {"since": since, "newest": newest, "batches": [batch_id]}
    return {
        "since": min(pending["since"], since),
        "newest": max(pending["newest"], newest),
        "batches": sorted({*pending["batches"], batch_id}),
    }


def refresh_live_tables(store: DeltaStore, cfg: ShopLakeConfig, since: datetime, newest: datetime) -> None:
    """Bring the live gold tables up to date with silver.events after rows from ``since``
    to ``newest`` (event time) were added. Each is recomputed from the tables, so a
    repeated refresh (a replayed batch) changes nothing."""
    refresh_live_funnel(store, since)
    refresh_trending_and_triggers(store, cfg, newest)


def refresh_live_funnel(store: DeltaStore, since: datetime) -> None:
    """gold.live_funnel's minutes from ``since``'s on, recomputed from silver.events."""
    first_minute = since.replace(second=0, microsecond=0)
    recent = store.read(SILVER_EVENTS).where(
        (F.col("event_date") >= F.lit(first_minute.date())) & (F.col("event_time") >= F.lit(first_minute))
    )
    store.replace_where(GOLD_LIVE_FUNNEL, live_funnel(recent), f"minute >= TIMESTAMP'{first_minute:%Y-%m-%d %H:%M:%S}'")


def refresh_trending_and_triggers(store: DeltaStore, cfg: ShopLakeConfig, newest: datetime) -> None:
    """gold.live_trending replaced (its window ends at the newest event in silver, on
    ``newest``'s day or later) and the triggers now due appended to
    gold.cart_abandonment_triggers."""
    live = cfg.stream.live
    events = store.read(SILVER_EVENTS)
    clock = events.where(F.col("event_date") >= F.lit(newest.date())).agg(F.max("event_time")).first()[0] or newest
    window_events = events.where(
        F.col("event_date") >= F.lit((clock - timedelta(minutes=live.trending_minutes)).date())
    )
    store.overwrite(
        GOLD_LIVE_TRENDING,
        live_trending(window_events, clock, live.trending_minutes, live.trending_top, cfg.recommend.event_weights),
    )
    new_triggers = due_triggers(store, cfg, events, clock)
    if new_triggers:
        store.merge(
            GOLD_CART_ABANDONMENT_TRIGGERS,
            store.spark.createDataFrame(new_triggers, GOLD_CART_ABANDONMENT_TRIGGERS.schema),
        )
    log.info("stream: live trending and triggers refreshed (clock %s): %d new triggers", clock, len(new_triggers))


def due_triggers(store: DeltaStore, cfg: ShopLakeConfig, events: DataFrame, clock: datetime) -> list[dict[str, Any]]:
    """Cart-abandonment triggers due by ``clock`` and not sent yet, for customers who
    consented (silver.customers), within campaign.frequency_cap: campaign touches sent
    (silver.campaign_touches) and earlier triggers count as messages."""
    live, cap = cfg.stream.live, cfg.campaign.frequency_cap
    first_add = clock - timedelta(minutes=live.abandon_minutes + live.trigger_max_age_minutes)
    carts = abandoned_carts(
        events.where(F.col("event_date") >= F.lit(first_add.date())), clock, live.abandon_minutes,
        live.trigger_max_age_minutes,
    )  # fmt: skip
    consenting = store.read_or_empty(SILVER_CUSTOMERS).where(F.col("marketing_consent")).select("user_key")
    carts = carts.join(consenting, "user_key", "left_semi")
    earlier = store.read_or_empty(GOLD_CART_ABANDONMENT_TRIGGERS)
    candidates = [r.asDict() for r in carts.join(earlier.select("trigger_id"), "trigger_id", "left_anti").collect()]
    if not candidates:
        return []
    period = timedelta(days=cap.period_days)
    users = sorted({r["user_key"] for r in candidates})
    since = min(r["due_at"] for r in candidates) - period
    touches = store.read_or_empty(SILVER_CAMPAIGN_TOUCHES).where(was_sent() & (F.col("sent_at") > F.lit(since)))
    earlier_sent = earlier.where(F.col("due_at") > F.lit(since)).select("user_key", F.col("due_at").alias("sent_at"))
    sent = touches.select("user_key", "sent_at").unionByName(earlier_sent).where(F.col("user_key").isin(users))
    return within_frequency_cap(candidates, [tuple(r) for r in sent.collect()], cap.max_touches, period)
