"""common.search schedules with fake scores and a fake clock (no Spark): which points
each rung fits, which survive, the iterations per rung, and where the budget stops."""

from __future__ import annotations

import pytest

from common.search import grid_search, rung_iterations, rung_sizes, sample_points, successive_halving

POINTS = list("abcdefghi")
# Rung-0 (3 iterations) scores: h, c, f lead. With 10 iterations f overtakes h and c.
FEW = {"a": 0.10, "b": 0.20, "c": 0.50, "d": 0.05, "e": 0.30, "f": 0.40, "g": 0.15, "h": 0.60, "i": 0.35}
MANY = {"c": 0.55, "f": 0.70, "h": 0.65}


class FakeFit:
    """``evaluate``: each fit takes ``seconds`` on the fake clock and logs its call."""

    def __init__(self, scores: dict[str, float] | None = None, seconds: float = 10.0):
        self.scores, self.now, self.seconds, self.calls = scores, 0.0, seconds, []

    def clock(self) -> float:
        return self.now

    def __call__(self, point, iterations):
        self.calls.append((point, iterations))
        self.now += self.seconds
        if self.scores is not None:
            score = self.scores[point]
        else:
            score = FEW[point] if iterations == 3 else MANY.get(point, 0.0)
        return score, {"p@k": score / 2}


def test_rung_sizes_keep_a_third_until_one_is_left():
    assert rung_sizes(9, 3) == [9, 3]
    assert rung_sizes(12, 3) == [12, 4, 2]
    assert rung_sizes(4, 2) == [4, 2]
    assert rung_sizes(2, 3) == [2]  # one rung: both fitted fully, the better kept
    assert rung_sizes(1, 3) == [1]


def test_rung_iterations_grow_geometrically_to_the_full_count():
    assert rung_iterations(2, 3, 10) == [3, 10]
    assert rung_iterations(3, 3, 10) == [3, 5, 10]  # 3 * sqrt(10/3) = 5.48
    assert rung_iterations(1, 3, 10) == [10]
    assert rung_iterations(2, 10, 10) == [10, 10]


def test_halving_refits_the_best_third_with_more_iterations():
    fit = FakeFit()
    result = successive_halving(POINTS, fit, min_iter=3, max_iter=10, keep=3, clock=fit.clock)
    # Rung 0: every point at 3 iterations, in sample order; rung 1: h, c, f best-first at 10.
    assert fit.calls == [(p, 3) for p in POINTS] + [("h", 10), ("c", 10), ("f", 10)]
    assert [(t.point, t.rung, t.iterations) for t in result.trials[9:]] == [("h", 1, 10), ("c", 1, 10), ("f", 1, 10)]
    assert result.best == "f" and result.best_trial.score == 0.70 and result.best_trial.extras == {"p@k": 0.35}
    assert result.rung_iterations == [3, 10] and not result.stopped_by_budget
    assert [t.seconds for t in result.trials] == [10.0] * 12


def test_budget_stop_in_the_first_rung_keeps_the_best_fitted_so_far():
    fit = FakeFit()
    result = successive_halving(POINTS, fit, min_iter=3, max_iter=10, keep=3, budget_s=45, clock=fit.clock)
    # Checked before each fit: after five fits (50 s) the sixth is not started.
    assert [p for p, _ in fit.calls] == list("abcde")
    assert result.stopped_by_budget and result.best == "c"


def test_budget_stop_in_a_later_rung_prefers_the_higher_rung():
    fit = FakeFit()
    result = successive_halving(POINTS, fit, min_iter=3, max_iter=10, keep=3, budget_s=95, clock=fit.clock)
    assert fit.calls[-1] == ("h", 10) and len(fit.calls) == 10
    # h scored 0.60 at 3 iterations and 0.65 at 10; the rung-1 trial is what counts.
    assert result.stopped_by_budget and result.best == "h" and result.best_trial.iterations == 10


def test_halving_ties_go_to_the_earlier_point():
    fit = lambda point, iterations: (1.0, {})  # noqa: E731
    result = successive_halving(["x", "y", "z", "w"], fit, min_iter=1, max_iter=4, keep=2)
    assert [(t.point, t.rung) for t in result.trials] == [("x", 0), ("y", 0), ("z", 0), ("w", 0), ("x", 1), ("y", 1)]
    assert result.best == "x"


def test_grid_search_fits_every_point_with_its_own_iterations_until_the_budget():
    fit = FakeFit({"a": 0.2, "b": 0.9, "c": 0.9, "d": 0.1})
    full = grid_search(list("abcd"), fit, clock=fit.clock)
    assert [t.point for t in full.trials] == list("abcd") and full.best == "b"  # tie: the first
    assert {it for _, it in fit.calls} == {None} and all(t.iterations is None for t in full.trials)
    cut = grid_search(list("abcd"), fit, budget_s=10, clock=fit.clock)
    assert [t.point for t in cut.trials] == ["a"] and cut.stopped_by_budget and cut.best == "a"


def test_sample_points_is_seeded_distinct_and_whole_when_small():
    grid = [(r, a) for r in (8, 16, 32, 64) for a in (1, 5, 20, 80)]
    first = sample_points(grid, 9, seed=42)
    assert first == sample_points(grid, 9, seed=42) and len(set(first)) == 9 and set(first) <= set(grid)
    assert first != sample_points(grid, 9, seed=43)
    assert sample_points(grid, 16, seed=1) == grid and sample_points(grid, 99, seed=1) == grid


@pytest.mark.parametrize("budget", [0.0, 1e-9])
def test_a_spent_budget_still_fits_one_point(budget):
    fit = FakeFit()
    result = successive_halving(POINTS, fit, min_iter=3, max_iter=10, budget_s=budget, clock=fit.clock)
    assert len(result.trials) == 1 and result.best == "a" and result.stopped_by_budget
