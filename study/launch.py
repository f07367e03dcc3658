"""Run the study: `python -m study.launch --trials 50`.

1. search: each arm (baseline, GAIN) gets its own seeded Optuna TPE study with half of --trials;
   Ray Tune runs the trials with ASHA on the validation objective. The test split is not touched.
2. selection: each arm's top --selection-k search configurations re-run on --selection-seeds fresh
   seeds; the best mean validation objective wins (the same budget for both arms).
3. confirmation: each arm's selected configuration re-runs on --seeds fresh seeds, each seed shared by
   both arms; GAIN at each of --alphas (default: the tuned alpha and the paper's 1). Test split
   evaluated once per run. With --max-seeds (or --seeds auto) in stages of 5 more seeds until the
   four-way verdict (better / worse / equivalent within --margin / inconclusive) is decided.
4. analysis: tables in runs/<name>/ and the report.

Re-running with the same --name resumes; Ctrl-C saves state and prints the command to resume.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from analysis.sequential import BLOCK

from . import options
from .checks import check_before_compute, check_data
from .plan import StudyConfig, UsageError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> Any:
    return options.parser(__doc__)


resolve = options.resolve


def resume_command(argv: list[str]) -> str:
    return shlex.join([sys.executable, "-m", "study.launch", *argv])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = resolve(args)
        cfg, data_line = check_data(cfg)
    except UsageError as e:
        parser.error(str(e))  # exits 2
    if args.dry_run:
        print(cfg.describe(data_line))
        return 0
    t0 = time.monotonic()
    say = print
    # Tune snapshots the experiment at most this often (its default: every 10 s or more). A kill loses
    # what the trials did since the last snapshot (they replay it, epoch for epoch), so keep it short.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    if cfg.verbosity < 2:
        # Tune's new console output prints experiment banners even at verbose=0; the legacy
        # engine is silent there, which leaves the terminal to the live view.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

    from .records import ConfigChanged, open_study_record
    from .session import auth_hint, start_ray, venv_command

    try:
        splits = check_before_compute(cfg)  # everything that can fail on bad input, before Ray starts
    except UsageError as e:
        parser.error(str(e))
    run_dir = Path(cfg.run_dir)
    try:
        record, resumed = open_study_record(cfg, run_dir, argv, splits.fingerprint, data=dict(splits.provenance))
    except ConfigChanged as e:
        print(f"{parser.prog}: error: --name {cfg.name}: {e}", file=sys.stderr)
        return EXIT_USAGE
    say(("resuming" if resumed else "starting") + f" study {cfg.name!r} in {run_dir}")
    say(f"  data fingerprint {splits.fingerprint[:12]}: {len(splits.train)}/{len(splits.val)}/{len(splits.test)} "
        f"train/val/test images; search {cfg.search_split['baseline']}+{cfg.search_split['gain']} trials, "
        + (f"confirmation in stages of {cfg.seeds}, +{BLOCK}, ... up to {cfg.max_seeds} seeds until decided"
           if cfg.sequential else f"confirmation on {cfg.seeds} seeds")
        + f"; equivalence margin ±{cfg.margin:g} pp")
    if data_line is not None:
        say(f"  data: {splits.provenance['summary']}")
    session = None
    try:
        session = start_ray(cfg, run_dir)
        if session.dashboard_url:
            say(f"  Ray dashboard: {session.dashboard_url}  ({auth_hint()})")
        say(f"  Optuna dashboard: {venv_command('optuna-dashboard')} {shlex.quote(cfg.optuna_url)} --host 127.0.0.1")
        code = _run(cfg, run_dir, splits, say)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except UsageError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        code = EXIT_USAGE
    finally:
        if session is not None:
            # A Ctrl-C now would stop Ray half shut down (a traceback, or the driver's core worker
            # exiting 1 when its raylet goes): everything is saved, so Ray's shutdown runs to the end.
            held = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                session.close()
            finally:
                signal.signal(signal.SIGINT, held)
    if code == EXIT_INTERRUPTED:
        print(f"\ninterrupted: the study's state is saved in {run_dir}.\nresume with:\n  {resume_command(argv)}",
              flush=True)
    else:
        say(f"total time {time.monotonic() - t0:.0f} s")
    return code


def _run(cfg: StudyConfig, run_dir: Path, splits: Any, say: Any) -> int:
    from . import phases
    from .protocol import NoWinner, Protocol
    from .timekeeper import Timekeeper
    from .records import format_timing, summary_table, update_study_record, write_tables

    fits = phases.cluster_concurrency(cfg)  # also when --max-concurrent is given: one trial must fit
    if cfg.max_concurrent is None:
        # Also the number of trials Tune asks the searcher for ahead of time (it asks for one
        # at a time otherwise, and short trials then never overlap).
        cfg = dataclasses.replace(cfg, max_concurrent=fits)
    phases.install_sigint_handler()
    trainable = phases.make_trainable(cfg, splits)
    clock = Timekeeper(cfg, before_phases_s=_since_start())  # imports, data, Ray start-up
    protocol = Protocol(cfg, run_dir, trainable, say, clock)
    try:
        protocol.run()
    except phases.Interrupted as e:
        say(f"\n{e}")
        return EXIT_INTERRUPTED
    except NoWinner as e:
        # The search's tables are still worth having: they show what went wrong.
        tables = write_tables(run_dir, protocol.grids, splits)
        say(summary_table(tables["trials"]))
        print(f"\n{e}. Narrow the search (e.g. --set train.lr=...) and start a new study.", file=sys.stderr)
        return 1
    with clock.timed("tables_s"):
        tables = write_tables(run_dir, protocol.grids, splits)
    say(f"\ntables written to {run_dir}: trials.parquet ({len(tables['trials'])} rows), epochs.parquet, "
        "predictions.parquet, attention.parquet, examples.npz")
    say(summary_table(tables["trials"]))
    update_study_record(run_dir, timing=clock.phase_timing(tables["trials"], cfg.max_concurrent or 1))  # the report shows it
    with clock.timed("report_s"):
        code = _report(run_dir, say)
    clock.timing["total_s"] = _since_start()
    update_study_record(run_dir, timing=clock.timing)
    say("\n" + format_timing(clock.timing))
    failed = tables["trials"][tables["trials"]["status"] == "error"]
    if len(failed):
        print(f"\n{len(failed)} trial(s) failed after retries: "
              + ", ".join(failed["trial_id"].tolist()) + f"; their error.txt is under {run_dir}", file=sys.stderr)
        code = code or 1
    return code


def _since_start() -> float:
    import psutil

    return time.time() - psutil.Process().create_time()


def _report(run_dir: Path, say: Any) -> int:
    rerun = f"{sys.executable} -c 'from analysis.report import write_report; write_report(\"{run_dir}\")'"
    try:
        from analysis.report import write_report

        out = write_report(run_dir, parallel=True)
    except Exception:  # the study's results are on disk whatever the report does
        traceback.print_exc()
        print(f"\nthe report failed; the study's results are safe in {run_dir}. Re-run the report with:\n  {rerun}",
              file=sys.stderr)
        return 1
    summary = Path(out).parent / "summary.txt" if out is not None else None
    if summary is not None and summary.is_file():
        say("\n" + summary.read_text().rstrip())  # the report's first screen, as plain text
    say(f"report: {out if out is not None else run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
