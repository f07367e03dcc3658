# Power: how likely a study of a given size is to detect a gap, and how many seeds or images it takes.
#
# Two kinds of figure, each with its assumptions carried in the result (the report prints them):
#   * closed-form power of one t-test or one two-proportion z-test (t_power, images_needed): the
#     power of a single comparison, used for the paper's own numbers;
#   * the power of the study's decision as it is actually made (decision_power): paired t-tests at
#     every GAIN alpha, Holm across the family, "GAIN better" for the primary alpha. No closed form
#     covers Holm with correlated comparisons, so it is simulated (seeded, a few thousand studies).
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower

# The paper's gap in test accuracy: 0.9788 (GAIN) - 0.9762 (baseline).
PAPER_DIFFERENCE = 0.0026
TARGET_POWER = 0.8
LEVEL = 0.05
MAX_N = 10**7  # the search for "how many" stops here and says so


# ---------------------------------------------------------------------------------------------
# Closed form: one t-test


def t_power(effect_size: float, n: int, level: float = LEVEL, *, paired: bool = True) -> float:
    # Two-sided t-test power. paired: one-sample t on n paired differences (statsmodels TTestPower),
    # effect = mean / sd of the differences; otherwise two independent samples of n each
    # (TTestIndPower), effect = difference / common sd. Same noncentral-t formula as statsmodels,
    # whose nct tails return NaN for some large noncentralities (e.g. effect 6 at n = 2); those
    # points are integrated directly over the chi-square of the variance instead.
    if n < 2:
        return float("nan")
    df = n - 1 if paired else 2 * n - 2
    nc = abs(effect_size) * math.sqrt(n if paired else n / 2)
    crit = float(sps.t.ppf(1 - level / 2, df))
    p = float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc))
    if math.isfinite(p):
        return min(max(p, 0.0), 1.0)

    # T' = (Z + nc) / sqrt(V / df), V ~ chi2(df): P(|T'| > c) = E_V[Phi(nc - c s) + Phi(-nc - c s)], s = sqrt(V / df).
    def integrand(v: float) -> float:
        s = math.sqrt(v / df)
        return (sps.norm.cdf(nc - crit * s) + sps.norm.cdf(-nc - crit * s)) * sps.chi2.pdf(v, df)

    lo, hi = float(sps.chi2.ppf(1e-15, df)), float(sps.chi2.isf(1e-15, df))  # where the chi-square's mass is
    val, _ = integrate.quad(integrand, lo, hi, limit=200, points=[float(df)])
    return min(max(float(val), 0.0), 1.0)


def smallest_n(power_of, target: float, n_min: int = 2, n_max: int = MAX_N) -> int | None:
    # Smallest whole n in [n_min, n_max] with power_of(n) >= target (power_of increasing in n);
    # None when even n_max is not enough. Doubling, then bisection: no root finder that can fail.
    if power_of(n_min) >= target:
        return n_min
    lo, hi = n_min, n_min * 2
    while power_of(hi) < target:
        if hi >= n_max:
            return None
        lo, hi = hi, min(hi * 2, n_max)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if power_of(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def seeds_needed(effect_size: float, level: float = LEVEL, target_power: float = TARGET_POWER, *, paired: bool = True) -> int | None:
    if not effect_size > 0 or not math.isfinite(effect_size):
        return None
    return smallest_n(lambda n: t_power(effect_size, n, level, paired=paired), target_power)


def images_needed(cohens_h: float, level: float = LEVEL, target_power: float = TARGET_POWER) -> int | None:
    # Test images per arm for a two-sided two-proportion z-test (statsmodels NormalIndPower, equal arms).
    if not abs(cohens_h) > 0:
        return None
    ind = NormalIndPower()
    return smallest_n(lambda n: float(ind.power(effect_size=abs(cohens_h), nobs1=n, alpha=level, ratio=1.0)), target_power)


# ---------------------------------------------------------------------------------------------
# Simulated: the decision as made


@dataclass(frozen=True)
class DecisionPower:
    difference: float  # the true gap assumed, accuracy as a fraction (GAIN - baseline)
    n_seeds: int  # paired seeds the study had
    n_alphas: int  # size of the Holm family
    sd_differences: tuple[float, ...]  # sd of the paired differences assumed per alpha, primary first
    correlation: float  # between the paired differences of two alphas (they share the baseline run)
    power_every_alpha: float  # P("GAIN better") when every alpha has the gap
    power_primary_only: float  # ... when only the primary alpha has it (the others none): Holm costs most
    single_test_power: float  # closed-form paired t power of the primary alone, no Holm (for comparison)
    seeds_for_target: int | None  # paired seeds for target power, gap at the primary alpha only (None: > max_seeds)
    target_power: float
    level: float
    reps: int
    seed: int
    curve_n: tuple[int, ...]
    curve_every_alpha: tuple[float, ...]
    curve_primary_only: tuple[float, ...]
    assumptions: tuple[str, ...]
    method: str = "simulation of the verdict rule: paired t-test per alpha, Holm, 'GAIN better' at the primary alpha"
    note: str = ""
    # P(the verdict claims equivalence within +-margin) when no alpha differs from the baseline, at the same
    # sd and correlation (TOST per alpha, Holm, primary alpha); empty without a declared margin.
    margin: float | None = None
    equivalence_at_n: float = float("nan")
    curve_equivalent: tuple[float, ...] = ()
    seeds_for_equivalence: int | None = None

    @property
    def power_at_n(self) -> float:
        # The figure quoted when one number is wanted: the lower of the two scenarios.
        return min(self.power_every_alpha, self.power_primary_only)


def _holm_reject_first(p: np.ndarray, level: float) -> np.ndarray:
    # p: (reps, k) raw p-values, column 0 the primary. True where Holm rejects column 0.
    reps, k = p.shape
    order = np.argsort(p, axis=1)
    ps = np.take_along_axis(p, order, axis=1)
    adj = np.maximum.accumulate(np.minimum(1.0, ps * (k - np.arange(k))), axis=1)
    rank0 = np.argmax(order == 0, axis=1)
    return adj[np.arange(reps), rank0] < level


def _draw(n: int, cov: np.ndarray, reps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # Sample means (centred: add the true differences) and variances of n normal paired differences per alpha,
    # (reps, k) each, from their exact joint law (mean ~ N(0, cov / n), independent of the Wishart sample
    # covariance) for large n, so the cost does not grow with n.
    k = len(cov)
    if n - 1 >= k and n > 64:
        means = rng.multivariate_normal(np.zeros(k), cov / n, size=reps)  # (reps, k)
        w = sps.wishart(df=n - 1, scale=cov).rvs(size=reps, random_state=rng)
        var = np.reshape(w, (reps, k, k))[:, np.arange(k), np.arange(k)] / (n - 1) if k > 1 else np.reshape(w, (reps, 1)) / (n - 1)
    else:
        d = rng.multivariate_normal(np.zeros(k), cov, size=(reps, n))  # (reps, n, k)
        means = d.mean(axis=1)
        var = d.var(axis=1, ddof=1)
    return means, var


def _share(means: np.ndarray, var: np.ndarray, n: int, level: float, margin: float | None = None) -> float:
    # Share of simulated studies whose verdict is "GAIN better": Holm-adjusted paired t p < level at the
    # primary alpha (column 0) and its mean difference > 0; with a margin, the share that claims
    # equivalence instead (Holm-adjusted TOST p < level at the primary alpha).
    se = np.sqrt(var / n)
    if margin is not None:
        p_tost = np.maximum(sps.t.sf((means + margin) / se, n - 1), sps.t.sf((margin - means) / se, n - 1))
        return float(_holm_reject_first(p_tost, level).mean())
    p = 2 * sps.t.sf(np.abs(means / se), n - 1)
    better = _holm_reject_first(p, level) & (means[:, 0] > 0)
    return float(better.mean())


def decision_power(
    sd_differences: tuple[float, ...] | list[float],
    n_seeds: int,
    difference: float = PAPER_DIFFERENCE,
    *,
    correlation: float | None = None,
    level: float = LEVEL,
    target_power: float = TARGET_POWER,
    reps: int = 4000,
    seed: int = 0,
    max_seeds: int = 100_000,
    curve: bool = True,
    margin: float | None = None,
) -> DecisionPower:
    # sd_differences: sd of the paired differences per alpha, the primary alpha first. correlation:
    # between two alphas' paired differences; None assumes 0.5 (they share the baseline run; with equal
    # run-to-run variance of both arms the correlation is exactly 0.5).
    sds = [float(s) for s in sd_differences]
    k = len(sds)
    assumed_corr = correlation is None
    rho = 0.5 if correlation is None else float(min(max(correlation, 0.0), 0.99))
    assumptions = [
        f"a true gap of {100 * difference:+.2f} pp at the primary α (the α the validation rule picks)",
        "normally distributed paired differences, independent across seeds",
        "sd of the paired differences per α as given: " + ", ".join(f"{100 * s:.3f} pp" for s in sds),
    ]
    if k > 1:
        assumptions.append(
            f"correlation {rho:.2f} between two α's paired differences"
            + (" (assumed: the α arms share the baseline run)" if assumed_corr else " (estimated from the study's runs)")
        )
        assumptions.append(f"Holm over {k} α at level {level}; two scenarios: the gap at every α, or at the primary α only")
    else:
        assumptions.append(f"one α: no multiplicity correction; level {level}, two-sided")
    assumptions.append(f"{reps} simulated studies per point (seed {seed}); simulation error about ±{100 * math.sqrt(0.25 / reps):.1f} points")
    nan = float("nan")
    bad = not sds or n_seeds < 2 or not all(math.isfinite(s) and s > 0 for s in sds)
    if bad:
        why = (
            f"only {n_seeds} paired seed(s): power needs at least 2" if n_seeds < 2
            else "the paired differences have no spread (sd 0) or none was measured: there is no variance to simulate from; "
            "with identical differences the declared exact sign test decides"
        )
        return DecisionPower(difference, n_seeds, k, tuple(sds), rho, nan, nan, nan, None, target_power, level, reps, seed,
                             (), (), (), tuple(assumptions), note=f"power not computable: {why}.")
    sd = np.asarray(sds)
    cov = rho * np.outer(sd, sd)
    np.fill_diagonal(cov, sd**2)
    every = np.full(k, float(difference))
    only = np.zeros(k)
    only[0] = difference

    draws: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def sim(n: int, deltas: np.ndarray, margin: float | None = None) -> float:
        # Common random numbers per n: every scenario at n shifts the same draws by its true differences.
        if n not in draws:
            draws[n] = _draw(n, cov, reps, np.random.default_rng([seed, n]))
        means, var = draws[n]
        return _share(means + deltas, var, n, level, margin)

    p_every = sim(n_seeds, every)
    p_only = sim(n_seeds, only) if k > 1 else p_every
    needed = smallest_n(lambda n: sim(n, only), target_power, 2, max_seeds) if difference != 0 else None
    note = "" if needed is not None else f"more than {max_seeds:,} paired seeds would be needed for {target_power:.0%} power."
    none = np.zeros(k)
    need_eq = smallest_n(lambda n: sim(n, none, margin), target_power, 2, max_seeds) if margin is not None else None
    cn: tuple[int, ...] = ()
    ce: tuple[float, ...] = ()
    co: tuple[float, ...] = ()
    if curve:
        # up to 1.3 x the seeds needed (for the gap, and for equivalence), at most 1000
        hi = int(max(10, 2 * n_seeds, min(1.3 * max(needed or max_seeds, need_eq or 0), 1000)))
        ns = np.unique(np.geomspace(2, hi, num=30).round().astype(int))
        cn = tuple(int(n) for n in ns)
        ce = tuple(sim(n, every) for n in cn)
        co = tuple(sim(n, only) for n in cn) if k > 1 else ce
    eq: dict = {}
    if margin is not None:
        eq = dict(margin=float(margin), equivalence_at_n=sim(n_seeds, none, margin),
                  curve_equivalent=tuple(sim(n, none, margin) for n in cn), seeds_for_equivalence=need_eq)
        assumptions.insert(-1, f"equivalence: no α differs from the baseline; TOST within ±{100 * margin:g} pp per α, "
                               "Holm-adjusted, 'equivalent' at the primary α")
    return DecisionPower(
        difference=float(difference),
        n_seeds=int(n_seeds),
        n_alphas=k,
        sd_differences=tuple(sds),
        correlation=rho,
        power_every_alpha=p_every,
        power_primary_only=p_only,
        single_test_power=t_power(difference / sds[0], n_seeds, level),
        seeds_for_target=needed,
        target_power=target_power,
        level=level,
        reps=reps,
        seed=seed,
        curve_n=cn,
        curve_every_alpha=ce,
        curve_primary_only=co,
        assumptions=tuple(assumptions),
        note=note,
        **eq,
    )


# ---------------------------------------------------------------------------------------------
# Inconclusive: how many seeds would probably decide


def decide_probability(mean: float, sd: float, n: int, margin: float | None, *, n_alphas: int = 1,
                       level: float = LEVEL, reps: int = 4000, seed: int = 0) -> float:
    """P(a fixed-size study of n paired seeds reaches a decision: 'better'/'worse' or 'equivalent') if the
    paired differences were N(mean, sd^2). Each test at level / n_alphas: Holm's strictest step, so the
    figure does not promise what Holm might not give. Exact law of the mean and sd, simulated."""
    rng = np.random.default_rng([seed, n])
    a = level / max(1, n_alphas)
    m = mean + sd / math.sqrt(n) * rng.standard_normal(reps)
    s = sd * np.sqrt(rng.chisquare(n - 1, reps) / (n - 1))
    se = s / math.sqrt(n)
    # p < a compared as statistics against the critical values (one t quantile each, not reps t tails)
    two, one = sps.t.isf(a / 2, n - 1), sps.t.isf(a, n - 1)
    decided = np.abs(m) / se > two
    if margin is not None:
        decided |= ((m + margin) / se > one) & ((margin - m) / se > one)
    return float(decided.mean())


def seeds_to_decide(mean: float, sd: float, margin: float | None, *, n_alphas: int = 1, level: float = LEVEL,
                    target: float = TARGET_POWER, max_seeds: int = 100_000) -> int | None:
    """Paired seeds a fixed-size study would need to decide with probability `target`, taking the observed
    mean and sd of the paired differences for the truth; None when not finite or beyond max_seeds."""
    if not (math.isfinite(mean) and math.isfinite(sd) and sd > 0):
        return None
    return smallest_n(lambda n: decide_probability(mean, sd, n, margin, n_alphas=n_alphas, level=level),
                      target, 2, max_seeds)
