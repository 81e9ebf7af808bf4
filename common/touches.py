"""Campaign touches, one definition for the batch campaign job and the stream's
real-time triggers: which touches were messages actually sent (a frequency cap counts
them), and the name of the hold-out variant that is never sent."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

HOLDOUT = "control"  # the variant name of hold-out rows in campaign touches (not sent)


def was_sent() -> Column:
    """True for a touch that reached a known person: not the hold-out variant."""
    return (F.coalesce(F.lower("variant"), F.lit("")) != HOLDOUT) & F.col("user_key").isNotNull()
