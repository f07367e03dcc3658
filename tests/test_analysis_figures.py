# Figures draw what they claim: the mask outline where the mask is, Optuna's plots with one title and
# no style leaking into later figures, intervals inside [0, 1], bars from 0, alphas to 3 digits,
# attention scores next to their content-free levels.
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # the fake-study helper lives next to this file
from conftest_analysis import make_fake_study  # noqa: E402

from analysis import compare_alphas, load_study, summarize_arms  # noqa: E402
from analysis import figures  # noqa: E402
from analysis.tables import arm_label  # noqa: E402


def _contour_centroid(ax) -> tuple[float, float]:
    pts = [p.vertices for c in ax.collections for p in c.get_paths() if len(p.vertices)]
    assert pts, "no outline drawn"
    v = np.concatenate(pts)
    return float(v[:, 0].mean()), float(v[:, 1].mean())


def test_mask_outline_sits_on_the_mask_not_upside_down():
    h, w = 40, 30
    mask = np.zeros((h, w), np.uint8)
    mask[4:14, 18:26] = 1  # top right: a vertical flip moves it to the bottom
    rows, cols = np.nonzero(mask)
    att = pd.DataFrame([{"arm": arm, "seed": 0, "alpha": alpha, "image_id": "a", "cam_h": 4, "cam_w": 3,
                         "cam": list(np.linspace(0, 1, 12))} for arm, alpha in (("baseline", math.nan), ("gain", 1.0))])
    ex = {"image_ids": np.array(["a"]), "images": np.zeros((1, h, w, 3), np.uint8), "masks": mask[None]}
    fig = figures.attention_overlays(att, ex, 0, 1.0)
    for ax in fig.axes[:3]:
        x, y = _contour_centroid(ax)
        assert abs(x - (cols.mean() + 0.5)) < 1.5 and abs(y - (rows.mean() + 0.5)) < 1.5, (
            f"outline centroid ({x:.1f}, {y:.1f}) vs mask centroid ({cols.mean() + 0.5:.1f}, {rows.mean() + 0.5:.1f}) "
            "in image pixels (y down)")
    plt.close(fig)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return load_study(make_fake_study(tmp_path_factory.mktemp("runs"), "figs", n_test=60, alphas=(0.297794, 1.0),
                                      search_trials=4))


def test_optuna_plots_one_title_label_inside_and_no_style_leak(fake):
    import optuna

    before = dict(plt.rcParams)
    study = optuna.load_study(study_name="figs-gain", storage=fake.optuna_storage)
    for make in (figures.optuna_history, figures.optuna_importances):
        fig = make(study)
        ax = fig.axes[0]
        titles = [t for t in (ax.get_title("left"), ax.get_title("center"), ax.get_title("right")) if t]
        assert len(titles) == 1, f"{make.__name__}: titles on top of each other: {titles}"
        fig.canvas.draw()
        lab = ax.xaxis.label.get_window_extent()
        assert lab.y0 >= 0 and lab.x0 >= 0 and lab.x1 <= fig.bbox.width, f"{make.__name__}: x-label cut: {lab}"
        plt.close(fig)
        assert plt.rcParams["axes.facecolor"] == before["axes.facecolor"], f"{make.__name__}: Optuna's ggplot style leaked"
    fig, ax = plt.subplots()
    assert matplotlib.colors.to_hex(ax.get_facecolor()) == "#ffffff", "a later figure is grey: style leaked"
    plt.close(fig)


def test_dose_response_needs_two_alphas_and_labels_them_to_3_digits(fake):
    summaries = summarize_arms(fake.trials)
    family = compare_alphas(fake.trials, full=False)
    fig = figures.dose_response(summaries, family)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert "0.298" in labels and not any("0.2977" in t for t in labels), labels
    plt.close(fig)
    one = fake.trials[~((fake.trials.arm == "gain") & (fake.trials.alpha == 1.0))]
    with pytest.raises(ValueError, match="at least 2 GAIN alphas"):
        figures.dose_response(summarize_arms(one), compare_alphas(one, full=False))
    assert arm_label("gain", 0.297794) == "GAIN α=0.298"


def test_group_bars_start_at_0_and_no_error_bar_is_clipped(fake):
    summaries = summarize_arms(fake.trials)
    fig = figures.group_accuracies(summaries)
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert lo == 0.0, f"bars must start at 0, axis starts at {lo}"
    tops = [s.ci.high for s in summaries if s.metric in figures.GROUP_METRICS]
    assert max(tops) <= 1.0 < hi, "every interval is clipped to [0, 1] and fits on the axis"
    plt.close(fig)


def test_attention_scores_show_content_free_levels(fake):
    from analysis.analyse import analyse

    a = analyse(fake, aso_iterations=0, n_resamples=200, power_reps=200)
    assert a.content_free["uniform"]["iou"] == pytest.approx(0.08) and a.content_free["gaussian"]["pointing_game"] == pytest.approx(0.45)
    fig = figures.attention_scores(a.summaries, a.content_free)
    levels = {round(float(line.get_ydata()[0]), 3) for ax in fig.axes for line in ax.get_lines() if len(set(line.get_ydata())) == 1}
    assert {0.31, 0.45, 0.12, 0.2, 0.08, 0.15} <= levels, f"content-free levels drawn: {levels}"
    plt.close(fig)


def test_paired_difference_draws_the_margin_band_and_both_intervals(fake):
    # What a reader takes from the first screen: the shaded band is exactly ±margin, the thick and thin bars
    # are the 90% and 95% t intervals of each alpha, the axis holds the band and the primary's intervals,
    # and seeds beyond the axis are counted, not silently cut.
    trials = fake.trials.copy()
    hit = (trials["phase"] == "confirm") & (trials["arm"] == "gain") & (trials["seed"] == 1) & (trials["alpha"] == 1.0)
    trials.loc[hit, "test_acc"] = 0.5  # a collapsed run, ~45 pp below
    family = compare_alphas(trials, full=False, margin=0.01)
    fig = figures.paired_difference(family, 0.01)
    ax = fig.axes[0]
    bands = [p for p in ax.patches if p.get_label().startswith("±1 pp margin")]
    assert len(bands) == 1, "one shaded band"
    x0, x1 = bands[0].get_x(), bands[0].get_x() + bands[0].get_width()  # axvspan: a Rectangle in data x
    assert (x0, x1) == pytest.approx((-1.0, 1.0)), f"the band spans {x0}..{x1} pp, not ±1 pp"
    for i, c in enumerate(family.comparisons):
        for gid, iv in ((f"ci95-{i}", c.difference_ci), (f"ci90-{i}", c.difference_ci90)):
            line = next(l for l in ax.get_lines() if l.get_gid() == gid)
            assert tuple(line.get_xdata()) == pytest.approx((100 * iv.low, 100 * iv.high)), f"{gid}: drawn {line.get_xdata()}"
        thin = next(l for l in ax.get_lines() if l.get_gid() == f"ci95-{i}").get_linewidth()
        assert next(l for l in ax.get_lines() if l.get_gid() == f"ci90-{i}").get_linewidth() > 2 * thin, "90% is the thick bar"
    lo, hi = ax.get_xlim()
    p = family.primary()
    assert lo < -1.0 and hi > 1.0 and lo <= 100 * p.difference_ci.low and 100 * p.difference_ci.high <= hi, \
        "the axis holds the band and the primary comparison's intervals"
    assert lo > -45, "a collapsed seed must not stretch the axis until the band is a sliver"
    notes = [t.get_text() for t in ax.texts]
    assert any(t.startswith("1 beyond (-4") for t in notes), f"the collapsed seed is counted at the edge: {notes}"
    plt.close(fig)


def test_power_curve_gains_the_equivalence_power(fake):
    from analysis import family_power

    family = compare_alphas(fake.trials, full=False, margin=0.01)
    power = family_power(family, reps=300)
    fig = figures.power_curve(power)
    labels = [l.get_label() for l in fig.axes[0].get_lines()]
    eq = [l for l in fig.axes[0].get_lines() if l.get_label().startswith("'equivalent' within ±1 pp")]
    assert eq, f"no equivalence curve among {labels}"
    assert tuple(eq[0].get_ydata()) == pytest.approx(power.curve_equivalent) and len(power.curve_equivalent) == len(power.curve_n)
    assert "equivalent" in fig.axes[0].get_ylabel()
    plt.close(fig)
