# Statistics on the study's tidy tables. Every function takes a DataFrame (or plain arrays) and returns
# a small frozen result object; nothing here plots. Each test is the library's own call
# (scipy, statsmodels, deepsig); this module only arranges inputs and records what was done.
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Sequence

import deepsig
import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import DescrStatsW

from analysis.tables import (
    BASELINE,
    GAIN,
    OUTCOME_METRICS,
    arm_label,
    confirm_runs,
    gain_alphas,
    paired_metric,
    primary_alpha,
)

LEVEL = 0.95
NAN = float("nan")


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float
    method: str

    def excludes(self, value: float) -> bool:
        return bool(self.low > value or self.high < value)


@dataclass(frozen=True)
class TestResult:
    method: str
    statistic: float
    p_value: float
    n: int
    note: str = ""


@dataclass(frozen=True)
class ArmSummary:
    arm: str  # "baseline" | "gain"
    alpha: float  # NaN for baseline
    label: str
    metric: str
    n: int
    mean: float
    sd: float
    ci: Interval
    values: tuple[float, ...]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class PairedComparison:
    alpha: float
    metric: str
    n: int
    seeds: tuple[int, ...]
    baseline: tuple[float, ...]
    gain: tuple[float, ...]
    differences: tuple[float, ...]  # gain - baseline, per seed
    mean_difference: float
    sd_difference: float
    difference_ci: Interval | None
    ttest: TestResult
    wilcoxon: TestResult | None
    p_gain_better: float  # P(GAIN > baseline) over paired seeds, ties count one half
    p_gain_better_ci: Interval | None
    aso_gain_better: float | None  # deepsig eps_min, GAIN better than baseline if < 0.2 (conservative)
    aso_baseline_better: float | None
    cohens_dz: float  # mean difference / sd of differences (the paired effect size the power uses)
    p_holm: float = NAN  # the paired t-test p-value after Holm across the alpha family
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlphaFamily:
    metric: str
    comparisons: tuple[PairedComparison, ...]
    primary_alpha: float | None
    correction: str = "holm"

    def primary(self) -> PairedComparison | None:
        for c in self.comparisons:
            if self.primary_alpha is not None and math.isclose(c.alpha, self.primary_alpha):
                return c
        return None


@dataclass(frozen=True)
class McNemarSeed:
    seed: int
    n_images: int
    both_correct: int
    baseline_only: int  # b: baseline correct, GAIN wrong
    gain_only: int  # c: baseline wrong, GAIN correct
    both_wrong: int
    statistic: float  # statsmodels' exact statistic is min(b, c), not a chi-square
    p_value: float


@dataclass(frozen=True)
class McNemarCombined:
    # Seeds are the unit of replication: the per-seed exact McNemar tests each cover test-image
    # sampling for one pair of runs, and the sign test over seeds asks whether GAIN wins more seeds
    # than chance. Pooled discordant counts are shown as a description only; pooling images across
    # seeds would count the same test images several times as if they were independent.
    alpha: float
    per_seed: tuple[McNemarSeed, ...]
    pooled_baseline_only: int
    pooled_gain_only: int
    seeds_favouring_gain: int
    seeds_favouring_baseline: int
    seeds_tied: int
    sign_test: TestResult
    seeds_significant: int  # per-seed p < 0.05, either direction, no correction


@dataclass(frozen=True)
class LearningCurves:
    # Per (arm label, epoch): median and quartiles of validation accuracy over confirm runs.
    table: pd.DataFrame  # columns: arm_label, epoch, median, q25, q75, n


# ---------------------------------------------------------------------------------------------
# Per arm over seeds


def _summary(values: np.ndarray, seeds: np.ndarray, arm: str, alpha: float, metric: str) -> ArmSummary:
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n >= 2:
        d = DescrStatsW(values)
        low, high = d.tconfint_mean(alpha=1 - LEVEL)
        sd = float(np.std(values, ddof=1))
        ci = Interval(float(low), float(high), LEVEL, "t interval of the mean over seeds")
    else:
        sd = NAN
        ci = Interval(NAN, NAN, LEVEL, "t interval of the mean over seeds (needs >= 2 seeds)")
    return ArmSummary(
        arm=arm,
        alpha=alpha,
        label=arm_label(arm, alpha),
        metric=metric,
        n=n,
        mean=float(values.mean()) if n else NAN,
        sd=sd,
        ci=ci,
        values=tuple(float(v) for v in values),
        seeds=tuple(int(s) for s in seeds),
    )


def summarize_arms(trials: pd.DataFrame, metrics: Sequence[str] = OUTCOME_METRICS) -> list[ArmSummary]:
    # One summary per (arm, alpha, metric) with at least one non-NaN value; all-NaN metrics
    # (e.g. attention scores on photos without masks) are left out rather than reported as NaN.
    rows = confirm_runs(trials)
    out: list[ArmSummary] = []
    keys = [(BASELINE, NAN)] + [(GAIN, a) for a in gain_alphas(trials)]
    for arm, alpha in keys:
        if arm == BASELINE:
            part = rows[rows["arm"] == BASELINE]
        else:
            part = rows[(rows["arm"] == GAIN) & np.isclose(rows["alpha"].astype(float), alpha)]
        part = part.sort_values("seed")
        for metric in metrics:
            if metric not in part.columns:
                continue
            ok = part[metric].notna()
            if not ok.any():
                continue
            out.append(_summary(part.loc[ok, metric].to_numpy(), part.loc[ok, "seed"].to_numpy(), arm, alpha, metric))
    return out


# ---------------------------------------------------------------------------------------------
# Paired seeds: GAIN at one alpha vs baseline


def paired_ttest(gain: np.ndarray, baseline: np.ndarray) -> TestResult:
    n = len(gain)
    method = "paired t-test (scipy.stats.ttest_rel), two-sided"
    if n < 2:
        return TestResult(method, NAN, NAN, n, "needs >= 2 paired seeds")
    d = np.asarray(gain, float) - np.asarray(baseline, float)
    if np.ptp(d) == 0:
        # Constant differences: the t statistic is undefined (zero variance). All-zero differences are
        # no evidence of a gap; identical non-zero ones are left undecided rather than called infinite.
        note = "all paired differences are equal; t undefined"
        return TestResult(method, NAN, 1.0 if d[0] == 0 else NAN, n, note)
    r = sps.ttest_rel(gain, baseline)
    return TestResult(method, float(r.statistic), float(r.pvalue), n)


def wilcoxon_test(gain: np.ndarray, baseline: np.ndarray) -> TestResult:
    n = len(gain)
    method = "Wilcoxon signed-rank (scipy.stats.wilcoxon), two-sided"
    if n < 2:
        return TestResult(method, NAN, NAN, n, "needs >= 2 paired seeds")
    d = np.asarray(gain, float) - np.asarray(baseline, float)
    if np.all(d == 0):
        return TestResult(method, 0.0, 1.0, n, "all paired differences are zero")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy's "exact p with ties" notice
        r = sps.wilcoxon(gain, baseline)
    note = "zero differences dropped (zero_method='wilcox')" if np.any(d == 0) else ""
    return TestResult(method, float(r.statistic), float(r.pvalue), n, note)


def bootstrap_mean_difference(d: np.ndarray, seed: int, n_resamples: int = 9999) -> Interval | None:
    method = "BCa bootstrap of the mean paired difference (scipy.stats.bootstrap)"
    if len(d) < 2:
        return None
    if np.ptp(d) == 0:
        return Interval(float(d[0]), float(d[0]), LEVEL, method + "; degenerate: all differences equal")
    r = sps.bootstrap((d,), np.mean, confidence_level=LEVEL, n_resamples=n_resamples, method="BCa", rng=seed)
    return Interval(float(r.confidence_interval.low), float(r.confidence_interval.high), LEVEL, method)


def _p_better(d: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(d > 0, axis=axis) + 0.5 * np.mean(d == 0, axis=axis)


def prob_gain_better(d: np.ndarray, seed: int, n_resamples: int = 9999) -> tuple[float, Interval | None]:
    # Bouthillier et al. 2021: P(A > B) over paired seeds with a percentile bootstrap interval
    # (a step-function statistic: BCa's jackknife acceleration is unreliable on it).
    p = float(_p_better(d))
    if len(d) < 2:
        return p, None
    method = "P(GAIN > baseline) over paired seeds, percentile bootstrap (scipy.stats.bootstrap)"
    if np.all(d > 0) or np.all(d < 0) or np.all(d == 0):
        return p, Interval(p, p, LEVEL, method + "; degenerate: every seed agrees")
    r = sps.bootstrap(
        (d,), _p_better, confidence_level=LEVEL, n_resamples=n_resamples, method="percentile", rng=seed, vectorized=True
    )
    return p, Interval(float(r.confidence_interval.low), float(r.confidence_interval.high), LEVEL, method)


def aso_eps(a: np.ndarray, b: np.ndarray, seed: int, iterations: int) -> float | None:
    # deepsig's Almost Stochastic Order: eps_min for "a is stochastically larger than b".
    # Distribution-level (unpaired). Cost ~4 ms per bootstrap iteration on one core, so the report
    # uses 1000 iterations by default and the tests fewer.
    if len(a) < 2 or len(b) < 2:
        return None
    with warnings.catch_warnings():
        # deepsig warns "Division by zero encountered in violation ratio" when a bootstrap sample of the
        # two arms coincides (common with accuracies on a few hundred images); its eps_min is still defined.
        warnings.filterwarnings("ignore", message="Division by zero encountered in violation ratio")
        return float(
            deepsig.aso(
                np.asarray(a, float),
                np.asarray(b, float),
                confidence_level=LEVEL,
                num_bootstrap_iterations=iterations,
                seed=seed,
                show_progress=False,
            )
        )


def compare_paired(
    pairs: pd.DataFrame,
    alpha: float,
    metric: str = "test_acc",
    *,
    seed: int = 0,
    full: bool = True,
    n_resamples: int = 9999,
    aso_iterations: int = 1000,
) -> PairedComparison:
    # pairs: columns seed, baseline, gain (from tables.paired_metric). full=False runs only the paired
    # t-test that the verdict uses (the calibration simulations need thousands of these).
    b = pairs["baseline"].to_numpy(float)
    g = pairs["gain"].to_numpy(float)
    d = g - b
    n = len(d)
    notes: list[str] = []
    if n < 2:
        notes.append(f"only {n} paired seed(s): tests and intervals need at least 2")
    sd = float(np.std(d, ddof=1)) if n >= 2 else NAN
    mean = float(d.mean()) if n else NAN
    dz = mean / sd if n >= 2 and sd > 0 else NAN
    p_better, p_ci = (float(_p_better(d)) if n else NAN), None
    ci = wil = aso_g = aso_b = None
    if full and n:
        ci = bootstrap_mean_difference(d, seed, n_resamples)
        wil = wilcoxon_test(g, b)
        p_better, p_ci = prob_gain_better(d, seed, n_resamples)
        aso_g = aso_eps(g, b, seed, aso_iterations)
        aso_b = aso_eps(b, g, seed, aso_iterations)
    return PairedComparison(
        alpha=float(alpha),
        metric=metric,
        n=n,
        seeds=tuple(int(s) for s in pairs["seed"]),
        baseline=tuple(b.tolist()),
        gain=tuple(g.tolist()),
        differences=tuple(d.tolist()),
        mean_difference=mean,
        sd_difference=sd,
        difference_ci=ci,
        ttest=paired_ttest(g, b),
        wilcoxon=wil,
        p_gain_better=p_better,
        p_gain_better_ci=p_ci,
        aso_gain_better=aso_g,
        aso_baseline_better=aso_b,
        cohens_dz=dz,
        notes=tuple(notes),
    )


def holm(p_values: Sequence[float], level: float = 0.05) -> list[float]:
    # Holm over the alpha family (statsmodels' default is Holm-Sidak, so the method is explicit).
    # NaN p-values (too few seeds) stay NaN and do not count towards the family size.
    p = np.asarray(p_values, float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=level, method="holm")[1]
    return out.tolist()


def compare_alphas(
    trials: pd.DataFrame,
    metric: str = "test_acc",
    *,
    seed: int = 0,
    full: bool = True,
    n_resamples: int = 9999,
    aso_iterations: int = 1000,
) -> AlphaFamily:
    comps = [
        compare_paired(
            paired_metric(trials, a, metric),
            a,
            metric,
            seed=seed,
            full=full,
            n_resamples=n_resamples,
            aso_iterations=aso_iterations,
        )
        for a in gain_alphas(trials)
    ]
    adjusted = holm([c.ttest.p_value for c in comps])
    comps = [replace(c, p_holm=p) for c, p in zip(comps, adjusted)]
    return AlphaFamily(metric=metric, comparisons=tuple(comps), primary_alpha=primary_alpha(trials))


# ---------------------------------------------------------------------------------------------
# Per image: both arms on the same test images


def mcnemar_seed(predictions: pd.DataFrame, seed: int, alpha: float) -> McNemarSeed:
    p = predictions[predictions["seed"] == seed]
    base = p[p["arm"] == BASELINE][["image_id", "correct"]]
    gain = p[(p["arm"] == GAIN) & np.isclose(p["alpha"].astype(float), alpha)][["image_id", "correct"]]
    m = base.merge(gain, on="image_id", suffixes=("_b", "_g"))
    if len(m) != len(base) or len(m) != len(gain):
        raise ValueError(
            f"seed {seed}, alpha {alpha:g}: baseline has {len(base)} test images, GAIN {len(gain)}, "
            f"shared {len(m)}; both arms must be scored on the same image ids"
        )
    cb = m["correct_b"].astype(bool).to_numpy()
    cg = m["correct_g"].astype(bool).to_numpy()
    both = int(np.sum(cb & cg))
    b_only = int(np.sum(cb & ~cg))
    g_only = int(np.sum(~cb & cg))
    none = int(np.sum(~cb & ~cg))
    # Rows: baseline correct / wrong; columns: GAIN correct / wrong.
    r = mcnemar(np.array([[both, b_only], [g_only, none]]), exact=True)
    return McNemarSeed(int(seed), len(m), both, b_only, g_only, none, float(r.statistic), float(r.pvalue))


def mcnemar_over_seeds(predictions: pd.DataFrame, alpha: float) -> McNemarCombined | None:
    p = predictions.copy()
    p["alpha"] = p["alpha"].astype(float)
    base_seeds = set(p.loc[p["arm"] == BASELINE, "seed"])
    gain_seeds = set(p.loc[(p["arm"] == GAIN) & np.isclose(p["alpha"], alpha), "seed"])
    seeds = sorted(base_seeds & gain_seeds)
    if not seeds:
        return None
    per = tuple(mcnemar_seed(p, s, alpha) for s in seeds)
    fav_g = sum(m.gain_only > m.baseline_only for m in per)
    fav_b = sum(m.gain_only < m.baseline_only for m in per)
    tied = len(per) - fav_g - fav_b
    if fav_g + fav_b:
        r = sps.binomtest(fav_g, fav_g + fav_b, 0.5)
        sign = TestResult("sign test over seeds (scipy.stats.binomtest), ties dropped", float(fav_g), float(r.pvalue), fav_g + fav_b)
    else:
        sign = TestResult("sign test over seeds (scipy.stats.binomtest), ties dropped", 0.0, 1.0, 0, "every seed tied")
    return McNemarCombined(
        alpha=float(alpha),
        per_seed=per,
        pooled_baseline_only=sum(m.baseline_only for m in per),
        pooled_gain_only=sum(m.gain_only for m in per),
        seeds_favouring_gain=fav_g,
        seeds_favouring_baseline=fav_b,
        seeds_tied=tied,
        sign_test=sign,
        seeds_significant=sum(m.p_value < 0.05 for m in per),
    )


# ---------------------------------------------------------------------------------------------
# Learning curves


def learning_curves(epochs: pd.DataFrame, phase: str = "confirm") -> LearningCurves:
    e = epochs[epochs["phase"] == phase].copy()
    e["arm_label"] = [arm_label(a, al) for a, al in zip(e["arm"], e["alpha"].astype(float))]
    g = e.groupby(["arm_label", "epoch"])["val_acc"]
    table = pd.DataFrame(
        {
            "median": g.median(),
            "q25": g.quantile(0.25),
            "q75": g.quantile(0.75),
            "n": g.count(),
        }
    ).reset_index()
    return LearningCurves(table=table)
