# The four-way verdict (better / worse / equivalent within the declared margin / inconclusive) and its
# sequential design: boundaries against published tables and an independent multivariate-normal
# computation, the vectorised simulation against the verdict's own code path, and the error rates the
# issue asks for on bimodal seed data (a normal body plus runs that collapse to chance).
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).parent))  # the fake-study helper lives next to this file
from conftest_analysis import seed_table  # noqa: E402

from analysis import compare_alphas, make_verdict  # noqa: E402
from analysis.power import decide_probability, decision_power, seeds_to_decide  # noqa: E402
from analysis.sequential import Design, boundaries, margin_problem, schedule, spend  # noqa: E402
from analysis.simulation import (  # noqa: E402
    BETTER,
    EQUIVALENT,
    INCONCLUSIVE,
    WORSE,
    SeedModel,
    draw,
    look_labels,
    operating,
)
from analysis.stats import paired_tost, t_interval  # noqa: E402
from analysis.verdict import (  # noqa: E402
    EQUIVALENT as EQ_LABEL,
    GAIN_BETTER,
    GAIN_WORSE,
    INCONCLUSIVE as INC_LABEL,
    decide,
    stage_verdict,
)

MARGIN = 0.01  # 1 pp
SEQ = Design(MARGIN, schedule(10, 40))
REPS = 4000  # Monte-Carlo error of a 5 % rate: +-0.35 points (sd)


# ---- boundaries -------------------------------------------------------------------------------

def test_boundaries_match_published_lan_demets_tables():
    # Five equally spaced looks, two-sided 0.05 (0.025 per side): the Lan-DeMets O'Brien-Fleming and
    # Pocock-type boundaries as R's ldbounds and gsDesign print them (Jennison & Turnbull 2000, ch. 7).
    obf = boundaries((1, 2, 3, 4, 5), 0.025, "obf", two_sided=True)
    assert obf == pytest.approx((4.8769, 3.3569, 2.6803, 2.2898, 2.0310), abs=2e-4), obf
    pocock = boundaries((1, 2, 3, 4, 5), 0.025, "pocock", two_sided=True)
    assert pocock == pytest.approx((2.4380, 2.4268, 2.4101, 2.3966, 2.3859), abs=2e-4), pocock


@pytest.mark.parametrize("two_sided, a", [(True, 0.025), (False, 0.05)])
def test_boundaries_spend_what_the_spending_function_says(two_sided, a):
    # Independent check: P(a crossing by look k) from scipy's multivariate normal (Genz's algorithm) on the
    # cumulative z statistics, corr(Z_i, Z_j) = sqrt(n_i / n_j), equals the spending function at t_k.
    looks = SEQ.looks
    c = np.asarray(boundaries(looks, a, "obf", two_sided=two_sided))
    n = np.asarray(looks, float)
    corr = np.sqrt(np.minimum.outer(n, n) / np.maximum.outer(n, n))
    for k in (1, 3, len(looks)):
        mvn = sps.multivariate_normal(np.zeros(k), corr[:k, :k], abseps=1e-7, releps=1e-7, maxpts=10**6, seed=0)
        inside = mvn.cdf(c[:k], lower_limit=-c[:k] if two_sided else np.full(k, -np.inf))
        spent = float(spend("obf", a, n[k - 1] / n[-1])) * (2 if two_sided else 1)
        assert 1 - inside == pytest.approx(spent, abs=2e-5), f"look {k}: crossed {1 - inside:.6f}, spent {spent:.6f}"


def test_a_fixed_size_study_is_one_look_at_the_plain_levels():
    d = Design(MARGIN, (10,))
    assert d.difference_levels == (0.05,) and d.equivalence_levels == (0.05,) and not d.sequential
    assert SEQ.looks == (10, 15, 20, 25, 30, 35, 40)
    assert schedule(10, 22) == (10, 15, 20, 22), "the last block may be smaller"
    lv = SEQ.difference_levels
    assert all(a < b for a, b in zip(lv, lv[1:])) and lv[0] < 1e-4 and 0.03 < lv[-1] < 0.05, \
        f"O'Brien-Fleming spends little early and keeps the last look near 0.05: {lv}"


# ---- margin ----------------------------------------------------------------------------------

@pytest.mark.parametrize("pp, fragment", [(0.0, "not a margin"), (-1.0, "not a margin"), (float("nan"), "not a margin"),
                                          (0.01, "looks like a fraction"), (0.05, "pass 5"), (80.0, "at most 50")])
def test_a_margin_in_the_wrong_unit_is_refused_and_the_unit_named(pp, fragment):
    msg = margin_problem(pp)
    assert msg is not None and fragment in msg and "percentage points" in msg, f"--margin {pp}: {msg}"
    assert margin_problem(1.0) is None and margin_problem(0.5) is None and margin_problem(0.1) is None


# ---- the tests behind the verdict ------------------------------------------------------------

def test_tost_rejects_exactly_when_the_90_percent_interval_is_inside_the_margin():
    rng = np.random.default_rng(4)
    agree = 0
    for _ in range(300):
        n = int(rng.integers(3, 30))
        b = rng.normal(0.95, 0.01, n)
        g = b + rng.normal(rng.uniform(-0.015, 0.015), rng.uniform(0.002, 0.02), n)
        p = paired_tost(g, b, MARGIN).p_value
        iv = t_interval(g - b, 0.90)
        inside = -MARGIN < iv.low and iv.high < MARGIN
        assert (p < 0.05) == inside, f"n={n}: TOST p {p:.4f} but 90% interval [{iv.low:.4f}, {iv.high:.4f}]"
        agree += inside
    assert 20 < agree < 280, "the check must see both outcomes"
    same = np.full(6, 0.95)
    assert paired_tost(same + 0.002, same, MARGIN).p_value == pytest.approx(0.5 ** 6), \
        "equal differences inside the margin: the exact sign test against each bound"
    assert paired_tost(same + 0.02, same, MARGIN).p_value == 1.0


def test_decide_has_four_answers_and_a_difference_takes_precedence():
    assert decide(0.01, 0.01, 10, p_equivalence=0.2) == GAIN_BETTER
    assert decide(-0.01, 0.01, 10, p_equivalence=0.01) == GAIN_WORSE, "a difference smaller than the margin stays a difference"
    assert decide(0.001, 0.4, 10, p_equivalence=0.01) == EQ_LABEL
    assert decide(0.001, 0.4, 10, p_equivalence=0.2) == INC_LABEL
    assert decide(0.001, 0.4, 10) == INC_LABEL, "no margin declared: never equivalent"
    assert decide(0.001, 0.0001, 1, p_equivalence=0.0001) == INC_LABEL, "one seed decides nothing"
    assert decide(0.01, 0.01, 10, 0.005) == INC_LABEL, "a look's stricter level applies"


def _table(test: np.ndarray, val: np.ndarray) -> pd.DataFrame:
    # One simulated study as a confirm-only trials table: test/val (n_seeds, 1 + k), column 0 the baseline.
    rows = []
    alphas = (0.5, 1.0, 2.0)
    for s in range(test.shape[0]):
        for j in range(test.shape[1]):
            arm = "baseline" if j == 0 else "gain"
            rows.append({"trial_id": f"{arm}-{j}-{s}", "phase": "confirm", "arm": arm, "seed": 1000 + s,
                         "alpha": math.nan if j == 0 else alphas[j - 1], "status": "completed",
                         "val_acc": float(val[s, j]), "test_acc": float(test[s, j])})
    return pd.DataFrame(rows)


def test_the_simulated_rule_is_the_verdicts_rule():
    # The error rates below come from analysis.simulation's array version of the rule; on the same tables
    # it must give the label that analysis.verdict.stage_verdict (what the launcher and report run) gives.
    code = {GAIN_BETTER: BETTER, GAIN_WORSE: WORSE, EQ_LABEL: EQUIVALENT, INC_LABEL: INCONCLUSIVE}
    design = Design(MARGIN, schedule(10, 15))
    rng = np.random.default_rng(3)
    seen = set()
    for model, k in ((SeedModel(0.0), 1), (SeedModel(0.01, collapse=0.1), 2), (SeedModel(0.006, sd=0.005), 2),
                     (SeedModel(-0.01), 1)):
        test, val = draw(model, 15, k, 8, rng)
        for look, (n, dl, el) in enumerate(zip(design.looks, design.difference_levels, design.equivalence_levels)):
            fast, _ = look_labels(test, val, n, MARGIN, dl, el)
            for r in range(len(test)):
                v = stage_verdict(_table(test[r], val[r]), design, look)
                assert code[v.label] == fast[r], f"{model}, look {look}, study {r}: verdict {v.label}, simulation {fast[r]}"
                seen.add(v.label)
    assert seen == {GAIN_BETTER, GAIN_WORSE, EQ_LABEL, INC_LABEL}, f"the check must see all four answers: {seen}"


def test_a_stage_verdict_sees_only_its_own_seeds():
    rng = np.random.default_rng(8)
    t = seed_table(rng, 15, 0.0, 0.002)
    late = (t["arm"] == "gain") & (t["seed"] >= 10)
    t.loc[late, "test_acc"] -= 0.3  # seeds of the second stage collapse
    design = Design(MARGIN, (10, 15))
    first = stage_verdict(t, design, 0)
    assert first.n_seeds == 10 and first.mean_difference > -0.005, "the first look uses the first 10 seeds only"
    assert stage_verdict(t, design, 1).n_seeds == 15


# ---- error rates on bimodal seed data --------------------------------------------------------

DESIGNS = {"fixed 10": Design(MARGIN, (10,)), "fixed 40": Design(MARGIN, (40,)), "sequential 10..40": SEQ}


@pytest.mark.parametrize("collapse", [0.0, 0.1])
@pytest.mark.parametrize("name", list(DESIGNS))
def test_false_better_or_worse_under_a_a_is_at_most_5_percent(name, collapse):
    op = operating(SeedModel(0.0, collapse=collapse), DESIGNS[name], 1, REPS, seed=1)
    assert op.different <= 0.06, f"{name}, collapse {collapse:.0%}: false 'better'/'worse' {op.different:.3f}"
    if collapse == 0 and name.startswith("fixed"):
        assert op.different >= 0.04, f"{name}: a fixed-size t-test must spend its 5 % ({op.different:.3f})"


@pytest.mark.parametrize("sign", [+1, -1])
@pytest.mark.parametrize("collapse", [0.0, 0.1])
@pytest.mark.parametrize("name", list(DESIGNS))
def test_false_equivalent_at_the_margin_is_at_most_5_percent(name, collapse, sign):
    op = operating(SeedModel(sign * MARGIN, collapse=collapse), DESIGNS[name], 1, REPS, seed=2)
    assert op.claimed_equivalent <= 0.06, (
        f"{name}, collapse {collapse:.0%}, true difference {sign * 100 * MARGIN:+g} pp: equivalence claimed in "
        f"{op.claimed_equivalent:.3f}")
    if collapse == 0 and name.startswith("fixed"):
        assert op.claimed_equivalent >= 0.04, f"{name}: the TOST must be at its level at the margin ({op.claimed_equivalent:.3f})"


def test_holm_over_two_alphas_keeps_both_error_rates():
    for name, design in DESIGNS.items():
        aa = operating(SeedModel(0.0), design, 2, REPS, seed=3)
        at = operating(SeedModel(-MARGIN), design, 2, REPS, seed=4)
        assert aa.different <= 0.06 and at.claimed_equivalent <= 0.06, \
            f"{name}, 2 α: false difference {aa.different:.3f}, false equivalence {at.claimed_equivalent:.3f}"


def test_power_of_equivalent_at_no_difference_and_1_pp_sd():
    power = {n: operating(SeedModel(0.0), Design(MARGIN, (n,)), 1, REPS, seed=5).claimed_equivalent for n in (10, 20, 40)}
    assert 0.72 <= power[10] <= 0.86 and power[20] >= 0.97 and power[40] >= 0.99, power
    seq = operating(SeedModel(0.0), SEQ, 1, REPS, seed=5)
    assert seq.claimed_equivalent >= 0.97 and seq.mean_seeds < 25, \
        f"sequential: equivalent in {seq.claimed_equivalent:.3f}, {seq.mean_seeds:.1f} seeds on average"
    # The power curve's closed simulation (normal differences, exact law of mean and sd) agrees.
    stated = decision_power([0.01], 10, 0.0026, margin=MARGIN, reps=20000, curve=False)
    assert abs(stated.equivalence_at_n - power[10]) <= 0.03, f"stated {stated.equivalence_at_n:.3f}, pipeline {power[10]:.3f}"


def test_seeds_to_decide_is_the_smallest_count_that_probably_decides():
    for mean, sd, k in ((0.004, 0.01, 1), (-0.02, 0.15, 2), (0.0, 0.02, 1)):
        n = seeds_to_decide(mean, sd, MARGIN, n_alphas=k)
        assert n is not None and n >= 2
        assert decide_probability(mean, sd, n, MARGIN, n_alphas=k) >= 0.8, (mean, sd, n)
        assert n == 2 or decide_probability(mean, sd, n - 1, MARGIN, n_alphas=k) < 0.8, (mean, sd, n)
    assert seeds_to_decide(0.0, 0.0, MARGIN) is None, "no spread: no number, not a crash"


# ---- what the verdict says -------------------------------------------------------------------

def _verdict(difference, sd, n=20, seed=0):
    t = seed_table(np.random.default_rng(seed), n, difference, sd)
    return make_verdict(compare_alphas(t, full=False, margin=MARGIN))


def test_each_answer_says_what_decided_it():
    eq = _verdict(0.0, 0.004)
    assert eq.label == EQ_LABEL and "90% t interval" in eq.sentence and "inside ±1 pp" in eq.sentence, eq.sentence
    assert eq.difference_ci90.low > -MARGIN and eq.difference_ci90.high < MARGIN
    small = _verdict(0.004, 0.002)
    assert small.label == GAIN_BETTER and small.within_margin and "smaller than the margin" in small.sentence, small.sentence
    inc = _verdict(-0.02, 0.08, n=10)
    assert inc.label == INC_LABEL and inc.lean == GAIN_WORSE, inc.sentence
    assert "lean towards GAIN worse" in inc.sentence and "paired seeds would probably (80%) decide" in inc.sentence
    assert inc.seeds_to_decide is not None and inc.seeds_to_decide > 10
    none = make_verdict(compare_alphas(seed_table(np.random.default_rng(0), 20, 0.0, 0.004), full=False))
    assert none.label == INC_LABEL and "No equivalence margin was declared" in none.sentence
