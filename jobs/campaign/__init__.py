"""Campaign: gold -> audiences, and what campaigns achieved.

Audiences (as of ``gold.as_of``):

- Campaigns and their selection criteria come from ``conf/campaigns.yaml``
  (``campaign.definitions``); a criterion needing a gold table that is missing or
  empty for the date skips that campaign, with the reason in the run log and report.
- Guardrails: customers without marketing consent (in gold.profiles or
  silver.customers) are never selected; a frequency cap counts touches sent in the
  last ``period_days`` plus this run's audiences in campaign priority order; a
  deterministic hold-out per campaign (SHA-256 of campaign id and user_key, so a
  person's group never changes between runs) is applied after the cap so that
  treatment and control come from the same capped population.
- Exports (CSV per campaign, gold.audience_export): treatment recipients by
  pseudonymous key and campaign attributes only; person attributes shared by fewer
  than ``export.k_anonymity`` recipients of a campaign are withheld.

Effect evaluation (touches sent up to the as-of day): sends, opens, clicks,
conversions (the touch's converted flag), orders and revenue by last-touch
attribution within ``attribution_window_hours``, cost, the usual rates, by campaign,
channel, segment and variant (gold.campaign_kpis); conversion-rate and
revenue-per-recipient tests of each variant against A and against the hold-out
(gold.ab_results); a markdown/HTML report under ``<lake>/reports/campaign/``.
"""

from jobs.campaign.job import run

__all__ = ["run"]
