# The study's answer, by fixed rules written down before any result was seen.
#
# Rules (primary comparison only: the GAIN alpha with the best mean validation accuracy in
# confirmation vs baseline, paired by seed, on test accuracy):
#   1. "GAIN better"  if the paired t-test p-value, Holm-adjusted across all GAIN alphas, is < 0.05
#                     and the mean paired difference (GAIN - baseline) is > 0;
#   2. "GAIN worse"   if that adjusted p-value is < 0.05 and the mean difference is < 0;
#   3. "no detectable difference" otherwise, including fewer than 2 paired seeds.
# Why these: the paired t-test is the test whose power statsmodels computes, so the stated power is
# the power of the decision itself; Holm covers the alpha family, and it also guards the primary
# comparison against the optimism of picking the alpha on the same runs' validation accuracy. The
# bootstrap interval, Wilcoxon, P(GAIN > baseline) and ASO are reported next to the verdict as
# checks; they do not change it (a rule that needed all of them to agree would be more conservative
# than its stated level, and its power would be unknown).
# What the verdict does not cover: the test set is fixed, so seed-level tests measure training
# randomness only, not which test images were drawn (the per-image McNemar tests cover that for one
# pair of runs at a time); and the result is for this dataset, this search budget and these alphas.
from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.power import PowerResult
from analysis.stats import AlphaFamily, Interval
from analysis.tables import PRIMARY_RULE

GAIN_BETTER = "GAIN better"
NO_DIFFERENCE = "no detectable difference"
GAIN_WORSE = "GAIN worse"
LEVEL = 0.05

RULES = (
    f'"{GAIN_BETTER}": Holm-adjusted paired t-test p < {LEVEL} and mean paired difference > 0.',
    f'"{GAIN_WORSE}": Holm-adjusted paired t-test p < {LEVEL} and mean paired difference < 0.',
    f'"{NO_DIFFERENCE}": otherwise (including fewer than 2 paired seeds).',
    f"Primary comparison, declared in advance: {PRIMARY_RULE}, vs baseline, on test accuracy.",
    "Bootstrap interval, Wilcoxon, P(GAIN > baseline) and ASO are reported as checks and do not change the verdict.",
)
CAVEAT = (
    "The test set is fixed: seed-level tests cover training randomness (initialisation, data order, "
    "augmentation) but not test-set sampling, so a real gap could still shrink on other test images; "
    "per-image McNemar tests cover test sampling for one pair of runs at a time. The verdict holds for "
    "this dataset, this tuning budget and these alpha values only. With few seeds, bootstrap intervals "
    "and ASO are unstable."
)


@dataclass(frozen=True)
class Verdict:
    label: str
    alpha: float | None  # the primary GAIN alpha
    metric: str
    n_seeds: int
    mean_difference: float
    difference_ci: Interval | None
    p_value: float  # raw paired t-test
    p_holm: float
    family_size: int
    power: PowerResult | None
    sentence: str
    rules: tuple[str, ...] = RULES
    caveat: str = CAVEAT


def decide(mean_difference: float, p_adjusted: float, n_seeds: int, level: float = LEVEL) -> str:
    if n_seeds < 2 or not math.isfinite(p_adjusted) or not math.isfinite(mean_difference):
        return NO_DIFFERENCE
    if p_adjusted < level and mean_difference > 0:
        return GAIN_BETTER
    if p_adjusted < level and mean_difference < 0:
        return GAIN_WORSE
    return NO_DIFFERENCE


def _pp(x: float) -> str:
    return f"{100 * x:+.2f} pp"


def make_verdict(family: AlphaFamily, power: PowerResult | None = None) -> Verdict:
    primary = family.primary()
    family_size = sum(math.isfinite(c.ttest.p_value) for c in family.comparisons)
    if primary is None:
        return Verdict(
            NO_DIFFERENCE, None, family.metric, 0, float("nan"), None, float("nan"), float("nan"), family_size, power,
            "No completed, seed-paired confirmation runs of GAIN and baseline: there is nothing to compare yet.",
        )
    label = decide(primary.mean_difference, primary.p_holm, primary.n)
    if primary.n < 2:
        return Verdict(
            label, primary.alpha, family.metric, primary.n, primary.mean_difference, None, float("nan"), float("nan"),
            family_size, power,
            f"{label}: only {primary.n} seed-paired run(s) of GAIN α={primary.alpha:g} and baseline "
            f"(difference {_pp(primary.mean_difference)}); a seed-level test needs at least 2, a useful one many more.",
        )
    ci = primary.difference_ci
    ci_txt = f", 95% CI [{_pp(ci.low)}, {_pp(ci.high)}]" if ci is not None else ""
    sentence = (
        f"{label}: GAIN α={primary.alpha:g} minus baseline = {_pp(primary.mean_difference)} test accuracy"
        f"{ci_txt} over {primary.n} paired seeds; paired t-test p = {primary.ttest.p_value:.3g}, "
        f"Holm-adjusted over {family_size} alpha(s) p = {primary.p_holm:.3g}."
    )
    if power is not None and math.isfinite(power.power_at_n):
        sentence += (
            f" Power to detect a {_pp(power.difference)} gap with {power.n_seeds} seeds: {power.power_at_n:.0%}; "
            f"{power.seeds_for_target:.0f} seeds would give {power.target_power:.0%}."
        )
    if ci is not None and label == NO_DIFFERENCE and ci.excludes(0.0):
        sentence += " (The bootstrap interval excludes 0 while the t-test does not reject: a check, not the verdict.)"
    if ci is not None and label != NO_DIFFERENCE and not ci.excludes(0.0):
        sentence += " (The bootstrap interval includes 0: treat the verdict as fragile.)"
    return Verdict(
        label=label,
        alpha=primary.alpha,
        metric=family.metric,
        n_seeds=primary.n,
        mean_difference=primary.mean_difference,
        difference_ci=ci,
        p_value=primary.ttest.p_value,
        p_holm=primary.p_holm,
        family_size=family_size,
        power=power,
        sentence=sentence,
    )
