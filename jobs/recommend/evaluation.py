"""Splits, metrics and the choices made on validation: ALS hyperparameters, the candidate,
where sparse users' content picks go; and the cold-start evaluation."""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from common import ranking
from common.config import RecommendConfig
from common.content import content_scores
from common.interactions import IdMap, aggregate, purchases_between
from common.search import Trial, grid_search, sample_points, successive_halving
from jobs.recommend.candidates import (
    ALS_METHOD,
    CONTENT,
    FILL_NONE,
    FILL_PLACEMENTS,
    NO_CATEGORY,
    AlsParams,
    Fitted,
    content_fill_candidates,
    fit_candidate,
    grid,
    model_candidates,
    popular_candidates,
    release,
    sparse_users,
    top_n_with_fallback,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- splitting
@dataclass
class Split:
    train: DataFrame  # aggregated interactions: user_key, item_id, strength, purchases, last_ts
    relevant: DataFrame  # user_key, item_id bought in the held-out part, unseen in train
    description: dict[str, Any]
    until: date  # the training side's last day (SAR's affinity decays towards its end)
    # The popular lists of the users with relevant items: every candidate's fallback, so
    # computed once per split (see with_fallback) rather than once per fit.
    fallback: DataFrame | None = None


def time_split(raw: DataFrame, cutoff: date, end: date, half_life: float | None) -> Split:
    train = aggregate(raw, cutoff, half_life)
    relevant = purchases_between(raw, cutoff, end).join(
        train.select("user_key", "item_id"), ["user_key", "item_id"], "left_anti"
    )
    description = {"kind": "time", "train_until": cutoff.isoformat(), "test_until": end.isoformat()}
    return Split(train, relevant, description, cutoff)


def random_split(interactions: DataFrame, fraction: float, seed: int, until: date) -> Split:
    """Per user, a seeded ``fraction`` of the bought items is held out (at least one item
    stays in training, so every evaluated user is known to the model)."""
    bought = interactions.where(F.col("purchases") > 0)
    draw = Window.partitionBy("user_key").orderBy(F.rand(seed), "item_id")
    sized = bought.withColumn("_i", F.row_number().over(draw)).withColumn(
        "_n", F.count("*").over(Window.partitionBy("user_key"))
    )
    held = sized.where((F.col("_n") >= 2) & (F.col("_i") <= F.floor(F.col("_n") * fraction))).select(
        "user_key", "item_id"
    )
    train = interactions.join(held, ["user_key", "item_id"], "left_anti")
    return Split(train, held, {"kind": "random", "test_fraction": fraction, "seed": seed}, until)


def sample_users(raw: DataFrame, max_users: int | None, seed: int) -> tuple[DataFrame, dict[str, Any]]:
    """The interactions of at most ``max_users`` users, every interaction of each (the
    first ``max_users`` by a seeded hash of ``user_key``, so the same seed draws the same
    users), and a description; ``raw`` itself when it has no more users than that.

    Fits scale with the users evaluated, so a large shop's search and candidate choice
    run on a sample while publishing uses everyone."""
    users = raw.select("user_key").distinct()
    total = users.count()
    if max_users is None or total <= max_users:
        return raw, {"users": total, "of": total}
    kept = users.orderBy(F.xxhash64("user_key", F.lit(seed)), "user_key").limit(max_users)
    return raw.join(F.broadcast(kept), "user_key", "left_semi"), {"users": max_users, "of": total, "seed": seed}


# ---------------------------------------------------------------------------- evaluation
def rank_lists(
    fitted: Fitted, split: Split, raw: DataFrame, products: DataFrame, cfg: RecommendConfig, k: int
) -> DataFrame:
    """Top-k lists of the fitted candidate for the users with relevant items (popular fallback for all)."""
    users = split.relevant.select("user_key").distinct()
    fallback = split.fallback if split.fallback is not None else popular_candidates(split.train, users, k)
    primary = model_candidates(fitted, split.train, raw, split.until, cfg, users, k, products)
    return top_n_with_fallback(primary, fallback, k)


def with_fallback(split: Split, k: int) -> DataFrame:
    """Persist the split's popular fallback lists (``k`` per user with relevant items) and
    return them, for the caller to unpersist."""
    users = split.relevant.select("user_key").distinct()
    split.fallback = popular_candidates(split.train, users, k).persist()
    return split.fallback


def evaluate_method(lists: DataFrame, split: Split, k: int, catalogue_size: int) -> dict[str, Any]:
    cols = ranking.Columns(user="user_key", item="item_id", rank="rank")
    return ranking.evaluate(lists, split.relevant, k, catalogue_size, cols)


def evaluate_methods(
    split: Split,
    raw: DataFrame,
    products: DataFrame,
    cfg: RecommendConfig,
    params: AlsParams,
    catalogue_size: int,
    methods: tuple[str, ...] | list[str],
    seconds: dict[str, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics of each of ``methods`` fitted on the split's training side, in that order;
    each method's wall time (fit, lists and metrics) goes into ``seconds`` when given."""
    k = cfg.k
    out = {}
    for method in methods:
        started = time.monotonic()
        fitted = fit_candidate(method, split.train, cfg, params)
        lists = rank_lists(fitted, split, raw, products, cfg, k).persist()
        try:
            out[method] = evaluate_method(lists, split, k, catalogue_size)
        finally:
            lists.unpersist()
            release(fitted)
        if seconds is not None:
            seconds[method] = round(time.monotonic() - started, 1)
    return out


def evaluate_content_fill(
    split: Split,
    raw: DataFrame,
    products: DataFrame,
    rc: RecommendConfig,
    params: AlsParams,
    method: str,
    neighbours: DataFrame,
    catalogue_size: int,
    min_users: int = 1,
) -> dict[str, Any]:
    """``{placement: metrics}`` of ``method``'s lists with the content picks placed each
    way (:data:`FILL_PLACEMENTS`), for the split's sparse users: fewer than
    ``content.fill_below`` training items and a relevant item; skipped (nothing fitted)
    on fewer than ``min_users`` of them."""
    k = rc.k
    sparse = (
        sparse_users(split.train, rc.content.fill_below)
        .join(split.relevant.select("user_key").distinct(), "user_key")
        .persist()
    )
    cached = [sparse]
    try:
        users = sparse.count()
        if users < max(min_users, 1):
            who = f"users with fewer than {rc.content.fill_below} training items bought a new item"
            return {"skipped": f"no {who}" if not users else f"{users} {who}, fewer than fill_min_users {min_users}"}
        fitted = fit_candidate(method, split.train, rc, params)
        try:
            primary = model_candidates(fitted, split.train, raw, split.until, rc, sparse, k, products).persist()
            content = content_fill_candidates(split.train, neighbours, sparse, k).persist()
            cached += [primary, content]
            fallback = (
                popular_candidates(split.train, sparse, k)
                if split.fallback is None
                else split.fallback.join(sparse, "user_key", "left_semi")
            )
            relevant = split.relevant.join(sparse, "user_key", "left_semi")
            cols = ranking.Columns(user="user_key", item="item_id", rank="rank")
            return {
                placement: ranking.evaluate(
                    top_n_with_fallback(primary, fallback, k, content, placement), relevant, k, catalogue_size, cols
                )
                for placement in FILL_PLACEMENTS
            }
        finally:
            release(fitted)
    finally:
        for df in cached:
            df.unpersist()


def choose_placement(validation: dict[str, Any], k: int, min_users: int = 1) -> str:
    """The placement with the best validation NDCG@k (ties: the earlier); none when not
    evaluated or on fewer than ``min_users`` users."""
    scored = [p for p in FILL_PLACEMENTS if isinstance(validation.get(p), dict)]
    if not scored or validation[scored[0]]["users"] < min_users:
        return FILL_NONE
    return max(scored, key=lambda p: (validation[p][f"ndcg@{k}"], -FILL_PLACEMENTS.index(p)))


def choose_params(
    split: Split, raw: DataFrame, products: DataFrame, cfg: RecommendConfig, catalogue_size: int
) -> tuple[AlsParams, list[dict[str, Any]], dict[str, Any]]:
    """The ALS point with the best validation NDCG@k, by ``recommend.search``: every grid
    point (``grid``, ties: first in grid order) or successive halving over a seeded sample
    (``halving``), within ``search_budget_s``. Returns the point, every trial as a
    ``validation`` row and the search's description (strategy, seed, chosen row)."""
    s, k = cfg.search, cfg.k
    described: dict[str, Any] = {"strategy": s.strategy, "seed": cfg.seed, "budget_s": s.search_budget_s}
    if split.train.limit(1).count() == 0 or split.relevant.limit(1).count() == 0:
        return grid(cfg)[0], [], {**described, "skipped": "no training or validation purchases"}

    started = time.monotonic()
    ids = IdMap.fit(split.train)  # every fit of the search indexes the same training side

    def evaluate(params: AlsParams, iterations: int | None) -> tuple[float, dict[str, Any]]:
        if iterations is not None:
            params = replace(params, max_iter=iterations)
        fitted = fit_candidate(ALS_METHOD, split.train, cfg, params, ids)
        metrics = evaluate_method(rank_lists(fitted, split, raw, products, cfg, k), split, k, catalogue_size)
        return metrics[f"ndcg@{k}"], {n: metrics[n] for n in (f"precision@{k}", "users")}

    if s.strategy == "grid":
        result = grid_search(grid(cfg), evaluate, s.search_budget_s)
    else:
        sampled = sample_points(halving_points(cfg), s.points, cfg.seed)
        described["points"] = len(sampled)
        result = successive_halving(sampled, evaluate, s.min_iter, max(cfg.grid.max_iter), s.keep, s.search_budget_s)
    tried = [_tried_row(t, k) for t in result.trials]
    chosen = replace(result.best, max_iter=result.best_trial.iterations or result.best.max_iter)
    described |= {
        "rung_iterations": result.rung_iterations,
        "fits": len(tried),
        "stopped_by_budget": result.stopped_by_budget,
        "seconds": round(time.monotonic() - started, 1),
        "chosen": _tried_row(result.best_trial, k),
    }
    if result.stopped_by_budget:
        log.warning(
            "recommend: ALS search stopped by recommend.search.search_budget_s (%s s) after %d fits; "
            "keeping the best so far: %s",
            s.search_budget_s,
            len(tried),
            chosen.as_dict(),
        )
    log.info(
        "recommend: ALS %s search, %d fits in %.0f s, chosen %s", s.strategy, len(tried), described["seconds"], chosen
    )
    return chosen, tried, described


def halving_points(cfg: RecommendConfig) -> list[AlsParams]:
    """One point per (rank, reg_param, alpha, confidence), at the largest ``max_iter``
    (halving sets each rung's iterations itself)."""
    g = cfg.grid
    combos = itertools.product(g.rank, g.reg_param, g.alpha, g.confidence)
    return [AlsParams(rank, reg, alpha, max(g.max_iter), conf) for rank, reg, alpha, conf in combos]


def _tried_row(trial: Trial[AlsParams], k: int) -> dict[str, Any]:
    """A ``validation`` row: the point as fitted, its rung, validation metrics and seconds."""
    point = trial.point if trial.iterations is None else replace(trial.point, max_iter=trial.iterations)
    return {
        **point.as_dict(),
        "rung": trial.rung,
        f"ndcg@{k}": trial.score,
        **trial.extras,
        "seconds": round(trial.seconds, 1),
    }


def choose_candidate(validation: dict[str, dict[str, Any]], order: list[str], k: int) -> str:
    """The candidate with the best validation NDCG@k (ties: earlier in ``order``); the first
    candidate when nothing could be validated."""
    scored = [m for m in order if m in validation]
    if not scored:
        return order[0]
    return max(scored, key=lambda m: (validation[m][f"ndcg@{k}"], -order.index(m)))


# ---------------------------------------------------------------------------- cold start
RANDOM_SAME_CATEGORY = "random_same_category"


def cold_start_split(raw: DataFrame, products: DataFrame, cutoff: date, end: date) -> tuple[Split, DataFrame]:
    """The cold-start split: ``train`` is everything touched up to ``cutoff``; the pool of
    cold items (returned with the split) is every product nobody touched up to ``cutoff``;
    ``relevant`` holds the purchases after ``cutoff`` up to ``end`` of cold items by users
    with a training history."""
    train = aggregate(raw, cutoff)
    cold = products.select("item_id").distinct().join(train.select("item_id"), "item_id", "left_anti")
    relevant = (
        purchases_between(raw, cutoff, end)
        .join(cold, "item_id", "left_semi")
        .join(train.select("user_key"), "user_key", "left_semi")
    )
    return Split(train, relevant, {"kind": "cold_start", "train_until": cutoff.isoformat()}, cutoff), cold


def _top(scored: DataFrame, k: int) -> DataFrame:
    order = Window.partitionBy("user_key").orderBy(F.col("score").desc(), "item_id")
    return scored.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= k)


def cold_start_lists(
    vectors: DataFrame, products: DataFrame, split: Split, cold: DataFrame, k: int, seed: int
) -> dict[str, DataFrame]:
    """``user_key, rank, item_id`` lists of cold items for the users with relevant cold purchases.

    - ``content``: cold items ranked by the sum of their content cosines to the user's
      training items (common.content.content_scores);
    - ``random_same_category``: ``k`` cold items drawn at random (seeded hash of user and
      item) from the top-level categories of the user's training items."""
    users = split.relevant.select("user_key").distinct()
    history = split.train.join(users, "user_key", "left_semi").select("user_key", "item_id")
    content = _top(content_scores(vectors, history, cold), k)
    cats = products.select("item_id", F.coalesce("category_l1", F.lit(NO_CATEGORY)).alias("category")).dropDuplicates(
        ["item_id"]
    )
    user_cats = history.join(cats, "item_id").select("user_key", "category").distinct()
    draw = F.xxhash64(F.lit(seed), "user_key", "item_id").cast("double")
    random = _top(user_cats.join(cats.join(cold, "item_id", "left_semi"), "category").withColumn("score", draw), k)
    return {CONTENT: content, RANDOM_SAME_CATEGORY: random}


def evaluate_cold_start(
    raw: DataFrame, products: DataFrame, vectors: DataFrame, cutoff: date, end: date, k: int, seed: int
) -> dict[str, Any]:
    """Hit rate@k (and NDCG@k) of content picks against random same-category picks for
    products first bought after ``cutoff``.

    Protocol: the pool is every product nobody touched up to ``cutoff``; a test case is a
    user with training history who bought pool products between ``cutoff`` and ``end``;
    each method ranks the pool for that user (content: by summed content cosine to the
    user's training items; baseline: ``k`` random pool products of the user's training
    categories, seeded); a hit is a bought pool product in the top ``k``."""
    split, cold = cold_start_split(raw, products, cutoff, end)
    split.train, split.relevant = split.train.persist(), split.relevant.persist()
    try:
        cold_items = cold.count()
        bought = split.relevant.select("item_id").distinct().count()
        out: dict[str, Any] = {"train_until": cutoff.isoformat(), "pool_items": cold_items, "bought_cold_items": bought}
        if not bought:
            return {**out, "skipped": "no cold item bought after the cutoff"}
        cols = ranking.Columns(user="user_key", item="item_id", rank="rank")
        for method, lists in cold_start_lists(vectors, products, split, cold, k, seed).items():
            metrics = ranking.evaluate(lists, split.relevant, k, max(cold_items, 1), cols)
            out[method] = {n: metrics[n] for n in (f"hit_rate@{k}", f"ndcg@{k}", f"recall@{k}", "users")}
        log.info(
            "recommend: cold start on %d buyers of %d cold items (pool %d): hit_rate@%d content %.4f, random %.4f",
            out[CONTENT]["users"],
            bought,
            cold_items,
            k,
            out[CONTENT][f"hit_rate@{k}"],
            out[RANDOM_SAME_CATEGORY][f"hit_rate@{k}"],
        )
        return out
    finally:
        split.train.unpersist()
        split.relevant.unpersist()
