# The four-way verdict's error rates and power, by simulating whole studies from a seed-level model of
# test accuracy that has what the real outcome has: a normal body of runs that learnt the task, and runs
# that collapse to chance (the outcome is bimodal). The decision rule is the verdict's own
# (analysis/verdict.py: paired t, TOST, Holm across the alpha family, the primary alpha picked on
# validation accuracy, the nominal level of each look), written here with array operations so that
# thousands of studies take a second; tests/test_analysis_sequential.py checks that it gives the same
# label as analysis.verdict.stage_verdict on the same tables.
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from analysis.sequential import Design, schedule

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = 1, 2, 3, 0
ZERO_SPREAD = 1e-12  # as analysis.stats.ZERO_SPREAD


@dataclass(frozen=True)
class SeedModel:
    """Test accuracy of one confirmation run. A run collapses (predicts one class: accuracy = chance) with
    probability `collapse`, in every arm alike and independently; otherwise the baseline's accuracy is
    base_acc + N(0, base_sd) and GAIN's at an alpha the baseline's of the same seed + shift + N(0, sd), so
    `sd` is the sd of the paired differences of runs that learnt. The shift is difference / (1 - collapse),
    which makes `difference` the true MEAN paired difference over all runs, collapsed ones included (the
    quantity the verdict tests): with collapse rate c the mean is (1 - c) shift. Accuracies are whole
    numbers of the n_test test images; validation accuracy = test accuracy + N(0, val_noise), so the primary
    alpha is picked on a score that follows the test score, as in a real study."""
    difference: float = 0.0
    sd: float = 0.01
    collapse: float = 0.0
    base_acc: float = 0.95  # 5 sd below 1: clipping at 1 does not move the mean
    base_sd: float = 0.01
    chance: float = 0.5
    n_test: int = 378  # the cpu and paper presets' test split
    val_noise: float = 0.01

    def describe(self) -> str:
        return (f"true mean difference {100 * self.difference:+g} pp, paired sd {100 * self.sd:g} pp among runs that "
                f"learnt, collapse rate {self.collapse:.0%} per run in every arm (a collapsed run scores "
                f"{self.chance:g}), baseline {self.base_acc:g} +- {self.base_sd:g}, {self.n_test} test images")


def draw(model: SeedModel, n_seeds: int, n_alphas: int, reps: int, rng: np.random.Generator,
         differences: tuple[float, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Simulated test and validation accuracies, (reps, n_seeds, 1 + n_alphas): column 0 the baseline, then
    GAIN at each alpha (its true mean difference from `differences`, default model.difference at every alpha)."""
    diffs = np.asarray(differences if differences is not None else (model.difference,) * n_alphas, float)
    shift = diffs / (1.0 - model.collapse)
    base = model.base_acc + model.base_sd * rng.standard_normal((reps, n_seeds, 1))
    gain = base + shift + model.sd * rng.standard_normal((reps, n_seeds, n_alphas))
    acc = np.concatenate([base, gain], axis=2)
    collapsed = rng.random(acc.shape) < model.collapse
    acc = np.where(collapsed, model.chance, np.clip(acc, 0.0, 1.0))
    acc = np.round(acc * model.n_test) / model.n_test
    val = acc + model.val_noise * rng.standard_normal(acc.shape)
    return acc, val


def _holm_column(p: np.ndarray, col: np.ndarray) -> np.ndarray:
    # Holm-adjusted p-value of column col[r] of each row r of p (reps, k): sort, p_(i) (k - i), running max, cap 1.
    reps, k = p.shape
    order = np.argsort(p, axis=1, kind="stable")
    ps = np.take_along_axis(p, order, axis=1)
    adj = np.minimum(1.0, np.maximum.accumulate(ps * (k - np.arange(k)), axis=1))
    rank = np.argmax(order == col[:, None], axis=1)
    return adj[np.arange(reps), rank]


def look_labels(test: np.ndarray, val: np.ndarray, n: int, margin: float | None, difference_level: float,
                equivalence_level: float) -> tuple[np.ndarray, np.ndarray]:
    """The verdict on the first n seeds of each simulated study: (label, within) with label BETTER, WORSE,
    EQUIVALENT or INCONCLUSIVE and within True where the equivalence test rejects (the label is then
    EQUIVALENT, or BETTER / WORSE for a difference shown to be smaller than the margin)."""
    d = test[:, :n, 1:] - test[:, :n, :1]  # (reps, n, k) GAIN - baseline per alpha
    primary = np.argmax(val[:, :n, 1:].mean(axis=1), axis=1)  # (reps,) best mean validation accuracy, first on ties
    mean = d.mean(axis=1)  # (reps, k)
    zero = np.ptp(d, axis=1) <= ZERO_SPREAD
    with np.errstate(divide="ignore", invalid="ignore"):
        se = d.std(axis=1, ddof=1) / math.sqrt(n)
        t = mean / se
        p = np.where(zero, np.where(np.abs(mean) <= ZERO_SPREAD, 1.0, min(1.0, 2 * 0.5 ** n)),
                     2 * sps.t.sf(np.abs(t), n - 1))
        p_holm = _holm_column(p, primary)
        rows = np.arange(len(primary))
        m = mean[rows, primary]
        out = np.full(len(primary), INCONCLUSIVE)
        within = np.zeros(len(primary), bool)
        if margin is not None:
            p_low = np.where(zero, np.where(mean > -margin, 0.5 ** n, 1.0), sps.t.sf((mean + margin) / se, n - 1))
            p_up = np.where(zero, np.where(mean < margin, 0.5 ** n, 1.0), sps.t.sf((margin - mean) / se, n - 1))
            within = _holm_column(np.maximum(p_low, p_up), primary) < equivalence_level
            out[within] = EQUIVALENT
    out[(p_holm < difference_level) & (m > 0)] = BETTER  # a difference takes precedence over equivalence
    out[(p_holm < difference_level) & (m < 0)] = WORSE
    return out, within


@dataclass(frozen=True)
class Operating:
    """Shares of simulated studies ending with each label, and the seeds they used."""
    model: SeedModel
    looks: tuple[int, ...]
    n_alphas: int
    margin: float | None
    reps: int
    seed: int
    better: float
    worse: float
    equivalent: float
    inconclusive: float
    claimed_equivalent: float  # label "equivalent", or a difference shown to be smaller than the margin
    mean_seeds: float  # paired seeds at the look where the study stopped, averaged
    stopped_at: tuple[float, ...] = field(default=())  # share of studies stopping at each look

    @property
    def different(self) -> float:
        return self.better + self.worse

    @property
    def standard_error(self) -> float:
        # Monte-Carlo error of a rate near 5 %
        return math.sqrt(0.05 * 0.95 / self.reps)


def operating(model: SeedModel, design: Design, n_alphas: int = 1, reps: int = 4000, seed: int = 0,
              differences: tuple[float, ...] | None = None) -> Operating:
    """Run `reps` studies of `design` (its looks, margin and nominal levels) on data from `model`; a study
    stops at the first look with a decision, or at the last look inconclusive."""
    rng = np.random.default_rng([seed, int(1e6 * model.difference) % 2**31, len(design.looks), n_alphas])
    test, val = draw(model, design.looks[-1], n_alphas, reps, rng, differences)
    label = np.full(reps, INCONCLUSIVE)
    within = np.zeros(reps, bool)
    stop = np.full(reps, len(design.looks) - 1)
    open_ = np.ones(reps, bool)
    for k, (n, dl, el) in enumerate(zip(design.looks, design.difference_levels, design.equivalence_levels)):
        lab, win = look_labels(test[open_], val[open_], n, design.margin, dl, el)
        idx = np.flatnonzero(open_)
        decided = lab != INCONCLUSIVE
        label[idx[decided]] = lab[decided]
        within[idx[decided]] = win[decided]
        stop[idx[decided]] = k
        open_[idx[decided]] = False
        if not open_.any():
            break
    looks = np.asarray(design.looks)
    shares = [float(np.mean(label == c)) for c in (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE)]
    return Operating(model, design.looks, n_alphas, design.margin, reps, seed, *shares,
                     claimed_equivalent=float(np.mean(within)), mean_seeds=float(looks[stop].mean()),
                     stopped_at=tuple(float(np.mean(stop == k)) for k in range(len(looks))))


# ---------------------------------------------------------------------------------------------
# The tables of the proof (docs/results.md, the report's power section, bench/sequential.py)


@dataclass(frozen=True)
class ProofRow:
    what: str
    designs: tuple[str, ...]  # column names
    values: tuple[float, ...]  # one share per design
    extra: tuple[float, ...] = ()  # mean seeds used per design (sequential designs stop early)


def proof_tables(margin: float, *, n_alphas: int = 1, first: int = 10, last: int = 40, sd: float = 0.01,
                 collapse: float = 0.1, reps: int = 4000, seed: int = 0,
                 fixed: tuple[int, ...] = (10, 20, 40),
                 extra: tuple[tuple[str, Design], ...] = ()) -> dict[str, list[ProofRow]]:
    """The error rates the issue asks for, for one margin and family size: false 'better'/'worse' under
    A/A, false 'equivalent' with the true difference at +-margin, and the power of 'equivalent' at 0,
    each for fixed designs with `fixed` seeds and for the sequential design first..last (blocks of 5,
    O'Brien-Fleming spending), each with normal seeds and with `collapse` of the runs collapsing; `extra`:
    more (name, design) columns first (the report puts the study's own design there)."""
    designs = list(extra) + [(f"fixed {n}", Design(margin, (n,))) for n in fixed]
    designs.append((f"sequential {first}..{last}", Design(margin, schedule(first, last))))
    names = tuple(n for n, _ in designs)
    models = (("normal seeds", 0.0), (f"{collapse:.0%} of runs collapse", collapse))

    def row(what: str, diff: float, c: float, pick: str) -> ProofRow:
        ops = [operating(SeedModel(difference=diff, sd=sd, collapse=c), d, n_alphas, reps, seed) for _, d in designs]
        return ProofRow(what, names, tuple(getattr(o, pick) for o in ops), tuple(o.mean_seeds for o in ops))

    out: dict[str, list[ProofRow]] = {"false_difference": [], "false_equivalence": [], "equivalence_power": []}
    for label, c in models:
        out["false_difference"].append(row(f"A/A, {label}", 0.0, c, "different"))
    for label, c in models:
        for sign in (+1, -1):
            out["false_equivalence"].append(row(f"true difference {sign * 100 * margin:+g} pp, {label}", sign * margin, c,
                                                "claimed_equivalent"))
    for label, c in models:
        out["equivalence_power"].append(row(f"true difference 0, {label}", 0.0, c, "claimed_equivalent"))
    return out
