# The study report: python -m analysis.report runs/<name> [--out DIR]
# Writes DIR/index.html (self-contained: figures as base64 PNG data URIs, opens from disk), and
# DIR/report.md with the same figures as PNG files next to it, plus DIR/results.json with every number.
# DIR defaults to runs/<name>/report. The study launcher calls write_report() at the end of a study.
from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import sys
import warnings
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analysis import figures  # noqa: E402
from analysis.paper import gap_rows, paper_gap  # noqa: E402
from analysis.power import PAPER_DIFFERENCE, paired_seed_power  # noqa: E402
from analysis.stats import (  # noqa: E402
    ArmSummary,
    PairedComparison,
    compare_alphas,
    learning_curves,
    mcnemar_over_seeds,
    summarize_arms,
)
from analysis.tables import (  # noqa: E402
    BASELINE,
    GAIN,
    METRIC_LABELS,
    PRIMARY_RULE,
    StudyTables,
    confirm_runs,
    load_study,
    run_status_counts,
)
from analysis.verdict import make_verdict  # noqa: E402

# Every figure the report can contain, by file stem; the smoke-study test checks that all appear.
FIGURES = (
    "accuracy_by_arm",
    "dose_response",
    "learning_curves",
    "optuna_history_baseline",
    "optuna_history_gain",
    "optuna_importances_baseline",
    "optuna_importances_gain",
    "attention_overlays",
    "group_accuracies",
    "power_curve",
)


# ---------------------------------------------------------------------------------------------
# A tiny document model rendered twice: HTML (figures embedded) and Markdown (figures as files).


@dataclass
class _Doc:
    out_dir: Path
    blocks: list[tuple] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str, cls: str = "") -> None:
        self.blocks.append(("p", text, cls))

    def note(self, text: str) -> None:
        self.blocks.append(("p", f"Note: {text}", "note"))

    def items(self, lines: list[str]) -> None:
        self.blocks.append(("ul", lines))

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", headers, rows))

    def figure(self, name: str, fig, caption: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        png = buf.getvalue()
        (self.out_dir / f"{name}.png").write_bytes(png)
        self.figures.append(name)
        self.blocks.append(("fig", name, png, caption))

    def html(self, title: str) -> str:
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
            "table{border-collapse:collapse;margin:0.6em 0;font-size:0.9em}td,th{border:1px solid #bbb;padding:3px 7px;text-align:left}"
            "th{background:#eee}img{max-width:100%;border:1px solid #ddd}figure{margin:1em 0}figcaption{font-size:0.9em;color:#444}"
            ".verdict{font-size:1.15em;padding:0.7em;border:2px solid #333;background:#f7f7f2}.note{color:#8a5a00}</style>",
            "</head><body>",
        ]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                cls = f' class="{b[2]}"' if b[2] else ""
                out.append(f"<p{cls}>{html.escape(b[1])}</p>")
            elif b[0] == "ul":
                out.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in b[1]) + "</ul>")
            elif b[0] == "table":
                head = "".join(f"<th>{html.escape(h)}</th>" for h in b[1])
                body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif b[0] == "fig":
                data = base64.b64encode(b[2]).decode("ascii")
                out.append(
                    f'<figure id="fig-{b[1]}"><img alt="{html.escape(b[1])}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(b[3])}</figcaption></figure>"
                )
        # Lets a headless browser prove that every figure decoded: it reads these attributes from the DOM.
        out.append(
            "<script>window.addEventListener('load',function(){var im=document.images,ok=0;"
            "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}}"
            "document.body.dataset.imagesTotal=im.length;document.body.dataset.imagesLoaded=ok;});</script>"
        )
        out.append("</body></html>")
        return "\n".join(out)

    def markdown(self) -> str:
        out: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(f"**{b[1]}**" if b[2] == "verdict" else (f"> {b[1]}" if b[2] == "note" else b[1]))
            elif b[0] == "ul":
                out.append("\n".join(f"- {x}" for x in b[1]))
            elif b[0] == "table":
                esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
                lines = ["| " + " | ".join(esc(h) for h in b[1]) + " |", "|" + "---|" * len(b[1])]
                lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in b[2]]
                out.append("\n".join(lines))
            elif b[0] == "fig":
                out.append(f"![{b[1]}]({b[1]}.png)\n\n*{b[3]}*")
        return "\n\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Formatting


def _f(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _p(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.3g}"


def _pp(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{100 * x:+.2f}"


def _ci(iv, scale: float = 1.0, signed: bool = False, digits: int = 4) -> str:
    if iv is None or not math.isfinite(iv.low):
        return "n/a"
    fmt = "{:+.2f}" if signed else f"{{:.{digits}f}}"
    return "[" + fmt.format(scale * iv.low) + ", " + fmt.format(scale * iv.high) + "]"


def _jsonable(x: Any) -> Any:
    if is_dataclass(x):
        return _jsonable(asdict(x))
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


# ---------------------------------------------------------------------------------------------
# Sections


def _comparison_rows(comps: tuple[PairedComparison, ...], primary: float | None) -> list[list[str]]:
    rows = []
    for c in comps:
        tag = " (primary)" if primary is not None and math.isclose(c.alpha, primary) else ""
        rows.append([
            f"{c.alpha:g}{tag}",
            str(c.n),
            _pp(c.mean_difference),
            _ci(c.difference_ci, 100, signed=True),
            _f(100 * c.sd_difference if math.isfinite(c.sd_difference) else float("nan"), 2),
            _f(c.cohens_dz, 2),
            _f(c.ttest.statistic, 2),
            _p(c.ttest.p_value),
            _p(c.p_holm),
            _p(c.wilcoxon.p_value) if c.wilcoxon else "n/a",
            f"{_f(c.p_gain_better, 2)} {_ci(c.p_gain_better_ci, digits=2)}",
            _f(c.aso_gain_better, 3),
            _f(c.aso_baseline_better, 3),
        ])
    return rows


def _summary_rows(summaries: list[ArmSummary]) -> list[list[str]]:
    return [
        [s.label, METRIC_LABELS.get(s.metric, s.metric), str(s.n), _f(s.mean), _f(s.sd), _ci(s.ci)]
        for s in summaries
    ]


def _optuna_section(doc: _Doc, st: StudyTables) -> None:
    doc.h(2, "Hyperparameter search (Optuna)")
    if st.optuna_storage is None:
        doc.note("no Optuna storage found (optuna.db missing and none recorded in study.json).")
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = set(optuna.study.get_all_study_names(storage=st.optuna_storage))
    for arm in (BASELINE, GAIN):
        study_name = f"{st.name}-{arm}"
        if study_name not in names:
            doc.note(f"Optuna study {study_name!r} not in the storage (found: {sorted(names)}); {arm} search left out.")
            continue
        study = optuna.load_study(study_name=study_name, storage=st.optuna_storage)
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not done:
            doc.note(f"{study_name}: no completed trial; optimisation history left out.")
            continue
        doc.figure(
            f"optuna_history_{arm}",
            figures.optuna_history(study),
            f"{arm}: objective value (validation accuracy, fraction) of each of {len(done)} completed trials and the best so far.",
        )
        varying = [k for k in done[0].params if len({repr(t.params.get(k)) for t in done}) > 1]
        if len(done) < 2 or not varying:
            doc.note(f"{study_name}: parameter importances need >= 2 completed trials with a varying parameter "
                     f"({len(done)} completed, varying: {varying or 'none'}); left out.")
            continue
        try:
            fig = figures.optuna_importances(study)
        except (ValueError, RuntimeError) as e:  # e.g. a dynamic search space fANOVA cannot handle
            doc.note(f"{study_name}: parameter importances could not be computed ({type(e).__name__}: {e}).")
            continue
        doc.figure(f"optuna_importances_{arm}", fig, f"{arm}: fANOVA importance of each hyperparameter for validation accuracy.")


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    seed: int = 0,
    aso_iterations: int = 1000,
    n_resamples: int = 9999,
) -> Path:
    st = load_study(run_dir)
    out = Path(out_dir) if out_dir is not None else st.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # a re-run must not leave figures from an earlier report behind
        old.unlink()
    doc = _Doc(out)
    results: dict[str, Any] = {"study": st.name}

    trials = st.trials
    confirm = confirm_runs(trials)
    summaries = summarize_arms(trials)
    family = compare_alphas(trials, seed=seed, aso_iterations=aso_iterations, n_resamples=n_resamples)
    primary = family.primary()
    power = None
    if primary is not None and primary.n >= 2:
        power = paired_seed_power(primary.sd_difference, primary.n, PAPER_DIFFERENCE)
    verdict = make_verdict(family, power)
    gap = paper_gap()
    results.update(summaries=summaries, family=family, power=power, verdict=verdict, paper_gap=gap)

    title = f"Does GAIN help VGG16? Study {st.name!r}"
    doc.h(1, title)
    doc.p(f"Verdict: {verdict.sentence}", "verdict")
    for n in st.notes:
        doc.note(n)

    # --- study ---
    doc.h(2, "Study")
    cfg = st.config
    doc.table(["item", "value"], [
        ["confirmation seeds", str(cfg.get("seeds", "n/a"))],
        ["GAIN alphas", str(cfg.get("alphas") or "tuned in the search, not fixed")],
        ["search trials per arm", str(cfg.get("trials", "n/a"))],
        ["preset", str(cfg.get("preset", "n/a"))],
        ["data", json.dumps(cfg.get("data", {}))],
        ["git commit", str(st.meta.get("git_commit", "n/a"))],
        ["dataset fingerprint", str(st.meta.get("dataset_fingerprint", "n/a"))],
        ["primary comparison rule", PRIMARY_RULE],
    ])
    counts = run_status_counts(trials)
    doc.p("Runs by phase, arm and status (stopped = ASHA early stop; only completed confirmation runs enter the statistics):")
    doc.table(["phase", "arm"] + list(counts.columns), [[ph, arm] + [str(v) for v in r] for (ph, arm), r in zip(counts.index, counts.to_numpy())])

    # --- verdict ---
    doc.h(2, "Verdict")
    doc.p(verdict.sentence, "verdict")
    doc.p("Rules, fixed before the study ran:")
    doc.items(list(verdict.rules))
    doc.p(f"What this does not cover: {verdict.caveat}")

    if confirm.empty:
        doc.note("no completed confirmation runs: the comparisons, per-arm summaries and their figures are left out.")
    else:
        # --- comparisons ---
        doc.h(2, "GAIN vs baseline over seed-paired runs (test accuracy)")
        doc.p(
            "Differences are GAIN − baseline in percentage points (pp). Holm: paired t-test p-values adjusted across "
            "the GAIN alphas. P(GAIN > baseline): share of seeds where GAIN wins (ties count ½), 95% percentile "
            f"bootstrap. ASO: deepsig eps_min ({aso_iterations} bootstrap iterations); below 0.2 means the first arm "
            "is almost stochastically larger (conservative), near 1 means no such evidence. d_z = mean / sd of the "
            "paired differences."
        )
        doc.table(
            ["α", "seeds", "mean diff (pp)", "95% BCa CI (pp)", "sd diff (pp)", "d_z", "t", "t p", "Holm p",
             "Wilcoxon p", "P(GAIN>base) [95% CI]", "ASO ε GAIN>base", "ASO ε base>GAIN"],
            _comparison_rows(family.comparisons, family.primary_alpha),
        )
        for c in family.comparisons:
            for n in c.notes + tuple(t.note for t in (c.ttest, c.wilcoxon) if t is not None and t.note):
                doc.note(f"α={c.alpha:g}: {n}")
        doc.figure("accuracy_by_arm", figures.accuracy_by_arm(summaries, family),
                   "Left: test accuracy of each completed confirmation run (points) with a box per arm. "
                   "Right: GAIN − baseline test accuracy for each seed, in percentage points.")
        doc.figure("dose_response", figures.dose_response(summaries, family),
                   "Left: mean test accuracy by α with 95% t intervals over seeds, baseline as a band. "
                   "Right: mean paired difference by α with 95% BCa bootstrap intervals; the circled α is the primary comparison.")

        secondary = [m for m in ("worst_group_acc", "bias_conflicting_acc", "pointing_game", "energy_pointing_game", "iou")
                     if confirm[m].notna().any()]
        if secondary:
            doc.h(3, "Secondary outcomes (exploratory: not part of the verdict)")
            doc.p("Same seed pairing; paired t-test with Holm across the GAIN alphas within each outcome. "
                  "Accuracies and attention scores are fractions; differences in percentage points.")
            sec_rows = []
            for m in secondary:
                fam_m = compare_alphas(trials, m, full=False)
                results.setdefault("secondary", {})[m] = fam_m
                sec_rows += [[METRIC_LABELS[m], f"{c.alpha:g}", str(c.n), _pp(c.mean_difference), _p(c.ttest.p_value), _p(c.p_holm)]
                             for c in fam_m.comparisons]
            doc.table(["outcome", "α", "seeds", "mean diff (pp)", "t p", "Holm p"], sec_rows)

        doc.h(2, "Per arm over seeds")
        doc.table(["arm", "metric", "seeds", "mean", "sd", "95% t interval"], _summary_rows(summaries))

        # --- McNemar ---
        doc.h(2, "Per test image: exact McNemar per seed")
        if st.predictions is None or primary is None:
            doc.note("predictions.parquet or a primary GAIN arm is missing: per-image tests left out.")
        else:
            mc = mcnemar_over_seeds(st.predictions, primary.alpha)
            results["mcnemar"] = mc
            if mc is None:
                doc.note("no seed has predictions for both baseline and the primary GAIN α.")
            else:
                doc.p(f"Primary α={primary.alpha:g}. b = images only baseline got right, c = images only GAIN got right. "
                      "statsmodels' exact statistic is min(b, c).")
                doc.table(["seed", "images", "both right", "b: only baseline", "c: only GAIN", "both wrong", "statistic", "exact p"],
                          [[str(m.seed), str(m.n_images), str(m.both_correct), str(m.baseline_only), str(m.gain_only),
                            str(m.both_wrong), f"{m.statistic:g}", _p(m.p_value)] for m in mc.per_seed])
                doc.p(
                    f"Combined over {len(mc.per_seed)} seeds: GAIN won more discordant images in {mc.seeds_favouring_gain} seed(s), "
                    f"baseline in {mc.seeds_favouring_baseline}, {mc.seeds_tied} tied; sign test over seeds p = {_p(mc.sign_test.p_value)}. "
                    f"{mc.seeds_significant} seed(s) reach p < 0.05 on their own (uncorrected). Pooled discordant images "
                    f"(description only, the same test images recur in every seed): b = {mc.pooled_baseline_only}, c = {mc.pooled_gain_only}."
                )

        # --- groups ---
        doc.h(2, "Bias-aligned and bias-conflicting images")
        if any(s.metric in figures.GROUP_METRICS for s in summaries):
            doc.figure("group_accuracies", figures.group_accuracies(summaries),
                       "Mean accuracy over seeds per group with 95% t intervals. Bias-aligned: the photo's habitat matches its "
                       "label's typical background; worst group: the lowest (label, habitat) group accuracy of each run.")
        else:
            doc.note("no group accuracies (the data has no habitat labels): group figure left out.")

        # --- attention ---
        doc.h(2, "Attention (Grad-CAM)")
        if st.attention is None or st.examples is None or primary is None:
            doc.note("attention.parquet or examples.npz missing: attention overlays left out.")
        else:
            att_seeds = sorted(set(st.attention.loc[st.attention["arm"] == BASELINE, "seed"]) & set(primary.seeds))
            shown = set(map(str, st.examples["image_ids"])) & set(st.attention["image_id"].astype(str))
            if not att_seeds:
                doc.note("no seed has attention maps for both baseline and the primary GAIN α.")
            elif not shown:
                doc.note("examples.npz holds none of the images in attention.parquet: attention overlays left out.")
            else:
                doc.figure("attention_overlays",
                           figures.attention_overlays(st.attention, st.examples, att_seeds[0], primary.alpha),
                           f"Seed {att_seeds[0]}: the same test positives with baseline and GAIN α={primary.alpha:g} Grad-CAM "
                           "(feature-resolution maps stretched bilinearly); white outline = ground-truth mask.")
        att_rows = [s for s in summaries if s.metric in ("pointing_game", "energy_pointing_game", "iou")]
        if not att_rows:
            doc.note("no attention scores (pointing game, energy, IoU): the data has no masks.")

    # --- learning curves ---
    doc.h(2, "Learning curves")
    if st.epochs is None or st.epochs[st.epochs["phase"] == "confirm"].empty:
        doc.note("no per-epoch records of confirmation runs: learning curves left out.")
    else:
        doc.figure("learning_curves", figures.learning_curves(learning_curves(st.epochs)),
                   "Validation accuracy by epoch of the confirmation runs: median over seeds, band = interquartile range.")

    _optuna_section(doc, st)

    # --- power ---
    doc.h(2, "Power")
    if power is None or not math.isfinite(power.power_at_n):
        doc.note("power needs at least 2 paired seeds with differing paired differences in the primary comparison.")
    else:
        doc.p(
            f"At the observed paired standard deviation ({_pp(power.sd_difference).lstrip('+')} pp over {power.n_seeds} seeds), "
            f"a true gap of {_pp(power.difference).lstrip('+')} pp (the paper's) has effect size d_z = {power.effect_size:.2f}. "
            f"This study's power to detect it: {power.power_at_n:.1%}; {power.seeds_for_target:.0f} paired seeds would give "
            f"{power.target_power:.0%} ({power.method}, level {power.level})."
        )
        doc.figure("power_curve", figures.power_curve(power),
                   "Power of the paired t-test vs number of paired seeds at the observed paired sd; the point marks this study.")

    # --- paper ---
    doc.h(2, "The paper's own gap")
    doc.p("From the paper's numbers alone: one run per arm, 0.9762 without and 0.9788 with GAIN on 756 test images "
          "(A = without GAIN, B = with GAIN). Same numbers as `python -m analysis.paper`.")
    doc.table(["quantity", "value"], [list(r) for r in gap_rows(gap)])
    doc.p(f"Verdict on the paper: {gap.verdict}")

    # --- provenance ---
    if st.meta.get("versions"):
        doc.h(2, "Provenance")
        doc.table(["package", "version"], [[k, str(v)] for k, v in st.meta["versions"].items()])

    results["figures"] = doc.figures
    (out / "index.html").write_text(doc.html(title), encoding="utf-8")
    (out / "report.md").write_text(doc.markdown(), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=2), encoding="utf-8")
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.report", description="Write the study report (HTML + Markdown).")
    ap.add_argument("run_dir", help="the study directory, runs/<name>")
    ap.add_argument("--out", default=None, help="output folder (default: RUN_DIR/report)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the bootstraps and ASO")
    ap.add_argument("--aso-iterations", type=int, default=1000, help="ASO bootstrap iterations (~4 ms each per direction and alpha)")
    args = ap.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            path = write_report(args.run_dir, args.out, seed=args.seed, aso_iterations=args.aso_iterations)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report written: {path} (and report.md, results.json beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
