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

import argparse
import dataclasses
import importlib.util
import math
import os
import shlex
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from trainables.config import PRESETS, ArgumentParser, ConfigError, check_writable

from analysis.sequential import BLOCK, FIRST_LOOK

from .plan import (
    AUTO,
    ARMS,
    StudyConfig,
    UsageError,
    estimate,
    parse_alphas,
    parse_data,
    parse_margin,
    parse_option,
    parse_set,
)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_DEFAULTS = StudyConfig()


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m study.launch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=None,
    )
    g = p.add_argument_group("protocol")
    g.add_argument("--trials", type=int, metavar="N",
                   help=f"search trials, both arms together (default {_DEFAULTS.trials}): each arm gets N//2; "
                        "an odd N leaves its last trial unused so that the budgets stay equal")
    g.add_argument("--seeds", metavar="K|auto",
                   help=f"confirmation seeds, each shared by both arms (default {_DEFAULTS.seeds}); seeds 1000.. "
                        f"are disjoint from the search's. 'auto' (needs --max-seeds): {FIRST_LOOK} seeds, then blocks "
                        f"of {BLOCK} until the verdict is decided or --max-seeds is reached")
    g.add_argument("--max-seeds", type=int, metavar="N",
                   help="staged confirmation: after --seeds (or auto's first stage), add seeds in blocks of "
                        f"{BLOCK} up to N, stopping as soon as the four-way verdict is decided (O'Brien-Fleming "
                        "alpha spending keeps its error rates); default: one stage")
    g.add_argument("--margin", metavar="PP",
                   help=f"equivalence margin in percentage points of test accuracy (default {_DEFAULTS.margin:g}: "
                        "GAIN and baseline are 'equivalent' if the difference is shown to lie within ±1 pp); "
                        "declared in study.json before the first trial")
    g.add_argument("--alphas", metavar="A[,B...]",
                   help="GAIN alphas to confirm, one Holm family: numbers and/or 'tuned' (the selected alpha); "
                        "default tuned,1 (the paper's alpha next to the tuned one)")
    g.add_argument("--select", choices=["overall", "worst-group"],
                   help="what early stopping and selection score on validation data (default overall accuracy; "
                        "worst-group for the shortcut scenario, e.g. --data bias=0.9); ties: validation log loss")
    g.add_argument("--selection-k", type=int, metavar="K",
                   help=f"selection phase: each arm's top K search configurations (default {_DEFAULTS.selection_k})")
    g.add_argument("--selection-seeds", type=int, metavar="S",
                   help=f"selection phase: re-run each candidate on S fresh seeds (default {_DEFAULTS.selection_seeds}; "
                        "0 skips the phase)")
    g.add_argument("--preset", choices=list(PRESETS), help=f"run size (default {_DEFAULTS.preset}); smoke is for tests")
    g.add_argument("--data", metavar="SPEC",
                   help="'mimicry' (default), a photo folder, and/or benchmark knobs: "
                        "'camouflage=0.8,bias=0.9' or 'PATH,image_size=96' (the folder first, knobs after it; "
                        "a folder name may hold commas). A public dataset as published, recognised or named: "
                        "'cod10k:PATH,classes=Lizard+Chameleon+Gecko', 'camo:PATH,negatives=DIR', "
                        "'nc4k:PATH,negatives=DIR'")
    g.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any run config field, e.g. --set train.max_epochs=8 (repeatable)")
    g.add_argument("--seed", type=int, help=f"study seed for the TPE samplers (default {_DEFAULTS.seed})")
    g.add_argument("--grace-period", type=int, metavar="EPOCHS",
                   help="ASHA: epochs before the first cut (default: max_epochs // 4)")
    g.add_argument("--reduction-factor", type=int, metavar="R",
                   help=f"ASHA: keep 1 in R trials at each rung (default {_DEFAULTS.reduction_factor})")
    g = p.add_argument_group("where results go")
    g.add_argument("--name", help=f"study name; the same name resumes (default {_DEFAULTS.name})")
    g.add_argument("--storage", metavar="DIR",
                   help=f"parent folder of runs/<name>/ (default ./{_DEFAULTS.storage}); a shared path on a cluster")
    g.add_argument("--optuna-storage", metavar="URL",
                   help="SQLAlchemy URL of the Optuna database (default sqlite:///<storage>/<name>/optuna.db)")
    g = p.add_argument_group("Ray")
    g.add_argument("--address", metavar="auto|HOST:PORT", help="join a Ray cluster (default: start a local Ray)")
    g.add_argument("--cpus-per-trial", type=float, metavar="C",
                   help=f"CPUs per trial; torch threads follow (default {_DEFAULTS.cpus_per_trial:g})")
    g.add_argument("--gpus-per-trial", type=float, metavar="G",
                   help="GPUs per trial, fractions allowed (default 0: CPU)")
    g.add_argument("--max-concurrent", type=int, metavar="M", help="at most M trials at once (default: what fits)")
    g.add_argument("--dashboard", action=argparse.BooleanOptionalAction,
                   help="local Ray: serve the dashboard on 127.0.0.1 (default on)")
    g.add_argument("--dashboard-port", type=int, metavar="PORT", help=f"default {_DEFAULTS.dashboard_port}")
    g = p.add_argument_group("this command")
    g.add_argument("--config", type=Path, metavar="study.yaml",
                   help="read options from a YAML file (keys as the long flags); the command line overrides it")
    g.add_argument("--dry-run", action="store_true", help="print the plan and its estimated cost, then exit")
    v = g.add_mutually_exclusive_group()
    v.add_argument("-v", "--verbose", action="store_true", help="Ray Tune's own output and the trials' logs")
    v.add_argument("-q", "--quiet", action="store_true", help="no live view, only phase results")
    return p


# Options a --config file may set, by their argparse dest.
_FILE_KEYS = ("trials", "seeds", "max_seeds", "margin", "alphas", "select", "selection_k", "selection_seeds",
              "preset", "data", "set", "seed", "grace_period", "reduction_factor",
              "name", "storage", "optuna_storage", "address", "cpus_per_trial", "gpus_per_trial", "max_concurrent",
              "dashboard", "dashboard_port")


def _read_config_file(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise UsageError("--config", f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UsageError("--config", f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise UsageError("--config", f"{path}: expected a mapping of option: value")
    out = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in _FILE_KEYS:
            raise UsageError("--config", f"{path}: unknown option {key!r}; known are {', '.join(_FILE_KEYS)}")
        out[dest] = value
    return out


def resolve(args: argparse.Namespace) -> StudyConfig:
    """Defaults < --config file < command line; every value typed by its declared field type."""
    merged: dict[str, Any] = _read_config_file(args.config) if args.config else {}
    for dest in _FILE_KEYS:
        value = getattr(args, dest)
        if value is not None:
            merged[dest] = value
    if str(merged.get("seeds", "")).strip().lower() == AUTO:
        if merged.get("max_seeds") is None:
            raise UsageError("--seeds", f"auto needs a seed budget: add --max-seeds N (e.g. --seeds auto --max-seeds 40; "
                                        f"auto starts with {FIRST_LOOK} seeds and adds blocks of {BLOCK})")
        merged["seeds"] = FIRST_LOOK
    if "margin" in merged:
        merged["margin"] = parse_margin(merged["margin"])
    kw: dict[str, Any] = {dest: parse_option(dest, value) for dest, value in merged.items()
                          if dest not in ("alphas", "data", "set")}
    if "alphas" in merged:
        kw["alphas"] = parse_alphas(merged["alphas"])
    kw["overrides"] = (parse_data(merged["data"]) if "data" in merged else ()) + (
        parse_set(merged["set"]) if "set" in merged else ())
    kw["storage"] = _absolute(kw.get("storage", _DEFAULTS.storage))
    if (kw.get("optuna_storage") or "").startswith("sqlite:///"):
        kw["optuna_storage"] = _absolute_sqlite(kw["optuna_storage"])
    kw["verbosity"] = 2 if args.verbose else 0 if args.quiet else 1
    return StudyConfig(**kw)


def _absolute(storage: str) -> str:
    if "://" in storage:
        raise UsageError("--storage", f"{storage!r}: use a local or shared (mounted) folder; object-store URIs "
                                      "are not supported for the study's tables yet")
    return str(Path(storage).expanduser().resolve())


def _absolute_sqlite(url: str) -> str:
    # A relative sqlite path would name another file when the study resumes from another folder.
    path, sep, query = url.removeprefix("sqlite:///").partition("?")
    if not path or path == ":memory:" or Path(path).is_absolute():
        return url
    return f"sqlite:///{Path(path).expanduser().resolve()}{sep}{query}"


_PER_ARM_SEARCH = ("search-baseline", "search-gain")  # the run folder layout before 2026-11-27


def check_storage(cfg: StudyConfig) -> None:
    """The run folder (and a sqlite Optuna file elsewhere) must be writable before study.json is written,
    and hold no study of the earlier layout (which this version would silently search again)."""
    legacy = [d + "/" for d in _PER_ARM_SEARCH if (Path(cfg.run_dir) / d).is_dir()]
    if legacy:
        raise UsageError("--name", f"{cfg.run_dir} holds a study from an earlier gainstudy, which searched each arm "
                                   f"in its own Tune experiment ({', '.join(legacy)}); this version searches both "
                                   "in search/: choose another --name, or finish that study with its own version")
    try:
        check_writable(Path(cfg.run_dir), folder=True)
    except ConfigError as e:
        raise UsageError("--storage", str(e)) from None
    if (cfg.optuna_storage or "").startswith("sqlite:////"):  # the default lives in the run folder
        db = Path(cfg.optuna_url.removeprefix("sqlite:///").partition("?")[0])
        if not db.parent.is_dir():
            raise UsageError("--optuna-storage", f"{cfg.optuna_url!r}: the folder {db.parent} does not exist; "
                                                 "create it or choose another path")
        try:
            check_writable(db, folder=False)
        except ConfigError as e:
            raise UsageError("--optuna-storage", str(e)) from None


def check_data(cfg: StudyConfig) -> tuple[StudyConfig, str | None]:
    """A photo source's layout recognised and its files listed, no pixels read: its problems exit 2 here,
    and the cost model gets its image counts. Returns the plan and what was recognised (None: the benchmark)."""
    if cfg.base.data.is_procedural:
        return cfg, None
    from trainables.data import SPLIT_NAMES, DataError, survey

    try:
        found = survey(cfg.base.data)
    except DataError as e:
        raise UsageError("--data", str(e)) from None
    images = tuple(sum(found["counts"][s].values()) for s in SPLIT_NAMES)
    return dataclasses.replace(cfg, data_images=images), found["summary"]


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

    # Everything that can fail on bad input fails here, before Ray or any trial starts.
    from trainables.data import DataError, load_splits
    from trainables.model import MissingPackageError, WeightsError, check_model

    from .records import ConfigChanged, open_study_record, preflight
    from .session import auth_hint, check_address, check_dashboard_port, venv_command

    try:
        try:
            preflight(cfg)
        except (TypeError, ValueError, OverflowError) as e:  # pyarrow's errors are ValueError/TypeError
            raise UsageError("--set/--data", f"a value the study would record cannot be written to its "
                                             f"tables ({str(e).splitlines()[0]}): change it") from None
        check_storage(cfg)
        check_address(cfg.address)
        check_dashboard_port(cfg)
        check_model(cfg.base.model)
        splits = load_splits(cfg.base.data)
    except UsageError as e:
        parser.error(str(e))
    except MissingPackageError as e:
        parser.error(str(e))
    except WeightsError as e:
        parser.error(f"model.weights: {e}")
    except DataError as e:
        parser.error(f"--data: {e}")
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

    from .session import start_ray

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
    from .records import format_timing, phase_timing, summary_table, update_study_record, write_tables

    fits = phases.cluster_concurrency(cfg)  # also when --max-concurrent is given: one trial must fit
    if cfg.max_concurrent is None:
        # Also the number of trials Tune asks the searcher for ahead of time (it asks for one
        # at a time otherwise, and short trials then never overlap).
        cfg = dataclasses.replace(cfg, max_concurrent=fits)
    phases.install_sigint_handler()
    trainable = phases.make_trainable(cfg, splits)
    grids: dict[str, Any] = {}
    walls: dict[str, float] = {}
    timing: dict[str, Any] = {"before_phases_s": _since_start()}  # imports, data, Ray start-up
    try:
        _search_and_confirm(cfg, run_dir, trainable, grids, walls, say)
    except phases.Interrupted as e:
        say(f"\n{e}")
        return EXIT_INTERRUPTED
    except phases.NoWinner as e:
        # The search's tables are still worth having: they show what went wrong.
        tables = write_tables(run_dir, grids, splits)
        say(summary_table(tables["trials"]))
        print(f"\n{e}. Narrow the search (e.g. --set train.lr=...) and start a new study.", file=sys.stderr)
        return 1
    with _timed(timing, "tables_s"):
        tables = write_tables(run_dir, grids, splits)
    say(f"\ntables written to {run_dir}: trials.parquet ({len(tables['trials'])} rows), epochs.parquet, "
        "predictions.parquet, attention.parquet, examples.npz")
    say(summary_table(tables["trials"]))
    timing["phases"] = {name: phase_timing(_phase_rows(tables["trials"], name), wall, cfg.max_concurrent or 1)
                        for name, wall in walls.items()}
    update_study_record(run_dir, timing=timing)  # the report shows it
    with _timed(timing, "report_s"):
        code = _report(run_dir, say)
    timing["total_s"] = _since_start()
    update_study_record(run_dir, timing=timing)
    say("\n" + format_timing(timing))
    failed = tables["trials"][tables["trials"]["status"] == "error"]
    if len(failed):
        print(f"\n{len(failed)} trial(s) failed after retries: "
              + ", ".join(failed["trial_id"].tolist()) + f"; their error.txt is under {run_dir}", file=sys.stderr)
        code = code or 1
    return code


@contextmanager
def _timed(into: dict[str, Any], key: str) -> Iterator[None]:
    """Seconds the block took, stored as into[key]."""
    t0 = time.monotonic()
    yield
    into[key] = time.monotonic() - t0


def _since_start() -> float:
    import psutil

    return time.time() - psutil.Process().create_time()


def _phase_rows(trials: Any, name: str) -> list[dict[str, Any]]:
    phase, _, arm = name.partition("-")
    sel = trials[(trials["phase"] == phase) & ((trials["arm"] == arm) if arm else True)]
    return sel.to_dict("records")


def _rows(grids: dict[str, Any], names: list[str]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    from .records import result_rows

    rows, configs = [], {}
    for name in names:
        for res in grids[name]:
            row = result_rows(res, load_run=False)[0]
            rows.append(row)
            configs[row["trial_id"]] = dict(res.config)
    return rows, configs


def _search_and_confirm(cfg: StudyConfig, run_dir: Path, trainable: Any, grids: dict[str, Any],
                        walls: dict[str, float], say: Any) -> None:
    """The Tune phases in order (search, selection, confirmation); each raises Interrupted if it did
    not finish. `walls` gets each phase's wall time in this session."""
    from . import phases
    from .progress import Clock
    from .records import update_study_record

    est = estimate(cfg)
    conc = est["concurrency"]
    clock = Clock(started=time.time(), concurrency=cfg.max_concurrent or conc,
                  epoch_s=tuple(est["epoch_s"].items()))
    with _timed(walls, phases.SEARCH_DIR):
        grids[phases.SEARCH_DIR] = phases.run_search(
            cfg, run_dir, trainable, later_s=(est["select_core_s"] + est["confirm_core_s"]) / conc, clock=clock)
    rows, configs = _rows(grids, [phases.SEARCH_DIR])
    clock = _advance(clock, rows, est, "search")
    if cfg.selection_seeds:
        tops = {arm: phases.top_search_trials(arm, rows, cfg.selection_k) for arm in ARMS}
        with _timed(walls, "select"):
            grids["select"] = phases.run_fixed(cfg, phases.SELECT_DIR, phases.selection_configs(cfg, tops, configs),
                                               run_dir, trainable, later_s=est["confirm_core_s"] / conc, clock=clock)
        select_rows, _ = _rows(grids, ["select"])
        clock = _advance(clock, select_rows, est, "select")
        winners = {arm: phases.select_winner(arm, tops[arm], select_rows, configs) for arm in ARMS}
    else:
        winners = {arm: phases.search_winner(arm, rows, configs) for arm in ARMS}
    confirm_configs, alphas = phases.confirmation_configs(cfg, winners)
    update_study_record(run_dir, selected={arm: w.record() for arm, w in winners.items()}, confirm_alphas=alphas,
                        alpha_roles=cfg.alpha_roles(float(winners["gain"].config["gain.alpha"])))
    what = "mean over selection seeds" if cfg.selection_seeds else "search"
    for arm, w in winners.items():
        hp = ", ".join(f"{k}={_fmt(v)}" for k, v in w.hyperparameters.items())
        say(f"  selected {arm}: val acc {w.val_acc:.4f} ({what}; search trial {w.trial_id}): {hp}")
    with _timed(walls, "confirm"):
        if cfg.sequential:
            confirm_grids = _confirm_in_stages(cfg, winners, run_dir, trainable, clock, say)
        else:
            confirm_grids = phases.run_confirm(cfg, confirm_configs, run_dir, trainable, clock=clock)
    for i, grid in enumerate(confirm_grids):
        grids[f"confirm-{i + 1}"] = grid  # more than one after an extension (more --seeds or --alphas) or in stages


def _confirm_in_stages(cfg: StudyConfig, winners: dict[str, Any], run_dir: Path, trainable: Any, clock: Any,
                       say: Any) -> list[Any]:
    """--max-seeds: the confirmation in stages (the looks of cfg.design()), each stage one more `confirm-<n>/`
    experiment of the extension path (so every stage's runs are kept and a stopped study resumes). After each
    stage the four-way verdict on that stage's seeds at that look's nominal levels; the study stops at the
    first decided one or when the budget is spent. Each stage's verdict goes to study.json ("stages")."""
    import pandas as pd

    from analysis.verdict import stage_verdict

    from . import phases
    from .records import update_study_record

    design = cfg.design()
    done: dict[str, Any] = {}
    stages: list[dict[str, Any]] = []
    grids: list[Any] = []
    for look, n in enumerate(design.looks):
        configs, _ = phases.confirmation_configs(dataclasses.replace(cfg, seeds=n, max_seeds=None), winners)
        grids = phases.run_confirm(cfg, configs, run_dir, trainable, clock=clock, done=done)
        rows, _ = _rows({str(i): g for i, g in enumerate(grids)}, [str(i) for i in range(len(grids))])
        v = stage_verdict(pd.DataFrame(rows), design, look)
        last = look == len(design.looks) - 1
        stages.append(_stage_record(v, look, n))
        stopped = (f"decided at stage {look + 1} of {len(design.looks)} ({n} seeds): {v.label}" if v.decided else
                   f"seed budget spent at stage {look + 1} ({n} seeds, --max-seeds {cfg.max_seeds}): {v.label}"
                   if last else "")
        update_study_record(run_dir, stages={"looks": list(design.looks), "stages": stages, "stopped": stopped})
        say(f"  stage {look + 1} of up to {len(design.looks)} ({n} seeds): {v.label}"
            f" (Holm p {v.p_holm:.3g} vs {v.difference_level:.3g}; equivalence Holm p {v.p_tost_holm:.3g} vs "
            f"{v.equivalence_level:.3g})" + (f"; stopping: {stopped}" if stopped else "; adding seeds"))
        if v.decided:
            break
    return grids


def _stage_record(v: Any, look: int, n: int) -> dict[str, Any]:
    """One stage's verdict as study.json keeps it (plain numbers; NaN as None)."""
    def num(x: float) -> float | None:
        return float(x) if x is not None and math.isfinite(x) else None

    def iv(i: Any) -> list[float] | None:
        return [i.low, i.high] if i is not None else None

    return {"stage": look + 1, "seeds": n, "paired_seeds": v.n_seeds, "label": v.label,
            "alpha": num(v.alpha) if v.alpha is not None else None, "mean_difference": num(v.mean_difference),
            "ci95": iv(v.difference_ci), "ci90": iv(v.difference_ci90), "p_holm": num(v.p_holm),
            "p_tost_holm": num(v.p_tost_holm), "difference_level": v.difference_level,
            "equivalence_level": v.equivalence_level, "within_margin": v.within_margin}


def _advance(clock: Any, rows: list[dict[str, Any]], est: dict[str, Any], phase: str) -> Any:
    """The clock after a phase: the modelled core-seconds its trials did join the work done."""
    epoch_s = dict(clock.epoch_s)
    done = sum(int(r["epochs"]) * epoch_s.get(str(r["arm"]), 0.0) + est["trial_extra_s"][phase] for r in rows)
    return dataclasses.replace(clock, done_before_s=clock.done_before_s + done)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _report(run_dir: Path, say: Any) -> int:
    if importlib.util.find_spec("analysis.report") is None:
        say("(the analysis report is not installed yet: the table above is the summary)")
        return 0
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
