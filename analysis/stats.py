# Statistics on the study's tidy tables. Every function takes a DataFrame (or plain arrays) and returns
# a small frozen result object; nothing here plots. Each test is the library's own call
# (scipy, statsmodels); this module only arranges inputs and records what was done. The one exception
# is ASO: aso_eps is deepsig 1.2.8's aso() transcribed with NumPy array operations (same seeds, same
# draws, same formula; tests/test_analysis_stats.py checks it equals deepsig.aso), because deepsig
# evaluates its quantile functions one element at a time through np.vectorize: ~4.5 s per 1000
# bootstrap iterations, 20 of the report's 33 s, against ~12 ms here.
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.weightstats import DescrStatsW, ttost_paired

from analysis.power import PAPER_DIFFERENCE, DecisionPower, decision_power
from analysis.tables import (
    BASELINE,
    GAIN,
    OUTCOME_METRICS,
    ArmOutcomes,
    arm_label,
    confirm_runs,
    fmt_alpha,
    gain_alphas,
    paired_metric,
    primary_alpha,
    warmup_selected,
)

LEVEL = 0.95
NAN = float("nan")
# Paired differences whose range is below this are "all equal": accuracies are k/n, and the same
# image counts give differences that differ only by float rounding (~1e-16), which would otherwise
# turn an undefined t statistic into t = 1e15 and p = 1e-122.
ZERO_SPREAD = 1e-12
TTEST = "paired t-test (scipy.stats.ttest_rel), two-sided"
SIGN_TEST = ("exact sign test (scipy.stats.binomtest), two-sided: the declared rule when all paired differences "
             "are equal and the t statistic is 0/0")
TOST = ("equivalence: two one-sided paired t-tests against -margin and +margin (statsmodels ttost_paired); "
        "p = the larger of the two one-sided p-values")
TOST_SIGN = ("equivalence: two one-sided exact sign tests against -margin and +margin (scipy.stats.binomtest): the "
             "declared rule when all paired differences are equal")
CI_EQUIVALENCE = 0.90  # the TOST at 0.05 per side rejects iff this t interval lies inside +-margin
BAYES_SAMPLES = 10000  # Monte-Carlo draws of baycomp's signed-rank posterior: each probability to about +-0.5 points


def zero_spread(d: np.ndarray) -> bool:
    return bool(len(d) and np.ptp(np.asarray(d, float)) <= ZERO_SPREAD)


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
class BayesProbs:
    # baycomp's Bayesian signed-rank test (Benavoli et al. 2014, 2017) with a region of practical
    # equivalence (ROPE) = the margin: the posterior probability that each region is the most probable one
    # (baycomp's definition). A cross-check beside the verdict, not an error-rate guarantee.
    p_worse: float  # GAIN - baseline below -rope
    p_equivalent: float  # within +-rope
    p_better: float  # above +rope
    rope: float
    samples: int
    seed: int
    method: str = ("baycomp.SignedRankTest (Bayesian signed-rank, Dirichlet-process prior 0.5), ROPE = the margin; "
                   "chosen over the correlated t-test, whose variance correction is for cross-validation folds")


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
    difference_ci: Interval | None  # t interval of the mean difference: the verdict's interval
    ttest: TestResult  # the verdict's test: paired t, or the exact sign test when the differences are all equal
    wilcoxon: TestResult | None
    p_gain_better: float  # P(GAIN > baseline) over paired seeds, ties count one half
    p_gain_better_ci: Interval | None
    aso_gain_better: float | None  # deepsig eps_min, GAIN better than baseline if < 0.2 (conservative)
    aso_baseline_better: float | None
    cohens_dz: float  # mean difference / sd of differences (the paired effect size the power uses)
    p_holm: float = NAN  # the paired test's p-value after Holm across the alpha family
    bootstrap_ci: Interval | None = None  # BCa bootstrap of the mean difference: a check, not the verdict
    notes: tuple[str, ...] = ()
    # The headline's robust estimate: the Hodges-Lehmann estimate (median of the Walsh averages) with the
    # signed-rank interval; no single seed can move it far, unlike the mean.
    hodges_lehmann: float = NAN
    hodges_lehmann_ci: Interval | None = None
    # Seeds that alone move the mean difference by more than the other seeds' 95 % t half-width:
    # ((seed, mean without it - mean, that half-width), ...), largest shift first.
    influential: tuple[tuple[int, float, float], ...] = ()
    # Equivalence within +-margin (a fraction of test accuracy; None: no margin declared): the TOST, its
    # p-value Holm-adjusted across the alpha family, and the 90 % t interval it corresponds to.
    margin: float | None = None
    tost: TestResult | None = None
    p_tost_holm: float = NAN
    difference_ci90: Interval | None = None
    bayes: BayesProbs | None = None  # baycomp's cross-check (full analyses only)


@dataclass(frozen=True)
class AlphaFamily:
    metric: str
    comparisons: tuple[PairedComparison, ...]
    primary_alpha: float | None
    correction: str = "holm"
    excluded: str = ""  # what was left out, for a sensitivity analysis ("" for the primary analysis)
    margin: float | None = None  # the declared equivalence margin (fraction); None: not declared

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
    # sampling for one pair of runs; the counts of seeds favouring each arm describe them. (No test over
    # seeds here: the verdict's paired test over seeds is the declared one, and a second, unadjusted
    # p-value beside it would only invite a second verdict.) Pooled discordant counts are shown as a description only; pooling images across
    # seeds would count the same test images several times as if they were independent.
    alpha: float
    per_seed: tuple[McNemarSeed, ...]
    pooled_baseline_only: int
    pooled_gain_only: int
    seeds_favouring_gain: int
    seeds_favouring_baseline: int
    seeds_tied: int
    seeds_significant: int  # per-seed p < 0.05, either direction, no correction (description only)


@dataclass(frozen=True)
class LearningCurves:
    # Per (arm label, epoch): median and quartiles of validation accuracy over confirm runs.
    table: pd.DataFrame  # columns: arm_label, epoch, median, q25, q75, n


# ---------------------------------------------------------------------------------------------
# Per arm over seeds


def _summary(values: np.ndarray, seeds: np.ndarray, arm: str, alpha: float, metric: str) -> ArmSummary:
    values = np.asarray(values, dtype=float)
    n = len(values)
    # Every outcome is a fraction in [0, 1]; a t interval can cross 1 with few seeds (0.74-1.03), so it is
    # clipped to [0, 1], and says so. (A Wilson interval would treat images as the unit; here seeds are.)
    method = "t interval of the mean over seeds, clipped to [0, 1]"
    if n >= 2 and np.ptp(values) > 0:
        d = DescrStatsW(values)
        low, high = d.tconfint_mean(alpha=1 - LEVEL)
        sd = float(np.std(values, ddof=1))
        ci = Interval(float(max(low, 0.0)), float(min(high, 1.0)), LEVEL, method)
    elif n >= 2:
        sd = 0.0
        ci = Interval(float(values[0]), float(values[0]), LEVEL, method + "; every seed gave the same value")
    else:
        sd = NAN
        ci = Interval(NAN, NAN, LEVEL, method + " (needs >= 2 seeds)")
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
    # The verdict's test. Paired t, except when every paired difference is the same (within
    # ZERO_SPREAD): t is then 0/0, and the declared rule is the exact sign test on the seeds, which
    # decides the same way however the baseline counts vary across seeds.
    n = len(gain)
    if n < 2:
        return TestResult(TTEST, NAN, NAN, n, "needs >= 2 paired seeds")
    d = np.asarray(gain, float) - np.asarray(baseline, float)
    if zero_spread(d):
        m = float(np.mean(d))
        if abs(m) <= ZERO_SPREAD:
            return TestResult(SIGN_TEST, 0.0, 1.0, n, "all paired differences are zero: no evidence of a gap")
        wins = n if m > 0 else 0
        r = sps.binomtest(wins, n, 0.5)
        return TestResult(SIGN_TEST, float(wins), float(r.pvalue), n,
                          f"all {n} paired differences equal {100 * m:+.3g} pp: t undefined, exact sign test used")
    r = sps.ttest_rel(gain, baseline)
    return TestResult(TTEST, float(r.statistic), float(r.pvalue), n)


def t_interval(d: np.ndarray, level: float = LEVEL) -> Interval | None:
    # The verdict's interval: the t interval covered the true mean difference in 95-96% of simulated
    # 10-seed studies, the BCa bootstrap in only ~90% (reference/statistics.md). At level 0.90 it is the
    # interval of the equivalence test (TOST at 0.05 per side: equivalent iff it lies inside +-margin).
    method = "t interval of the mean paired difference (scipy.stats.t)"
    n = len(d)
    if n < 2:
        return None
    m = float(np.mean(d))
    if zero_spread(d):
        return Interval(m, m, level, method + "; degenerate: all differences equal")
    low, high = sps.t.interval(level, n - 1, loc=m, scale=sps.sem(d))
    # A difference of two accuracies lies in [-1, 1]; with 2 seeds the t interval can reach +-1.8.
    return Interval(float(max(low, -1.0)), float(min(high, 1.0)), level, method + ", clipped to [-1, 1]")


def paired_tost(gain: np.ndarray, baseline: np.ndarray, margin: float) -> TestResult:
    """Equivalence within +-margin (TOST): H0 'difference <= -margin' and H0 'difference >= +margin', each
    one-sided at the study's level; p is the larger p-value, so p < level iff both reject, iff the
    (1 - 2 level) t interval lies inside +-margin. When every paired difference is equal (t is 0/0) each
    one-sided test is the exact sign test against its bound, as for the difference test."""
    n = len(gain)
    if n < 2:
        return TestResult(TOST, NAN, NAN, n, "needs >= 2 paired seeds")
    d = np.asarray(gain, float) - np.asarray(baseline, float)
    if zero_spread(d):
        v = float(np.mean(d))
        p_low = float(sps.binomtest(n, n, 0.5, alternative="greater").pvalue) if v > -margin else 1.0
        p_up = float(sps.binomtest(n, n, 0.5, alternative="greater").pvalue) if v < margin else 1.0
        return TestResult(TOST_SIGN, float(n), max(p_low, p_up), n,
                          f"all {n} paired differences equal {100 * v:+.3g} pp: sign tests against +-{100 * margin:g} pp")
    p, (t_low, _, _), (t_up, _, _) = ttost_paired(np.asarray(gain, float), np.asarray(baseline, float), -margin, margin)
    # statistic: the one-sided t that decides (the smaller in absolute terms, the larger p)
    return TestResult(TOST, float(t_low if abs(t_low) < abs(t_up) else t_up), float(p), n)


def bayes_signed_rank(gain: np.ndarray, baseline: np.ndarray, rope: float, seed: int,
                      samples: int = BAYES_SAMPLES) -> BayesProbs | None:
    """baycomp's three probabilities: P(GAIN worse by more than the rope), P(within), P(GAIN better)."""
    if len(gain) < 2 or not rope > 0:
        return None
    from baycomp import SignedRankTest  # imported here: only the full report needs it

    # baycomp's x is the left region: x = baseline, so p_left is "baseline better", i.e. GAIN worse.
    left, within, right = SignedRankTest.probs(np.asarray(baseline, float), np.asarray(gain, float), rope=rope,
                                               nsamples=samples, random_state=seed)
    return BayesProbs(float(left), float(within), float(right), float(rope), samples, seed)


def wilcoxon_test(gain: np.ndarray, baseline: np.ndarray) -> TestResult:
    n = len(gain)
    method = "Wilcoxon signed-rank (scipy.stats.wilcoxon), two-sided"
    if n < 2:
        return TestResult(method, NAN, NAN, n, "needs >= 2 paired seeds")
    d = np.asarray(gain, float) - np.asarray(baseline, float)
    d = np.where(np.abs(d) <= ZERO_SPREAD, 0.0, d)
    if np.all(d == 0):
        return TestResult(method, 0.0, 1.0, n, "all paired differences are zero")
    if zero_spread(d):
        return TestResult(method, NAN, NAN, n, "all paired differences are equal: signed ranks are all ties (see the sign test)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy's "exact p with ties" notice
        r = sps.wilcoxon(d)
    note = "zero differences dropped (zero_method='wilcox')" if np.any(d == 0) else ""
    return TestResult(method, float(r.statistic), float(r.pvalue), n, note)


def bootstrap_mean_difference(d: np.ndarray, seed: int, n_resamples: int = 9999) -> Interval | None:
    method = "BCa bootstrap of the mean paired difference (scipy.stats.bootstrap), a check"
    if len(d) < 2:
        return None
    if zero_spread(d):
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


# Almost Stochastic Order (Dror et al. 2019) exactly as deepsig 1.2.8 computes it (deepsig/aso.py).
ASO_DT = 0.005  # deepsig's integration step over t in (0, 1)


def _quantile_index(n: int, p: np.ndarray) -> np.ndarray:
    # deepsig's empirical quantile function: F^-1(p) = sorted(x)[ceil(n p) - 1], clipped to the sample.
    return np.clip(np.ceil(n * p).astype(int) - 1, 0, n - 1)


def _violation_ratio(a: np.ndarray, b: np.ndarray, dt: float = ASO_DT) -> np.ndarray:
    # deepsig's compute_violation_ratio for each row: a (..., n_a), b (..., n_b) -> (...,).
    # The share of the squared Wasserstein distance where B's quantiles lie above A's.
    t = np.arange(dt, 1, dt)  # (T,)
    # C order: fancy indexing leaves T as the outer stride, and numpy then sums along T in another
    # order than deepsig's 1-D np.sum (results 1 ulp apart).
    f = np.ascontiguousarray(np.sort(a, axis=-1)[..., _quantile_index(a.shape[-1], t)])  # (..., T)
    g = np.ascontiguousarray(np.sort(b, axis=-1)[..., _quantile_index(b.shape[-1], t)])
    diff = g - f
    w2 = np.sum(diff**2 * dt, axis=-1)
    violation = np.sum(np.where(f >= g, 0.0, diff)[..., 1:] ** 2 * dt, axis=-1)  # deepsig leaves out t = dt
    # Identical quantile functions: deepsig defines the ratio as 0.5 (and warns "Division by zero").
    return np.where(w2 == 0, 0.5, violation / np.where(w2 == 0, 1.0, w2))


def aso_eps(a: np.ndarray, b: np.ndarray, seed: int, iterations: int) -> float | None:
    # eps_min for "a is stochastically larger than b", deepsig.aso(a, b, confidence_level=LEVEL,
    # num_bootstrap_iterations=iterations, seed=seed) to the last bit. Distribution-level (unpaired).
    # The Monte-Carlo part is sigma_hat, the sd of `iterations` bootstrap violation ratios: the report's
    # 1000 (deepsig's default) give it a relative standard error of about 1/sqrt(2 * 999) = 2.2 %.
    # Seeded like deepsig: iteration i (1..B) seeds NumPy's legacy generator with seed + i and draws the
    # uniforms for a, then for b; a private RandomState leaves NumPy's global state alone.
    if len(a) < 2 or len(b) < 2:
        return None
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = len(a), len(b)
    ratio = float(_violation_ratio(a, b))
    ua, ub = np.empty((iterations, na)), np.empty((iterations, nb))
    rs = np.random.RandomState()
    for i in range(iterations):
        rs.seed(seed + 1 + i)
        ua[i] = rs.uniform(0, 1, na)
        ub[i] = rs.uniform(0, 1, nb)
    samples = _violation_ratio(np.sort(a)[_quantile_index(na, ua)], np.sort(b)[_quantile_index(nb, ub)])  # (B,)
    const = np.sqrt(na * nb / (na + nb))
    sigma_hat = np.std(const * (samples - ratio))
    return float(np.clip(ratio - (1 / const) * sigma_hat * sps.norm.ppf(1 - LEVEL), 0, 1))


def compare_paired(
    pairs: pd.DataFrame,
    alpha: float,
    metric: str = "test_acc",
    *,
    seed: int = 0,
    full: bool = True,
    n_resamples: int = 9999,
    aso_iterations: int = 1000,
    margin: float | None = None,
) -> PairedComparison:
    # pairs: columns seed, baseline, gain (from tables.paired_metric). full=False runs only the tests the
    # verdict uses, the paired t-test and the TOST (the calibration simulations need thousands of these).
    # margin: the declared equivalence margin as a fraction of the metric (0.01 = 1 pp); None: no TOST.
    b = pairs["baseline"].to_numpy(float)
    g = pairs["gain"].to_numpy(float)
    d = g - b
    n = len(d)
    notes: list[str] = []
    if n < 2:
        notes.append(f"only {n} paired seed(s): tests and intervals need at least 2")
    sd = (0.0 if zero_spread(d) else float(np.std(d, ddof=1))) if n >= 2 else NAN
    mean = float(d.mean()) if n else NAN
    dz = mean / sd if n >= 2 and sd > 0 else NAN
    p_better, p_ci = (float(_p_better(d)) if n else NAN), None
    boot = wil = aso_g = aso_b = bayes = None
    ci = t_interval(d)
    hl, hl_ci = hodges_lehmann(d)
    seeds = tuple(int(s) for s in pairs["seed"])
    if full and n:
        boot = bootstrap_mean_difference(d, seed, n_resamples)
        wil = wilcoxon_test(g, b)
        p_better, p_ci = prob_gain_better(d, seed, n_resamples)
        if aso_iterations > 0:  # 0: skip ASO (the terminal summary does not show it)
            aso_g = aso_eps(g, b, seed, aso_iterations)
            aso_b = aso_eps(b, g, seed, aso_iterations)
        if margin is not None:
            bayes = bayes_signed_rank(g, b, margin, seed)
    return PairedComparison(
        alpha=float(alpha),
        metric=metric,
        n=n,
        seeds=seeds,
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
        bootstrap_ci=boot,
        notes=tuple(notes),
        hodges_lehmann=hl,
        hodges_lehmann_ci=hl_ci,
        influential=influential_seeds(seeds, d),
        margin=margin,
        tost=paired_tost(g, b, margin) if margin is not None else None,
        difference_ci90=t_interval(d, CI_EQUIVALENCE),
        bayes=bayes,
    )


def signed_rank_null(n: int) -> np.ndarray:
    """P(W+ = w), w = 0..n(n+1)/2: the exact null distribution of Wilcoxon's signed-rank statistic
    (no ties), by counting the subsets of the ranks 1..n with each sum."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return counts / 2.0 ** n


def hodges_lehmann(d: np.ndarray, level: float = LEVEL) -> tuple[float, Interval | None]:
    """The Hodges-Lehmann estimate of the paired difference (the median of the n(n+1)/2 Walsh averages
    (d_i + d_j) / 2, i <= j) and its distribution-free interval, the k-th smallest and k-th largest
    Walsh averages with k from the exact signed-rank distribution (Hollander & Wolfe, ch. 3), the
    interval that inverts Wilcoxon's test. Its coverage is at least `level` for continuous differences;
    with ties it is approximate."""
    d = np.asarray(d, float)
    n = len(d)
    if n == 0:
        return NAN, None
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2)
    estimate = float(np.median(walsh))
    if n < 2:
        return estimate, None
    if n <= 200:
        cdf = np.cumsum(signed_rank_null(n))
        k = int(np.searchsorted(cdf, (1 - level) / 2, side="right"))  # P(W+ <= k-1) <= (1 - level) / 2
    else:  # the normal approximation, with continuity correction
        m, v = n * (n + 1) / 4, n * (n + 1) * (2 * n + 1) / 24
        k = int(math.floor(m - sps.norm.ppf(1 - (1 - level) / 2) * math.sqrt(v) + 0.5))
    if k < 1:
        return estimate, None  # too few seeds for an interval at this level (n < 6 at 95 %)
    return estimate, Interval(float(walsh[k - 1]), float(walsh[len(walsh) - k]), level,
                              "Hodges-Lehmann, signed-rank interval (exact)")


def influential_seeds(seeds: Sequence[int], d: np.ndarray) -> tuple[tuple[int, float, float], ...]:
    """Seeds that alone move the mean paired difference by more than the precision the other seeds
    give it: removing seed i shifts the mean by more than the half-width of the 95 % t interval of the
    other n-1 differences. ((seed, mean without it - mean, that half-width), ...), largest shift first.
    (The interval of all n seeds would not do: one outlying seed widens it enough to hide itself.)"""
    d = np.asarray(d, float)
    n = len(d)
    if n < 4:
        return ()
    big = []
    for i, s in enumerate(seeds):
        rest = np.delete(d, i)
        shift = float(rest.mean() - d.mean())
        ci = t_interval(rest)
        half = (ci.high - ci.low) / 2 if ci is not None else math.inf
        if abs(shift) > half:
            big.append((int(s), shift, float(half)))
    return tuple(sorted(big, key=lambda t: -abs(t[1])))


def holm(p_values: Sequence[float]) -> list[float]:
    # Holm-adjusted p-values over the alpha family: the lines statsmodels' multipletests(method="holm")
    # runs (sort, p_(i) * (m - i), running maximum, cap at 1, unsort; the test compares the two).
    # Not the call itself: that branch ends in gc.collect(), 0.07 s in a report process and 0.25 s in
    # the launcher's, seven times per report. NaN p-values (too few seeds) stay NaN and do not count
    # towards the family size.
    p = np.asarray(p_values, float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        order = np.argsort(p[ok])
        adjusted = np.maximum.accumulate(p[ok][order] * np.arange(len(order), 0, -1))
        adjusted[adjusted > 1] = 1
        out[np.flatnonzero(ok)[order]] = adjusted
    return out.tolist()


def without_collapsed_pairs(trials: pd.DataFrame) -> pd.DataFrame:
    # The declared sensitivity analysis: drop every seed on which any confirmation run (either arm,
    # any alpha) collapsed, so each remaining pair compares two runs that learnt the task.
    c = trials["phase"].astype(str) == "confirm"
    flag = trials["collapsed"].astype("boolean").fillna(False).to_numpy(bool) if "collapsed" in trials else np.zeros(len(trials), bool)
    bad = set(trials.loc[c & flag, "seed"].astype(int))
    return trials[~(c & trials["seed"].isin(bad))]


def compare_alphas(
    trials: pd.DataFrame,
    metric: str = "test_acc",
    *,
    seed: int = 0,
    full: bool = True,
    n_resamples: int = 9999,
    aso_iterations: int = 1000,
    exclude_collapsed: bool = False,
    exclude_warmup: bool = False,
    margin: float | None = None,
) -> AlphaFamily:
    # The primary alpha is chosen on all runs in both analyses: the sensitivity analysis changes which
    # pairs are compared, not which comparison is primary.
    primary = primary_alpha(trials)
    excluded = ""
    if exclude_collapsed:
        kept = without_collapsed_pairs(trials)
        gone = sorted(set(trials.loc[trials["phase"].astype(str) == "confirm", "seed"].astype(int))
                      - set(kept.loc[kept["phase"].astype(str) == "confirm", "seed"].astype(int)))
        excluded = f"seeds with a collapsed run left out: {gone or 'none'}"
        trials = kept
    if exclude_warmup:
        # Each GAIN run that selected a warm-up epoch leaves its own pair (that α, that seed) only.
        flagged = (trials["phase"].astype(str) == "confirm").to_numpy(bool) & warmup_selected(trials)
        gone_runs = sorted(f"α={fmt_alpha(a)} seed {int(s)}" for a, s in trials.loc[flagged, ["alpha", "seed"]].to_numpy())
        excluded = f"GAIN runs that selected a warm-up epoch left out: {', '.join(gone_runs) or 'none'}"
        trials = trials[~flagged]
    comps = [
        compare_paired(
            paired_metric(trials, a, metric),
            a,
            metric,
            seed=seed,
            full=full,
            n_resamples=n_resamples,
            aso_iterations=aso_iterations,
            margin=margin,
        )
        for a in gain_alphas(trials)
    ]
    adjusted = holm([c.ttest.p_value for c in comps])
    # The equivalence claims form the same family: their TOST p-values are Holm-adjusted the same way.
    adjusted_tost = holm([c.tost.p_value if c.tost is not None else NAN for c in comps])
    comps = [replace(c, p_holm=p, p_tost_holm=q) for c, p, q in zip(comps, adjusted, adjusted_tost)]
    return AlphaFamily(metric=metric, comparisons=tuple(comps), primary_alpha=primary, excluded=excluded, margin=margin)


def family_power(
    family: AlphaFamily, difference: float = PAPER_DIFFERENCE, *, reps: int = 4000, seed: int = 0, curve: bool = True
) -> DecisionPower | None:
    # The power of the verdict as it is made on this family: the observed sd of each alpha's paired
    # differences (primary first; an alpha without a usable sd borrows the primary's) and their
    # average correlation over the seeds every alpha shares (None -> 0.5 assumed, when fewer than 3
    # shared seeds or only one alpha).
    primary = family.primary()
    if primary is None:
        return None
    tested = [c for c in family.comparisons if math.isfinite(c.ttest.p_value)]
    others = [c for c in tested if c is not primary]
    sd0 = primary.sd_difference
    sds = [sd0] + [c.sd_difference if math.isfinite(c.sd_difference) and c.sd_difference > 0 else sd0 for c in others]
    corr = None
    if others:
        common = set(primary.seeds).intersection(*[set(c.seeds) for c in others])
        if len(common) >= 3:
            cols = [[d for s, d in zip(c.seeds, c.differences) if s in common] for c in [primary] + others]
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                r = np.corrcoef(np.asarray(cols))
            vals = r[np.triu_indices(len(cols), 1)]
            vals = vals[np.isfinite(vals)]
            if len(vals):
                corr = float(np.mean(vals))
    return decision_power(sds, primary.n, difference, correlation=corr, reps=reps, seed=seed, curve=curve,
                          margin=family.margin)


# ---------------------------------------------------------------------------------------------
# Collapse and divergence: outcomes of the method, counted per arm


@dataclass(frozen=True)
class CollapseTest:
    # GAIN at one alpha vs baseline: Fisher's exact test on the 2x2 table of collapsed / not collapsed
    # completed confirmation runs (and, when any run diverged, on failed = collapsed or diverged).
    alpha: float
    gain_collapsed: int
    gain_runs: int
    baseline_collapsed: int
    baseline_runs: int
    fisher_p: float
    failed_fisher_p: float | None  # collapsed or diverged vs all runs; None when nothing diverged
    method: str = "Fisher's exact test (scipy.stats.fisher_exact), two-sided"


def collapse_tests(outcomes: Sequence[ArmOutcomes]) -> list[CollapseTest]:
    base = next((o for o in outcomes if o.arm == BASELINE), None)
    if base is None:
        return []
    out = []
    for o in outcomes:
        if o.arm != GAIN or not o.collapse_known or not base.collapse_known:
            continue
        gc, bc = len(o.collapsed_seeds), len(base.collapsed_seeds)
        p = float(sps.fisher_exact([[gc, o.completed - gc], [bc, base.completed - bc]]).pvalue)
        failed = None
        if o.diverged_seeds or base.diverged_seeds:
            gf, bf = gc + len(o.diverged_seeds), bc + len(base.diverged_seeds)
            gn, bn = o.completed + len(o.diverged_seeds), base.completed + len(base.diverged_seeds)
            failed = float(sps.fisher_exact([[gf, gn - gf], [bf, bn - bf]]).pvalue)
        out.append(CollapseTest(o.alpha, gc, o.completed, bc, base.completed, p, failed))
    return out


# ---------------------------------------------------------------------------------------------
# Per image: both arms on the same test images


def mcnemar_seed(predictions: pd.DataFrame, seed: int, alpha: float) -> McNemarSeed:
    p = predictions[predictions["seed"] == seed]
    base = p[p["arm"] == BASELINE][["image_id", "correct"]]
    gain = p[(p["arm"] == GAIN) & np.isclose(p["alpha"].astype(float), alpha)][["image_id", "correct"]]
    m = base.merge(gain, on="image_id", suffixes=("_b", "_g"))
    if len(m) != len(base) or len(m) != len(gain):
        raise ValueError(
            f"seed {seed}, alpha {fmt_alpha(alpha)}: baseline has {len(base)} test images, GAIN {len(gain)}, "
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
    return McNemarCombined(
        alpha=float(alpha),
        per_seed=per,
        pooled_baseline_only=sum(m.baseline_only for m in per),
        pooled_gain_only=sum(m.gain_only for m in per),
        seeds_favouring_gain=fav_g,
        seeds_favouring_baseline=fav_b,
        seeds_tied=tied,
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
