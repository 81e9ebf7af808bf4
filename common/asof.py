"""Point-in-time helpers shared by the gold jobs.

Every gold job computes "as of" a date: it uses only rows whose time falls on or
before that day (UTC), so rebuilding an old date after newer data arrived gives
the same answer. The date is a parameter, never "now"; when none is configured
the job uses the last day with data and logs that it did. Undated orders (basket
files) count as of the day they were ingested, as clean dates them.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from common.config import ShopLakeConfig
from common.delta.base import DeltaStore
from common.errors import InputError
from common.tables import BRONZE_ORDERS, SILVER_EVENTS, SILVER_ORDERS, TableSpec

log = logging.getLogger(__name__)


def day_end(as_of: date) -> datetime:
    """The first instant after ``as_of`` (UTC): rows strictly before it are in."""
    return datetime.combine(as_of + timedelta(days=1), time.min, tzinfo=timezone.utc)


def on_or_before(column: str | Column, as_of: date) -> Column:
    """Condition: ``column`` (a timestamp) falls on or before the as-of day."""
    col = F.col(column) if isinstance(column, str) else column
    return col < F.lit(day_end(as_of).replace(tzinfo=None))


def days_since(as_of: date, column: str | Column) -> Column:
    """Whole days from the row's UTC day to the as-of day (0 = the as-of day itself)."""
    col = F.col(column) if isinstance(column, str) else column
    return F.datediff(F.lit(as_of), F.to_date(col))


def up_to(df: DataFrame, time_column: str, as_of: date) -> DataFrame:
    """Rows of ``df`` whose ``time_column`` is on or before ``as_of`` (null times dropped)."""
    return df.where(on_or_before(time_column, as_of))


def last_data_day(store: DeltaStore) -> date | None:
    """The last day with an order or event in silver; when silver's orders carry no
    time at all, the day their bronze rows were ingested (clean's rule for undated
    data); None for an empty lake."""
    days = []
    for spec, column in ((SILVER_ORDERS, "order_time"), (SILVER_EVENTS, "event_time")):
        if store.exists(spec):
            value = store.read(spec).agg(F.max(column)).first()[0]
            if value is not None:
                days.append(value.date())
    if days:
        return max(days)
    return undated_orders_ingest_day(store)


def undated_orders_ingest_day(store: DeltaStore) -> date | None:
    """The last ingest day of the undated orders when silver holds any, else None.
    Only the ingest time of bronze is read: no personal data leaves it."""
    if not (store.exists(SILVER_ORDERS) and store.exists(BRONZE_ORDERS)):
        return None
    if store.read(SILVER_ORDERS).where(F.col("order_time").isNull()).limit(1).count() == 0:
        return None
    value = store.read(BRONZE_ORDERS).where(F.col("order_time").isNull()).agg(F.max("_ingested_at")).first()[0]
    return value.date() if value is not None else None


def resolve_as_of(store: DeltaStore, cfg: ShopLakeConfig) -> date:
    """``gold.as_of`` when set, else the last day with data (logged, so the run log's
    recorded date is the one used). Raises InputError on a lake without data."""
    if cfg.gold.as_of is not None:
        return cfg.gold.as_of
    last = last_data_day(store)
    if last is None:
        raise InputError("gold.as_of is not set and silver holds no orders or events to default to")
    log.info("gold.as_of not set: using the data's last day, %s", last.isoformat())
    return last


def publish_as_of(store: DeltaStore, spec: TableSpec, df: DataFrame, as_of: date) -> int:
    """Replace the ``as_of`` partition of a gold table with ``df`` (other dates kept),
    so re-running a date is idempotent and old dates stay comparable."""
    return store.replace_where(spec, df.withColumn("as_of", F.lit(as_of)), f"as_of = DATE'{as_of.isoformat()}'")
