# The study's answer, by fixed rules written down before any result was seen.
#
# Rules (primary comparison only: the GAIN alpha with the best mean validation accuracy in
# confirmation vs baseline, paired by seed, on test accuracy):
#   1. "GAIN better"  if the paired test's p-value, Holm-adjusted across all GAIN alphas, is < 0.05
#                     and the mean paired difference (GAIN - baseline) is > 0;
#   2. "GAIN worse"   if that adjusted p-value is < 0.05 and the mean difference is < 0;
#   3. "no detectable difference" otherwise, including fewer than 2 paired seeds.
# The paired test is the paired t-test; when every paired difference is the same (t = 0/0) it is the
# exact sign test, so tables that differ only in how the baseline's counts vary get the same verdict.
# The interval quoted is the t interval (its coverage holds at 10 seeds; BCa's does not), and the
# power quoted is that of this decision, Holm included, by simulation.
# Runs: every completed confirmation run enters as it is, a collapsed one (it learnt one class) with
# its test accuracy; a diverged run has no test accuracy, so its seed leaves that alpha's pairs; both
# are counted and named in the verdict. A sensitivity analysis without collapsed pairs is reported
# beside it, labelled as such; it does not change the verdict.
# What the verdict does not cover: the test set is fixed, so seed-level tests measure training
# randomness only, not which test images were drawn (the per-image McNemar tests cover that for one
# pair of runs at a time); and the result is for this dataset, this search budget and these alphas.
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from analysis.power import DecisionPower
from analysis.stats import AlphaFamily, CollapseTest, Interval
from analysis.tables import PRIMARY_RULE, ArmOutcomes, fmt_alpha

GAIN_BETTER = "GAIN better"
NO_DIFFERENCE = "no detectable difference"
GAIN_WORSE = "GAIN worse"
LEVEL = 0.05

RULES = (
    f'"{GAIN_BETTER}": Holm-adjusted paired test p < {LEVEL} and mean paired difference > 0.',
    f'"{GAIN_WORSE}": Holm-adjusted paired test p < {LEVEL} and mean paired difference < 0.',
    f'"{NO_DIFFERENCE}": otherwise (including fewer than 2 paired seeds).',
    "The paired test is the paired t-test; when all paired differences are equal (t = 0/0) it is the exact sign test over seeds.",
    f"Primary comparison, declared in advance: {PRIMARY_RULE} (ties within 1e-9 go to the smaller α), vs baseline, on test accuracy.",
    "Every completed confirmation run counts as it is, collapsed ones included; a diverged run has no test accuracy, so its "
    "seed leaves the pairs of that α. Collapsed and diverged runs are counted and named.",
    "The interval is the t interval of the mean paired difference. The BCa bootstrap interval, Wilcoxon, P(GAIN > baseline), "
    "ASO and the analysis without collapsed pairs are checks; they do not change the verdict.",
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
    difference_ci: Interval | None  # t interval
    p_value: float  # raw paired test (t, or the sign test by the zero-spread rule)
    p_holm: float
    family_size: int
    power: DecisionPower | None
    sentence: str
    test_method: str = ""
    outcomes: tuple[ArmOutcomes, ...] = ()
    collapse_tests: tuple[CollapseTest, ...] = ()
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


def _seeds(s: Sequence[int]) -> str:
    return ", ".join(str(x) for x in s)


def outcome_sentence(outcomes: Sequence[ArmOutcomes], tests: Sequence[CollapseTest] = ()) -> str:
    # "Collapsed runs: baseline 0 of 10; GAIN α=0.298 2 of 10 (seeds 1008, 1009) ..." in one sentence.
    if not outcomes:
        return ""
    parts = []
    for o in outcomes:
        if not o.collapse_known:
            txt = f"{o.label} not recorded"
        else:
            txt = f"{o.label} {len(o.collapsed_seeds)} of {o.completed}"
            if o.collapsed_seeds:
                txt += f" (seed{'s' if len(o.collapsed_seeds) > 1 else ''} {_seeds(o.collapsed_seeds)})"
        parts.append(txt)
    out = "Collapsed runs (one class predicted, or chance accuracy): " + "; ".join(parts) + "."
    div = [o for o in outcomes if o.diverged_seeds or o.failed_seeds]
    if div:
        d = []
        for o in div:
            if o.diverged_seeds:
                d.append(f"{o.label} {len(o.diverged_seeds)} diverged (seed{'s' if len(o.diverged_seeds) > 1 else ''} {_seeds(o.diverged_seeds)})")
            if o.failed_seeds:
                d.append(f"{o.label} {len(o.failed_seeds)} failed (seeds {_seeds(o.failed_seeds)})")
        out += " Without test accuracy, so left out of their pairs: " + "; ".join(d) + "."
    else:
        out += " No run diverged."
    for t in tests:
        if t.gain_collapsed or t.baseline_collapsed:
            out += (f" Collapse, GAIN α={fmt_alpha(t.alpha)} vs baseline: {t.gain_collapsed}/{t.gain_runs} vs "
                    f"{t.baseline_collapsed}/{t.baseline_runs}, Fisher's exact p = {t.fisher_p:.3g}.")
    return out


def make_verdict(
    family: AlphaFamily,
    power: DecisionPower | None = None,
    outcomes: Sequence[ArmOutcomes] = (),
    collapse: Sequence[CollapseTest] = (),
) -> Verdict:
    primary = family.primary()
    family_size = sum(math.isfinite(c.ttest.p_value) for c in family.comparisons)
    runs = outcome_sentence(outcomes, collapse)
    extra = dict(outcomes=tuple(outcomes), collapse_tests=tuple(collapse))
    if primary is None:
        return Verdict(
            NO_DIFFERENCE, None, family.metric, 0, float("nan"), None, float("nan"), float("nan"), family_size, power,
            "No completed, seed-paired confirmation runs of GAIN and baseline: there is nothing to compare yet."
            + (f" {runs}" if runs else ""), **extra,
        )
    label = decide(primary.mean_difference, primary.p_holm, primary.n)
    a = fmt_alpha(primary.alpha)
    if primary.n < 2:
        return Verdict(
            label, primary.alpha, family.metric, primary.n, primary.mean_difference, None, float("nan"), float("nan"),
            family_size, power,
            f"{label}: only {primary.n} seed-paired run(s) of GAIN α={a} and baseline "
            f"(difference {_pp(primary.mean_difference)}); a seed-level test needs at least 2, a useful one many more."
            + (f" {runs}" if runs else ""), primary.ttest.method, **extra,
        )
    ci = primary.difference_ci
    ci_txt = f", 95% t interval [{_pp(ci.low)}, {_pp(ci.high)}]" if ci is not None else ""
    test = "paired t-test" if primary.ttest.method.startswith("paired t") else "exact sign test (all paired differences equal)"
    sentence = (
        f"{label}: GAIN α={a} minus baseline = {_pp(primary.mean_difference)} test accuracy"
        f"{ci_txt} over {primary.n} paired seeds; {test} p = {primary.ttest.p_value:.3g}, "
        f"Holm-adjusted over {family_size} α p = {primary.p_holm:.3g}."
    )
    if runs:
        sentence += f" {runs}"
    # The power of this decision is stated beside the verdict (report: "To detect the paper's gap ...").
    boot = primary.bootstrap_ci
    if boot is not None and label == NO_DIFFERENCE and boot.excludes(0.0):
        sentence += " (The bootstrap interval, a check, excludes 0 while the declared test does not reject.)"
    if boot is not None and label != NO_DIFFERENCE and not boot.excludes(0.0):
        sentence += " (The bootstrap interval, a check, includes 0: treat the verdict as fragile.)"
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
        test_method=primary.ttest.method,
        **extra,
    )
