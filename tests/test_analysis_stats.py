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
    paired_metric,
    paired_seed_power,
    summarize_arms,
)

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
        assert (s.ci.low, s.ci.high) == pytest.approx((lo, hi)), f"{s.label} {s.metric}: 95% t interval"


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


def test_bootstrap_intervals_match_scipy(study, family):
    for c in family.comparisons:
        d = np.asarray(c.differences)
        if np.ptp(d) == 0:
            continue
        r = sps.bootstrap((d,), np.mean, confidence_level=0.95, n_resamples=2000, method="BCa", rng=SEED)
        assert (c.difference_ci.low, c.difference_ci.high) == pytest.approx(
            (r.confidence_interval.low, r.confidence_interval.high)
        ), f"α={c.alpha}: BCa interval of the mean difference"
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


def test_mcnemar_combined_sign_test(study):
    mc = mcnemar_over_seeds(study.predictions, 1.0)
    assert len(mc.per_seed) == 5
    assert mc.seeds_favouring_gain + mc.seeds_favouring_baseline + mc.seeds_tied == 5
    k, n = mc.seeds_favouring_gain, mc.seeds_favouring_gain + mc.seeds_favouring_baseline
    if n:
        assert mc.sign_test.p_value == pytest.approx(sps.binomtest(k, n, 0.5).pvalue)
    assert mc.pooled_gain_only == sum(m.gain_only for m in mc.per_seed)


def test_mcnemar_rejects_mismatched_images(study):
    p = study.predictions
    broken = p.drop(p[(p.arm == "gain") & (p.seed == 0) & (p.alpha == 1.0)].index[:3])
    with pytest.raises(ValueError, match="same image ids"):
        mcnemar_seed(broken, 0, 1.0)


def test_power_matches_statsmodels():
    r = paired_seed_power(0.004, 10, 0.0026)
    es = 0.0026 / 0.004
    assert r.power_at_n == pytest.approx(TTestPower().power(effect_size=es, nobs=10, alpha=0.05))
    assert r.seeds_for_target == math.ceil(TTestPower().solve_power(effect_size=es, alpha=0.05, power=0.8))
    assert r.curve_power == pytest.approx(list(TTestPower().power(effect_size=es, nobs=np.array(r.curve_n), alpha=0.05)))
    assert all(np.diff(r.curve_power) >= 0), "power grows with seeds"
    zero = paired_seed_power(0.0, 10)
    assert math.isnan(zero.power_at_n) and zero.note, "zero paired sd: power not computable, with a note"


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
    assert math.isnan(shift.ttest.p_value) and shift.p_gain_better == 1.0


def test_verdict_rules_and_wording():
    from analysis import GAIN_BETTER, GAIN_WORSE, NO_DIFFERENCE, decide, make_verdict
    from analysis.stats import AlphaFamily

    assert decide(0.01, 0.01, 10) == GAIN_BETTER
    assert decide(-0.01, 0.01, 10) == GAIN_WORSE
    assert decide(0.01, 0.06, 10) == NO_DIFFERENCE
    assert decide(0.01, 0.01, 1) == NO_DIFFERENCE, "fewer than 2 seeds is never a difference"
    assert decide(0.01, float("nan"), 10) == NO_DIFFERENCE
    rng = np.random.default_rng(1)
    b = rng.normal(0.96, 0.003, 8)
    comp = compare_paired(_pairs(b, b + 0.01 + rng.normal(0, 0.002, 8)), 1.0, aso_iterations=10)
    fam = AlphaFamily("test_acc", (dataclasses.replace(comp, p_holm=comp.ttest.p_value),), 1.0)  # a family of one
    v = make_verdict(fam, paired_seed_power(comp.sd_difference, comp.n))
    assert v.label == GAIN_BETTER and v.n_seeds == 8 and "8 paired seeds" in v.sentence and "95% CI" in v.sentence
    assert "fixed" in v.caveat and "test-set sampling" in v.caveat
    one = compare_paired(_pairs(b[:1], b[:1] + 0.01), 1.0, aso_iterations=10)
    v1 = make_verdict(AlphaFamily("test_acc", (one,), 1.0))
    assert v1.label == NO_DIFFERENCE and "only 1 seed-paired run" in v1.sentence
    empty = make_verdict(AlphaFamily("test_acc", (), None))
    assert empty.label == NO_DIFFERENCE and "nothing to compare" in empty.sentence
