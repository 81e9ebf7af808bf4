"""Stream: one feed's landing folder (the clickstream by default) -> bronze, continuously.

A Spark Structured Streaming job: new files in the feed's folder (``stream.source``,
``stream.feed``) are read as they arrive, at most ``stream.max_files_per_trigger``
per micro-batch, one micro-batch every ``stream.trigger_seconds``; ``once=True``
(``shoplake stream --once``) processes what is there and stops (``availableNow``).
With ``stream.kafka.bootstrap_servers`` set, the messages of a Kafka topic take the
place of the files (:func:`kafka_messages`).

Records are split, typed and mapped by :mod:`common.records`, the code of the batch
``ingest`` job: the same schema, reasons and bronze rows. Valid records go to the
feed's bronze tables, the rest to ``bronze.quarantine``, each table by its own query
with its own checkpoint (``<lake>/_checkpoints/stream_<source>_<feed>/<table>``), so a
stopped or killed stream resumes where it was.

With ``stream.silver`` (the default) a feed that writes ``bronze.events`` also feeds
``silver.events`` (:func:`silver_events`): duplicates dropped as the batch ``clean``
drops them (by event id; id-less copies within ``clean.event_dedup_window_seconds``),
remembered for ``stream.watermark_seconds`` of event time; events later than that are
dropped from the stream's silver and counted (``late_rows``; bronze keeps them and the
next ``clean`` restores them). Users get the person's key from ``silver.user_key_map``
as the last ``clean`` published it, others the keyed hash of their id, as in clean; the
rows are formed by :mod:`common.events`, clean's own code. Each write is exactly once
(:meth:`common.delta.DeltaStore.start_stream`: Delta's streaming sink on delta-spark,
``foreachBatch`` with Delta transaction ids on delta-rs).

With ``stream.live.enabled`` (the default) the driver brings the live gold tables up to
date as silver micro-batches commit (:class:`LiveRefresh`, :func:`refresh_live_tables`,
:mod:`common.live`): the funnel per minute and channel, trending products and
cart-abandonment triggers.

Each micro-batch's progress (rows read, rates, duration, watermark, state rows) is
logged as it completes and appended to ``ops.stream_progress`` (at most every
``_FLUSH_SECONDS`` while running, and when the stream stops), so a scheduler or the
report can see how a long-running stream keeps up.

Not done by the stream (the batch ``ingest`` does them): the per-file
``ingest.max_quarantine_share`` stop, ``bronze.ingested_files`` and the read-back
reconciliation. Files already in ``bronze.ingested_files`` when the stream starts
are skipped, so a stream after ``ingest`` does not load them twice.
"""

from jobs.stream.job import run

__all__ = ["run"]
