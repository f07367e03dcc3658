# The report's sections on what the confirmation runs show: the seed-paired comparisons, secondary
# outcomes, each arm over seeds, each test image (McNemar), groups, attention, learning curves, power
# and the verdict's simulated error rates. Each formats the Analysis (analyse.py computes every number)
# and draws its figures from it.
from __future__ import annotations

import math

from analysis import figures
from analysis.analyse import Analysis
from analysis.document import Doc, fmt_ci, fmt_num, fmt_p, fmt_pp
from analysis.figure_worker import Overlays
from analysis.first_screen import take_sentence
from analysis.simulation import SeedModel
from analysis.stats import ArmSummary, PairedComparison
from analysis.tables import ATTENTION_METRICS, CONTENT_FREE, GAIN, METRIC_LABELS, arm_label, fmt_alpha


def comparisons_section(doc: Doc, a: Analysis) -> None:
    family, summaries = a.family, a.summaries
    doc.h(2, "GAIN vs baseline over seed-paired runs (test accuracy)")
    doc.p(
        "Differences are GAIN − baseline in percentage points (pp). The verdict uses the paired test (t; the exact sign "
        "test when every paired difference is equal), Holm-adjusted across the GAIN alphas, and the 95% t interval. "
        "Checks that do not change the verdict: BCa bootstrap interval, Wilcoxon, P(GAIN > baseline) (share of seeds "
        f"where GAIN wins, ties count ½, 95% percentile bootstrap), ASO (deepsig eps_min, {a.aso_iterations} bootstrap "
        "iterations; below 0.2 means the first arm is almost stochastically larger). d_z = mean / sd of the paired differences. "
        "Hodges-Lehmann: the median of the Walsh averages of the paired differences, the robust estimate the first "
        "screen leads with (one seed cannot carry it), with the interval that inverts Wilcoxon's signed-rank test."
    )
    doc.table(
        ["α", "seeds", "mean diff (pp)", "95% t interval (pp)", "95% BCa check (pp)",
         "Hodges-Lehmann [95% signed-rank] (pp)", "sd diff (pp)", "d_z", "test",
         "p", "Holm p", "Wilcoxon p", "P(GAIN>base) [95% CI]", "ASO ε GAIN>base", "ASO ε base>GAIN"],
        _comparison_rows(family.comparisons, family.primary_alpha),
    )
    if family.margin is not None:
        doc.p(f"Equivalence within ±{100 * family.margin:g} pp (the declared margin): two one-sided paired t-tests "
              "(TOST, statsmodels ttost_paired), p = the larger one-sided p, Holm-adjusted across the α family; the 90% "
              "t interval is the TOST's (inside the band iff TOST p < 0.05). baycomp: the Bayesian signed-rank test "
              "with the margin as its region of practical equivalence, the probability that each region is the most "
              "probable (10,000 posterior draws, seeded): a cross-check without error-rate guarantees.")
        doc.table(["α", "90% t interval (pp)", "inside the band", "TOST p", "Holm TOST p",
                   "baycomp P(GAIN worse)", "P(equivalent)", "P(GAIN better)"],
                  [[fmt_alpha(c.alpha) + (" (primary)" if family.primary_alpha is not None
                                          and math.isclose(c.alpha, family.primary_alpha) else ""),
                    fmt_ci(c.difference_ci90, 100, signed=True),
                    "n/a" if c.difference_ci90 is None else
                    "yes" if -family.margin < c.difference_ci90.low and c.difference_ci90.high < family.margin else "no",
                    fmt_p(c.tost.p_value if c.tost else None), fmt_p(c.p_tost_holm),
                    *((fmt_num(c.bayes.p_worse, 3), fmt_num(c.bayes.p_equivalent, 3), fmt_num(c.bayes.p_better, 3))
                      if c.bayes else ("n/a",) * 3)]
                   for c in family.comparisons])
    for c in family.comparisons:
        for n in c.notes + tuple(t.note for t in (c.ttest, c.wilcoxon) if t is not None and t.note):
            doc.note(f"α={fmt_alpha(c.alpha)}: {n}")
    for fam, what in ((a.sensitivity, "without collapsed pairs"),
                      (a.warmup_sensitivity, "without GAIN runs that selected a warm-up epoch")):
        if fam is None:
            continue
        doc.h(3, f"Sensitivity analysis {what} (declared; not the verdict)")
        doc.p(f"Same tests, {fam.excluded}. The primary α stays the one chosen on all runs.")
        doc.table(["α", "seeds", "mean diff (pp)", "95% t interval (pp)", "test", "p", "Holm p"],
                  [[fmt_alpha(c.alpha), str(c.n), fmt_pp(c.mean_difference), fmt_ci(c.difference_ci, 100, signed=True),
                    "t" if c.ttest.method.startswith("paired t") else "sign", fmt_p(c.ttest.p_value), fmt_p(c.p_holm)]
                   for c in fam.comparisons])
    collapsed_by_label = {o.label: set(o.collapsed_seeds) for o in a.outcomes}
    doc.figure("accuracy_by_arm", figures.accuracy_by_arm(summaries, family, collapsed_by_label),
               "Left: test accuracy of each completed confirmation run (points; crosses: collapsed runs) with a box per arm. "
               "Right: GAIN − baseline test accuracy for each seed, in percentage points.")
    if len(family.comparisons) >= 2:
        doc.figure("dose_response", figures.dose_response(summaries, family),
                   "Left: mean test accuracy by α with 95% t intervals over seeds (clipped to [0, 1]), baseline as a band. "
                   "Right: mean paired difference by α with 95% t intervals; the circled α is the primary comparison.")
    else:
        doc.note("one GAIN α confirmed: the dose-response figure needs at least two and is left out "
                 "(the per-arm figure above shows the one α).")


def _comparison_rows(comps: tuple[PairedComparison, ...], primary: float | None) -> list[list[str]]:
    rows = []
    for c in comps:
        tag = " (primary)" if primary is not None and math.isclose(c.alpha, primary) else ""
        rows.append([
            f"{fmt_alpha(c.alpha)}{tag}",
            str(c.n),
            fmt_pp(c.mean_difference),
            fmt_ci(c.difference_ci, 100, signed=True),
            fmt_ci(c.bootstrap_ci, 100, signed=True),
            f"{fmt_pp(c.hodges_lehmann)} {fmt_ci(c.hodges_lehmann_ci, 100, signed=True)}",
            fmt_num(100 * c.sd_difference if math.isfinite(c.sd_difference) else float("nan"), 2),
            fmt_num(c.cohens_dz, 2),
            "t" if c.ttest.method.startswith("paired t") else "sign",
            fmt_p(c.ttest.p_value),
            fmt_p(c.p_holm),
            fmt_p(c.wilcoxon.p_value) if c.wilcoxon else "n/a",
            f"{fmt_num(c.p_gain_better, 2)} {fmt_ci(c.p_gain_better_ci, digits=2)}",
            fmt_num(c.aso_gain_better, 3),
            fmt_num(c.aso_baseline_better, 3),
        ])
    return rows


def secondary_section(doc: Doc, a: Analysis) -> None:
    if a.secondary:
        doc.h(3, "Secondary outcomes (exploratory: not part of the verdict)")
        doc.p("Same seed pairing; paired test with Holm across the GAIN alphas within each outcome. "
              "Accuracies and attention scores are fractions; differences in percentage points.")
        sec_rows = []
        for m, fam_m in a.secondary.items():
            sec_rows += [[METRIC_LABELS[m], fmt_alpha(c.alpha), str(c.n), fmt_pp(c.mean_difference), fmt_p(c.ttest.p_value), fmt_p(c.p_holm)]
                         for c in fam_m.comparisons]
        doc.table(["outcome", "α", "seeds", "mean diff (pp)", "p", "Holm p"], sec_rows)


def per_arm_section(doc: Doc, a: Analysis) -> None:
    doc.h(2, "Per arm over seeds")
    doc.table(["arm", "metric", "seeds", "mean", "sd", "95% t interval (clipped to [0, 1])"], _summary_rows(a.summaries))


def _summary_rows(summaries: list[ArmSummary]) -> list[list[str]]:
    return [
        [s.label, METRIC_LABELS.get(s.metric, s.metric), str(s.n), fmt_num(s.mean), fmt_num(s.sd), fmt_ci(s.ci)]
        for s in summaries
    ]


def mcnemar_section(doc: Doc, a: Analysis) -> None:
    primary, mc = a.family.primary(), a.mcnemar
    doc.h(2, "Per test image: exact McNemar per seed")
    if not a.mcnemar_tested:
        doc.note("predictions.parquet or a primary GAIN arm is missing: per-image tests left out.")
    elif mc is None:
        doc.note("no seed has predictions for both baseline and the primary GAIN α.")
    else:
        doc.p(f"Primary α={fmt_alpha(primary.alpha)}. b = images only baseline got right, c = images only GAIN got right. "
              "statsmodels' exact statistic is min(b, c). Each test covers test-image sampling for one pair of runs; "
              "p-values are per seed and unadjusted (a description, not the verdict).")
        doc.table(["seed", "images", "both right", "b: only baseline", "c: only GAIN", "both wrong", "statistic", "exact p"],
                  [[str(m.seed), str(m.n_images), str(m.both_correct), str(m.baseline_only), str(m.gain_only),
                    str(m.both_wrong), f"{m.statistic:g}", fmt_p(m.p_value)] for m in mc.per_seed])
        doc.p(
            f"Over {len(mc.per_seed)} seeds: GAIN won more discordant images in {mc.seeds_favouring_gain} seed(s), "
            f"baseline in {mc.seeds_favouring_baseline}, {mc.seeds_tied} tied. Pooled discordant images "
            f"(description only, the same test images recur in every seed): b = {mc.pooled_baseline_only}, c = {mc.pooled_gain_only}."
        )


def groups_section(doc: Doc, a: Analysis) -> None:
    doc.h(2, "Bias-aligned and bias-conflicting images")
    if any(s.metric in figures.GROUP_METRICS for s in a.summaries):
        doc.figure("group_accuracies", figures.group_accuracies(a.summaries),
                   "Mean accuracy over seeds per group with 95% t intervals clipped to [0, 1]; bars start at 0. Bias-aligned: "
                   "the photo's habitat matches its label's typical background; worst group: the lowest (label, habitat) "
                   "group accuracy of each run.")
    else:
        doc.note("no group accuracies (the data has no habitat labels): group figure left out.")


def attention_section(doc: Doc, a: Analysis, overlays: Overlays | str) -> None:
    summaries = a.summaries
    doc.h(2, "Attention (Grad-CAM)")
    att = [s for s in summaries if s.metric in ATTENTION_METRICS]
    if not att:
        doc.note("no attention scores (pointing game, energy, IoU): the data has no masks.")
    else:
        cf_rows = [[METRIC_LABELS[m]] + [fmt_num(a.content_free.get(k, {}).get(m), 3) for k in CONTENT_FREE] for m in ATTENTION_METRICS]
        doc.p("Scores of the trained maps on the test positives, beside the level a map without content reaches on the "
              "same images (a uniform map, a centred Gaussian): a score near those levels says nothing about attention.")
        doc.table(["score", "uniform map", "centred Gaussian map"], cf_rows)
        doc.figure("attention_scores", figures.attention_scores(summaries, a.content_free),
                   "Mean attention score over seeds with 95% t intervals; lines: content-free levels (uniform, centred Gaussian).")
    if isinstance(overlays, str):
        doc.note(overlays)
    else:
        doc.figure("attention_overlays", overlays.png,
                   f"Seed {overlays.seed}: the same test positives with baseline and {arm_label(GAIN, overlays.alpha)} Grad-CAM "
                   "(feature-resolution maps stretched bilinearly); white outline = ground-truth mask.")


def learning_curves_section(doc: Doc, a: Analysis) -> None:
    doc.h(2, "Learning curves")
    if a.curves is None:
        doc.note("no per-epoch records of confirmation runs: learning curves left out.")
    else:
        doc.figure("learning_curves", figures.learning_curves(a.curves),
                   "Validation accuracy by epoch of the confirmation runs: median over seeds, band = interquartile range.")


def power_section(doc: Doc, a: Analysis) -> None:
    power = a.power
    doc.h(2, "Power")
    if power is None or not math.isfinite(power.power_at_n) or not power.curve_n:
        doc.note("power not computable: " + (power.note if power is not None else "no primary comparison with paired seeds."))
    else:
        doc.p(take_sentence(a))
        doc.p(f"Closed-form power of one paired t-test at the primary α, without Holm (for comparison only): "
              f"{power.single_test_power:.0%}.")
        eq = (f" Second curve: the share of simulated studies that conclude 'equivalent' within ±{100 * power.margin:g} pp "
              "when no α differs from the baseline (TOST per α, Holm), at the same sd."
              if power.margin is not None else "")
        doc.figure("power_curve", figures.power_curve(power),
                   "Simulated power of the verdict rule (paired test per α, Holm, 'GAIN better' at the primary α) vs number "
                   "of paired seeds, at the observed paired sd; the point marks this study." + eq)
    operating_section(doc, a)


def operating_section(doc: Doc, a: Analysis) -> None:
    # The four-way rule's error rates and power for this study's design, simulated on bimodal seed data.
    v, rates = a.verdict, a.error_rates
    if v.margin is None:
        doc.note("no equivalence margin declared (study.json not found): the verdict's error rates are not simulated.")
        return
    if rates is None:
        doc.note("the four-way verdict's error rates were not simulated (error_rate_reps=0).")
        return
    reps, k, tables = rates.reps, rates.n_alphas, rates.tables
    doc.h(3, "Error rates and power of the four-way verdict (simulated)")
    doc.p(f"{reps:,} simulated studies per cell (simulation error about ±{100 * (0.05 * 0.95 / reps) ** 0.5:.1f} points "
          f"near 5 %), each decided by the verdict's own rule: paired t-test and TOST within ±{100 * v.margin:g} pp, Holm "
          f"over {k} α with the primary α picked on validation accuracy, each look's nominal level. Seed model: "
          f"{SeedModel(sd=0.01).describe()}; the collapse rows let 10 % of runs in every arm collapse to chance. "
          "Sequential 10..40: looks every 5 seeds, O'Brien-Fleming spending. An error rate must stay at or below 5 %.")
    for key, what in (("false_difference", "false 'better' or 'worse' (no true difference)"),
                      ("false_equivalence", "false 'equivalent' (true difference exactly at the margin)"),
                      ("equivalence_power", "'equivalent' when the true difference is 0, paired sd 1 pp (power)")):
        rows = tables[key]
        doc.table([what] + list(rows[0].designs),
                  [[r.what] + [f"{x:.1%}" for x in r.values] for r in rows])
    seq = tables["equivalence_power"][0]
    doc.p("Mean paired seeds used at a true difference of 0 (normal seeds): "
          + ", ".join(f"{n} {m:.1f}" for n, m in zip(seq.designs, seq.extra)) + ".")
