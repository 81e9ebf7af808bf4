"""Recommend: candidate models on implicit feedback (ALS, item-kNN, SAR, most
popular), chosen by validation NDCG@k and reported side by side on held-back data,
then top-N recommendations from the winner and similar items as of a date.

1. Interactions (common.interactions) up to the as-of day.
2. Split. ``time``: train on days up to the cutoff (default as-of minus
   ``test_days``), test on purchases after it. ``random`` (data without useful
   times): a seeded per-user holdout of ``test_fraction`` of each user's bought
   items. Validation is carved from the training side the same way, so the
   hyperparameters (``recommend.grid``) never see the test period. ALS's point
   (rank, regParam, alpha, iterations and the common.confidence transform of the
   strength) comes from ``recommend.search``: every grid point, or successive halving
   over a seeded sample (common.search), within ``search_budget_s``. Every
   candidate of ``recommend.candidates`` is scored on validation (ALS at its chosen
   point) and the best NDCG@k wins (ties: the earlier candidate). All of them,
   plus the category-popularity baseline, are evaluated once on test through the
   same code.

   - item-kNN: each item's ``knn.neighbours`` most cosine-similar items (columns of
     the user x item strength matrix); a user's score for an item is the sum of its
     similarities to the user's items.
   - SAR: each item's ``sar.neighbours`` most similar items by Jaccard (or lift) of
     their co-occurrence counts (users who touched both); a user's score is the sum
     of affinity x similarity over the user's items, the affinity being the
     interaction strength decayed with ``sar.half_life_days``.

   Both score with common.neighbours.top_unseen_neighbours: sparse products of the
   users' weights and the broadcast neighbour matrix on the executors, seen items
   masked, ``top_n`` kept; no row pairs a user with an item or an item with a
   neighbour (common.neighbours also finds the neighbours, exactly, without a pair table).
3. Relevant items are test-period purchases the user had not touched in
   training: already-seen items are excluded from every list and from scoring.
4. Publish: the winner refitted on everything up to the as-of day (ALS model, or the
   item-kNN/SAR neighbour table, saved under common.artifacts.model_dir); every
   customer gets ``top_n`` items, from the winner where it knows them (reason
   ``model``) and from the popularity list for the rest and for short lists (reason
   ``fallback``). Users with fewer than ``content.fill_below`` items also get their
   items' content neighbours (reason ``content``), before or after the model's
   picks or not at all, as validation decides for such users
   (:func:`evaluate_content_fill`; at least ``fill_min_users`` of them).
   ALS's lists are exact: common.neighbours.top_unseen scores blocks of users
   against the broadcast item factors with a matrix product, masks each user's
   seen items and keeps ``top_n``; the popular fallback is the same routine over
   the ``top_n`` + largest-seen-count most popular items. No row joins a user with
   an item, and no seen-item margin is fetched and thrown away.
5. ``gold.similar_items``: each item's ``similar_items`` nearest neighbours by
   cosine of the ALS item factors with a positive similarity, exact, from
   common.neighbours (blocked matrix products on the executors: no pair table, no
   shuffle); ties go to the smaller item id, whichever candidate won (ALS is fitted
   for it when ``similar_items`` is set). Items ALS has not seen get their content
   neighbours (common.content: cosine of product-attribute vectors, reason
   ``content``) when ``recommend.content.enabled``, else (or without any) their
   category's most popular items (reason ``fallback``, similarity 0).
   ``similar_items: 0`` skips the table. Items x rank x 8 bytes of factors above
   ``similar_max_mb`` fail before anything is fitted, naming the counts.
6. Cold start (time split, ``recommend.content.enabled``): content picks against
   random picks from the user's categories for products nobody touched before the
   test period (protocol in :func:`evaluate_cold_start`), in metrics ``cold_start``
   and the report.
"""

from jobs.recommend.job import run

__all__ = ["run"]
