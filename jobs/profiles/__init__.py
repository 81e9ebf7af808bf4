"""Profile: silver -> gold.profiles, one portrait per customer as of a date.

Only rows on or before the as-of day (UTC) are read, and an order refunded after
that day still counts as paid, so rebuilding an old date after newer data arrived
gives the same table. For every customer registered by then (or, without a
registration date, active by then):

- attributes: age band, gender, province, city and city tier, days since
  registration, member level;
- RFM: recency (days since the last kept purchase), frequency (kept purchases),
  monetary (net of refunds), average order value, mean inter-purchase interval,
  quintile scores 1-5 and a named segment from the configured rule table;
- behaviour: sessions, views, searches, add-to-carts, cart abandonment, view to
  purchase conversion, preferred hour and weekday (``profile.time_zone``), night
  share, preferred channel and payment method, share of orders with a discount;
- interests: top categories and brands with weights, brand loyalty (Herfindahl
  index of the brands bought);
- lifecycle stage (new, active, dormant, churned, reactivated) and tags from
  ``conf/tags.yaml`` (Spark SQL conditions over these columns).

Money: a paid order counts its amount; an order refunded by the as-of day counts
in ``refunded_orders``/``refund_amount`` and nets to zero; a refund record with a
negative amount (Online Retail's ``C`` invoices) subtracts its amount. Cancelled
orders count nowhere. A customer with only refunds has frequency 0, no recency
and monetary <= 0.
"""

from jobs.profiles.job import run

__all__ = ["run"]
