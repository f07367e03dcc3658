# Figures for the report. Each function draws result objects from analysis.stats / analysis.power
# (or raw per-run values for points) and returns a matplotlib Figure; none recomputes a statistic.
# Units: accuracies are fractions of test (or validation) images in [0, 1]; differences between arms
# are in percentage points (pp), because the gaps of interest are a fraction of a percent.
from __future__ import annotations

import io
import math
import warnings
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: the report is written on cluster nodes without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.power import DecisionPower  # noqa: E402
from analysis.stats import AlphaFamily, ArmSummary, LearningCurves  # noqa: E402
from analysis.tables import ATTENTION_METRICS, BASELINE, CONTENT_FREE, GAIN, METRIC_LABELS, arm_label, fmt_alpha  # noqa: E402

BASE_COLOUR = "#4C72B0"
DPI = 110  # every figure of the report
GAIN_COLOURS = ("#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


def png(fig: Figure) -> bytes:
    # The figure as the report stores it; closes it (pyplot keeps open figures alive).
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def render(draw: Callable[..., Figure], *args) -> bytes:
    # draw(*args) as PNG bytes: what the report's worker process runs (draw must be a module-level
    # function of this module, so that it pickles by name).
    return png(draw(*args))


def _yerr(mean: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    # Error-bar lengths; an interval that collapses onto its mean can sit 1 ulp on the wrong side.
    return np.maximum(0.0, [np.asarray(mean) - low, np.asarray(high) - mean])


def _colour(label: str, order: Sequence[str]) -> str:
    if label == BASELINE:
        return BASE_COLOUR
    gains = [o for o in order if o != BASELINE]
    return GAIN_COLOURS[gains.index(label) % len(GAIN_COLOURS)] if label in gains else GAIN_COLOURS[0]


def accuracy_by_arm(summaries: Sequence[ArmSummary], family: AlphaFamily,
                    collapsed: dict[str, set[int]] | None = None) -> Figure:
    # collapsed: arm label -> seeds whose run collapsed; drawn as crosses, so a reader sees which
    # points are runs that learnt one class.
    collapsed = collapsed or {}
    rows = [s for s in summaries if s.metric == "test_acc"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.2, 1]})
    labels = [s.label for s in rows]
    ax1.boxplot([s.values for s in rows], tick_labels=labels, widths=0.5, showfliers=False)
    jitter = np.random.default_rng(0)  # fixed: the same report twice gives the same picture
    any_collapsed = False
    for i, s in enumerate(rows, start=1):
        x = i + jitter.uniform(-0.12, 0.12, len(s.values))
        bad = np.array([seed in collapsed.get(s.label, set()) for seed in s.seeds], bool)
        ax1.scatter(x[~bad], np.asarray(s.values)[~bad], s=22, color=_colour(s.label, labels), zorder=3)
        if bad.any():
            any_collapsed = True
            ax1.scatter(x[bad], np.asarray(s.values)[bad], s=40, marker="x", color="black", zorder=4)
    if any_collapsed:
        ax1.scatter([], [], marker="x", color="black", label="collapsed run (one class or chance)")
        ax1.legend(fontsize=8, loc="lower left")
    ax1.set_ylabel("test accuracy (fraction of test images)")
    ax1.set_xlabel("arm")
    ax1.set_title("Test accuracy per arm, one point per seed")
    ax1.tick_params(axis="x", rotation=20)

    for c in family.comparisons:
        name = arm_label(GAIN, c.alpha)
        label = name + (" (primary)" if family.primary_alpha is not None and math.isclose(c.alpha, family.primary_alpha) else "")
        ax2.plot(c.seeds, 100 * np.asarray(c.differences), marker="o", lw=1, label=label, color=_colour(name, labels))
    ax2.axhline(0, color="black", lw=0.8)
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_xlabel("seed")
    ax2.set_ylabel("GAIN − baseline test accuracy (pp)")
    ax2.set_title("Paired difference per seed")
    if family.comparisons:
        ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def dose_response(summaries: Sequence[ArmSummary], family: AlphaFamily) -> Figure:
    # Needs at least two alphas (the report leaves it out otherwise: one point on an axis says nothing).
    gains = sorted((s for s in summaries if s.metric == "test_acc" and s.arm == GAIN), key=lambda s: s.alpha)
    if len({round(s.alpha, 12) for s in gains}) < 2:
        raise ValueError(f"dose_response needs at least 2 GAIN alphas, got {[fmt_alpha(s.alpha) for s in gains]}")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    base = next((s for s in summaries if s.metric == "test_acc" and s.arm == BASELINE), None)
    a = np.array([s.alpha for s in gains])
    m = np.array([s.mean for s in gains])
    lo = np.array([s.ci.low if math.isfinite(s.ci.low) else s.mean for s in gains])
    hi = np.array([s.ci.high if math.isfinite(s.ci.high) else s.mean for s in gains])
    ax1.errorbar(a, m, yerr=_yerr(m, lo, hi), fmt="o-", capsize=4, color=GAIN_COLOURS[0],
                 label="GAIN, mean and 95% t interval (clipped to [0, 1])")
    if base is not None:
        ax1.axhline(base.mean, color=BASE_COLOUR, lw=1.5, label="baseline mean")
        if math.isfinite(base.ci.low):
            ax1.axhspan(base.ci.low, base.ci.high, color=BASE_COLOUR, alpha=0.15, label="baseline 95% t interval")
    ax1.set_xlabel("GAIN α (weight of the attention-mining loss)")
    ax1.set_ylabel("test accuracy (fraction of test images)")
    ax1.set_title("Test accuracy by α")
    ax1.legend(fontsize=8)

    comps = [c for c in family.comparisons if c.difference_ci is not None]
    if comps:
        ca = np.array([c.alpha for c in comps])
        cm = 100 * np.array([c.mean_difference for c in comps])
        clo = 100 * np.array([c.difference_ci.low for c in comps])
        chi = 100 * np.array([c.difference_ci.high for c in comps])
        ax2.errorbar(ca, cm, yerr=_yerr(cm, clo, chi), fmt="o-", capsize=4, color=GAIN_COLOURS[0],
                     label="mean paired difference, 95% t interval")
        p = family.primary()
        if p is not None:
            ax2.scatter([p.alpha], [100 * p.mean_difference], s=160, facecolors="none", edgecolors="black", zorder=4,
                        label="primary α (best validation)")
        ax2.legend(fontsize=8)
    ax2.axhline(0, color="black", lw=0.8)
    ax2.set_xlabel("GAIN α (weight of the attention-mining loss)")
    ax2.set_ylabel("GAIN − baseline test accuracy (pp)")
    ax2.set_title("Paired difference by α")
    for ax in (ax1, ax2):
        if min(a) > 0 and max(a) / min(a) >= 10:
            ax.set_xscale("log")
        ax.set_xticks(a, [fmt_alpha(x) for x in a])
        ax.minorticks_off()
    fig.tight_layout()
    return fig


def learning_curves(curves: LearningCurves) -> Figure:
    fig, ax = plt.subplots(figsize=(8, 4.2))
    t = curves.table
    order = sorted(t["arm_label"].unique(), key=lambda s: (s != BASELINE, s))
    for label in order:
        part = t[t["arm_label"] == label].sort_values("epoch")
        c = _colour(label, order)
        ax.plot(part["epoch"], part["median"], color=c, lw=1.8, label=f"{label} (median of {int(part['n'].max())} runs)")
        ax.fill_between(part["epoch"], part["q25"], part["q75"], color=c, alpha=0.18)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (fraction of validation images)")
    ax.set_title("Learning curves of the confirmation runs: median, band = interquartile range over seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def optuna_history(study) -> Figure:
    import optuna

    # Optuna's matplotlib plots call plt.style.use("ggplot"), which changes the global rcParams of every
    # later figure; rc_context restores them when the block ends.
    with plt.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_optimization_history(study)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers are whole
        return _finish_optuna_axes(ax, f"Optimisation history: {study.study_name}", "trial number",
                                   "objective: best validation accuracy (fraction)", (7, 4))


def optuna_importances(study) -> Figure:
    import optuna

    with plt.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Fixed evaluator seed: fANOVA fits a random forest, and the report must be reproducible.
        ax = optuna.visualization.matplotlib.plot_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
        return _finish_optuna_axes(ax, f"Hyperparameter importances (fANOVA): {study.study_name}",
                                   "importance for validation accuracy (fraction of variance, sums to 1)",
                                   "hyperparameter", (7, 3.5))


def _finish_optuna_axes(ax, title: str, xlabel: str, ylabel: str, size: tuple[float, float]) -> Figure:
    # Optuna's matplotlib plots return an Axes with its own labels; ours name the units. Optuna puts
    # its title on the left slot (importances) or the centre: clear every slot, then set one.
    for loc in ("left", "center", "right"):
        ax.set_title("", loc=loc)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig = ax.get_figure()
    fig.set_size_inches(*size)
    fig.set_layout_engine("constrained")  # keeps the x-label inside the canvas (tight_layout cut it)
    return fig


def _cam_image(row: pd.Series) -> np.ndarray:
    return np.asarray(row["cam"], float).reshape(int(row["cam_h"]), int(row["cam_w"]))  # (h, w)


def attention_overlays(
    attention: pd.DataFrame, examples: dict[str, np.ndarray], seed: int, alpha: float
) -> Figure:
    # Rows: test images; columns: image with ground-truth mask, baseline Grad-CAM, GAIN Grad-CAM.
    # The CAM (feature resolution, e.g. 7x7) is stretched over the image with bilinear interpolation.
    ids = [str(i) for i in examples["image_ids"]]
    a = attention[attention["seed"] == seed]
    base = a[a["arm"] == BASELINE].set_index("image_id")
    gain = a[(a["arm"] == GAIN) & np.isclose(a["alpha"].astype(float), alpha)].set_index("image_id")
    ids = [i for i in ids if i in base.index and i in gain.index]
    if not ids:
        raise ValueError(f"seed {seed}, α={fmt_alpha(alpha)}: no example image has both a baseline and a GAIN attention map")
    fig, axes = plt.subplots(len(ids), 3, figsize=(9.5, 3 * len(ids) + 0.6), squeeze=False, layout="constrained")
    all_ids = [str(i) for i in examples["image_ids"]]
    im = None
    for r, img_id in enumerate(ids):
        k = all_ids.index(img_id)
        img = examples["images"][k]  # (H, W, 3) uint8
        mask = examples["masks"][k]  # (H, W)
        h, w = mask.shape
        panels = (("image + mask", None), ("baseline Grad-CAM", base.loc[img_id]), (f"{arm_label(GAIN, alpha)} Grad-CAM", gain.loc[img_id]))
        for c, (title, row) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, extent=(0, w, h, 0))
            if row is not None:
                im = ax.imshow(_cam_image(row), cmap="jet", alpha=0.45, vmin=0, vmax=1, extent=(0, w, h, 0), interpolation="bilinear")
            if mask.any():
                # Pixel (row i, col j) is centred at (j + 0.5, i + 0.5) on an axis whose y grows downwards
                # (set_ylim(h, 0) below), the same frame as imshow's extent=(0, w, h, 0).
                ax.contour(np.arange(w) + 0.5, np.arange(h) + 0.5, mask.astype(float), levels=[0.5], colors="white", linewidths=1.5)
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            if r == 0:
                ax.set_title(title, fontsize=10)
            ax.set_xlabel("x (pixels)", fontsize=8)
            ax.set_ylabel(f"{img_id}\ny (pixels)" if c == 0 else "y (pixels)", fontsize=8)
            ax.tick_params(labelsize=7)
    if im is not None:
        fig.colorbar(im, ax=axes[:, 2].tolist(), shrink=0.6, label="Grad-CAM (min-max normalised, 0-1)")
    fig.suptitle(f"Attention on the same test images, seed {seed}; white outline = ground-truth mask")
    return fig


GROUP_METRICS = ("bias_aligned_acc", "bias_conflicting_acc", "worst_group_acc")


def group_accuracies(summaries: Sequence[ArmSummary]) -> Figure:
    rows = [s for s in summaries if s.metric in GROUP_METRICS]
    labels = list(dict.fromkeys(s.label for s in rows))
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / max(len(labels), 1)
    for j, label in enumerate(labels):
        xs, ms, lo, hi = [], [], [], []
        for i, metric in enumerate(GROUP_METRICS):
            s = next((s for s in rows if s.label == label and s.metric == metric), None)
            if s is None:
                continue
            xs.append(i + (j - (len(labels) - 1) / 2) * width)
            ms.append(s.mean)
            lo.append(s.mean - s.ci.low if math.isfinite(s.ci.low) else 0)
            hi.append(s.ci.high - s.mean if math.isfinite(s.ci.high) else 0)
        ax.bar(xs, ms, width=width, yerr=np.maximum(0.0, [lo, hi]), capsize=3, color=_colour(label, labels), label=label)
    ax.set_xticks(range(len(GROUP_METRICS)), [METRIC_LABELS[m] for m in GROUP_METRICS])
    ax.set_ylabel("accuracy (fraction of the group's test images)")
    ax.set_xlabel("test-image group (bias-aligned: habitat matches label)")
    ax.set_title("Group accuracies, mean over seeds and 95% t interval (clipped to [0, 1])")
    # Bars start at 0 (a bar's length is its value) and the intervals, clipped to [0, 1], fit below 1.08.
    ax.set_ylim(0.0, 1.08)
    ax.axhline(1.0, color="grey", lw=0.6, ls=":")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a bar
    fig.tight_layout()
    return fig


def power_curve(power: DecisionPower) -> Figure:
    fig, ax = plt.subplots(figsize=(8, 4.2))
    sd = 100 * power.sd_differences[0]
    if power.n_alphas > 1:
        ax.plot(power.curve_n, power.curve_every_alpha, color=GAIN_COLOURS[1], lw=1.8,
                label=f"gap at every α (Holm over {power.n_alphas} α)")
        ax.plot(power.curve_n, power.curve_primary_only, color=GAIN_COLOURS[0], lw=1.8,
                label=f"gap at the primary α only (Holm over {power.n_alphas} α)")
    else:
        ax.plot(power.curve_n, power.curve_primary_only, color=GAIN_COLOURS[0], lw=1.8, label="one α, paired t-test")
    if power.curve_equivalent:
        ax.plot(power.curve_n, power.curve_equivalent, color=GAIN_COLOURS[3], lw=1.8, ls="-.",
                label=f"'equivalent' within ±{100 * power.margin:g} pp when no α differs"
                      + (f" (Holm over {power.n_alphas} α)" if power.n_alphas > 1 else ""))
        if math.isfinite(power.equivalence_at_n):
            ax.scatter([power.n_seeds], [power.equivalence_at_n], color=GAIN_COLOURS[3], edgecolors="black", zorder=4,
                       label=f"this study: P('equivalent') {power.equivalence_at_n:.0%}")
    ax.axhline(power.target_power, color="grey", ls="--", lw=1, label=f"{power.target_power:.0%} power")
    if math.isfinite(power.power_at_n):
        ax.axvline(power.n_seeds, color="black", lw=1)
        ax.scatter([power.n_seeds], [power.power_at_n], color="black", zorder=4,
                   label=f"this study: {power.n_seeds} seeds, power {power.power_at_n:.0%}")
    if power.seeds_for_target is not None and power.seeds_for_target <= max(power.curve_n, default=0):
        ax.axvline(power.seeds_for_target, color="grey", ls=":", lw=1,
                   label=f"{power.seeds_for_target} seeds for {power.target_power:.0%}")
    ax.set_xscale("log")
    ticks = [t for t in (2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if t <= max(power.curve_n, default=2)]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("number of paired seeds (log scale)")
    ax.set_ylabel("share of simulated studies whose\nverdict is 'GAIN better'"
                  + (" or 'equivalent'" if power.curve_equivalent else ""))
    ax.set_ylim(0, 1.02)
    what = f"the paper's gap ({100 * power.difference:+.2f} pp)" + (" and equivalence" if power.curve_equivalent else "")
    ax.set_title(f"Power of the verdict rule for {what}, paired sd {sd:.2f} pp", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def attention_scores(summaries: Sequence[ArmSummary], content_free: dict[str, dict[str, float]]) -> Figure:
    # One panel per attention score: each arm's mean over seeds with its 95% t interval, and the level
    # a map without any content reaches on the same test positives (content_free[kind][metric]).
    fig, axes = plt.subplots(1, len(ATTENTION_METRICS), figsize=(12, 4.2), squeeze=False)
    labels = list(dict.fromkeys(s.label for s in summaries if s.metric in ATTENTION_METRICS))
    styles = {"uniform": ("black", "--"), "gaussian": ("#8C2D04", ":")}
    for ax, metric in zip(axes[0], ATTENTION_METRICS):
        rows = [next((s for s in summaries if s.label == lab and s.metric == metric), None) for lab in labels]
        for i, s in enumerate(rows):
            if s is None:
                continue
            lo = s.mean - s.ci.low if math.isfinite(s.ci.low) else 0
            hi = s.ci.high - s.mean if math.isfinite(s.ci.high) else 0
            ax.bar(i, s.mean, yerr=np.maximum(0.0, [[lo], [hi]]), capsize=3, color=_colour(s.label, labels), width=0.7)
        for kind in CONTENT_FREE:
            v = content_free.get(kind, {}).get(metric)
            if v is not None and math.isfinite(v):
                c, ls = styles[kind]
                name = "uniform map" if kind == "uniform" else "centred Gaussian map"
                ax.axhline(v, color=c, ls=ls, lw=1.4, label=f"{name}: {v:.3f}")
        ax.set_xticks(range(len(labels)), labels, rotation=20)
        ax.set_ylim(0, 1.45)  # room above 1 for the legend, so it never covers an interval
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_title(METRIC_LABELS[metric])
        ax.set_ylabel("score (fraction, 0-1)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper right", title="content-free level", title_fontsize=7)
    fig.suptitle("Attention on the test positives: trained maps vs maps without content (mean over seeds, 95% t interval)")
    fig.tight_layout()
    return fig


def paired_difference(family: AlphaFamily, margin: float | None) -> Figure:
    # The first screen's figure: GAIN - baseline test accuracy per seed (points), for each alpha its mean
    # with the 95 % (thin) and 90 % (thick) t intervals and the Hodges-Lehmann estimate (diamond), over the
    # shaded +-margin band: "equivalent" needs the 90 % interval inside the band, "better"/"worse" the
    # 95 % one clear of 0 (one alpha, one look; Holm and the looks' levels are in the text). The axis is
    # fitted to the band and the intervals; seeds beyond it (collapsed runs lie tens of points away) are
    # drawn on its edge as arrows and counted, so that the band stays readable.
    comps = [c for c in family.comparisons if c.n]
    fig, ax = plt.subplots(figsize=(10, 0.6 + 0.32 * max(len(comps), 1)))  # short: it sits on the first screen
    m = 100 * margin if margin is not None else None
    # The axis fits the primary comparison (the verdict's) and the band; another alpha's interval that
    # reaches further ends in an arrow on the edge.
    p = family.primary()
    ends = [abs(100 * x) for iv in ((p.difference_ci, p.difference_ci90) if p is not None else ()) if iv is not None
            for x in (iv.low, iv.high)]
    ends += [abs(100 * p.mean_difference)] if p is not None and math.isfinite(p.mean_difference) else []
    lim = max([1.15 * e for e in ends] + ([2.5 * m] if m else []) + [0.5])
    if m is not None:
        ax.axvspan(-m, m, color="#55A868", alpha=0.18, lw=0, label=f"±{m:g} pp margin (equivalence band)")
    ax.axvline(0, color="black", lw=0.8)
    names = []
    for i, c in enumerate(comps):
        y = len(comps) - 1 - i  # the first alpha on top
        primary = family.primary_alpha is not None and math.isclose(c.alpha, family.primary_alpha)
        names.append(arm_label(GAIN, c.alpha) + (" (primary)" if primary else ""))
        colour = GAIN_COLOURS[i % len(GAIN_COLOURS)]
        d = 100 * np.asarray(c.differences)
        jitter = np.random.default_rng(i).uniform(-0.12, 0.12, len(d))  # fixed: the same report gives the same figure
        inside = np.abs(d) <= lim
        ax.scatter(d[inside], y + 0.22 + jitter[inside], s=14, color=colour, alpha=0.7, zorder=3,
                   label="one seed" if i == 0 else None)
        for side in (-1, 1):
            out = (d * side) > lim
            if out.any():
                ax.scatter([side * lim * 0.985], [y + 0.22], marker=">" if side > 0 else "<", s=50, color=colour, zorder=4)
                ax.annotate(f"{out.sum()} beyond ({', '.join(f'{v:+.0f}' for v in sorted(d[out])[:3])}"
                            f"{'...' if out.sum() > 3 else ''})", (side * lim * 0.96, y + 0.38),
                            ha="right" if side > 0 else "left", fontsize=7, color=colour)
        if c.difference_ci is not None:
            ax.plot([100 * c.difference_ci.low, 100 * c.difference_ci.high], [y, y], color="black", lw=1.2,
                    solid_capstyle="butt", label="95% t interval" if i == 0 else None, gid=f"ci95-{i}")
            for side, end in ((-1, c.difference_ci.low), (1, c.difference_ci.high)):
                if side * 100 * end > lim:
                    ax.scatter([side * lim], [y], marker=">" if side > 0 else "<", s=40, color="black", zorder=4,
                               clip_on=False)
        if c.difference_ci90 is not None:
            ax.plot([100 * c.difference_ci90.low, 100 * c.difference_ci90.high], [y, y], color="black", lw=4.5,
                    solid_capstyle="butt", label="90% t interval" if i == 0 else None, gid=f"ci90-{i}")
        ax.scatter([100 * c.mean_difference], [y], s=36, color="white", edgecolors="black", zorder=5,
                   label="mean" if i == 0 else None)
        if math.isfinite(c.hodges_lehmann):
            ax.scatter([100 * c.hodges_lehmann], [y], marker="D", s=30, color=colour, edgecolors="black", zorder=6,
                       label="Hodges-Lehmann" if i == 0 else None)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-0.6, len(comps) - 0.2)
    ax.set_yticks(range(len(comps)), names[::-1])
    ax.set_xlabel("GAIN − baseline test accuracy per seed (percentage points)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.05), labelspacing=0.25, borderpad=0.3)
    fig.tight_layout()
    return fig
