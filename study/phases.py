"""The two Tune phases: per-arm Optuna+ASHA search, then seed-paired confirmation.

Each phase is one Tune experiment under the run folder (`search-baseline/`, `search-gain/`,
`confirm/`). A phase whose folder exists is restored rather than restarted: finished trials are
kept, unfinished ones continue from their last checkpoint, and the searcher (Optuna's study, or the
list of confirmation configs) comes back from Tune's snapshot, so nothing runs twice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from .plan import ARMS, StudyConfig, UsageError, estimate
from .progress import LiveView
from .searchers import ConfigList, MirroredOptunaSearch
from .spaces import ArmSpace, search_dims
from .trainable import METRIC, run_trial

SEARCH_DIR = "search-{arm}"
CONFIRM_DIR = "confirm"


class NoWinner(RuntimeError):
    """Every search trial of an arm diverged or failed: there is nothing to confirm."""


class Interrupted(Exception):
    """A phase returned with trials unfinished (Ctrl-C): its state is saved and it can resume."""


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
    return f"{trial.config.get('phase', 'trial')}-{trial.config.get('arm', 'x')}-{trial.trial_id}"


def _run_config(cfg: StudyConfig, run_dir: Path, name: str, view: LiveView) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=str(run_dir),
        callbacks=[view],
        verbose=1 if cfg.verbosity >= 2 else 0,
        # A crashed trial is retried from its last checkpoint; a diverged one returns normally.
        failure_config=tune.FailureConfig(max_failures=2),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
    )


def _fit(cfg: StudyConfig, path: Path, trainable: Any, make_tuner: Callable[[], tune.Tuner], view: LiveView,
         planned: int) -> tune.ResultGrid:
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=False)
        # The Tuner pickled the first session's callbacks and limits; this session's apply.
        internal = tuner._local_tuner  # noqa: SLF001
        internal.get_run_config().callbacks = [view]
        internal.get_run_config().verbose = 1 if cfg.verbosity >= 2 else 0
        internal._tune_config.max_concurrent_trials = cfg.max_concurrent  # noqa: SLF001
    else:
        tuner = make_tuner()
    results = tuner.fit()
    # fit() returns early only when interrupted (it raises otherwise): then trials are missing or
    # not yet terminated.
    finished = results.num_terminated + results.num_errors
    if len(results) < planned or finished < len(results):
        raise Interrupted(f"{path.name}: {finished} of {planned} trials finished")
    return results


def _concurrency(cfg: StudyConfig) -> int:
    return cfg.max_concurrent or estimate(cfg)["concurrency"]


def run_search(cfg: StudyConfig, arm: str, run_dir: Path, trainable: Any, later_s: float = 0.0) -> tune.ResultGrid:
    n = cfg.search_split[arm]
    name = SEARCH_DIR.format(arm=arm)
    path = run_dir / name
    view = LiveView(f"search/{arm}", n, _concurrency(cfg), later_s=later_s, verbosity=cfg.verbosity)
    study_name = f"{cfg.name}-{arm}"
    attrs = {"arm": arm, "phase": "search", "sampler": "TPESampler", "sampler_seed": cfg.sampler_seed(arm),
             "n_trials": n, "space": [d.describe() for d in search_dims(arm, cfg.base, cfg.grace)]}

    def new_searcher() -> MirroredOptunaSearch:
        return MirroredOptunaSearch(
            space=ArmSpace(arm, cfg.base, cfg.grace), metric=METRIC, mode="max",
            sampler=optuna.samplers.TPESampler(seed=cfg.sampler_seed(arm)), study_name=study_name,
            mirror_url=cfg.optuna_url, mirror_study=study_name, mirror_attrs=attrs, trial_prefix=f"search-{arm}-",
        )

    def make_tuner() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=METRIC, mode="max", search_alg=new_searcher(), num_samples=n,
                scheduler=ASHAScheduler(time_attr="epoch", max_t=cfg.base.train.max_epochs,
                                        grace_period=cfg.grace, reduction_factor=cfg.reduction_factor),
                max_concurrent_trials=cfg.max_concurrent, reuse_actors=True,
                trial_name_creator=trial_name, trial_dirname_creator=trial_name,
            ),
            run_config=_run_config(cfg, run_dir, name, view),
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


@dataclass(frozen=True)
class Winner:
    arm: str
    trial_id: str
    val_acc: float
    config: dict[str, Any]  # the trial's flat config (phase "search")
    hyperparameters: dict[str, Any]


def select_winner(arm: str, rows: list[dict[str, Any]], configs: dict[str, dict[str, Any]]) -> Winner:
    """Best validation accuracy among the arm's search trials that did not diverge or fail."""
    eligible = [r for r in rows if r["arm"] == arm and r["phase"] == "search"
                and r["status"] in ("completed", "stopped") and math.isfinite(r["val_acc"])]
    if not eligible:
        raise NoWinner(f"no {arm} search trial finished with a validation accuracy: every one diverged "
                           f"or failed; see the trial folders under search-{arm}/ (error.txt)")
    # Ties: a trial that ran to its end beats one ASHA cut, then the earlier trial.
    best = max(eligible, key=lambda r: (r["val_acc"], r["status"] == "completed", -r["seed"]))
    hps = {d.name: configs[best["trial_id"]][d.key] for d in search_dims(arm, _base_of(configs[best["trial_id"]]), 1)}
    return Winner(arm, best["trial_id"], best["val_acc"], configs[best["trial_id"]], hps)


def _base_of(config: dict[str, Any]) -> Any:
    from .trainable import split_config

    return split_config(config)[1]


def confirmation_configs(cfg: StudyConfig, winners: dict[str, Winner]) -> tuple[list[dict[str, Any]], list[float]]:
    """Both arms on every confirmation seed; GAIN at each alpha. Pairs are adjacent so that an
    interrupted confirmation has whole pairs done."""
    alphas = list(cfg.alphas) if cfg.alphas else [float(winners["gain"].config["gain.alpha"])]
    resources = {"train.num_threads": cfg.base.train.num_threads, "train.device": cfg.base.train.device}
    out = []
    for seed in cfg.confirm_seeds:
        for arm in ARMS:
            for alpha in (alphas if arm == "gain" else [None]):
                c = {**winners[arm].config, **resources, "seed": seed, "phase": "confirm"}
                if alpha is not None:
                    c["gain.alpha"] = float(alpha)
                out.append(c)
    return out, alphas


def run_confirm(cfg: StudyConfig, configs: list[dict[str, Any]], run_dir: Path, trainable: Any) -> tune.ResultGrid:
    path = run_dir / CONFIRM_DIR
    view = LiveView("confirm", len(configs), _concurrency(cfg), verbosity=cfg.verbosity)

    def make_tuner() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=METRIC, mode="max", search_alg=ConfigList(configs), num_samples=len(configs),
                scheduler=FIFOScheduler(), max_concurrent_trials=cfg.max_concurrent, reuse_actors=True,
                trial_name_creator=trial_name, trial_dirname_creator=trial_name,
            ),
            run_config=_run_config(cfg, run_dir, CONFIRM_DIR, view),
        )

    return _fit(cfg, path, trainable, make_tuner, view, len(configs))
