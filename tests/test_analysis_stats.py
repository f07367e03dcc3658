# Every statistic of analysis.stats / analysis.power against a direct scipy / statsmodels / deepsig
# call on the same inputs, plus the degenerate inputs (ties, all-zero differences, one seed).
import dataclasses
import math
import sys
from pathlib import Path

import deepsig
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

sys.path.insert(0, str(Path(__file__).parent))  # the fake-study helper lives next to this file
from conftest_analysis import make_fake_study  # noqa: E402

from analysis import (  # noqa: E402
    compare_alphas,
    compare_paired,
    holm,
    load_study,
    mcnemar_over_seeds,
    mcnemar_seed,
    decision_power,
    paired_metric,
    summarize_arms,
)
from analysis.stats import aso_eps  # noqa: E402

SEED = 3
ASO_IT = 60


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return load_study(make_fake_study(tmp_path_factory.mktemp("runs"), "stats", n_test=120, with_optuna=False))


@pytest.fixture(scope="module")
def family(study):
    return compare_alphas(study.trials, seed=SEED, aso_iterations=ASO_IT, n_resamples=2000)


def _pairs(b, g):
    return pd.DataFrame({"seed": np.arange(len(b)), "baseline": b, "gain": g})


def test_arm_summary_matches_scipy_t_interval(study):
    for s in summarize_arms(study.trials):
        x = np.asarray(s.values)
        assert s.mean == pytest.approx(x.mean()), f"{s.label} {s.metric}: mean"
        assert s.sd == pytest.approx(np.std(x, ddof=1)), f"{s.label} {s.metric}: sd must use ddof=1"
        if np.ptp(x) == 0:  # identical runs: the interval collapses onto the mean (scipy says NaN)
            assert (s.ci.low, s.ci.high) == pytest.approx((x[0], x[0])), f"{s.label} {s.metric}: constant values"
            continue
        lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
        assert (s.ci.low, s.ci.high) == pytest.approx((max(lo, 0), min(hi, 1))), f"{s.label} {s.metric}: 95% t interval, clipped"


def test_summaries_cover_every_arm_and_outcome(study):
    labels = {(s.label, s.metric) for s in summarize_arms(study.trials)}
    for arm in ("baseline", "GAIN α=0.5", "GAIN α=1", "GAIN α=2"):
        for m in ("test_acc", "worst_group_acc", "bias_conflicting_acc", "pointing_game", "energy_pointing_game", "iou"):
            assert (arm, m) in labels, f"missing summary of {m} for {arm}"


def test_paired_tests_match_scipy(study, family):
    for c in family.comparisons:
        pairs = paired_metric(study.trials, c.alpha)
        g, b = pairs["gain"].to_numpy(), pairs["baseline"].to_numpy()
        t = sps.ttest_rel(g, b)
        assert c.ttest.statistic == pytest.approx(t.statistic) and c.ttest.p_value == pytest.approx(t.pvalue), f"α={c.alpha}: paired t"
        if np.any(g != b):
            w = sps.wilcoxon(g, b)
            assert c.wilcoxon.p_value == pytest.approx(w.pvalue), f"α={c.alpha}: Wilcoxon"
        d = g - b
        assert c.mean_difference == pytest.approx(d.mean()), f"α={c.alpha}: mean paired difference"
        assert c.cohens_dz == pytest.approx(d.mean() / d.std(ddof=1)), f"α={c.alpha}: d_z"
        assert c.n == len(d) == 5


def test_verdict_interval_is_t_and_bootstrap_is_the_check(study, family):
    for c in family.comparisons:
        d = np.asarray(c.differences)
        if np.ptp(d) == 0:
            continue
        lo, hi = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
        assert (c.difference_ci.low, c.difference_ci.high) == pytest.approx((lo, hi)), (
            f"α={c.alpha}: the verdict's interval must be the t interval (BCa covers ~90% at 10 seeds)")
        r = sps.bootstrap((d,), np.mean, confidence_level=0.95, n_resamples=2000, method="BCa", rng=SEED)
        assert (c.bootstrap_ci.low, c.bootstrap_ci.high) == pytest.approx(
            (r.confidence_interval.low, r.confidence_interval.high)
        ), f"α={c.alpha}: BCa interval kept as a check"
        assert c.difference_ci.low <= c.mean_difference <= c.difference_ci.high


def test_p_gain_better_and_its_bootstrap():
    rng = np.random.default_rng(0)
    b = rng.normal(0.96, 0.004, 12)
    g = b + rng.normal(0.001, 0.003, 12)
    g[0] = b[0]  # one tie: counts one half
    c = compare_paired(_pairs(b, g), 1.0, seed=SEED, n_resamples=2000, aso_iterations=ASO_IT)
    d = g - b
    assert c.p_gain_better == pytest.approx(np.mean(d > 0) + 0.5 * np.mean(d == 0))

    def stat(x, axis=-1):
        return np.mean(x > 0, axis=axis) + 0.5 * np.mean(x == 0, axis=axis)

    r = sps.bootstrap((d,), stat, confidence_level=0.95, n_resamples=2000, method="percentile", rng=SEED, vectorized=True)
    assert (c.p_gain_better_ci.low, c.p_gain_better_ci.high) == pytest.approx(
        (r.confidence_interval.low, r.confidence_interval.high)
    ), "P(GAIN > baseline) interval must be scipy's percentile bootstrap"


def test_aso_matches_deepsig_both_directions(family):
    for c in family.comparisons:
        g, b = np.asarray(c.gain), np.asarray(c.baseline)
        kw = dict(confidence_level=0.95, num_bootstrap_iterations=ASO_IT, seed=SEED, show_progress=False)
        assert c.aso_gain_better == pytest.approx(deepsig.aso(g, b, **kw)), f"α={c.alpha}: ASO GAIN > baseline"
        assert c.aso_baseline_better == pytest.approx(deepsig.aso(b, g, **kw)), f"α={c.alpha}: ASO baseline > GAIN"


@pytest.mark.filterwarnings("ignore:Division by zero encountered in violation ratio")
def test_aso_equals_deepsig_on_fixed_inputs():
    # aso_eps transcribes deepsig.aso with array operations (same seeds, draws and formula): it must give
    # deepsig's eps_min to float rounding, on accuracies with ties, unequal sizes and identical arms.
    rng = np.random.default_rng(11)
    acc = lambda mean, sd, n: np.round(rng.normal(mean, sd, n).clip(0, 1) * 756) / 756  # noqa: E731
    cases = [(acc(0.96, 0.02, 10), acc(0.955, 0.03, 10), 0),
             (np.array([0.91, 0.93, 0.93, 0.95, 0.97, 0.99, 0.99]), acc(0.955, 0.03, 12), 5),
             (np.full(6, 0.95), np.full(6, 0.95), 0)]
    inside = 0
    for a, b, seed in cases:
        for x, y in ((a, b), (b, a)):
            ref = float(deepsig.aso(x, y, confidence_level=0.95, num_bootstrap_iterations=100, seed=seed, show_progress=False))
            got = aso_eps(x, y, seed, 100)
            assert got == pytest.approx(ref, rel=1e-12, abs=1e-12), f"n={len(x)} vs {len(y)}, seed {seed}: ASO must equal deepsig's"
            inside += 0 < ref < 1
    assert inside >= 2, "the cases must include eps_min strictly inside (0, 1), not only the clipped ends"


def test_holm_matches_statsmodels_and_keeps_nan(family):
    raw = [c.ttest.p_value for c in family.comparisons]
    expected = multipletests(raw, method="holm")[1]
    assert [c.p_holm for c in family.comparisons] == pytest.approx(list(expected)), "Holm across the alpha family"
    out = holm([0.01, float("nan"), 0.04])
    assert math.isnan(out[1]), "a NaN p-value (too few seeds) must stay NaN"
    assert [out[0], out[2]] == pytest.approx(list(multipletests([0.01, 0.04], method="holm")[1]))


def test_primary_alpha_is_best_validation_not_test(study, family):
    confirm = study.trials[(study.trials["phase"] == "confirm") & (study.trials["arm"] == "gain")]
    best = confirm.groupby("alpha")["val_acc"].mean().idxmax()
    assert family.primary_alpha == best, "primary alpha must be the best mean val_acc among GAIN alphas"
    assert family.primary().alpha == best


def test_mcnemar_per_seed_matches_statsmodels(study):
    p = study.predictions
    for seed in sorted(p["seed"].unique()):
        m = mcnemar_seed(p, seed, 1.0)
        b = p[(p.seed == seed) & (p.arm == "baseline")].set_index("image_id")["correct"]
        g = p[(p.seed == seed) & (p.arm == "gain") & (p.alpha == 1.0)].set_index("image_id")["correct"].loc[b.index]
        table = pd.crosstab(b.to_numpy(), g.to_numpy()).reindex(index=[True, False], columns=[True, False], fill_value=0)
        r = mcnemar(table.to_numpy(), exact=True)
        assert (m.both_correct, m.baseline_only, m.gain_only, m.both_wrong) == tuple(table.to_numpy().ravel())
        assert m.p_value == pytest.approx(r.pvalue) and m.statistic == pytest.approx(r.statistic), f"seed {seed}"


def test_mcnemar_combined_counts_without_a_second_verdict(study):
    mc = mcnemar_over_seeds(study.predictions, 1.0)
    assert len(mc.per_seed) == 5
    assert mc.seeds_favouring_gain + mc.seeds_favouring_baseline + mc.seeds_tied == 5
    assert mc.pooled_gain_only == sum(m.gain_only for m in mc.per_seed)
    assert not hasattr(mc, "sign_test"), (
        "an unadjusted sign-test p over seeds beside the Holm verdict invites a second verdict: it is not reported")


def test_mcnemar_rejects_mismatched_images(study):
    p = study.predictions
    broken = p.drop(p[(p.arm == "gain") & (p.seed == 0) & (p.alpha == 1.0)].index[:3])
    with pytest.raises(ValueError, match="same image ids"):
        mcnemar_seed(broken, 0, 1.0)


def test_single_alpha_power_matches_statsmodels():
    r = decision_power([0.004], 10, 0.0026, reps=4000, curve=False)
    es = 0.0026 / 0.004
    analytic = TTestPower().power(effect_size=es, nobs=10, alpha=0.05)
    assert r.single_test_power == pytest.approx(analytic)
    assert abs(r.power_at_n - analytic) <= 0.025, f"one α: simulated {r.power_at_n:.3f} vs TTestPower {analytic:.3f}"
    assert abs(r.seeds_for_target - math.ceil(TTestPower().solve_power(effect_size=es, alpha=0.05, power=0.8))) <= 1
    zero = decision_power([0.0], 10)
    assert math.isnan(zero.power_at_n) and "no spread" in zero.note, "zero paired sd: power not computable, and the reason is stated"


def test_degenerate_inputs_do_not_crash():
    b = np.array([0.95, 0.96, 0.97])
    same = compare_paired(_pairs(b, b.copy()), 1.0, aso_iterations=10)
    assert same.ttest.p_value == 1.0 and same.wilcoxon.p_value == 1.0, "all-zero differences: p = 1"
    assert same.wilcoxon.note and same.ttest.note
    assert (same.difference_ci.low, same.difference_ci.high) == (0.0, 0.0)
    one = compare_paired(_pairs(b[:1], b[:1] + 0.01), 1.0, aso_iterations=10)
    assert math.isnan(one.ttest.p_value) and one.wilcoxon is not None and math.isnan(one.wilcoxon.p_value)
    assert one.difference_ci is None and one.notes, "one seed: no interval, and a note says why"
    shift = compare_paired(_pairs(b, b + 0.01), 1.0, aso_iterations=10)
    assert shift.ttest.p_value == pytest.approx(sps.binomtest(3, 3).pvalue) and shift.p_gain_better == 1.0, (
        "identical non-zero differences: the declared exact sign test decides")


def test_verdict_rules_and_wording():
    from analysis import GAIN_BETTER, GAIN_WORSE, INCONCLUSIVE, decide, make_verdict
    from analysis.stats import AlphaFamily

    assert decide(0.01, 0.01, 10) == GAIN_BETTER
    assert decide(-0.01, 0.01, 10) == GAIN_WORSE
    assert decide(0.01, 0.06, 10) == INCONCLUSIVE
    assert decide(0.01, 0.01, 1) == INCONCLUSIVE, "fewer than 2 seeds is never a difference"
    assert decide(0.01, float("nan"), 10) == INCONCLUSIVE
    rng = np.random.default_rng(1)
    b = rng.normal(0.96, 0.003, 8)
    comp = compare_paired(_pairs(b, b + 0.01 + rng.normal(0, 0.002, 8)), 1.0, aso_iterations=10)
    fam = AlphaFamily("test_acc", (dataclasses.replace(comp, p_holm=comp.ttest.p_value),), 1.0)  # a family of one
    v = make_verdict(fam, decision_power([comp.sd_difference], comp.n, reps=500, curve=False))
    assert v.label == GAIN_BETTER and v.n_seeds == 8 and "8 paired seeds" in v.sentence and "95% t interval" in v.sentence
    assert "fixed" in v.caveat and "test-set sampling" in v.caveat
    one = compare_paired(_pairs(b[:1], b[:1] + 0.01), 1.0, aso_iterations=10)
    v1 = make_verdict(AlphaFamily("test_acc", (one,), 1.0))
    assert v1.label == INCONCLUSIVE and "only 1 seed-paired run" in v1.sentence
    empty = make_verdict(AlphaFamily("test_acc", (), None))
    assert empty.label == INCONCLUSIVE and "nothing to compare" in empty.sentence


# ---------------------------------------------------------------------------------------------
# Issue 8: the same data get the same verdict; ties, zero spread, collapse


def _one_alpha_trials(base_counts, gain_counts, n_test=756, val=None):
    rows = []
    for arm, counts in (("baseline", base_counts), ("gain", gain_counts)):
        for s, k in enumerate(counts):
            rows.append({"trial_id": f"{arm}-{s}", "phase": "confirm", "arm": arm, "seed": 1000 + s,
                         "alpha": math.nan if arm == "baseline" else 1.0, "status": "completed",
                         "val_acc": 0.95 if val is None else val, "test_acc": k / n_test})
    return pd.DataFrame(rows)


def test_every_seed_one_image_better_gets_one_verdict_whatever_the_baseline():
    # Before: varying baseline counts gave p = 1e-122 "GAIN better" (float noise in k/n - k'/n made the
    # variance tiny but non-zero) and constant ones gave p = NaN "no detectable difference".
    from analysis import GAIN_BETTER, make_verdict

    varying = [730 + 3 * s for s in range(10)]
    constant = [738] * 10
    verdicts = []
    for base in (varying, constant):
        fam = compare_alphas(_one_alpha_trials(base, [k + 1 for k in base]), full=False)
        c = fam.comparisons[0]
        assert "sign test" in c.ttest.method, f"baseline {base[:3]}...: zero-spread differences must use the declared sign test"
        assert c.ttest.p_value == pytest.approx(sps.binomtest(10, 10).pvalue)
        verdicts.append(make_verdict(fam).label)
    assert verdicts == [GAIN_BETTER, GAIN_BETTER], f"equivalent tables, different verdicts: {verdicts}"


def test_alpha_ties_use_a_tolerance_not_float_equality():
    # The same validation counts in another seed order give means that differ in the last bit.
    from analysis import primary_alpha

    vals = [0.1 + 0.2, 0.7, 0.3, 0.9, 0.11]
    a = np.mean(vals)
    b = np.mean(vals[::-1])
    assert a != b, "precondition: the two means differ by float rounding only"
    rows = []
    for alpha, order in ((2.0, vals), (0.5, vals[::-1])):
        for s, v in enumerate(order):
            rows.append({"trial_id": f"{alpha}-{s}", "phase": "confirm", "arm": "gain", "seed": s, "alpha": alpha,
                         "status": "completed", "val_acc": v, "test_acc": 0.9})
    t = pd.DataFrame(rows)
    assert primary_alpha(t) == 0.5, "an exact tie (same counts) goes to the smaller alpha"


def test_arm_summary_interval_stays_inside_0_1():
    rows = [{"trial_id": f"b{s}", "phase": "confirm", "arm": "baseline", "seed": s, "alpha": math.nan,
             "status": "completed", "val_acc": 0.9, "test_acc": v} for s, v in enumerate([1.0, 0.97, 1.0, 0.75])]
    s = next(x for x in summarize_arms(pd.DataFrame(rows), ("test_acc",)))
    assert 0.0 <= s.ci.low and s.ci.high <= 1.0, f"accuracy interval {s.ci} leaves [0, 1]"
    assert "clipped" in s.ci.method


@pytest.fixture(scope="module")
def collapsed_study(tmp_path_factory):
    run = make_fake_study(tmp_path_factory.mktemp("runs"), "coll", n_test=100, with_optuna=False, alphas=(1.0,),
                          collapse={("gain", 1.0): (1, 3)}, diverge={("baseline", 0.0): (4,)})
    return load_study(run)


def test_collapsed_and_diverged_runs_are_counted_and_named(collapsed_study):
    from analysis import collapse_tests, confirm_outcomes, make_verdict

    out = {o.label: o for o in confirm_outcomes(collapsed_study.trials)}
    assert out["GAIN α=1"].collapsed_seeds == (1, 3) and out["baseline"].collapsed_seeds == ()
    assert out["baseline"].diverged_seeds == (4,) and out["baseline"].completed == 4
    tests = collapse_tests(list(out.values()))
    assert tests[0].fisher_p == pytest.approx(sps.fisher_exact([[2, 3], [0, 4]]).pvalue), "Fisher on the per-arm collapse counts"
    assert tests[0].failed_fisher_p == pytest.approx(sps.fisher_exact([[2, 3], [1, 4]]).pvalue)
    fam = compare_alphas(collapsed_study.trials, full=False)
    v = make_verdict(fam, None, list(out.values()), tests)
    assert "GAIN α=1 2 of 5 (seeds 1, 3)" in v.sentence, v.sentence
    assert "baseline 1 diverged (seed 4)" in v.sentence, v.sentence
    assert "Fisher" in v.sentence
    # The primary analysis keeps the collapsed runs as they are: 4 pairs (seed 4 has no baseline accuracy).
    assert fam.comparisons[0].n == 4 and 1 in fam.comparisons[0].seeds and 3 in fam.comparisons[0].seeds


def test_sensitivity_analysis_drops_collapsed_pairs_and_says_so(collapsed_study):
    fam = compare_alphas(collapsed_study.trials, full=False, exclude_collapsed=True)
    c = fam.comparisons[0]
    assert c.seeds == (0, 2), f"seeds with a collapsed run (1, 3) and the diverged one (4) leave: {c.seeds}"
    assert "[1, 3]" in fam.excluded, fam.excluded
    assert compare_alphas(collapsed_study.trials, full=False).excluded == "", "the primary analysis excludes nothing"


def test_hodges_lehmann_estimate_and_signed_rank_interval():
    from analysis.stats import hodges_lehmann

    est, ci = hodges_lehmann(np.arange(10.0))
    assert est == 4.5 and (ci.low, ci.high) == (2.0, 7.0), \
        f"n=10: the 9th smallest and 9th largest of the 55 Walsh averages (critical value 8), got {est}, {ci}"
    rng = np.random.default_rng(0)
    cover = np.mean([(lambda c: c.low <= 0.3 <= c.high)(hodges_lehmann(rng.standard_t(3, 10) + 0.3)[1])
                     for _ in range(1000)])
    assert cover >= 0.93, f"the 95% signed-rank interval must cover the centre of a symmetric law: {cover:.3f}"
    est, _ = hodges_lehmann(np.array([0.01, -0.02, 0.0, 0.01, -0.01, 0.39]))
    assert abs(est) < 0.02, f"one outlying seed must not carry the estimate: {est}"


def test_a_seed_that_carries_the_mean_is_named():
    from analysis.stats import influential_seeds

    rng = np.random.default_rng(1)
    d = rng.normal(-0.009, 0.015, 10)
    assert influential_seeds(list(range(1000, 1010)), d) == (), "no seed carries a mean of similar seeds"
    d[8] = 0.39  # the seed 1008: +39 pp while the others sit near -1 pp
    named = influential_seeds(list(range(1000, 1010)), d)
    assert [s for s, *_ in named] == [1008], f"the seed that alone moves the mean must be named: {named}"
    seed, shift, half = named[0]
    assert shift < 0 and abs(shift) > half, "without it the mean falls by more than the others' half-width"
