"""Hyperparameter search schedules, independent of what is fitted: every point of a
grid, or successive halving over a seeded sample of it, both under a time budget.

``evaluate(point, iterations)`` fits and scores one point (higher is better) and
returns ``(score, extras)``; ``iterations`` is the rung's iteration count, or None
in a grid search (the point carries its own). The schedule only orders the calls,
keeps the survivors and records every trial, so it is tested with fake scores.

Successive halving (Jamieson & Talwalkar 2016; Li et al.'s Hyperband bracket): every
sampled point is fitted cheaply (few iterations), the best ``1/keep`` of them (at least
one) go on to the next rung with more iterations, until one is left. The rungs'
iterations grow geometrically from ``min_iter`` to ``max_iter``, so the survivor's
last score is at the full iteration count.

Budget: before each fit the elapsed time is checked; once ``budget_s`` is reached the
search stops (after at least one trial) and keeps the best point of the highest rung
reached, since scores at fewer iterations are not comparable with later rungs'.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

P = TypeVar("P")
Evaluate = Callable[[P, "int | None"], tuple[float, dict[str, Any]]]


@dataclass(frozen=True)
class Trial(Generic[P]):
    point: P
    rung: int
    iterations: int | None
    score: float
    seconds: float
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchResult(Generic[P]):
    best: P
    best_trial: Trial[P]
    trials: list[Trial[P]]
    stopped_by_budget: bool
    rung_iterations: list[int | None]


def sample_points(points: Sequence[P], n: int, seed: int) -> list[P]:
    """``n`` distinct points drawn with ``seed`` (all of them, in order, when ``n`` covers the grid)."""
    if n >= len(points):
        return list(points)
    return random.Random(seed).sample(list(points), n)


def rung_sizes(n: int, keep: int) -> list[int]:
    """Points fitted at each rung: ``n``, then ``ceil(previous / keep)`` while more than one is left."""
    sizes = [n]
    while sizes[-1] > 1:
        sizes.append(math.ceil(sizes[-1] / keep))
    return sizes[:-1] or [1]


def rung_iterations(rungs: int, min_iter: int, max_iter: int) -> list[int]:
    """Iterations per rung, geometric from ``min_iter`` to ``max_iter`` (the last rung's)."""
    if rungs == 1 or min_iter >= max_iter:
        return [max_iter] * rungs
    ratio = (max_iter / min_iter) ** (1 / (rungs - 1))
    return [max_iter if r == rungs - 1 else round(min_iter * ratio**r) for r in range(rungs)]


class _Clock:
    """Elapsed time against the budget."""

    def __init__(self, budget_s: float | None, clock: Callable[[], float]):
        self.budget_s, self.clock, self.start = budget_s, clock, clock()

    def exhausted(self) -> bool:
        return self.budget_s is not None and self.clock() - self.start >= self.budget_s


def _trial(evaluate: Evaluate, point: P, rung: int, iterations: int | None, clock: Callable[[], float]) -> Trial[P]:
    started = clock()
    score, extras = evaluate(point, iterations)
    return Trial(point, rung, iterations, score, clock() - started, extras)


def _best(trials: list[Trial[P]]) -> Trial[P]:
    """The best trial of the highest rung reached (ties: the earlier trial)."""
    top = max(t.rung for t in trials)
    rung = [t for t in trials if t.rung == top]
    return max(rung, key=lambda t: t.score)  # max keeps the first of equal scores


def grid_search(
    points: Sequence[P], evaluate: Evaluate, budget_s: float | None = None, clock: Callable[[], float] = time.monotonic
) -> SearchResult[P]:
    """Every point in order (one rung, the points' own iterations) until the budget runs out."""
    timer, trials, stopped = _Clock(budget_s, clock), [], False
    for point in points:
        if trials and timer.exhausted():
            stopped = True
            break
        trials.append(_trial(evaluate, point, 0, None, clock))
    best = _best(trials)
    return SearchResult(best.point, best, trials, stopped, [None])


def successive_halving(
    points: Sequence[P],
    evaluate: Evaluate,
    min_iter: int,
    max_iter: int,
    keep: int = 3,
    budget_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SearchResult[P]:
    """Successive halving over ``points`` (already sampled), see the module docstring.

    Each rung fits its points best-first by the previous rung's score, so a budget stop
    mid-rung has fitted the most promising ones."""
    sizes = rung_sizes(len(points), keep)
    iterations = rung_iterations(len(sizes), min_iter, max_iter)
    timer, trials, alive = _Clock(budget_s, clock), [], list(points)
    for rung, (size, iters) in enumerate(zip(sizes, iterations, strict=True)):
        scored = []
        for point in alive[:size]:
            if trials and timer.exhausted():
                best = _best(trials)
                return SearchResult(best.point, best, trials, True, list(iterations))
            trial = _trial(evaluate, point, rung, iters, clock)
            trials.append(trial)
            scored.append(trial)
        # Stable: equal scores keep their order, so ties go to the earlier point.
        ranked = sorted(scored, key=lambda t: -t.score)
        alive = [t.point for t in ranked[: max(1, math.ceil(size / keep))]]
    best = _best(trials)
    return SearchResult(best.point, best, trials, False, list(iterations))
