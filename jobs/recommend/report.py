"""The recommend job's Markdown and JSON report and its console summary."""

from __future__ import annotations

import json
from typing import Any

from common import artifacts, markdown
from common.config import ShopLakeConfig
from common.paths import is_local
from jobs.recommend.candidates import CONTENT, FILL_PLACEMENTS, METHODS
from jobs.recommend.evaluation import RANDOM_SAME_CATEGORY


def _test_cells(row: dict[str, Any] | None, names: list[str]) -> list[str]:
    """One method's test metrics as report cells (``n/a`` when it was not evaluated)."""
    if row is None:
        return ["n/a"] * len(names)
    return [str(row[n]) if n == "users" else f"{row[n]:.4f}" for n in names]


def write_report(cfg: ShopLakeConfig, run_id: str, metrics: dict[str, Any], k: int) -> str:
    """``<lake>/reports/recommend/<run_id>.json`` and ``.md``; returns the markdown path."""
    path = artifacts.report_path(cfg, "recommend", f"{run_id}.md")
    with open(path.removesuffix(".md") + ".json", "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=2, sort_keys=True, default=str)
    names = [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}", "map", f"hit_rate@{k}", f"coverage@{k}", "users"]
    lines = [
        f"# Recommendation report {run_id}",
        "",
        f"As of {metrics['as_of']}; split: `{json.dumps(metrics['split'], sort_keys=True)}`.",
        f"Chosen ALS parameters (validation NDCG@{k}): `{json.dumps(metrics['chosen_params'], sort_keys=True)}`.",
        f"Published model (best validation NDCG@{k}): **{metrics['chosen_model']}**.",
        "",
        "## Candidates",
        "",
        *markdown.table(
            [
                "candidate",
                f"validation ndcg@{k}",
                f"validation precision@{k}",
                f"test ndcg@{k}",
                f"test precision@{k}",
                "chosen",
            ],
            [
                [
                    method,
                    *_test_cells(metrics["validation_candidates"].get(method), [f"ndcg@{k}", f"precision@{k}"]),
                    *_test_cells(metrics["test"].get(method), [f"ndcg@{k}", f"precision@{k}"]),
                    "yes" if method == metrics["chosen_model"] else "",
                ]
                for method in dict.fromkeys([*metrics["validation_candidates"], metrics["chosen_model"]])
            ],
        ),
        "",
        "## Test metrics (relevant: purchases of items unseen in training)",
        "",
        *markdown.table(
            ["method", *names], [[method, *_test_cells(metrics["test"].get(method), names)] for method in METHODS]
        ),
    ]
    lines += _search_lines(metrics.get("search", {}), metrics["validation"], k)
    lines += _seconds_lines(metrics.get("seconds", {}))
    lines += _cold_start_lines(metrics.get("cold_start"), k)
    lines += _content_fill_lines(metrics.get("content_fill", {}), k)
    pub = metrics["published"]
    lines += [
        "",
        "## Published recommendations",
        "",
        f"- users: {pub['users']}",
        f"- coverage@{cfg.recommend.top_n}: {pub[f'coverage@{cfg.recommend.top_n}']:.4f}",
        "- reasons: " + ", ".join(f"{r} {n}" for r, n in pub["reasons"].items()),
        "",
    ]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return path if is_local(path) else ""


def _seconds_lines(seconds: dict[str, Any]) -> list[str]:
    """Wall seconds per candidate: fit, lists and metrics, on validation and on test."""
    methods = list(dict.fromkeys([*seconds.get("validation", {}), *seconds.get("test", {})]))
    if not methods:
        return []
    rows = [[m, *(str(seconds.get(side, {}).get(m, "n/a")) for side in ("validation", "test"))] for m in methods]
    search = seconds.get("search")
    return [
        "",
        "## Seconds per candidate (fit, lists, metrics)",
        "",
        *([f"ALS search on validation: {search} s."] if search is not None else []),
        *markdown.table(["candidate", "validation s", "test s"], rows),
    ]


SEARCH_COLUMNS = ("rung", "rank", "reg_param", "alpha", "confidence", "max_iter")


def _search_lines(search: dict[str, Any], tried: Any, k: int) -> list[str]:
    """The report's ALS search section: how it searched and every trial on validation."""
    lines = ["", f"## ALS search (validation NDCG@{k})", ""]
    if not isinstance(tried, list) or not tried:
        return [*lines, f"Not searched: {search.get('skipped', tried)}."]
    budget = search.get("budget_s")
    lines += [
        f"Strategy `{search['strategy']}`, seed {search['seed']}, {search['fits']} fits in {search['seconds']} s "
        f"(budget {'none' if budget is None else f'{budget:g} s'}"
        f"{', reached: best so far kept' if search['stopped_by_budget'] else ''}); "
        f"iterations per rung: {search['rung_iterations']}.",
        "",
    ]
    names = [f"ndcg@{k}", f"precision@{k}"]
    rows = [[str(t[c]) for c in SEARCH_COLUMNS] + [f"{t[n]:.4f}" for n in names] + [str(t["seconds"])] for t in tried]
    return [*lines, *markdown.table([*SEARCH_COLUMNS, *names, "seconds"], rows)]


def _cold_start_lines(cold: Any, k: int) -> list[str]:
    """The report's cold-start section (see :func:`evaluate_cold_start`)."""
    lines = ["", "## Cold start (products nobody touched before the test period)", ""]
    if not isinstance(cold, dict) or "skipped" in cold:
        reason = cold if not isinstance(cold, dict) else cold["skipped"]
        return [*lines, f"Not evaluated: {reason}."]
    names = [f"hit_rate@{k}", f"ndcg@{k}", f"recall@{k}", "users"]
    return [
        *lines,
        f"Pool: {cold['pool_items']} products untouched up to {cold['train_until']}, "
        f"{cold['bought_cold_items']} of them bought after it. Each test buyer's pool ranked by content "
        f"cosine to their training items, against {k} random pool products of their training categories.",
        "",
        *markdown.table(
            ["method", *names],
            [[m, *_test_cells(cold.get(m), names)] for m in (CONTENT, RANDOM_SAME_CATEGORY)],
        ),
    ]


def _content_fill_lines(fill: dict[str, Any], k: int) -> list[str]:
    """The report's section on content picks for users with few items (see :func:`evaluate_content_fill`)."""
    lines = ["", f"## Content picks for users with fewer than {fill.get('fill_below')} items", ""]
    if "skipped" in fill:
        return [*lines, f"Not evaluated: {fill['skipped']}."]
    names = [f"ndcg@{k}", f"precision@{k}", "users"]
    rows = []
    for placement in FILL_PLACEMENTS:
        cells = [placement]
        for side in ("validation", "test"):
            cells += _test_cells(fill.get(side, {}).get(placement), names)
        rows.append([*cells, "yes" if placement == fill["placement"] else ""])
    skipped = [f"{side}: {fill[side]['skipped']}" for side in ("validation", "test") if "skipped" in fill.get(side, {})]
    return [
        *lines,
        "The published model's lists for these users with their items' content neighbours placed before the "
        "model's picks, after them (ahead of the popular fallback) or not at all; the best validation "
        f"NDCG@{k} is published (a tie keeps the earlier row)."
        + (f" Not evaluated on {'; '.join(skipped)}." if skipped else ""),
        "",
        *markdown.table(
            ["content picks", *[f"{side} {n}" for side in ("validation", "test") for n in names], "chosen"], rows
        ),
    ]


def console_summary(metrics: dict[str, Any], k: int) -> str:
    lines = [
        f"recommend: as of {metrics['as_of']}, {metrics['published']['users']:,} users, "
        f"published model {metrics['chosen_model']} (best validation ndcg@{k})"
    ]
    for method, row in metrics["test"].items():
        lines.append(f"  {method:<17} ndcg@{k} {row[f'ndcg@{k}']:.4f}  precision@{k} {row[f'precision@{k}']:.4f}")
    cold = metrics.get("cold_start")
    if isinstance(cold, dict) and CONTENT in cold:
        lines.append(
            f"  cold start hit_rate@{k}: content {cold[CONTENT][f'hit_rate@{k}']:.4f}"
            f"  random same category {cold[RANDOM_SAME_CATEGORY][f'hit_rate@{k}']:.4f}"
        )
    fill = metrics.get("content_fill", {})
    lines.append(f"  content picks for users with fewer than {fill.get('fill_below')} items: {fill.get('placement')}")
    lines.append(f"  reasons: {metrics['published']['reasons']}  report: {metrics['report']}")
    return "\n".join(lines)
