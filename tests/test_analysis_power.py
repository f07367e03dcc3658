# Power: closed-form figures are numbers for every valid input (statsmodels' noncentral t returns NaN
# at some points and its root finder then fails), and the simulated power of the decision as made
# (paired tests, Holm over the alpha family) matches a simulation of the report's own code path.
import gc
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.power import TTestIndPower, TTestPower

sys.path.insert(0, str(Path(__file__).parent))  # the fake-study helper lives next to this file
from conftest_analysis import seed_table  # noqa: E402

from analysis import GAIN_BETTER, compare_alphas, decision_power, make_verdict, seeds_needed, t_power  # noqa: E402
from analysis.power import images_needed  # noqa: E402


@pytest.fixture(autouse=True)
def _cheap_gc():
    # statsmodels' multipletests calls gc.collect() on every call; freezing makes it ~100x cheaper.
    gc.freeze()
    yield
    gc.unfreeze()


def test_t_power_is_a_number_everywhere_and_matches_statsmodels():
    checked = 0
    for es in np.geomspace(0.01, 100, 40):
        for n in (2, 3, 4, 5, 10, 50, 1000, 10000):
            for paired, ref in ((True, TTestPower()), (False, TTestIndPower())):
                p = t_power(es, n, paired=paired)
                assert math.isfinite(p) and 0 <= p <= 1, f"effect {es:.3g}, n {n}, paired {paired}: power {p}"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = ref.power(es, n, 0.05)
                if math.isfinite(r):
                    assert p == pytest.approx(r, abs=1e-9), f"effect {es:.3g}, n {n}: statsmodels says {r}"
                    checked += 1
    assert checked > 400
    # statsmodels returns NaN here (the inputs behind "cannot convert float NaN to integer")
    assert math.isnan(TTestPower().power(6.0, 2, 0.05)) and 0.4 < t_power(6.0, 2) < 0.6


def test_sample_sizes_are_whole_numbers_for_large_and_small_effects():
    for es in (0.05, 0.65, 1.3, 6.0, 15.0, 100.0):
        for paired in (True, False):
            n = seeds_needed(es, paired=paired)
            assert isinstance(n, int) and n >= 2, f"effect {es}: {n}"
            assert t_power(es, n, paired=paired) >= 0.8 and (n == 2 or t_power(es, n - 1, paired=paired) < 0.8)
    assert images_needed(0.0144) == pytest.approx(2 * ((1.959964 + 0.841621) / 0.0144) ** 2, rel=0.002)
    assert seeds_needed(0.0) is None, "no gap: no sample size, not a crash"


def test_decision_power_states_its_assumptions():
    r = decision_power([0.004, 0.005, 0.004], 10, 0.005, reps=500, curve=False)
    text = " ".join(r.assumptions)
    for what in ("primary α", "normally distributed", "correlation 0.50 between two α's paired differences (assumed", "Holm over 3 α", "500 simulated studies"):
        assert what in text, f"assumption {what!r} not stated: {text}"
    assert r.power_primary_only < r.power_every_alpha < r.single_test_power, (
        "Holm costs power, most when only the primary α has the gap")


def _primary_only_table(rng, n, difference, sd, alphas=(0.5, 1.0, 2.0)):
    # The gap at the first alpha only, and validation picks that alpha (as the primary rule would when
    # the alpha really is better); the other alphas equal the baseline in expectation.
    t = seed_table(rng, n, 0.0, sd, alphas)
    first = (t["arm"] == "gain") & (t["alpha"] == alphas[0])
    t.loc[first, "test_acc"] += difference
    t.loc[first, "val_acc"] += 0.05
    return t


def _pipeline_rate(make_table, reps):
    labels = [make_verdict(compare_alphas(make_table(), full=False)).label for _ in range(reps)]
    return float(np.mean([v == GAIN_BETTER for v in labels]))


@pytest.mark.slow
def test_stated_power_matches_the_pipeline_with_three_alphas():
    # seed_table's alphas have independent paired differences: correlation 0 in the stated figure.
    n, diff, sd, reps = 10, 0.005, 0.0065, 1000
    stated = decision_power([sd] * 3, n, diff, correlation=0.0, reps=20000, curve=False)
    rng = np.random.default_rng(11)
    every = _pipeline_rate(lambda: seed_table(rng, n, diff, sd, (0.5, 1.0, 2.0)), reps)
    only = _pipeline_rate(lambda: _primary_only_table(rng, n, diff, sd), reps)
    assert abs(every - stated.power_every_alpha) <= 0.03, f"gap at every α: pipeline {every:.3f}, stated {stated.power_every_alpha:.3f}"
    assert abs(only - stated.power_primary_only) <= 0.03, f"gap at the primary α: pipeline {only:.3f}, stated {stated.power_primary_only:.3f}"
    assert stated.single_test_power - stated.power_primary_only > 0.1, "a single-comparison formula would overstate it"


@pytest.mark.slow
def test_stated_power_matches_the_pipeline_with_one_alpha():
    n, diff, sd, reps = 10, 0.005, 0.0065, 1000
    stated = decision_power([sd], n, diff, reps=20000, curve=False)
    rng = np.random.default_rng(12)
    rate = _pipeline_rate(lambda: seed_table(rng, n, diff, sd, (1.0,)), reps)
    assert abs(rate - stated.power_at_n) <= 0.03, f"one α: pipeline {rate:.3f}, stated {stated.power_at_n:.3f}"


def test_report_power_is_a_number_for_large_effects():
    # Before: NaN in about a third of studies with large effects (statsmodels' nct at small n).
    from analysis import family_power

    rng = np.random.default_rng(5)
    for _ in range(20):
        t = seed_table(rng, 3, 0.03, 0.0005, (1.0,))
        p = family_power(compare_alphas(t, full=False), reps=300, curve=False)
        assert math.isfinite(p.power_at_n) and p.seeds_for_target is not None, p.note


def test_zero_spread_power_gives_a_reason_not_a_nan():
    from analysis import family_power

    t = pd.DataFrame({"trial_id": [f"{a}{s}" for a in "bg" for s in range(5)], "phase": "confirm",
                      "arm": ["baseline"] * 5 + ["gain"] * 5, "seed": list(range(5)) * 2,
                      "alpha": [math.nan] * 5 + [1.0] * 5, "status": "completed", "val_acc": 0.9,
                      "test_acc": [0.9] * 5 + [0.91] * 5})
    p = family_power(compare_alphas(t, full=False), reps=100)
    assert math.isnan(p.power_at_n) and "sign test" in p.note and "no spread" in p.note
