# The study report: python -m analysis.report runs/<name> [--out DIR]
# Writes DIR/index.html (self-contained: figures as base64 PNG data URIs, opens from disk), and
# DIR/report.md with the same figures as PNG files next to it, DIR/results.json with every number and
# DIR/summary.txt, the first screen as plain text. DIR defaults to runs/<name>/report.
# summary_text(run_dir) returns that first screen for a terminal; the study launcher prints it when a
# study ends and calls write_report().
# The parts: analyse.py computes every number, first_screen.py the first screen, sections_study.py and
# sections_outcomes.py write the sections into a document.py Doc, figure_worker.py draws the slowest
# figure in a second process.
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from pathlib import Path

from analysis import sections_outcomes as outcomes
from analysis import sections_study as study
from analysis.analyse import analyse
from analysis.document import Doc, jsonable
from analysis.figure_worker import InProcess, figure_worker, submit_overlays
from analysis.first_screen import format_first_screen, summary_text
from analysis.tables import load_study

__all__ = ["FIGURES", "main", "summary_text", "write_report"]

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
    doc = Doc(out)
    has_overlays = st.attention is not None and st.examples is not None
    with figure_worker() if has_overlays and parallel else contextlib.nullcontext(InProcess()) as worker:
        a = analyse(st, seed=seed, n_resamples=n_resamples, aso_iterations=aso_iterations, power_reps=power_reps)
        overlays = submit_overlays(worker, a) if a.has_confirm else None  # drawn while the sections below run
        fs = study.first_screen_section(doc, a)
        for section in (study.per_seed_section, study.selected_section, study.study_section, study.verdict_section,
                        study.collapse_section):
            section(doc, a)
        if not a.has_confirm:
            doc.note("no completed confirmation runs: the comparisons, per-arm summaries and their figures are left out.")
        else:
            for section in (outcomes.comparisons_section, outcomes.secondary_section, outcomes.per_arm_section,
                            outcomes.mcnemar_section, outcomes.groups_section):
                section(doc, a)
            outcomes.attention_section(doc, a, overlays)
        for section in (outcomes.learning_curves_section, study.optuna_section, outcomes.power_section,
                        study.paper_section, study.timing_section, study.provenance_section):
            section(doc, a)
        doc.finish()

    results = {**a.record(), "figures": doc.figures}
    (out / "summary.txt").write_text(format_first_screen(fs) + "\n", encoding="utf-8")
    (out / "index.html").write_text(doc.html(fs.title), encoding="utf-8")
    (out / "report.md").write_text(doc.markdown(), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(jsonable(results), indent=2), encoding="utf-8")
    return out / "index.html"


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

