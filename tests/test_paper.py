# `python -m analysis.paper`: the paper's own gap, every number against an independent library call.
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower, TTestIndPower, TTestPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportion_effectsize

from analysis.paper import format_table, main, paper_gap


@pytest.fixture(scope="module")
def gap():
    return paper_gap()


def test_image_counts_reproduce_the_paper(gap):
    assert (gap.correct_a, gap.correct_b, gap.gap_images) == (738, 740, 2), "0.9762 and 0.9788 of 756 are 738 and 740 images"
    assert round(738 / 756, 4) == 0.9762 and round(740 / 756, 4) == 0.9788
    assert gap.gap == pytest.approx(0.0026) and not gap.note


def test_intervals_match_statsmodels(gap):
    assert gap.wilson_a == pytest.approx(proportion_confint(738, 756, method="wilson"))
    assert gap.wilson_b == pytest.approx(proportion_confint(740, 756, method="wilson"))
    nd = confint_proportions_2indep(740, 756, 738, 756, method="newcomb", compare="diff")
    assert gap.newcombe_diff == pytest.approx(nd)
    assert gap.newcombe_diff[0] < 0 < gap.newcombe_diff[1], "the difference interval must include 0"


def test_best_mcnemar_is_the_exact_binomial(gap):
    # Best arrangement: the 2 discordant images both favour GAIN; exact McNemar = two-sided binomial.
    assert gap.best_mcnemar_p == pytest.approx(sps.binomtest(2, 2, 0.5).pvalue) == pytest.approx(2 * 0.5**2)
    (a, b), (c, d) = gap.best_mcnemar_table
    assert a + b == 738 and a + c == 740 and a + b + c + d == 756 and b == 0


def test_power_and_sample_sizes(gap):
    h = proportion_effectsize(0.9788, 0.9762)
    assert gap.cohens_h == pytest.approx(h)
    assert gap.power_single_run == pytest.approx(NormalIndPower().power(h, nobs1=756, alpha=0.05, ratio=1))
    assert gap.power_single_run < 0.1, "one run per arm had almost no power"
    # Independent check of the images needed: 2 asin(sqrt(p)) has variance 1/n per arm, so the
    # difference has variance 2/n and n per arm = 2 ((z_a/2 + z_b) / h)^2 (Cohen's h tables).
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert gap.images_per_arm_for_80 == pytest.approx(2 * (z / h) ** 2, rel=0.001)
    assert [s.seed_sd for s in gap.seeds] == [0.002, 0.005, 0.01]
    for s in gap.seeds:
        d = 0.0026 / s.seed_sd
        assert s.independent_per_arm == math.ceil(TTestIndPower().solve_power(d, alpha=0.05, power=0.8))
        assert s.paired == math.ceil(TTestPower().solve_power(d, alpha=0.05, power=0.8))
        # and the power at that many seeds is indeed >= 80%, one fewer is below
        assert TTestIndPower().power(d, s.independent_per_arm, 0.05) >= 0.8 > TTestIndPower().power(d, s.independent_per_arm - 1, 0.05)


def test_verdict_says_not_significant(gap):
    assert not gap.significant
    assert gap.verdict.startswith("Not significant")
    assert "McNemar p = 0.5" in gap.verdict
    assert "Verdict: Not significant" in format_table(gap)


def test_cli_json_and_overrides(capsys):
    assert main(["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["correct_a"] == 738 and out["best_mcnemar_p"] == pytest.approx(0.5) and out["significant"] is False
    assert main(["--json", "--n", "10000", "--acc-a", "0.90", "--acc-b", "0.92"]) == 0
    other = json.loads(capsys.readouterr().out)
    assert other["gap_images"] == 200 and other["significant"] is True, "a 2-point gap on 10,000 images is detectable"
    assert main(["--acc-a", "1.5"]) == 2
    assert "--acc-a 1.5" in capsys.readouterr().err


# Issue 8: every valid input gives numbers; "significant" means what the sentence means.
GRID = [(n, a, b) for n in (20, 100, 378, 756, 1000, 5000) for a, b in
        ((0.5, 0.51), (0.6, 0.9), (0.9, 0.93), (0.9762, 0.9788), (0.97, 0.99), (0.98, 0.9999), (0.01, 0.02),
         (0.99, 0.5), (0.95, 0.951), (0.7, 0.75), (0.5, 0.99), (0.999, 0.9991), (0.3, 0.29), (0.88, 0.8801),
         (0.9, 0.999), (0.6, 0.61), (0.02, 0.98))]


def test_every_valid_input_gives_numbers():
    # Before: 30 of 102 grid inputs exited with "cannot convert float NaN to integer".
    assert len(GRID) == 102
    for n, a, b in GRID:
        r = paper_gap(n, a, b)
        for name in ("power_single_run", "fisher_p", "ztest_p", "best_mcnemar_p", "cohens_h"):
            v = getattr(r, name)
            assert math.isfinite(v), f"n={n} {a} vs {b}: {name} = {v}"
        assert r.images_per_arm_for_80 is None or r.images_per_arm_for_80 >= 2
        for s in r.seeds:
            assert isinstance(s.paired, int) and isinstance(s.independent_per_arm, int), f"n={n} {a} vs {b}: {s}"


@pytest.mark.parametrize("argv", [["--n", "1000", "--acc-a", "0.90", "--acc-b", "0.93"],
                                  ["--n", "756", "--acc-a", str(738 / 756), "--acc-b", str(747 / 756)]])
def test_inputs_that_crashed_now_print_a_table(argv, capsys):
    assert main(argv) == 0, capsys.readouterr().err
    assert "Verdict:" in capsys.readouterr().out


@pytest.mark.parametrize("k_b", [744, 745, 746, 747])
def test_significant_only_when_the_tests_on_the_reported_counts_reject(k_b):
    # The best-case McNemar (a bound) is < 0.05 here, the tests on the actual information are not.
    r = paper_gap(756, 738 / 756, k_b / 756)
    assert r.best_mcnemar_p < 0.05, "precondition: the bound alone would call it significant"
    assert r.fisher_p == pytest.approx(sps.fisher_exact([[k_b, 756 - k_b], [738, 18]]).pvalue)
    from statsmodels.stats.proportion import proportions_ztest

    assert r.ztest_p == pytest.approx(proportions_ztest([k_b, 738], [756, 756])[1])
    assert r.fisher_p > 0.05 and r.newcombe_diff[0] < 0
    assert not r.significant and r.verdict.startswith("Not significant"), f"738 vs {k_b}: {r.verdict[:80]}"
    assert "Fisher's exact p" in r.verdict and "z-test p" in r.verdict


def test_output_says_what_seeds_and_images_each_buy_and_the_assumptions():
    text = format_table(paper_gap())
    assert "cannot narrow the test-sampling interval" in text, "seeds on a fixed test set do not narrow test sampling"
    assert "narrow the test-sampling interval" in text and "training randomness" in text
    assert "Assumptions:" in text and "NormalIndPower" in text and "TTestPower" in text
    assert "seed-to-seed sd assumed" in text
    assert " or 11-234 seeds" not in text, "seeds and images are not alternatives for the same thing"


def test_module_runs_as_a_command():
    r = subprocess.run([sys.executable, "-m", "analysis.paper"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Newcombe" in r.stdout and "Verdict: Not significant" in r.stdout
    assert np.isfinite(float(r.stdout.split("power of one run per arm (two-sided, level 0.05)")[1].split()[0]))


# Issue 16: can the paper's numbers show the two arms equivalent within a margin?
def test_the_paper_pair_is_not_shown_equivalent_within_1_pp():
    from statsmodels.stats.proportion import confint_proportions_2indep

    eq = paper_gap().equivalence
    low, high = confint_proportions_2indep(740, 756, 738, 756, method="agresti-caffo", compare="diff", alpha=0.10)
    assert eq.interval90 == pytest.approx((low, high)), "the decision's 90% interval is statsmodels' Agresti-Caffo"
    assert not eq.equivalent_within_margin and eq.interval90[0] < -0.01, "[-1.02, +1.55] pp is not inside ±1 pp"
    assert eq.power_at_n == 0.0 and "even equal accuracies could not show it" in eq.sentence, eq.sentence
    assert 4000 < eq.images_per_arm < 7000 and f"{eq.images_per_arm:,} test images per arm" in eq.sentence
    assert "Equivalence: Equivalence within ±1 pp is not shown" in format_table(paper_gap())


def test_equivalence_is_decided_on_the_90_percent_interval():
    # The TOST and its interval agree for every count pair (the decision could be read off either).
    from statsmodels.stats.proportion import confint_proportions_2indep

    rng = np.random.default_rng(0)
    shown = 0
    for _ in range(150):
        n = int(rng.integers(20, 30000))
        k_a = int(rng.binomial(n, rng.uniform(0.5, 1.0)))
        k_b = int(min(n, max(0, k_a + rng.integers(-n // 50 - 1, n // 50 + 2))))
        eq = paper_gap(n, k_a / n if 0 < k_a < n else 0.5, k_b / n if 0 < k_b < n else 0.51).equivalence
        low, high = eq.interval90
        assert eq.equivalent_within_margin == (-0.01 < low and high < 0.01), (n, k_a, k_b, eq)
        shown += eq.equivalent_within_margin
    assert 5 < shown < 145, "the check must see both outcomes"


def test_images_for_equivalence_give_the_stated_power():
    # Simulated check of the normal-approximation sample size: binomial counts at the reported accuracies,
    # the same TOST; the rejection rate at that many images is about the target, well below it at 60 %.
    from statsmodels.stats.proportion import tost_proportions_2indep

    eq = paper_gap().equivalence
    rng = np.random.default_rng(2)

    def rate(n: int) -> float:
        a, b = rng.binomial(n, 738 / 756, 4000), rng.binomial(n, 740 / 756, 4000)
        return float(np.mean(tost_proportions_2indep(b, n, a, n, -0.01, 0.01, method="agresti-caffo").pvalue < 0.05))

    at = rate(eq.images_per_arm)
    assert 0.76 <= at <= 0.84, f"{eq.images_per_arm} images per arm: equivalence shown in {at:.3f}, stated 0.80"
    assert rate(int(0.6 * eq.images_per_arm)) < 0.65


def test_margin_option_and_json_field(capsys):
    assert main(["--json", "--margin", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    eq = out["equivalence"]
    assert eq["equivalent_within_margin"] is True and eq["margin"] == 0.02, "[-1.02, +1.55] pp lies inside ±2 pp"
    assert -0.02 < eq["interval90"][0] < eq["interval90"][1] < 0.02
    assert main(["--json", "--n", "100000", "--acc-a", "0.9762", "--acc-b", "0.9788"]) == 0
    big = json.loads(capsys.readouterr().out)["equivalence"]
    assert big["equivalent_within_margin"] is True, "100,000 images per arm pin a 0.26 pp gap inside ±1 pp"
    for bad in ("0.01", "0", "-2"):
        assert main(["--margin", bad]) == 2
        assert "percentage points" in capsys.readouterr().err
