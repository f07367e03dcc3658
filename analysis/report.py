# The study report: python -m analysis.report runs/<name> [--out DIR]
# Writes DIR/index.html (self-contained: figures as base64 PNG data URIs, opens from disk), and
# DIR/report.md with the same figures as PNG files next to it, DIR/results.json with every number and
# DIR/summary.txt, the first screen as plain text. DIR defaults to runs/<name>/report.
# summary_text(run_dir) returns that first screen for a terminal; the study launcher prints it when a
# study ends and calls write_report().
from __future__ import annotations

import argparse
import base64
import contextlib
import html
import importlib
import json
import math
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import figures  # noqa: E402
from analysis.failures import could_change_sentence, failure_lines  # noqa: E402
from analysis.paper import PAPER_ACC_A, PAPER_ACC_B, PAPER_SPLIT, PaperGap, gap_rows, paper_gap  # noqa: E402
from analysis.power import PAPER_DIFFERENCE, DecisionPower  # noqa: E402
from analysis.sequential import Design, design_from_config  # noqa: E402
from analysis.stats import (  # noqa: E402
    AlphaFamily,
    ArmSummary,
    CollapseTest,
    PairedComparison,
    collapse_tests,
    compare_alphas,
    family_power,
    learning_curves,
    mcnemar_over_seeds,
    summarize_arms,
)
from analysis.tables import (  # noqa: E402
    ATTENTION_METRICS,
    BASELINE,
    CONFIRM,
    CONTENT_FREE,
    GAIN,
    METRIC_LABELS,
    PRIMARY_RULE,
    ArmOutcomes,
    StudyTables,
    arm_label,
    confirm_outcomes,
    confirm_runs,
    fmt_alpha,
    load_study,
    run_status_counts,
)
from analysis.verdict import EQUIVALENT, GAIN_BETTER, GAIN_WORSE, Verdict, make_verdict  # noqa: E402

# Every figure the report can contain, by file stem; the smoke-study test checks that all appear.
# dose_response needs at least 2 GAIN alphas; attention_scores needs masks.
FIGURES = (
    "paired_difference",
    "accuracy_by_arm",
    "dose_response",
    "learning_curves",
    "optuna_history_baseline",
    "optuna_history_gain",
    "optuna_importances_baseline",
    "optuna_importances_gain",
    "attention_overlays",
    "attention_scores",
    "group_accuracies",
    "power_curve",
)
PAPER_ALPHA = 1.0
TUNE_FOLDERS = ("search", "search-baseline", "search-gain", "select-baseline", "select-gain", "select", "confirm")


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

    def open(self, ident: str, cls: str = "") -> None:
        self.blocks.append(("open", ident, cls))

    def close(self) -> None:
        self.blocks.append(("close",))

    def note(self, text: str) -> None:
        self.blocks.append(("p", f"Note: {text}", "note"))

    def items(self, lines: list[str]) -> None:
        self.blocks.append(("ul", lines))

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", headers, rows))

    def figure(self, name: str, fig, caption: str) -> None:
        # fig: a matplotlib Figure, or the Future of a figure's PNG bytes drawn in the worker process.
        self.figures.append(name)
        self.blocks.append(("fig", name, fig if isinstance(fig, Future) else figures.png(fig), caption))

    def finish(self) -> None:
        # Waits for the figures drawn in the worker (an error there is raised here) and writes every PNG.
        for i, b in enumerate(self.blocks):
            if b[0] == "fig":
                png = b[2].result() if isinstance(b[2], Future) else b[2]
                self.blocks[i] = ("fig", b[1], png, b[3])
                (self.out_dir / f"{b[1]}.png").write_bytes(png)

    def html(self, title: str) -> str:
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;line-height:1.4}"
            "table{border-collapse:collapse;margin:0.6em 0;font-size:0.9em}td,th{border:1px solid #bbb;padding:3px 7px;text-align:left}"
            "th{background:#eee}img{max-width:100%;border:1px solid #ddd}figure{margin:1em 0}figcaption{font-size:0.9em;color:#444}"
            ".verdict{font-size:1.05em;padding:0.5em 0.7em;border:2px solid #333;background:#f7f7f2}.note{color:#8a5a00}"
            "#summary{padding:0.1em 1em;border:1px solid #999;background:#fbfbf8}.plain{font-size:1.12em}"
            "#summary p,#summary figure,#summary table{margin:0.45em 0}h1{margin:0.3em 0}"
            ".failed{color:#a00;font-weight:bold}</style>",
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
            elif b[0] == "open":
                cls = f' class="{b[2]}"' if b[2] else ""
                out.append(f'<section id="{b[1]}"{cls}>')
            elif b[0] == "close":
                out.append("</section>")
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
            "document.body.dataset.imagesTotal=im.length;document.body.dataset.imagesLoaded=ok;"
            "var s=document.getElementById('summary');if(s){document.body.dataset.summaryBottom=Math.round(s.getBoundingClientRect().bottom);}"
            "document.body.dataset.viewportHeight=window.innerHeight;});</script>"
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
            elif b[0] in ("open", "close"):
                continue
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


def _iv(pair: list | None) -> str:
    # an interval as study.json keeps it, [low, high] as fractions
    if not pair or pair[0] is None or pair[1] is None:
        return "n/a"
    return f"[{100 * pair[0]:+.2f}, {100 * pair[1]:+.2f}]"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


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


def _text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


# ---------------------------------------------------------------------------------------------
# Everything the report and the terminal summary show, computed once


@dataclass(frozen=True)
class Analysis:
    st: StudyTables
    summaries: list[ArmSummary]
    family: AlphaFamily
    sensitivity: AlphaFamily | None  # without collapsed pairs; None when nothing collapsed
    warmup_sensitivity: AlphaFamily | None  # without GAIN runs that selected a warm-up epoch; None if none did
    outcomes: list[ArmOutcomes]
    collapse: list[CollapseTest]
    power: DecisionPower | None
    verdict: Verdict
    gap: PaperGap
    n_test_images: int | None
    content_free: dict[str, dict[str, float]]
    design: Design | None = None  # a staged study's declared design (None: one look)


def analyse(
    st: StudyTables, *, seed: int = 0, n_resamples: int = 9999, aso_iterations: int = 1000, power_reps: int = 4000
) -> Analysis:
    trials = st.trials
    summaries = summarize_arms(trials)
    declared = design_from_config(st.config)  # margin None: a study from before the margin was declared
    family = compare_alphas(trials, seed=seed, aso_iterations=aso_iterations, n_resamples=n_resamples,
                            margin=declared.margin)
    outcomes = confirm_outcomes(trials)
    collapse = collapse_tests(outcomes)
    sensitivity = None
    if any(o.collapsed_seeds for o in outcomes):
        sensitivity = compare_alphas(trials, seed=seed, full=False, exclude_collapsed=True)
    warmup_sensitivity = None
    if any(o.warmup_seeds for o in outcomes):
        warmup_sensitivity = compare_alphas(trials, seed=seed, full=False, exclude_warmup=True)
    power = family_power(family, PAPER_DIFFERENCE, reps=power_reps, seed=seed)
    # A staged study is judged at the last look whose seeds it has, with that look's levels; a one-stage
    # study (also one extended by more --seeds) at the plain levels of one look.
    design = declared if declared.sequential else None
    n_seeds = len(set(confirm_runs(trials)["seed"])) if design is not None else 0
    verdict = make_verdict(family, power, outcomes, collapse, design, design.look_of(n_seeds) if design else None)
    n_test = None
    if st.predictions is not None and len(st.predictions) and "trial_id" in st.predictions:
        n_test = int(st.predictions.groupby("trial_id").size().max())
    cf: dict[str, dict[str, float]] = {}
    conf = trials[trials["phase"].astype(str) == CONFIRM]
    for kind in CONTENT_FREE:
        for m in ATTENTION_METRICS:
            col = f"{m}_{kind}"
            if col in conf and conf[col].notna().any():
                cf.setdefault(kind, {})[m] = float(conf[col].dropna().mean())  # identical across runs of one study
    gap = paper_gap(margin_pp=100 * declared.margin) if declared.margin is not None else paper_gap()
    return Analysis(st, summaries, family, sensitivity, warmup_sensitivity, outcomes, collapse, power, verdict,
                    gap, n_test, cf, design)


# ---------------------------------------------------------------------------------------------
# The first screen: the same content for the HTML page, report.md and the terminal


@dataclass(frozen=True)
class FirstScreen:
    title: str
    plain: str
    headers: list[str]
    rows: list[list[str]]
    table_note: str
    data: str
    verdict: str
    sensitivity: str
    take: str
    records: list[str]
    stages: str = ""  # how many stages ran and why the study stopped (staged studies)
    cross_check: str = ""  # baycomp's three probabilities beside the verdict
    failures: list[str] = field(default_factory=list)  # failed runs, shown above the verdict


def _alpha_roles(meta: dict) -> dict[float, str]:
    roles = meta.get("alpha_roles") or {}
    out: dict[float, str] = {}
    for role, a in roles.items():
        try:
            out[float(a)] = f"{role}" if role != "paper" else "paper's α"
        except (TypeError, ValueError):
            continue
    return out


def _role(alpha: float, roles: dict[float, str]) -> str:
    return next((r for a, r in roles.items() if math.isclose(a, alpha, rel_tol=1e-9, abs_tol=1e-12)), "")


def _dashboard_command(storage: str) -> str:
    # An absolute path to the venv's optuna-dashboard, so the command runs as printed from any folder.
    exe = Path(sys.executable).parent / "optuna-dashboard"
    cmd = str(exe) if exe.is_file() else "optuna-dashboard"
    return f"{cmd} {storage} --host 127.0.0.1"


def records_lines(st: StudyTables) -> list[str]:
    run = st.run_dir.resolve()
    lines = []
    if st.optuna_storage is not None:
        lines.append(f"Optuna studies {st.name}-baseline, {st.name}-gain in {st.optuna_storage}; "
                     f"browse them with: {_dashboard_command(st.optuna_storage)}")
    else:
        lines.append("optuna.db: not found.")
    tables = [n for n in ("trials.parquet", "epochs.parquet", "predictions.parquet", "attention.parquet", "examples.npz")
              if (run / n).is_file()]
    lines.append(f"Tables (pandas.read_parquet): {', '.join(str(run / n) for n in tables)}")
    extra = sorted((p.name for p in run.glob("confirm-*") if p.is_dir()), key=lambda n: int(n.split("-")[1])
                   if n.split("-")[1].isdigit() else 0)  # later stages or extensions of the confirmation
    folders = [str(run / d) + "/" for d in (*TUNE_FOLDERS, *extra) if (run / d).is_dir()]
    lines.append("Ray Tune experiments (per-trial params, results, checkpoints, errors): "
                 + (", ".join(folders) if folders else "none in this folder"))
    lines.append(f"Configuration and provenance: {run / 'study.json'}")
    return lines


def data_line(meta: dict) -> str:
    """What the study's data are (study.json "data_provenance"), next to the paper's split."""
    p = meta.get("data_provenance")
    fp = str(meta.get("dataset_fingerprint") or "n/a")[:12]
    paper = "the paper used {}/{}/{} images per class (train/val/test)".format(*PAPER_SPLIT)
    if not p:
        source = (meta.get("config") or {}).get("data", {}).get("source", "n/a")
        return f"Data: {source} (no provenance recorded); fingerprint {fp}; {paper}."
    # The launcher's own line (trainables.data.describe_provenance): source, layout, images per split.
    return f"Data: {p['summary']}; fingerprint {fp}; {paper}."


def first_screen(a: Analysis) -> FirstScreen:
    st, v = a.st, a.verdict
    roles = _alpha_roles(st.meta)
    out_by_label = {o.label: o for o in a.outcomes}
    acc = {s.label: s for s in a.summaries if s.metric == "test_acc"}
    labels = [o.label for o in a.outcomes] or list(acc)
    rows = []
    for lab in labels:
        s, o = acc.get(lab), out_by_label.get(lab)
        if o is not None and o.arm == GAIN:
            role = _role(o.alpha, roles)
            paper = f"{PAPER_ACC_B} (GAIN α=1)"
        else:
            role, paper = "", f"{PAPER_ACC_A}"
        runs = f"{s.n}" if s is not None else "0"
        if o is not None and o.runs != (s.n if s else 0):
            runs += f" of {o.runs}"
        collapsed = "n/a" if o is None or not o.collapse_known else str(len(o.collapsed_seeds))
        warm = str(len(o.warmup_seeds)) if o is not None and o.arm == GAIN else "-"
        rows.append([lab + (f" ({role})" if role else ""), runs, _f(s.mean if s else None), _f(s.sd if s else None),
                     _ci(s.ci) if s else "n/a", collapsed, warm, str(len(o.diverged_seeds)) if o else "0", paper])
    table_note = ("Test accuracy of completed confirmation runs (fraction of the "
                  + (f"{a.n_test_images} " if a.n_test_images else "")
                  + "test images); 95% t interval over seeds, clipped to [0, 1]; warm-up: GAIN runs that selected "
                  "a warm-up epoch (never trained with L_am). The paper: one run per arm, 756 test images.")
    plain = _plain_words(a)
    sens = " ".join(x for x in (_sensitivity_sentence(a.sensitivity), _sensitivity_sentence(a.warmup_sensitivity)) if x)
    take = _take_sentence(a)
    missing = could_change_sentence(st.trials, st.meta, v.label)
    return FirstScreen(f"Does GAIN help VGG16? Study {st.name!r}", plain,
                       ["arm", "runs", "mean", "sd", "95% interval", "collapsed", "warm-up", "diverged",
                        "the paper (one run)"],
                       rows, table_note, data_line(st.meta), (v.brief or v.sentence) + (f" {missing}" if missing else ""),
                       sens, take, records_lines(st), _stages_sentence(a), _cross_check_sentence(v),
                       failure_lines(st.trials, st.run_dir))


def _answer(v: Verdict) -> str:
    """The four-way answer as a reader would say it."""
    band = f"±{100 * v.margin:g} pp" if v.margin is not None else ""
    if v.label in (GAIN_BETTER, GAIN_WORSE):
        which = "better" if v.label == GAIN_BETTER else "worse"
        return (f"GAIN is {which} than the baseline" + (f", by less than the {band} margin" if v.within_margin else ""))
    if v.label == EQUIVALENT:
        return f"GAIN and the baseline are equivalent: their difference is shown to lie within {band} of test accuracy"
    if v.margin is None:
        return "Not decided: no difference is shown, and no equivalence margin was declared"
    return f"Not decided: neither a difference nor equivalence within {band} is shown"


def _stages_sentence(a: Analysis) -> str:
    if a.design is None:
        return ""
    rec = a.st.meta.get("stages") or {}
    done = rec.get("stages") or []
    looks = ", ".join(map(str, a.design.looks))
    if not done:
        return f"Staged confirmation (looks at {looks} seeds): no stage recorded in study.json."
    ran = ", ".join(str(d["seeds"]) for d in done)
    why = rec.get("stopped") or "not finished: the last stage's verdict was undecided and the study was stopped early"
    return (f"Staged confirmation: {len(done)} of up to {len(a.design.looks)} stages ran ({ran} seeds; looks at "
            f"{looks}, O'Brien-Fleming spending). Stopped: {why}.")


def _cross_check_sentence(v: Verdict) -> str:
    b = v.bayes
    if b is None:
        return ""
    return (f"Cross-check, not the verdict: baycomp's Bayesian signed-rank test with a region of practical equivalence "
            f"of ±{100 * b.rope:g} pp gives P(GAIN worse) = {b.p_worse:.2f}, P(equivalent) = {b.p_equivalent:.2f}, "
            f"P(GAIN better) = {b.p_better:.2f}.")


def _plain_words(a: Analysis) -> str:
    """The verdict first, then the robust estimate (Hodges-Lehmann, with its interval) and the mean
    beside it, and any seed that alone moves the mean by more than its interval's half-width."""
    p = a.family.primary()
    if p is None or p.n == 0:
        return "No seed-paired confirmation runs of both arms yet: nothing to compare."
    acc = {s.label: s for s in a.summaries if s.metric == "test_acc"}
    b, g = acc.get(BASELINE), acc.get(arm_label(GAIN, p.alpha))
    hl = f"{_pp(p.hodges_lehmann)} pp"
    if p.hodges_lehmann_ci is not None:
        hl += f" [{_pp(p.hodges_lehmann_ci.low)}, {_pp(p.hodges_lehmann_ci.high)}]"
    v = a.verdict
    margin = (f"margin ±{100 * v.margin:g} pp, declared before the first trial" if v.margin is not None
              else "no margin was declared")
    text = f"Verdict: {v.label}. {_answer(v)}"
    if v.lean:
        text += f"; the data lean towards {v.lean}"
        text += (f", and about {v.seeds_to_decide:,} paired seeds would probably decide" if v.seeds_to_decide else "")
    text += (f". Over {p.n} seed pair(s), GAIN α={fmt_alpha(p.alpha)} (best validation accuracy) minus the baseline, "
             f"in test accuracy: typical difference (Hodges-Lehmann, 95% signed-rank interval) {hl}; mean "
             f"{_pp(p.mean_difference)} pp")
    if b is not None and g is not None:
        text += f" ({g.mean:.4f} vs {b.mean:.4f})"
    text += (f", 90% t interval {_ci(p.difference_ci90, 100, signed=True)}, 95% "
             f"{_ci(p.difference_ci, 100, signed=True)}; {margin}.")
    if p.influential:
        who = "; ".join(f"seed {seed} (difference {_pp(p.differences[p.seeds.index(seed)])} pp): without it the mean "
                        f"moves {_pp(shift)} pp, more than the other seeds' 95% half-width ({100 * half:.2f} pp)"
                        for seed, shift, half in p.influential)
        text += f" The mean leans on single seeds: {who}."
    return text


def _sensitivity_sentence(fam: AlphaFamily | None) -> str:
    sp = fam.primary() if fam is not None else None
    if sp is None:
        return ""
    return (f"Sensitivity analysis (declared; not the verdict), {fam.excluded}: GAIN α={fmt_alpha(sp.alpha)} minus "
            f"baseline = {_pp(sp.mean_difference)} pp over {sp.n} paired seeds, Holm-adjusted p = {_p(sp.p_holm)}.")


def _take_sentence(a: Analysis) -> str:
    pw, gap = a.power, a.gap
    images = f"{gap.images_per_arm_for_80:,}" if gap.images_per_arm_for_80 else "more than 10,000,000"
    tail = (f" Seeds average out training randomness on this fixed test set; they cannot narrow its test-sampling "
            f"interval, for which about {images} test images per arm are needed to tell two runs "
            f"{100 * gap.gap:.2f} pp apart with {gap.target_power:.0%} power.")
    head = f"To detect the paper's {100 * PAPER_DIFFERENCE:+.2f} pp gap"
    if pw is None:
        return head + ": needs paired confirmation runs first." + tail
    if not math.isfinite(pw.power_at_n):
        return f"{head}: {pw.note}" + tail
    need = (f"about {pw.seeds_for_target:,} paired seeds" if pw.seeds_for_target is not None
            else pw.note.rstrip("."))
    lo, hi = f"{pw.power_primary_only:.0%}", f"{pw.power_every_alpha:.0%}"
    have = (f"{lo} (gap at the primary α only) to {hi} (gap at every α, Holm over {pw.n_alphas} α)"
            if pw.n_alphas > 1 and lo != hi else f"{pw.power_at_n:.0%}")
    return (f"{head} with {pw.target_power:.0%} power, this decision needs {need} at the observed paired sd "
            f"({100 * pw.sd_differences[0]:.2f} pp); it has {pw.n_seeds}, power {have}." + tail)


def format_first_screen(fs: FirstScreen) -> str:
    parts = [fs.title, "=" * len(fs.title), "", *[line for f in fs.failures for line in (f, "")], fs.plain, "",
             _text_table(fs.headers, fs.rows), fs.table_note, fs.data, "", f"Verdict: {fs.verdict}"]
    if fs.stages:
        parts += ["", fs.stages]
    checks = " ".join(x for x in (fs.cross_check, fs.sensitivity) if x)
    if checks:
        parts += ["", checks]
    parts += ["", fs.take, "", "Records:"] + [f"  {r}" for r in fs.records]
    return "\n".join(parts)


def summary_text(run_dir: str | Path, *, seed: int = 0, n_resamples: int = 9999, power_reps: int = 4000) -> str:
    # The report's first screen as plain text (no figures, no ASO: seconds, not minutes).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        a = analyse(load_study(run_dir), seed=seed, n_resamples=n_resamples, aso_iterations=0, power_reps=power_reps)
    return format_first_screen(first_screen(a))


# ---------------------------------------------------------------------------------------------
# Sections


def _comparison_rows(comps: tuple[PairedComparison, ...], primary: float | None) -> list[list[str]]:
    rows = []
    for c in comps:
        tag = " (primary)" if primary is not None and math.isclose(c.alpha, primary) else ""
        rows.append([
            f"{fmt_alpha(c.alpha)}{tag}",
            str(c.n),
            _pp(c.mean_difference),
            _ci(c.difference_ci, 100, signed=True),
            _ci(c.bootstrap_ci, 100, signed=True),
            f"{_pp(c.hodges_lehmann)} {_ci(c.hodges_lehmann_ci, 100, signed=True)}",
            _f(100 * c.sd_difference if math.isfinite(c.sd_difference) else float("nan"), 2),
            _f(c.cohens_dz, 2),
            "t" if c.ttest.method.startswith("paired t") else "sign",
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


def per_seed_rows(trials: pd.DataFrame, family: AlphaFamily) -> tuple[list[str], list[list[str]]]:
    # seed | baseline | GAIN per alpha | difference per alpha (pp) | collapsed, diverged, warm-up picked?
    conf = trials[trials["phase"].astype(str) == CONFIRM].copy()
    conf["label"] = [arm_label(a, al) for a, al in zip(conf["arm"], conf["alpha"])]
    alphas = [c.alpha for c in family.comparisons] or sorted(conf.loc[conf["arm"] == GAIN, "alpha"].dropna().unique())
    labels = [BASELINE] + [arm_label(GAIN, a) for a in alphas]
    headers = ["seed"] + labels + [f"{arm_label(GAIN, a)} − baseline (pp)" for a in alphas] + ["collapsed, diverged or warm-up epoch selected?"]
    rows = []
    for seed in sorted(set(conf["seed"].astype(int))):
        cell: dict[str, tuple[str, float]] = {}
        flags = []
        for lab in labels:
            r = conf[(conf["seed"] == seed) & (conf["label"] == lab)]
            if r.empty:
                cell[lab] = ("—", float("nan"))
                continue
            r = r.iloc[0]
            status = str(r["status"])
            if status != "completed":
                cell[lab] = (status, float("nan"))
                flags.append(f"{lab} {status}")
                continue
            v = float(r["test_acc"]) if pd.notna(r["test_acc"]) else float("nan")
            col = r.get("collapsed", pd.NA)
            if pd.notna(col) and bool(col):
                flags.append(f"{lab} collapsed")
            warm = r.get("selected_warmup", pd.NA)
            if pd.notna(warm) and bool(warm):
                flags.append(f"{lab} selected warm-up epoch {int(r['best_epoch'])}: never trained with L_am")
            cell[lab] = (_f(v), v)
        diffs = [_pp(cell[arm_label(GAIN, a)][1] - cell[BASELINE][1]) for a in alphas]
        rows.append([str(seed)] + [cell[lab][0] for lab in labels] + diffs + ["; ".join(flags) or "no"])
    return headers, rows


def _selected_rows(st: StudyTables) -> tuple[list[list[str]], str]:
    sel = st.meta.get("selected")
    if isinstance(sel, dict) and sel:
        rows = []
        for arm, d in sel.items():
            hp = d.get("hyperparameters", {}) or {}
            rows.append([str(arm), str(d.get("trial_id", "n/a")), ", ".join(map(str, d.get("select_trial_ids", []))) or "—",
                         _f(d.get("objective"), 4), _f(d.get("val_acc"), 4),
                         ", ".join(f"{k}={_value(v)}" for k, v in sorted(hp.items()))])
        return rows, ""
    # Older study.json: the best completed search trial per arm by validation accuracy.
    t = st.trials
    search = t[(t["phase"].astype(str) == "search") & (t["status"].astype(str) == "completed")]
    rows = []
    for arm in (BASELINE, GAIN):
        part = search[search["arm"] == arm]
        if part.empty:
            continue
        best = part.loc[part["val_acc"].astype(float).idxmax()]
        hp = {c[3:]: best[c] for c in part.columns if c.startswith("hp_") and pd.notna(best[c])}
        rows.append([arm, str(best["trial_id"]), "—", "n/a", _f(float(best["val_acc"])),
                     ", ".join(f"{k}={_value(v)}" for k, v in sorted(hp.items()))])
    return rows, ("study.json records no 'selected' configurations (an older study): the best completed search "
                  "trial of each arm by validation accuracy is shown.")


def _optuna_section(doc: _Doc, st: StudyTables) -> None:
    doc.h(2, "Hyperparameter search (Optuna)")
    if st.optuna_storage is None:
        doc.note("no Optuna storage found (optuna.db missing and none recorded in study.json).")
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    doc.p(f"Browse the searches: {_dashboard_command(st.optuna_storage)}")
    # One storage object for the three look-ups: each URL string would build its own engine and check
    # the schema again (~0.3 s each).
    storage = optuna.storages.get_storage(st.optuna_storage)
    names = set(optuna.study.get_all_study_names(storage=storage))
    for arm in (BASELINE, GAIN):
        study_name = f"{st.name}-{arm}"
        if study_name not in names:
            doc.note(f"Optuna study {study_name!r} not in the storage (found: {sorted(names)}); {arm} search left out.")
            continue
        study = optuna.load_study(study_name=study_name, storage=storage)
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
        if not done:
            doc.note(f"{study_name}: no completed trial; optimisation history left out.")
            continue
        doc.figure(
            f"optuna_history_{arm}",
            figures.optuna_history(study),
            f"{arm}: objective value (validation accuracy, fraction) of each of {len(done)} completed trials and the best "
            f"so far" + (f"; {len(pruned)} trials stopped early by ASHA are recorded as pruned and not drawn." if pruned else "."),
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


def _search_per_arm(st: StudyTables) -> str:
    split = st.meta.get("search_split")
    if isinstance(split, dict) and split:
        return ", ".join(f"{k} {v}" for k, v in split.items())
    total = st.config.get("trials")
    if isinstance(total, int):
        return f"{total // 2} each ({total} in total)"
    return "n/a"


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    seed: int = 0,
    aso_iterations: int = 1000,
    n_resamples: int = 9999,
    power_reps: int = 4000,
    parallel: bool = False,
) -> Path:
    """The report of the study in `run_dir` (index.html, summary.txt, results.json and the figures)
    in `out_dir` (default `run_dir/report`). `parallel=True` draws the attention overlays (~3 s) in
    a spawned second process meanwhile; the launcher and `python -m analysis.report` pass it. Spawning
    re-imports the caller's main module, so a script that passes it needs `if __name__ == "__main__":`."""
    st = load_study(run_dir)
    out = Path(out_dir) if out_dir is not None else st.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # a re-run must not leave figures from an earlier report behind
        old.unlink()
    doc = _Doc(out)
    has_overlays = st.attention is not None and st.examples is not None
    with _figure_worker() if has_overlays and parallel else contextlib.nullcontext(_InProcess()) as worker:
        a = analyse(st, seed=seed, n_resamples=n_resamples, aso_iterations=aso_iterations, power_reps=power_reps)
        results: dict[str, Any] = {"study": st.name, "summaries": a.summaries, "family": a.family,
                                   "sensitivity": a.sensitivity,
                                   "warmup_sensitivity": a.warmup_sensitivity, "outcomes": a.outcomes, "collapse_tests": a.collapse,
                                   "power": a.power, "verdict": a.verdict, "paper_gap": a.gap,
                                   "design": (a.design or Design(a.verdict.margin, a.verdict.looks or (1,))).to_json(),
                                   "content_free": a.content_free}
        confirm = confirm_runs(st.trials)
        overlays = _overlays(worker, a, st) if not confirm.empty else None  # drawn while the sections below run
        fs = _first_screen_section(doc, a, st, out)
        _per_seed_section(doc, a, st)
        _selected_section(doc, st)
        _study_section(doc, st)
        _verdict_section(doc, a)
        _collapse_section(doc, a)
        if confirm.empty:
            doc.note("no completed confirmation runs: the comparisons, per-arm summaries and their figures are left out.")
        else:
            _comparisons_section(doc, a, aso_iterations)
            results.update(_secondary_section(doc, st, confirm))
            _per_arm_section(doc, a)
            results.update(_mcnemar_section(doc, a, st))
            _groups_section(doc, a)
            _attention_section(doc, a, overlays)
        _learning_curves_section(doc, st)
        _optuna_section(doc, st)
        _power_section(doc, a)
        _paper_section(doc, a.gap)
        _timing_section(doc, st.meta.get("timing"))
        _provenance_section(doc, st)
        doc.finish()

    results["figures"] = doc.figures
    (out / "index.html").write_text(doc.html(fs.title), encoding="utf-8")
    (out / "report.md").write_text(doc.markdown(), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=2), encoding="utf-8")
    return out / "index.html"


def _first_screen_section(doc: _Doc, a: Analysis, st: StudyTables, out: Path) -> FirstScreen:
    fs = first_screen(a)
    doc.h(1, fs.title)
    doc.open("summary")
    for line in fs.failures:
        doc.p(line, "failed")
    doc.p(fs.plain, "plain")
    if a.family.primary() is not None and a.family.primary().n:
        doc.figure("paired_difference", figures.paired_difference(a.family, a.verdict.margin),
                   "Equivalent: the 90% interval inside the shaded band; better or worse: the 95% interval clear of 0 "
                   "(one α, one look).")
    doc.table(fs.headers, fs.rows)
    doc.p(f"{fs.table_note} {fs.data}")  # one paragraph: the first screen is tight with the figure
    doc.p(f"Verdict: {fs.verdict}", "verdict")
    if fs.stages:
        doc.p(fs.stages)
    checks = " ".join(x for x in (fs.cross_check, fs.sensitivity) if x)
    if checks:
        doc.p(checks)
    doc.p(fs.take)
    doc.close()
    doc.p("Records:")
    doc.items(fs.records)
    (out / "summary.txt").write_text(format_first_screen(fs) + "\n", encoding="utf-8")
    for n in st.notes:
        doc.note(n)
    return fs


def _per_seed_section(doc: _Doc, a: Analysis, st: StudyTables) -> None:
    doc.h(2, "Per seed (test accuracy)")
    headers, rows = per_seed_rows(st.trials, a.family)
    if rows:
        doc.p("Each confirmation seed is shared by both arms (same data, order and initialisation). Differences in percentage points.")
        doc.table(headers, rows)
    else:
        doc.note("no confirmation runs yet.")


def _selected_section(doc: _Doc, st: StudyTables) -> None:
    doc.h(2, "Selected hyperparameters")
    sel_rows, sel_note = _selected_rows(st)
    cfg = st.config
    if sel_note:
        doc.note(sel_note)
    # The interface named it selection_seeds; the study writes select_seeds (a count or the seed list).
    sel_seeds = cfg.get("selection_seeds", cfg.get("select_seeds"))
    if isinstance(sel_seeds, list):
        sel_seeds = f"{len(sel_seeds)} selection seed(s) ({', '.join(map(str, sel_seeds))})"
    elif sel_seeds is not None:
        sel_seeds = f"{sel_seeds} selection seed(s)"
    doc.p(f"Selection rule: {cfg.get('select', 'overall')} validation accuracy"
          + (f"; top {cfg['selection_k']} search configurations per arm re-run" + (f" on {sel_seeds}" if sel_seeds else "")
             if cfg.get("selection_k") else "") + ". Trial ids are those of trials.parquet and the Tune folders.")
    doc.table(["arm", "search trial", "selection trials", "selection objective", "validation accuracy", "hyperparameters"], sel_rows)


def _study_section(doc: _Doc, st: StudyTables) -> None:
    cfg = st.config
    doc.h(2, "Study")
    alphas = cfg.get("confirm_alphas") or st.meta.get("confirm_alphas") or cfg.get("alphas")
    roles = st.meta.get("alpha_roles") or {}
    doc.table(["item", "value"], [
        ["confirmation seeds", str(cfg.get("seeds", "n/a"))],
        ["GAIN alphas confirmed", (", ".join(fmt_alpha(float(x)) for x in alphas) if isinstance(alphas, list) and alphas
                                   and all(isinstance(x, (int, float)) for x in alphas) else str(alphas or "tuned in the search"))
         + (f" (roles: {', '.join(f'{k} {fmt_alpha(float(v))}' for k, v in roles.items())})" if roles else "")],
        ["search trials per arm", _search_per_arm(st)],
        ["preset", str(cfg.get("preset", "n/a"))],
        ["data", json.dumps(cfg.get("data", {}))],
        ["git commit", str(st.meta.get("git_commit", "n/a"))],
        ["dataset fingerprint", str(st.meta.get("dataset_fingerprint", "n/a"))],
        ["primary comparison rule", str(st.meta.get("primary_rule", PRIMARY_RULE))],
    ])
    counts = run_status_counts(st.trials)
    doc.p("Runs by phase, arm and status (stopped = ASHA early stop; select = re-runs of the top search configurations "
          "on selection seeds, validation only; only confirmation runs enter the statistics):")
    doc.table(["phase", "arm"] + list(counts.columns), [[ph, arm] + [str(v) for v in r] for (ph, arm), r in zip(counts.index, counts.to_numpy())])


def _verdict_section(doc: _Doc, a: Analysis) -> None:
    verdict, power = a.verdict, a.power
    doc.h(2, "Verdict")
    doc.p(verdict.sentence, "verdict")
    doc.p("Rules, fixed before the study ran (also in study.json, verdict_rules):")
    doc.items(list(verdict.rules))
    design = a.design or Design(verdict.margin, verdict.looks or (max(verdict.n_seeds, 1),))
    doc.p(f"Design, declared in study.json before the first trial: {design.describe()}.")
    stages = (a.st.meta.get("stages") or {}).get("stages") or []
    if stages:
        doc.p(_stages_sentence(a))
        doc.table(["stage", "seeds", "paired", "verdict", "mean diff (pp)", "95% t interval (pp)", "90% t interval (pp)",
                   "Holm p", "level", "Holm TOST p", "level"],
                  [[str(d["stage"]), str(d["seeds"]), str(d.get("paired_seeds", "")), str(d["label"]),
                    _pp(d.get("mean_difference")), _iv(d.get("ci95")), _iv(d.get("ci90")), _p(d.get("p_holm")),
                    _p(d.get("difference_level")), _p(d.get("p_tost_holm")), _p(d.get("equivalence_level"))]
                   for d in stages])
    doc.p(f"What this does not cover: {verdict.caveat}")
    if power is not None:
        doc.p(f"Power ({power.method}) assumes:")
        doc.items(list(power.assumptions) + ([power.note] if power.note else []))


def _collapse_section(doc: _Doc, a: Analysis) -> None:
    doc.h(2, "Collapsed and diverged runs")
    doc.p("A run is collapsed when it predicts one class for at least 95% of its test images or its test accuracy lies "
          "inside the central binomial 95% interval of chance. Both are outcomes of the method: they count in the "
          "primary analysis as they are (a diverged run has no test accuracy and leaves its pair).")
    doc.table(["arm", "confirmation runs", "completed", "collapsed (seeds)", "diverged (seeds)", "failed (seeds)"],
              [[o.label, str(o.runs), str(o.completed),
                ("not recorded" if not o.collapse_known else f"{len(o.collapsed_seeds)}" + (f" ({', '.join(map(str, o.collapsed_seeds))})" if o.collapsed_seeds else "")),
                f"{len(o.diverged_seeds)}" + (f" ({', '.join(map(str, o.diverged_seeds))})" if o.diverged_seeds else ""),
                f"{len(o.failed_seeds)}" + (f" ({', '.join(map(str, o.failed_seeds))})" if o.failed_seeds else "")]
               for o in a.outcomes])
    if a.collapse:
        doc.table(["GAIN α", "GAIN collapsed", "baseline collapsed", "Fisher's exact p (collapsed)", "Fisher's exact p (collapsed or diverged)"],
                  [[fmt_alpha(t.alpha), f"{t.gain_collapsed}/{t.gain_runs}", f"{t.baseline_collapsed}/{t.baseline_runs}",
                    _p(t.fisher_p), _p(t.failed_fisher_p) if t.failed_fisher_p is not None else "nothing diverged"]
                   for t in a.collapse])


def _comparisons_section(doc: _Doc, a: Analysis, aso_iterations: int) -> None:
    family, summaries = a.family, a.summaries
    doc.h(2, "GAIN vs baseline over seed-paired runs (test accuracy)")
    doc.p(
        "Differences are GAIN − baseline in percentage points (pp). The verdict uses the paired test (t; the exact sign "
        "test when every paired difference is equal), Holm-adjusted across the GAIN alphas, and the 95% t interval. "
        "Checks that do not change the verdict: BCa bootstrap interval, Wilcoxon, P(GAIN > baseline) (share of seeds "
        f"where GAIN wins, ties count ½, 95% percentile bootstrap), ASO (deepsig eps_min, {aso_iterations} bootstrap "
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
                    _ci(c.difference_ci90, 100, signed=True),
                    "n/a" if c.difference_ci90 is None else
                    "yes" if -family.margin < c.difference_ci90.low and c.difference_ci90.high < family.margin else "no",
                    _p(c.tost.p_value if c.tost else None), _p(c.p_tost_holm),
                    *((_f(c.bayes.p_worse, 3), _f(c.bayes.p_equivalent, 3), _f(c.bayes.p_better, 3))
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
                  [[fmt_alpha(c.alpha), str(c.n), _pp(c.mean_difference), _ci(c.difference_ci, 100, signed=True),
                    "t" if c.ttest.method.startswith("paired t") else "sign", _p(c.ttest.p_value), _p(c.p_holm)]
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


def _secondary_section(doc: _Doc, st: StudyTables, confirm: pd.DataFrame) -> dict[str, Any]:
    results: dict[str, Any] = {}
    secondary = [m for m in ("worst_group_acc", "bias_conflicting_acc", "pointing_game", "energy_pointing_game", "iou")
                 if confirm[m].notna().any()]
    if secondary:
        doc.h(3, "Secondary outcomes (exploratory: not part of the verdict)")
        doc.p("Same seed pairing; paired test with Holm across the GAIN alphas within each outcome. "
              "Accuracies and attention scores are fractions; differences in percentage points.")
        sec_rows = []
        for m in secondary:
            fam_m = compare_alphas(st.trials, m, full=False)
            results.setdefault("secondary", {})[m] = fam_m
            sec_rows += [[METRIC_LABELS[m], fmt_alpha(c.alpha), str(c.n), _pp(c.mean_difference), _p(c.ttest.p_value), _p(c.p_holm)]
                         for c in fam_m.comparisons]
        doc.table(["outcome", "α", "seeds", "mean diff (pp)", "p", "Holm p"], sec_rows)
    return results


def _per_arm_section(doc: _Doc, a: Analysis) -> None:
    doc.h(2, "Per arm over seeds")
    doc.table(["arm", "metric", "seeds", "mean", "sd", "95% t interval (clipped to [0, 1])"], _summary_rows(a.summaries))


def _mcnemar_section(doc: _Doc, a: Analysis, st: StudyTables) -> dict[str, Any]:
    results: dict[str, Any] = {}
    primary = a.family.primary()
    doc.h(2, "Per test image: exact McNemar per seed")
    if st.predictions is None or primary is None:
        doc.note("predictions.parquet or a primary GAIN arm is missing: per-image tests left out.")
    else:
        mc = mcnemar_over_seeds(st.predictions, primary.alpha)
        results["mcnemar"] = mc
        if mc is None:
            doc.note("no seed has predictions for both baseline and the primary GAIN α.")
        else:
            doc.p(f"Primary α={fmt_alpha(primary.alpha)}. b = images only baseline got right, c = images only GAIN got right. "
                  "statsmodels' exact statistic is min(b, c). Each test covers test-image sampling for one pair of runs; "
                  "p-values are per seed and unadjusted (a description, not the verdict).")
            doc.table(["seed", "images", "both right", "b: only baseline", "c: only GAIN", "both wrong", "statistic", "exact p"],
                      [[str(m.seed), str(m.n_images), str(m.both_correct), str(m.baseline_only), str(m.gain_only),
                        str(m.both_wrong), f"{m.statistic:g}", _p(m.p_value)] for m in mc.per_seed])
            doc.p(
                f"Over {len(mc.per_seed)} seeds: GAIN won more discordant images in {mc.seeds_favouring_gain} seed(s), "
                f"baseline in {mc.seeds_favouring_baseline}, {mc.seeds_tied} tied. Pooled discordant images "
                f"(description only, the same test images recur in every seed): b = {mc.pooled_baseline_only}, c = {mc.pooled_gain_only}."
            )
    return results


def _groups_section(doc: _Doc, a: Analysis) -> None:
    doc.h(2, "Bias-aligned and bias-conflicting images")
    if any(s.metric in figures.GROUP_METRICS for s in a.summaries):
        doc.figure("group_accuracies", figures.group_accuracies(a.summaries),
                   "Mean accuracy over seeds per group with 95% t intervals clipped to [0, 1]; bars start at 0. Bias-aligned: "
                   "the photo's habitat matches its label's typical background; worst group: the lowest (label, habitat) "
                   "group accuracy of each run.")
    else:
        doc.note("no group accuracies (the data has no habitat labels): group figure left out.")


class _InProcess:
    """The part of an executor that write_report uses, drawing in this process."""

    def submit(self, fn: Any, *args: Any) -> Future:
        done: Future = Future()
        done.set_result(fn(*args))
        return done


def _figure_worker() -> ProcessPoolExecutor:
    # A second process for the attention overlays: 24 panels whose constrained layout and tick labels
    # take ~3 s to draw, while this process computes and draws the rest (the report runs after the
    # study's last trial, when both CPU slots are free). Spawned, not forked: the launcher's process
    # holds Ray's threads, and a forked copy of a thread's locks can deadlock. (Spawning re-imports the
    # caller's main module: hence opt-in, `write_report(parallel=True)`.) It starts here and imports analysis.figures
    # while this process analyses the tables.
    worker = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=importlib.import_module, initargs=("analysis.figures",))
    worker.submit(os.getpid)  # the process starts on the first submit
    return worker


@dataclass(frozen=True)
class _Overlays:
    png: Future  # of figures.attention_overlays(...) as PNG bytes
    seed: int
    alpha: float


def _overlays(worker: ProcessPoolExecutor | _InProcess, a: Analysis, st: StudyTables) -> _Overlays | str:
    # The attention-overlay figure, submitted to the worker as soon as the analysis names its seed and
    # α; or the note saying why it is left out.
    primary = a.family.primary()
    if st.attention is None or st.examples is None or primary is None:
        return "attention.parquet or examples.npz missing: attention overlays left out."
    att_seeds = sorted(set(st.attention.loc[st.attention["arm"] == BASELINE, "seed"]) & set(primary.seeds))
    shown = set(map(str, st.examples["image_ids"])) & set(st.attention["image_id"].astype(str))
    if not att_seeds:
        return "no seed has attention maps for both baseline and the primary GAIN α."
    if not shown:
        return "examples.npz holds none of the images in attention.parquet: attention overlays left out."
    png = worker.submit(figures.render, figures.attention_overlays, st.attention, st.examples, att_seeds[0], primary.alpha)
    return _Overlays(png, int(att_seeds[0]), primary.alpha)


def _attention_section(doc: _Doc, a: Analysis, overlays: _Overlays | str) -> None:
    summaries = a.summaries
    doc.h(2, "Attention (Grad-CAM)")
    att = [s for s in summaries if s.metric in ATTENTION_METRICS]
    if not att:
        doc.note("no attention scores (pointing game, energy, IoU): the data has no masks.")
    else:
        cf_rows = [[METRIC_LABELS[m]] + [_f(a.content_free.get(k, {}).get(m), 3) for k in CONTENT_FREE] for m in ATTENTION_METRICS]
        doc.p("Scores of the trained maps on the test positives, beside the level a map without content reaches on the "
              "same images (a uniform map, a centred Gaussian): a score near those levels says nothing about attention.")
        if a.content_free:
            doc.table(["score", "uniform map", "centred Gaussian map"], cf_rows)
        else:
            doc.note("this study's tables hold no content-free levels: the scores are shown alone.")
        doc.figure("attention_scores", figures.attention_scores(summaries, a.content_free),
                   "Mean attention score over seeds with 95% t intervals; lines: content-free levels (uniform, centred Gaussian).")
    if isinstance(overlays, str):
        doc.note(overlays)
    else:
        doc.figure("attention_overlays", overlays.png,
                   f"Seed {overlays.seed}: the same test positives with baseline and {arm_label(GAIN, overlays.alpha)} Grad-CAM "
                   "(feature-resolution maps stretched bilinearly); white outline = ground-truth mask.")


def _learning_curves_section(doc: _Doc, st: StudyTables) -> None:
    doc.h(2, "Learning curves")
    if st.epochs is None or st.epochs[st.epochs["phase"] == "confirm"].empty:
        doc.note("no per-epoch records of confirmation runs: learning curves left out.")
    else:
        doc.figure("learning_curves", figures.learning_curves(learning_curves(st.epochs)),
                   "Validation accuracy by epoch of the confirmation runs: median over seeds, band = interquartile range.")


def _power_section(doc: _Doc, a: Analysis) -> None:
    power = a.power
    doc.h(2, "Power")
    if power is None or not math.isfinite(power.power_at_n) or not power.curve_n:
        doc.note("power not computable: " + (power.note if power is not None else "no primary comparison with paired seeds."))
    else:
        doc.p(_take_sentence(a))
        doc.p(f"Closed-form power of one paired t-test at the primary α, without Holm (for comparison only): "
              f"{power.single_test_power:.0%}.")
        eq = (f" Second curve: the share of simulated studies that conclude 'equivalent' within ±{100 * power.margin:g} pp "
              "when no α differs from the baseline (TOST per α, Holm), at the same sd."
              if power.margin is not None else "")
        doc.figure("power_curve", figures.power_curve(power),
                   "Simulated power of the verdict rule (paired test per α, Holm, 'GAIN better' at the primary α) vs number "
                   "of paired seeds, at the observed paired sd; the point marks this study." + eq)
    _operating_section(doc, a)


def _operating_section(doc: _Doc, a: Analysis, reps: int = 2000) -> None:
    # The four-way rule's error rates and power for this study's design, simulated on bimodal seed data.
    from analysis.simulation import SeedModel, proof_tables

    v = a.verdict
    if v.margin is None:
        doc.note("no equivalence margin declared (a study from before the four-way verdict): its error rates are not simulated.")
        return
    k = max(v.family_size, 1)
    design = a.design or Design(v.margin, (max(v.n_seeds, 2),))
    own = f"this study ({', '.join(map(str, design.looks))} seeds)"
    tables = proof_tables(v.margin, n_alphas=k, reps=reps, extra=((own, design),))
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


def _paper_section(doc: _Doc, gap: PaperGap) -> None:
    doc.h(2, "The paper's own gap")
    doc.p("From the paper's numbers alone: one run per arm, 0.9762 without and 0.9788 with GAIN on 756 test images "
          "(A = without GAIN, B = with GAIN). Same numbers as `python -m analysis.paper`.")
    doc.table(["quantity", "value"], [list(r) for r in gap_rows(gap)])
    doc.p(f"Verdict on the paper: {gap.verdict}")
    if gap.equivalence is not None:
        doc.p(f"Equivalence on the paper's numbers: {gap.equivalence.sentence}")
    doc.p("Assumptions:")
    doc.items(list(gap.assumptions))


def _provenance_section(doc: _Doc, st: StudyTables) -> None:
    if st.meta.get("versions"):
        doc.h(2, "Provenance")
        doc.table(["package", "version"], [[k, str(v)] for k, v in st.meta["versions"].items()])


def _timing_section(doc: _Doc, timing: dict | None) -> None:
    # Written by the study launcher (study.json "timing"): the last session's wall time per phase.
    if not timing or not timing.get("phases"):
        return
    doc.h(2, "Where the time went")
    doc.p("Last session of the study. Trial parts are summed over trials; overhead is wall time x slots minus "
          "the trials' own time (Ray/Tune start-up, scheduling, restores, slots idle while a phase drains).")
    rows = [[name, f"{p['wall_s']:.0f}", str(p["trials"]), f"{p['train_s']:.0f}", f"{p['val_s']:.0f}",
             f"{p['test_s']:.0f}", f"{p['checkpoint_s']:.0f}", f"{p['overhead_s']:.0f}"]
            for name, p in timing["phases"].items()]
    doc.table(["phase", "wall s", "trials", "train s", "validation s", "test s", "checkpoint s", "overhead s"], rows)
    other = {k.removesuffix("_s").replace("_", " "): v for k, v in timing.items() if k.endswith("_s")}
    doc.p("; ".join(f"{k}: {v:.0f} s" for k, v in other.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.report", description="Write the study report (HTML + Markdown).")
    ap.add_argument("run_dir", help="the study directory, runs/<name>")
    ap.add_argument("--out", default=None, help="output folder (default: RUN_DIR/report)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the bootstraps, ASO and the power simulation")
    ap.add_argument("--aso-iterations", type=int, default=1000, help="ASO bootstrap iterations (deepsig's default; ~12 µs each per direction and alpha)")
    ap.add_argument("--summary", action="store_true", help="print the first-screen summary only (no files written)")
    args = ap.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            if args.summary:
                print(summary_text(args.run_dir, seed=args.seed))
                return 0
            path = write_report(args.run_dir, args.out, seed=args.seed, aso_iterations=args.aso_iterations,
                                parallel=True)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report written: {path} (and report.md, results.json, summary.txt beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
