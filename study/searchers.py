"""Tune searchers: Optuna TPE whose study is mirrored to a database, both arms' searches in one Tune
experiment, and a fixed list of configs.

Why a mirror: OptunaSearch on an RDB storage cannot be restored after a SIGKILL of the driver when
the database is ahead of Tune's snapshot (`UpdateFinishedTrialError`), and the killed trials stay
RUNNING in the database for ever. So the live study is in memory, checkpointed with Tune's searcher
state (which restores exactly), and every finished trial is copied to the database. The database
therefore never holds a RUNNING trial, and copying is idempotent (keyed by trial number).
"""
from __future__ import annotations

import logging
import warnings
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

log = logging.getLogger(__name__)

_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
STOPPED_ATTR = "stopped_by_asha"
OBJECTIVE_NAME = "objective (validation accuracy, ties broken by log loss)"


class MirroredOptunaSearch(OptunaSearch):
    def __init__(self, *args: Any, mirror_url: str, mirror_study: str, mirror_attrs: dict[str, Any],
                 trial_prefix: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.trial_prefix = trial_prefix  # Tune trial id -> the trial_id of trials.parquet
        self.mirror_url = mirror_url
        self.mirror_study = mirror_study
        self.mirror_attrs = mirror_attrs

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and result and not error and not result.get("final") and not result.get("last_epoch"):
            # ASHA stopped it: Tune completes it with its partial value; the database copy says PRUNED.
            ot_trial.set_user_attr(STOPPED_ATTR, True)
        super().on_trial_complete(trial_id, result=result, error=error)
        self.mirror()

    def mirror(self) -> int:
        """Copy finished trials that the database lacks; returns how many were added."""
        if self._ot_study is None:
            return 0
        return mirror_study(self._ot_study, self.mirror_url, self.mirror_study, self.mirror_attrs,
                            {t.number: self.trial_prefix + tid for tid, t in self._ot_trials.items()})


_STORAGES: dict[str, optuna.storages.RDBStorage] = {}


def _storage(url: str) -> optuna.storages.RDBStorage:
    # One storage per database and process: opening one checks the schema against every Alembic
    # migration script (~0.2 s), which Tune's event loop would wait for after each search trial.
    if url not in _STORAGES:
        _STORAGES[url] = optuna.storages.RDBStorage(url)
    return _STORAGES[url]


def mirror_study(live: optuna.Study, url: str, name: str, attrs: dict[str, Any], tune_ids: dict[int, str]) -> int:
    storage = _storage(url)
    try:
        db = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
        if db.metric_names != [OBJECTIVE_NAME]:  # each write is a commit: only what is missing
            with warnings.catch_warnings():  # experimental in Optuna 5, stable since 3.2
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                db.set_metric_names([OBJECTIVE_NAME])
        known = db.user_attrs
        for k, v in attrs.items():
            if k not in known or known[k] != v:
                db.set_user_attr(k, v)
        have = {t.user_attrs.get("number") for t in db.get_trials(deepcopy=False)}
        added = 0
        for t in live.get_trials(deepcopy=False, states=_FINISHED):
            if t.number in have:
                continue
            state = t.state
            if state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get(STOPPED_ATTR):
                state = optuna.trial.TrialState.PRUNED  # its intermediate values are what it reached
            copy = optuna.trial.create_trial(
                state=state, value=t.value if state == optuna.trial.TrialState.COMPLETE else None,
                params=t.params, distributions=t.distributions, intermediate_values=t.intermediate_values,
                user_attrs={**t.user_attrs, "number": t.number, "trial_id": tune_ids.get(t.number)},
                system_attrs=t.system_attrs,
            )
            db.add_trial(copy)
            added += 1
        return added
    finally:
        storage.remove_session()


class ArmsSearch(Searcher):
    """Both arms' searches in one Tune experiment: each arm keeps its own searcher (its own TPE study
    and seed) and budget. The next trial goes to the arm with fewer trials so far, ties to the first
    in `searchers`, so the arms alternate: both see the same machine, and an interrupted search leaves them
    even. One experiment instead of one per arm saves a Tune start-up and lets the other arm's trials
    fill the slot that the last trial of an arm would leave idle."""

    def __init__(self, searchers: dict[str, Searcher], budgets: dict[str, int], metric: str | None = None,
                 mode: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self.searchers = searchers  # in the order ties go
        self.budgets = dict(budgets)
        self.suggested = {arm: 0 for arm in searchers}
        self.arm_of: dict[str, str] = {}  # Tune trial id -> arm

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        open_arms = [arm for arm in self.searchers if self.suggested[arm] < self.budgets[arm]]
        if not open_arms:
            return Searcher.FINISHED
        arm = min(open_arms, key=lambda a: self.suggested[a])  # min keeps the first of equals
        config = self.searchers[arm].suggest(trial_id)
        if isinstance(config, dict):
            self.suggested[arm] += 1
            self.arm_of[trial_id] = arm
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searchers[self.arm_of[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.searchers[self.arm_of[trial_id]].on_trial_complete(trial_id, result=result, error=error)

    def mirror(self) -> int:
        return sum(s.mirror() for s in self.searchers.values())

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)  # as OptunaSearch saves itself, sub-searchers included

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class ConfigList(Searcher):
    """Suggests the given configs in order, once each (the confirmation runs)."""

    def __init__(self, configs: list[dict[str, Any]], metric: str | None = None, mode: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self.configs = [dict(c) for c in configs]
        self.next_index = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.next_index >= len(self.configs):
            return Searcher.FINISHED
        config = self.configs[self.next_index]
        self.next_index += 1
        return dict(config)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as f:
            pickle.dump({"configs": self.configs, "next_index": self.next_index}, f)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.configs, self.next_index = state["configs"], state["next_index"]
