"""Orders as of a date: the one rule every gold job uses to read silver.orders.

silver.orders keeps one row per order, its latest version (``status`` and the
``updated_at`` of that version); there is no status history. So the status an order
had at the end of day D is its recorded status when that was written by then, and
``paid`` (the status an order is placed with) when it was written later: a refund or
a cancellation recorded after D had not happened yet on D.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from common.asof import on_or_before

PLACED_STATUS = "paid"


def status_as_of(as_of: date, status: str = "status", updated_at: str = "updated_at") -> Column:
    """The order's status at the end of ``as_of`` (lower case; a missing status is ``paid``)."""
    changed_later = F.col(updated_at).isNotNull() & ~on_or_before(updated_at, as_of)
    return F.when(changed_later, F.lit(PLACED_STATUS)).otherwise(
        F.lower(F.coalesce(F.col(status), F.lit(PLACED_STATUS)))
    )


def orders_as_of(as_of: date, customer_key: str = "user_key") -> Callable[[DataFrame], DataFrame]:
    """silver.orders -> the orders of known customers placed by the end of ``as_of``,
    every column kept and ``status`` replaced by :func:`status_as_of`."""

    def transform(orders: DataFrame) -> DataFrame:
        placed = orders.where(F.col(customer_key).isNotNull() & on_or_before("order_time", as_of))
        return placed.withColumn("status", status_as_of(as_of))

    return transform
