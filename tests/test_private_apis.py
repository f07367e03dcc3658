"""The private Ray and Optuna names the study relies on (study/_private_apis.py) still exist, on the
versions they were verified on. Fails loudly on an upgrade: re-verify each use, then move the pins."""
from __future__ import annotations

import re
from pathlib import Path

import optuna
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from study import _private_apis
from study._private_apis import PINNED, optuna_study, optuna_trials, version_problems

ROOT = Path(__file__).resolve().parents[1]


def test_installed_ray_and_optuna_are_the_pinned_versions():
    assert version_problems() == [], "\n".join(version_problems())
    pins = dict(re.findall(r"^(ray|optuna)(?:\[[^\]]*\])?==(\S+)", (ROOT / "constraints.txt").read_text(), re.M))
    assert pins == PINNED, f"constraints.txt pins {pins}, study/_private_apis.py was verified on {PINNED}"


def test_the_private_names_exist():
    from ray._private import ray_constants, worker

    assert isinstance(ray_constants.ENABLE_RAY_CLUSTER, bool), "ray_constants.ENABLE_RAY_CLUSTER is gone"
    assert hasattr(worker, "_global_node"), "ray._private.worker._global_node is gone"
    tuner = tune.Tuner(lambda config: None)
    internal = tuner._local_tuner  # noqa: SLF001
    assert isinstance(internal.get_run_config(), tune.RunConfig), "TunerInternal.get_run_config() changed"
    assert hasattr(internal._tune_config, "max_concurrent_trials"), "TunerInternal._tune_config changed"  # noqa: SLF001
    _private_apis.apply_session_settings(tuner, ["view"], 0, 3)
    got = (internal.get_run_config().callbacks, internal.get_run_config().verbose,
           internal._tune_config.max_concurrent_trials)  # noqa: SLF001
    assert got == (["view"], 0, 3), f"the restored Tuner must take this session's settings: {got}"


def _space(trial: optuna.Trial) -> None:
    trial.suggest_float("x", 0.0, 1.0)


def test_optuna_search_exposes_its_live_study_and_trials():
    search = OptunaSearch(space=_space, metric="m", mode="max", sampler=optuna.samplers.TPESampler(seed=0))
    assert optuna_trials(search) == {}, "OptunaSearch._ot_trials (trial id -> Optuna trial) is gone"
    search.suggest("t0")
    trial = optuna_trials(search)["t0"]
    assert isinstance(trial, optuna.trial.Trial), f"OptunaSearch._ot_trials holds {type(trial).__name__}"
    assert isinstance(optuna_study(search), optuna.Study) and trial.study is optuna_study(search), \
        "OptunaSearch._ot_study must be the live study its trials belong to"


def test_private_names_appear_only_in_the_adapter():
    pattern = re.compile(r"ray\._private|_local_tuner|_ot_trials|_ot_study|_global_node")
    offenders = [f"{p.relative_to(ROOT)}:{n}" for folder in ("study", "bench", "analysis", "trainables")
                 for p in sorted((ROOT / folder).rglob("*.py")) if p.name != "_private_apis.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == [], f"private Ray/Optuna names outside study/_private_apis.py: {offenders}"
