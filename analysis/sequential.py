# The declared design of the confirmation: the equivalence margin, the looks (numbers of paired seeds at
# which the verdict is computed) and the alpha-spending boundaries that keep the error rates at their
# level however many looks are taken.
#
# Group-sequential theory (Jennison & Turnbull 2000, ch. 7; Lan & DeMets 1983): the cumulative z statistics
# Z_1..Z_K of K looks at n_1 < ... < n_K paired seeds are jointly normal with corr(Z_i, Z_j) = sqrt(n_i / n_j).
# A spending function alpha(t) says how much of a one-sided level a has been used by information fraction
# t = n_k / n_K; the boundary c_k of look k is the value with
#     P(no crossing at looks 1..k-1, crossing at look k) = alpha(t_k) - alpha(t_(k-1)),
# computed here by numerical integration over the joint normal (the recursion of Armitage, McPherson & Rowe
# 1969). The verdict compares p-values with each look's nominal level (1 - Phi(c_k) per side): the
# "significance level approach" for t statistics (Jennison & Turnbull ch. 14). Its error rates with
# t-tests, Holm across the alpha family and bimodal seed outcomes are checked by simulation
# (analysis/simulation.py, tests/test_analysis_sequential.py, bench/sequential.py).
#
# Two boundaries, each computed as if the other never stopped the study (non-binding, so each error rate
# holds whichever way the study stops):
#   * "better"/"worse": two-sided, a = 0.025 per side (0.05 in all);
#   * "equivalent": each of the two one-sided tests of TOST at a = 0.05 (the TOST's level, Lakens 2017).
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# scipy is imported where boundaries are computed: study/plan.py reads this module's constants and
# margin rule, and the launcher answers --dry-run and bad input without loading scipy.stats (~1 s).

LEVEL = 0.05  # two-sided level of "better"/"worse"; each one-sided test of the equivalence (TOST) is at LEVEL too
FIRST_LOOK = 10  # --seeds auto starts with this many paired seeds
BLOCK = 5  # ... and adds this many per stage
DEFAULT_MARGIN_PP = 1.0
# Margins in percentage points of test accuracy. Below MIN_MARGIN_PP a value is taken for a fraction given by
# mistake (0.01 meaning 1 pp): 0.1 pp is less than one test image in most test sets (1/756 = 0.13 pp); above
# MAX_MARGIN_PP a difference of two accuracies would not be a "practically equivalent" one.
MIN_MARGIN_PP = 0.1
MAX_MARGIN_PP = 50.0
SPENDING = {
    "obf": "Lan-DeMets O'Brien-Fleming: alpha(t) = 2 - 2 Phi(z_(1-a/2) / sqrt(t))",
    "pocock": "Lan-DeMets Pocock: alpha(t) = a ln(1 + (e - 1) t)",
}
DEFAULT_SPENDING = "obf"


def margin_problem(pp: float) -> str | None:
    """Why `pp` is not a margin in percentage points of test accuracy, or None when it is one."""
    if not math.isfinite(pp) or pp <= 0:
        return (f"{pp:g} is not a margin: give a positive number of percentage points of test accuracy, "
                f"e.g. {DEFAULT_MARGIN_PP:g} for ±{DEFAULT_MARGIN_PP:g} pp")
    if pp < MIN_MARGIN_PP:
        return (f"{pp:g} looks like a fraction: the margin is in percentage points of test accuracy "
                f"({pp:g} as a fraction is {100 * pp:g} pp: pass {100 * pp:g}); margins below {MIN_MARGIN_PP:g} pp "
                "are refused")
    if pp > MAX_MARGIN_PP:
        return (f"{pp:g} pp is not a practical-equivalence margin: the margin is in percentage points of test "
                f"accuracy, at most {MAX_MARGIN_PP:g}; e.g. {DEFAULT_MARGIN_PP:g}")
    return None


def spend(kind: str, a: float, t: np.ndarray | float) -> np.ndarray:
    """Cumulative one-sided level spent by information fraction t (0 < t <= 1); alpha(1) = a."""
    from scipy.special import ndtr, ndtri

    t = np.clip(np.asarray(t, float), 0.0, 1.0)
    if kind == "obf":
        with np.errstate(divide="ignore"):
            return np.where(t > 0, 2.0 - 2.0 * ndtr(ndtri(1 - a / 2) / np.sqrt(np.where(t > 0, t, 1))), 0.0)
    if kind == "pocock":
        return a * np.log1p((math.e - 1.0) * t)
    raise ValueError(f"unknown spending function {kind!r}: use one of {', '.join(SPENDING)}")


def _crossing(info: np.ndarray, two_sided: bool, k: int, c: float, state: list[tuple[np.ndarray, np.ndarray]]) -> float:
    # P(continue at looks 1..k-1, cross at look k) for the boundary value c at look k, from the sub-density
    # of S_(k-1) = Z_(k-1) sqrt(I_(k-1)) on its continuation grid (state[k-1]). Upper crossing, plus the
    # lower one for a two-sided (symmetric) boundary.
    from scipy.special import ndtr

    hi = c * math.sqrt(info[k])
    lo = -hi if two_sided else -math.inf
    if k == 0:
        sd = math.sqrt(info[0])
        return float(ndtr(-hi / sd) + (ndtr(lo / sd) if two_sided else 0.0))
    grid, dens = state[k - 1]
    sd = math.sqrt(info[k] - info[k - 1])
    p = ndtr((grid - hi) / sd) + (ndtr((lo - grid) / sd) if two_sided else 0.0)
    return float(np.sum(_weights(grid) * dens * p))


def _weights(grid: np.ndarray) -> np.ndarray:
    # Simpson's rule on an odd number of equally spaced points.
    h = grid[1] - grid[0]
    w = np.ones(len(grid))
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return w * h / 3.0


_GRID = 401  # points per look (Simpson): boundaries within 1e-8 in z of those on a 2001-point grid


def _next_state(info: np.ndarray, k: int, c: float, two_sided: bool,
                state: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    # Sub-density of S_k on its continuation region (-c, c) sqrt(I_k), or (-12 sd, c sqrt(I_k)) one-sided.
    hi = c * math.sqrt(info[k])
    lo = -hi if two_sided else -12.0 * math.sqrt(info[k])
    grid = np.linspace(lo, hi, _GRID)
    if k == 0:
        return grid, _pdf(grid, math.sqrt(info[0]))
    prev, dens = state[k - 1]
    sd = math.sqrt(info[k] - info[k - 1])
    kernel = _pdf(grid[:, None] - prev[None, :], sd)  # (G new, G old)
    return grid, kernel @ (_weights(prev) * dens)


def _pdf(x: np.ndarray, sd: float) -> np.ndarray:
    return np.exp(-0.5 * (x / sd) ** 2) / (sd * math.sqrt(2 * math.pi))


@lru_cache(maxsize=64)
def boundaries(looks: tuple[int, ...], a: float, kind: str = DEFAULT_SPENDING, *, two_sided: bool) -> tuple[float, ...]:
    """z boundaries c_1..c_K of the looks (numbers of paired seeds) for one-sided level a per side,
    spent by `kind`; two_sided: a symmetric boundary +-c_k with a per side (2a in all)."""
    from scipy import optimize

    if not looks or any(b <= a_ for a_, b in zip(looks, looks[1:])) or looks[0] < 1:
        raise ValueError(f"looks {looks}: need increasing positive numbers of paired seeds")
    info = np.asarray(looks, float)
    t = info / info[-1]
    spent = spend(kind, a, t) * (2 if two_sided else 1)
    state: list[tuple[np.ndarray, np.ndarray]] = []
    out = []
    for k in range(len(looks)):
        target = spent[k] - (spent[k - 1] if k else 0.0)
        if target <= 1e-15:
            c = 40.0  # nothing to spend at this look: a boundary no statistic reaches
        else:
            def f(c: float, k: int = k) -> float:
                return _crossing(info, two_sided, k, c, state) - target
            c = float(optimize.brentq(f, 0.0, 40.0, xtol=1e-10)) if f(0.0) > 0 else 0.0
        out.append(c)
        state.append(_next_state(info, k, c, two_sided, state))
    return tuple(out)


def schedule(first: int, last: int, block: int = BLOCK) -> tuple[int, ...]:
    """Paired seeds at each look: first, first + block, ..., last (the last block may be smaller)."""
    if last < first:
        raise ValueError(f"the last look ({last} seeds) comes before the first ({first})")
    out = list(range(first, last, block)) + [last]
    return tuple(out)


@dataclass(frozen=True)
class Design:
    """What study.json declares before the first trial: the margin, the looks and the boundaries' nominal
    levels. A fixed-size study is a design with one look at the levels of a single test."""
    margin: float | None  # as a fraction of test accuracy (0.01 = 1 pp); None: none declared (no study.json)
    looks: tuple[int, ...]  # paired seeds at each look
    spending: str = DEFAULT_SPENDING
    level: float = LEVEL

    @property
    def sequential(self) -> bool:
        return len(self.looks) > 1

    @property
    def difference_levels(self) -> tuple[float, ...]:
        """Two-sided nominal level of the 'better'/'worse' test at each look."""
        if not self.sequential:
            return (self.level,)
        from scipy.special import ndtr

        c = boundaries(self.looks, self.level / 2, self.spending, two_sided=True)
        return tuple(float(2 * ndtr(-x)) for x in c)

    @property
    def equivalence_levels(self) -> tuple[float, ...]:
        """Nominal level of each one-sided test of the TOST at each look."""
        if not self.sequential:
            return (self.level,)
        from scipy.special import ndtr

        c = boundaries(self.looks, self.level, self.spending, two_sided=False)
        return tuple(float(ndtr(-x)) for x in c)

    def look_of(self, n_seeds: int) -> int:
        """Index of the last look whose seeds are all there (0 for fewer than the first look's)."""
        done = [k for k, n in enumerate(self.looks) if n <= n_seeds]
        return done[-1] if done else 0

    def describe(self) -> str:
        m = f"+-{100 * self.margin:g} pp" if self.margin is not None else "none declared"
        if not self.sequential:
            return (f"equivalence margin {m}; one look at {self.looks[0]} paired seeds: 'better'/'worse' at two-sided "
                    f"{self.level:g}, each one-sided test of the equivalence at {self.level:g}")
        d = ", ".join(f"{x:.3g}" for x in self.difference_levels)
        e = ", ".join(f"{x:.3g}" for x in self.equivalence_levels)
        return (f"equivalence margin {m}; looks at {', '.join(map(str, self.looks))} paired seeds; "
                f"{SPENDING[self.spending]} spending; nominal two-sided levels of 'better'/'worse' per look: {d}; "
                f"of each one-sided equivalence test: {e}")

    def to_json(self) -> dict:
        return {"margin_pp": None if self.margin is None else 100 * self.margin, "looks": list(self.looks),
                "spending": self.spending if self.sequential else None,
                "spending_function": SPENDING[self.spending] if self.sequential else None,
                "level": self.level, "difference_levels": list(self.difference_levels),
                "equivalence_levels": list(self.equivalence_levels)}


def design_from_config(config: dict) -> Design:
    """The design a study declared in study.json's config (margin_pp, seeds, max_seeds, spending);
    a config without margin_pp (no study.json) gets margin None (no equivalence test) and one look."""
    seeds = config.get("seeds")
    n_first = len(seeds) if isinstance(seeds, list) else int(seeds) if isinstance(seeds, (int, float)) else 0
    max_seeds = config.get("max_seeds")
    looks = schedule(n_first, int(max_seeds), int(config.get("block", BLOCK))) if max_seeds else (max(n_first, 1),)
    margin = config.get("margin_pp")
    return Design(None if margin is None else float(margin) / 100, looks,
                  str(config.get("spending") or DEFAULT_SPENDING))
