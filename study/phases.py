"""The Tune phases: how each phase of the protocol runs as a Tune experiment (the search, with per arm
its own Optuna TPE and ASHA; a list of given runs for selection and confirmation). What runs and what
wins is decided in study/protocol.py.

Each phase is one Tune experiment under the run folder (`search/`, `select/`, `confirm/`). A phase
whose folder exists is restored rather than restarted: finished trials are kept, unfinished ones
continue from their last checkpoint, and the searcher (Optuna's studies, or the list of confirmation
configs) comes back from Tune's snapshot, so nothing runs twice.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any, Callable

import optuna
from ray import tune
from ray.tune.schedulers import FIFOScheduler

from ._private_apis import apply_session_settings
from .checkpoints import CheckpointPruner, prune, repair
from .plan import LONGEST_FIRST, StudyConfig, UsageError, estimate
from .progress import LiveView
from .schedulers import LaggedASHA
from .searchers import ArmsSearch, ConfigList, MirroredOptunaSearch
from .spaces import ArmSpace, search_dims
from .timekeeper import Timekeeper
from .trainable import METRIC, TrialConfig, run_trial

SEARCH_DIR = "search"
SELECT_DIR = "select"
CONFIRM_DIR = "confirm"


class Interrupted(Exception):
    """A phase returned with trials unfinished (Ctrl-C): its state is saved and it can resume."""


def on_sigint(signum: int, frame: Any) -> None:
    """The launcher's SIGINT handler outside Tune: Ctrl-C between phases ends the study (exit 130)."""
    raise KeyboardInterrupt


def install_sigint_handler() -> None:
    signal.signal(signal.SIGINT, on_sigint)


def _tune_was_interrupted() -> bool:
    # Tune's fit() installs its own SIGINT handler, which on Ctrl-C stops the trials, saves the
    # experiment, puts back the handler it found (ours) and makes fit() *return* as if finished.
    # So ours being in place again after fit() means Tune saw a Ctrl-C; otherwise Tune's is.
    return signal.getsignal(signal.SIGINT) is on_sigint


def make_trainable(cfg: StudyConfig, splits: Any) -> Any:
    # with_parameters puts the splits in the object store once; every trial reads them from there.
    resources = {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(run_trial, splits=splits), resources)


def cluster_concurrency(cfg: StudyConfig) -> int:
    """How many trials the cluster's current resources run at once."""
    import ray

    res = ray.cluster_resources()
    n = int(res.get("CPU", 1) // cfg.cpus_per_trial)
    if cfg.gpus_per_trial:
        n = min(n, int(res.get("GPU", 0) // cfg.gpus_per_trial))
    if n < 1:
        raise UsageError("--cpus-per-trial/--gpus-per-trial",
                         f"a trial needs {cfg.cpus_per_trial:g} CPU and {cfg.gpus_per_trial:g} GPU, but the Ray "
                         f"cluster has {res.get('CPU', 0):g} CPU and {res.get('GPU', 0):g} GPU in all")
    return n


def trial_name(trial: Any) -> str:
    """The trial's folder and its `trial_id` in the tables, from its config alone, so that the same
    study run twice (or interrupted and resumed) names its trials alike: `search-gain-s007`,
    `select-baseline-s2001-search-baseline-s003`, `confirm-gain-a1-s1004`."""
    t = TrialConfig.from_tune(trial.config)
    phase, arm, seed = t.phase, t.run.arm, t.run.seed
    if phase == "select":
        return f"select-{arm}-s{seed}-{t.candidate}"
    if phase == "confirm" and arm == "gain":
        return f"confirm-gain-a{float(t.run.gain.alpha):.12g}-s{seed}"
    return f"{phase}-{arm}-s{seed:03d}" if phase == "search" else f"{phase}-{arm}-s{seed}"


def _run_config(cfg: StudyConfig, run_dir: Path, name: str, view: LiveView) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=str(run_dir),
        callbacks=_callbacks(view, run_dir / name),
        verbose=1 if cfg.verbosity >= 2 else 0,
        # A crashed trial is retried from its last checkpoint; a diverged one returns normally.
        failure_config=tune.FailureConfig(max_failures=2),
        # Tune deletes no checkpoint: with any num_to_keep it can delete the one its snapshot on disk
        # still names. CheckpointPruner deletes them once no readable snapshot does (study/checkpoints.py).
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
    )


def _callbacks(view: LiveView, experiment: Path) -> list[tune.Callback]:
    return [view, CheckpointPruner(experiment)]


def _fit(cfg: StudyConfig, path: Path, trainable: Any, make_tuner: Callable[[], tune.Tuner], view: LiveView,
         planned: int) -> tune.ResultGrid:
    if tune.Tuner.can_restore(path):
        for trial in repair(path):  # nothing runs yet: each trial gets exactly the checkpoint Tune will name
            print(f"  {trial}: its last checkpoint is missing; it starts again from epoch 1 with its own seed",
                  flush=True)
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=False)
        # The Tuner pickled the first session's callbacks and limits; this session's apply.
        apply_session_settings(tuner, _callbacks(view, path), 1 if cfg.verbosity >= 2 else 0, cfg.max_concurrent)
    else:
        tuner = make_tuner()
    install_sigint_handler()
    results = tuner.fit()
    interrupted = _tune_was_interrupted()
    install_sigint_handler()  # a Ctrl-C between phases must not reach a stale Tune handler
    prune(path)  # fit() ends with a snapshot written and waited for: only the named checkpoints stay
    finished = results.num_terminated + results.num_errors
    if interrupted or len(results) < planned or finished < len(results):
        raise Interrupted(f"{path.name}: interrupted with {finished} of {planned} trials finished"
                          + (" (trials stopped by the interrupt resume from their checkpoints)" if interrupted else ""))
    return results


def _concurrency(cfg: StudyConfig) -> int:
    return cfg.max_concurrent or estimate(cfg)["concurrency"]


def run_search(cfg: StudyConfig, run_dir: Path, trainable: Any, time: Timekeeper) -> tune.ResultGrid:
    """Both arms' searches as one Tune experiment (`search/`): per arm its own seeded TPE study
    (`ArmsSearch`), its own ASHA (`LaggedASHA`), a search independent of trial timing and half of --trials; the arms' trials alternate."""
    n = sum(cfg.search_split.values())
    path = run_dir / SEARCH_DIR
    view = time.live_view(SEARCH_DIR, n)

    def arm_searcher(arm: str) -> MirroredOptunaSearch:
        study_name = f"{cfg.name}-{arm}"
        attrs = {"arm": arm, "phase": "search", "sampler": "TPESampler", "sampler_seed": cfg.sampler_seed(arm),
                 "n_trials": cfg.search_split[arm], "space": [d.describe() for d in search_dims(arm, cfg.base)]}
        return MirroredOptunaSearch(
            space=ArmSpace(arm, cfg.base), metric=METRIC, mode="max",
            sampler=optuna.samplers.TPESampler(seed=cfg.sampler_seed(arm)), study_name=study_name,
            mirror_url=cfg.optuna_url, mirror_study=study_name, mirror_attrs=attrs, trial_prefix=f"search-{arm}-",
        )

    def new_searcher() -> ArmsSearch:
        # The window is the concurrency of the first session: a resumed search keeps it (it is pickled
        # with the searcher), so its proposals stay those of an uninterrupted run.
        return ArmsSearch({arm: arm_searcher(arm) for arm in LONGEST_FIRST}, cfg.search_split, METRIC, "max",
                          window=_concurrency(cfg))

    def make_tuner() -> tune.Tuner:
        search = new_searcher()
        asha = LaggedASHA(search, time_attr="epoch", metric=METRIC, max_t=cfg.base.train.max_epochs,
                          grace_period=cfg.grace, reduction_factor=cfg.reduction_factor)
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=METRIC, mode="max", search_alg=search, num_samples=n, scheduler=asha,
                max_concurrent_trials=cfg.max_concurrent, reuse_actors=True,
                trial_name_creator=trial_name, trial_dirname_creator=trial_name,
            ),
            run_config=_run_config(cfg, run_dir, SEARCH_DIR, view),
        )

    optuna.logging.set_verbosity(optuna.logging.WARNING if cfg.verbosity < 2 else optuna.logging.INFO)
    try:
        return _fit(cfg, path, trainable, make_tuner, view, n)
    finally:
        # The database copy follows Tune's snapshot, whatever happened in this session.
        if path.exists() and any(path.glob("searcher-state-*.pkl")):
            searcher = new_searcher()
            searcher.restore_from_dir(str(path))
            searcher.mirror()


def run_confirm(cfg: StudyConfig, configs: list[TrialConfig], run_dir: Path, trainable: Any,
                time: Timekeeper, done: dict[str, Any] | None = None) -> list[Any]:
    """The confirmation: `confirm/`, then one `confirm-<n>/` per extension of a finished study (more
    --seeds or --alphas) or per stage of a staged one, with only the runs not planned before. Returns
    every experiment's results. `done`: experiments this session already finished, by folder name (a
    staged confirmation passes the same dict to every stage, so earlier stages are not restored again);
    the experiments run here are added to it."""
    done = {} if done is None else done

    def key(c: TrialConfig) -> tuple[Any, ...]:
        return c.run.seed, c.run.arm, round(float(c.run.gain.alpha), 12) if c.run.arm == "gain" else None

    grids, planned = [], set()
    n = 1
    while (run_dir / _confirm_dir(n)).exists():
        own = _planned_configs(run_dir, _confirm_dir(n))
        if _confirm_dir(n) not in done:
            done[_confirm_dir(n)] = run_fixed(cfg, _confirm_dir(n), own, run_dir, trainable, time)
        grids.append(done[_confirm_dir(n)])
        planned |= {key(c) for c in own}
        n += 1
    missing = [c for c in configs if key(c) not in planned]
    if missing:
        done[_confirm_dir(n)] = run_fixed(cfg, _confirm_dir(n), missing, run_dir, trainable, time)
        grids.append(done[_confirm_dir(n)])
    return grids


def _planned_configs(run_dir: Path, phase: str) -> list[TrialConfig]:
    # run_fixed writes it before the phase's folder exists: a folder without it is not this study's.
    return [TrialConfig.from_tune(c) for c in json.loads((run_dir / f"{phase}.configs.json").read_text())]


def _confirm_dir(n: int) -> str:
    return CONFIRM_DIR if n == 1 else f"{CONFIRM_DIR}-{n}"


def run_fixed(cfg: StudyConfig, phase: str, trials: list[TrialConfig], run_dir: Path,
              trainable: Any, time: Timekeeper) -> tune.ResultGrid:
    """A phase of given trials, run in order (selection, confirmation) under `run_dir/<phase>/`; their
    configs are also kept beside it as `<phase>.configs.json` (what the phase was asked to run)."""
    configs = [t.to_tune() for t in trials]
    planned = run_dir / f"{phase}.configs.json"
    if not planned.exists():
        planned.write_text(json.dumps(configs))
    view = time.live_view(phase, len(configs))

    def make_tuner() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=METRIC, mode="max", search_alg=ConfigList(configs), num_samples=len(configs),
                scheduler=FIFOScheduler(), max_concurrent_trials=cfg.max_concurrent, reuse_actors=True,
                trial_name_creator=trial_name, trial_dirname_creator=trial_name,
            ),
            run_config=_run_config(cfg, run_dir, phase, view),
        )

    return _fit(cfg, run_dir / phase, trainable, make_tuner, view, len(configs))
