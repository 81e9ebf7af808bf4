"""Churn: candidate churn models chosen on validation, honest evaluation, and BTYD-based CLV.

Protocol (all dates inclusive, UTC days; see docs/architecture.md):

- Cutoffs are time-based and ordered: training < validation < test <= as-of, each
  followed by a label window of the same length (``label_days``), so calibration
  fitted at validation means the same thing at test and at the as-of date. Defaults:
  test = as_of - label_days, validation = test - label_days, training = validation -
  label_days. Every label the models and their tuning saw was known by the test cutoff.
- At each cutoff the population is the customers with a purchase in the
  ``activity_days`` before it; ``churned`` = no purchase in the label window after it.
  Features use only data up to the cutoff (common.churn_features), including a BG/NBD
  model fitted on that data (P(alive), expected purchases in the label window).
- Candidates: two baselines without a fitted model (recency; BG/NBD expected
  purchases), a logistic regression and a GBTClassifier (grid). The candidate with the
  best validation ROC-AUC on its raw scores is published, so the job never publishes
  something its best baseline beats on validation.
- Ranking metrics (ROC-AUC, PR-AUC, lift/capture by decile) are computed on raw
  scores; the published candidate's probabilities come from a ranking-preserving
  calibration (Platt or tie-broken isotonic, chosen by cross-validated log-loss on the
  validation rows, common.calibration) and are assessed separately at test.
- The as-of date is scored with the saved pipeline (``model_dir``), which a later run
  can reuse without retraining (``churn.score_with_model``). gold.clv is BG/NBD x
  Gamma-Gamma, fitted on the data up to the as-of date (common.btyd), and the report
  checks BG/NBD on a calibration/holdout split.
"""

from jobs.churn.job import run

__all__ = ["run"]
