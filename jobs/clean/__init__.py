"""Clean: bronze -> silver. One row per real thing, standard formats, no raw
personal data, data-quality gates before anything is published.

- Customers: registrations that share a normalised phone, e-mail or resident ID
  number (configurable) are one person, found as connected components in Spark.
  With ``clean.identity.method: splink`` records linked by a Splink model
  (names, birth date, city, e-mail, phone, ID; common/identity.py) are too.
  The person's ``user_key`` is the HMAC of its earliest registration's source id;
  ``silver.user_key_map`` maps the keyed hash of every source id to it, so
  events and orders of merged accounts follow the person.
- Events: one row per event id; id-less events with identical content within
  ``clean.event_dedup_window_seconds`` are one event.
- Orders, order lines, products, touches: the latest version wins (by update
  time, then ingest order), so paid -> refunded is applied, not duplicated.
- Personal data: names, phones, e-mails, ID numbers, addresses and full IPs are
  used only to derive keys and generalised facts (age band, gender, city, e-mail
  domain, masked phone, IP /24 or /48) and never written.
- Write-audit-publish: every silver table is built and validated first
  (row-level failures go to ``silver.rejected``; a table-level failure stops the
  job), then all are published with MERGE on their keys.
"""

from jobs.clean.job import run

__all__ = ["run"]
