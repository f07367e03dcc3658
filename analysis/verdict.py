# The study's answer, by fixed rules written down before any result was seen.
#
# Rules (primary comparison only: the GAIN alpha with the best mean validation accuracy in
# confirmation vs baseline, paired by seed, on test accuracy; differences GAIN - baseline; the margin
# +-m is declared in study.json before the first trial):
#   1. "GAIN better"  if the paired t-test's p-value, Holm-adjusted across all GAIN alphas, is below the
#                     look's two-sided level (0.05 for a fixed-size study) and the mean difference is > 0;
#   2. "GAIN worse"   the same with the mean difference < 0;
#   3. "equivalent"   (within +-m) otherwise, if the equivalence test rejects: two one-sided paired t-tests
#                     against -m and +m (TOST), p = the larger one-sided p, Holm-adjusted across the alphas
#                     like the difference test, below the look's one-sided level (0.05 fixed-size: with one
#                     alpha, exactly "the 90 % t interval lies inside +-m");
#   4. "inconclusive" otherwise, including fewer than 2 paired seeds and a study without a declared margin.
#                     The sentence says which way the data lean and how many seeds would probably decide.
# A difference shown to be smaller than the margin (rule 1 or 2 and the TOST rejects) keeps its label and
# says so: real, but smaller than the margin.
# The tests decide on the mean: collapsed runs are outcomes of the method, and an equivalence claim must
# hold for the accuracy a user can expect; the Hodges-Lehmann estimate that leads the first screen
# describes the typical seed and is not tested (README, "The report and the verdict").
# The paired test is the paired t-test; when every paired difference is the same (t = 0/0) it is the
# exact sign test (against 0, and against each bound of the margin), so tables that differ only in how
# the baseline's counts vary get the same verdict.
# Sequential studies (--seeds auto / --max-seeds): the verdict is computed at each look with that look's
# nominal levels from Lan-DeMets O'Brien-Fleming alpha spending (analysis/sequential.py); the study stops
# at the first look with rule 1, 2 or 3.
# The intervals quoted are t intervals (95 %, and 90 % for the equivalence; their coverage holds at 10
# seeds, BCa's does not); the power quoted is that of this decision, Holm included, by simulation, and
# the error rates of the four-way rule are simulated on bimodal seed data (analysis/simulation.py).
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

import pandas as pd

from analysis.power import DecisionPower, seeds_to_decide
from analysis.sequential import Design
from analysis.stats import AlphaFamily, BayesProbs, CollapseTest, Interval, compare_alphas
from analysis.tables import CONFIRM, PRIMARY_RULE, ArmOutcomes, fmt_alpha

GAIN_BETTER = "GAIN better"
GAIN_WORSE = "GAIN worse"
EQUIVALENT = "equivalent"
INCONCLUSIVE = "inconclusive"
NO_DIFFERENCE = INCONCLUSIVE  # the label's name before the equivalence test existed (2026-11)
LABELS = (GAIN_BETTER, GAIN_WORSE, EQUIVALENT, INCONCLUSIVE)
LEVEL = 0.05

RULES = (
    f'"{GAIN_BETTER}": Holm-adjusted paired t-test p below the look\'s two-sided level (0.05 in a fixed-size '
    "study) and mean paired difference > 0.",
    f'"{GAIN_WORSE}": the same with mean paired difference < 0.',
    f'"{EQUIVALENT}" within ±margin: otherwise, if both one-sided paired t-tests against -margin and +margin reject '
    "(TOST; p = the larger one-sided p, Holm-adjusted across the α family) at the look's one-sided level (0.05 "
    "in a fixed-size study: with one α, the 90% t interval lies inside ±margin).",
    f'"{INCONCLUSIVE}": none of the above (including fewer than 2 paired seeds, or no declared margin); the '
    "sentence says which way the data lean and how many paired seeds would probably decide.",
    "A difference that is also inside ±margin keeps its label (better or worse) and is called smaller than the margin.",
    "The margin is declared in study.json before the first trial, in percentage points of test accuracy.",
    "The tests are on the mean paired difference (collapsed runs count as they are); the Hodges-Lehmann estimate "
    "on the first screen describes the typical seed and is not tested.",
    "When all paired differences are equal (t = 0/0) each test is the exact sign test over seeds (against 0, "
    "and against each bound of the margin).",
    f"Primary comparison, declared in advance: {PRIMARY_RULE} (ties within 1e-9 go to the smaller α), vs baseline, on test accuracy.",
    "Sequential studies: the verdict is taken at each look with that look's nominal levels (Lan-DeMets "
    "O'Brien-Fleming spending of 0.05 two-sided for a difference and 0.05 for each one-sided equivalence test); the "
    "study stops at the first look that decides, or when the seed budget is spent.",
    "Every completed confirmation run counts as it is, collapsed ones included; a diverged run has no test accuracy, so its "
    "seed leaves the pairs of that α. Collapsed and diverged runs are counted and named.",
    "The intervals are t intervals of the mean paired difference (95%, and 90% for the equivalence). The BCa "
    "bootstrap interval, Wilcoxon, P(GAIN > baseline), ASO, baycomp's probabilities and the analysis without "
    "collapsed pairs are checks; they do not change the verdict.",
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
    difference_ci: Interval | None  # 95 % t interval
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
    # The equivalence half of the four-way answer
    margin: float | None = None  # fraction of test accuracy; None: no margin declared
    difference_ci90: Interval | None = None  # the 90 % t interval (the TOST's, at 0.05 per side)
    p_tost: float = float("nan")
    p_tost_holm: float = float("nan")
    within_margin: bool = False  # the TOST rejected (label "equivalent", or a difference smaller than the margin)
    lean: str = ""  # inconclusive: "GAIN better" or "GAIN worse", the side the mean difference is on
    seeds_to_decide: int | None = None  # inconclusive: paired seeds that would probably (80 %) decide
    bayes: BayesProbs | None = None  # baycomp's three probabilities, a cross-check
    look: int = 0  # index of the look (stage) this verdict was taken at
    looks: tuple[int, ...] = ()  # the design's looks (paired seeds); one look for a fixed-size study
    difference_level: float = LEVEL  # the look's nominal two-sided level of "better"/"worse"
    equivalence_level: float = LEVEL  # the look's nominal level of each one-sided equivalence test
    brief: str = ""  # the label and what decided it (tests, runs), without the estimate: the first screen's box

    @property
    def decided(self) -> bool:
        return self.label != INCONCLUSIVE


def decide(mean_difference: float, p_adjusted: float, n_seeds: int, level: float = LEVEL, *,
           p_equivalence: float = float("nan"), equivalence_level: float = LEVEL) -> str:
    """The four-way label from the primary comparison's mean difference, its Holm-adjusted paired-test p and
    its Holm-adjusted TOST p (NaN: no margin declared), at the look's levels."""
    if n_seeds < 2 or not math.isfinite(mean_difference):
        return INCONCLUSIVE
    if math.isfinite(p_adjusted) and p_adjusted < level and mean_difference > 0:
        return GAIN_BETTER
    if math.isfinite(p_adjusted) and p_adjusted < level and mean_difference < 0:
        return GAIN_WORSE
    if math.isfinite(p_equivalence) and p_equivalence < equivalence_level:
        return EQUIVALENT
    return INCONCLUSIVE


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


def _ci(iv: Interval | None, level: str) -> str:
    return f"{level} t interval [{_pp(iv.low)}, {_pp(iv.high)}]" if iv is not None else ""


def _margin_pp(margin: float) -> str:
    return f"±{100 * margin:g} pp"


def make_verdict(
    family: AlphaFamily,
    power: DecisionPower | None = None,
    outcomes: Sequence[ArmOutcomes] = (),
    collapse: Sequence[CollapseTest] = (),
    design: Design | None = None,
    look: int | None = None,
) -> Verdict:
    """The verdict on `family` at look `look` of `design` (default: a fixed-size study of the family's seeds
    at the family's margin; look: the last look whose seeds the primary comparison has)."""
    primary = family.primary()
    family_size = sum(math.isfinite(c.ttest.p_value) for c in family.comparisons)
    runs = outcome_sentence(outcomes, collapse)
    n = primary.n if primary is not None else 0
    design = design or Design(family.margin, (max(n, 1),))
    look = design.look_of(n) if look is None else look
    levels = dict(look=look, looks=design.looks, difference_level=design.difference_levels[look],
                  equivalence_level=design.equivalence_levels[look], margin=design.margin)
    extra = dict(outcomes=tuple(outcomes), collapse_tests=tuple(collapse), **levels)
    if primary is None:
        return Verdict(
            INCONCLUSIVE, None, family.metric, 0, float("nan"), None, float("nan"), float("nan"), family_size, power,
            "No completed, seed-paired confirmation runs of GAIN and baseline: there is nothing to compare yet."
            + (f" {runs}" if runs else ""), **extra,
        )
    p_tost = primary.tost.p_value if primary.tost is not None else float("nan")
    label = decide(primary.mean_difference, primary.p_holm, primary.n, levels["difference_level"],
                   p_equivalence=primary.p_tost_holm, equivalence_level=levels["equivalence_level"])
    within = math.isfinite(primary.p_tost_holm) and primary.p_tost_holm < levels["equivalence_level"] and primary.n >= 2
    a = fmt_alpha(primary.alpha)
    if primary.n < 2:
        return Verdict(
            label, primary.alpha, family.metric, primary.n, primary.mean_difference, None, float("nan"), float("nan"),
            family_size, power,
            f"{label}: only {primary.n} seed-paired run(s) of GAIN α={a} and baseline "
            f"(difference {_pp(primary.mean_difference)}); a seed-level test needs at least 2, a useful one many more."
            + (f" {runs}" if runs else ""), primary.ttest.method, **extra,
        )
    ci, ci90 = primary.difference_ci, primary.difference_ci90
    test = "paired t-test" if primary.ttest.method.startswith("paired t") else "exact sign test (all paired differences equal)"
    dl, el = levels["difference_level"], levels["equivalence_level"]
    # Each test is quoted against its look's nominal level ("< 0.0029", "not below 0.0029").
    at = f" (look {look + 1} of {len(design.looks)}, {design.looks[look]} seeds)" if design.sequential else ""
    diff_test = (f"{test} p = {primary.ttest.p_value:.3g}, Holm-adjusted over {family_size} α p = {primary.p_holm:.3g}")
    m = design.margin
    eq_test = (f"TOST within {_margin_pp(m)}: p = {p_tost:.3g}, Holm-adjusted p = {primary.p_tost_holm:.3g}"
               if m is not None else "")
    head = (f"GAIN α={a} minus baseline = {_pp(primary.mean_difference)} test accuracy over {primary.n} paired seeds")
    lean, need = "", None
    # sentence: the whole verdict; tests: what decided it (the first screen shows the estimate and the
    # intervals in plain words above it, and this part in the verdict box).
    if label in (GAIN_BETTER, GAIN_WORSE):
        tests = f"{diff_test} < {dl:.3g}{at}."
        if within:
            tests += (f" The difference is also inside {_margin_pp(m)} ({eq_test} < {el:.3g}; {_ci(ci90, '90%')}): "
                      "real, but smaller than the margin.")
        sentence = f"{label}: {head}, {_ci(ci, '95%')}; {tests}"
    elif label == EQUIVALENT:
        tests = f"{eq_test} < {el:.3g}; {diff_test}{at}."
        sentence = (f"{EQUIVALENT} within {_margin_pp(m)}: {head}, {_ci(ci90, '90%')} inside {_margin_pp(m)}; "
                    f"{_ci(ci, '95%')}; {tests}")
    else:
        lean = GAIN_BETTER if primary.mean_difference > 0 else GAIN_WORSE if primary.mean_difference < 0 else ""
        need = seeds_to_decide(primary.mean_difference, primary.sd_difference, m, n_alphas=max(family_size, 1))
        level_d, level_e = f"{dl:.3g}", f"{el:.3g}"
        tests = (f"no difference ({diff_test}, not below {level_d})"
                 + (f" and no equivalence ({eq_test}, not below {level_e})" if m is not None else "") + f"{at}.")
        if m is None:
            tests += " No equivalence margin was declared for this study, so equivalence was not tested."
        sentence = f"{INCONCLUSIVE}: {head}, {_ci(ci, '95%')}, {_ci(ci90, '90%')}; neither is shown: {tests}"
        if lean:
            where = ("inside" if abs(primary.mean_difference) < m else "beyond") + f" the {_margin_pp(m)} margin" if m else ""
            sentence += (f" The data lean towards {lean} (mean {_pp(primary.mean_difference)}"
                         + (f", {where}" if where else "") + ").")
        sentence += (f" About {need:,} paired seeds would probably (80%) decide, if the observed mean and sd "
                     f"({100 * primary.sd_difference:.2f} pp) held." if need is not None else
                     " How many seeds would decide cannot be said from these data (no spread, or more than 100,000).")
    tail = f" {runs}" if runs else ""
    sentence += tail
    boot = primary.bootstrap_ci
    if boot is not None and label not in (GAIN_BETTER, GAIN_WORSE) and boot.excludes(0.0):
        sentence += " (The bootstrap interval, a check, excludes 0 while the declared test does not reject.)"
    if boot is not None and label in (GAIN_BETTER, GAIN_WORSE) and not boot.excludes(0.0):
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
        brief=f"{label}: {tests}{tail}",
        difference_ci90=ci90,
        p_tost=p_tost,
        p_tost_holm=primary.p_tost_holm,
        within_margin=within,
        lean=lean,
        seeds_to_decide=need,
        bayes=primary.bayes,
        **extra,
    )


def stage_seeds(trials: pd.DataFrame, n: int) -> list[int]:
    """The first n confirmation seeds (in seed order): the seeds of a look at n paired seeds."""
    conf = trials[trials["phase"].astype(str) == CONFIRM]
    return sorted(set(int(s) for s in conf["seed"]))[:n]


def stage_verdict(trials: pd.DataFrame, design: Design, look: int) -> Verdict:
    """The verdict at look `look` of a sequential study, on the confirmation runs of that look's seeds only
    (the primary alpha is chosen on those runs too). What the launcher decides on after each stage."""
    keep = set(stage_seeds(trials, design.looks[look]))
    conf = trials["phase"].astype(str) == CONFIRM
    part = trials[~conf | trials["seed"].astype(int).isin(keep)]
    family = compare_alphas(part, full=False, margin=design.margin)
    return make_verdict(family, design=design, look=look)
