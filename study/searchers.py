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

import numpy as np
import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ._private_apis import optuna_study, optuna_trials

log = logging.getLogger(__name__)

_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
STOPPED_ATTR = "stopped_by_asha"
OBJECTIVE_NAME = "objective (validation accuracy, ties broken by log loss)"


class MirroredOptunaSearch(OptunaSearch):
    def __init__(self, *args: Any, mirror_url: str, mirror_study: str, mirror_attrs: dict[str, Any],
                 trial_prefix: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.trial_prefix = trial_prefix  # + "s<number>": the trial_id of trials.parquet (phases.trial_name)
        self.mirror_url = mirror_url
        self.mirror_study = mirror_study
        self.mirror_attrs = mirror_attrs

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = optuna_trials(self).get(trial_id)
        if ot_trial is not None and result and not error and not result.get("final") and not result.get("last_epoch"):
            # ASHA stopped it: Tune completes it with its partial value; the database copy says PRUNED.
            ot_trial.set_user_attr(STOPPED_ATTR, True)
        super().on_trial_complete(trial_id, result=result, error=error)
        self.mirror()

    def mirror(self) -> int:
        """Copy finished trials that the database lacks; returns how many were added."""
        live = optuna_study(self)
        if live is None:
            return 0
        return mirror_study(live, self.mirror_url, self.mirror_study, self.mirror_attrs,
                            {t.number: f"{self.trial_prefix}s{t.number:03d}" for t in optuna_trials(self).values()})


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
    """Both arms' searches in one Tune experiment, each arm with its own searcher (its own TPE study
    and seed) and budget, and a search that cannot depend on timing.

    Trial n of an arm (its seed, and its Optuna trial number) starts only once the arm's trials
    0..n-window have finished, and its proposal sees exactly those: results of later trials are held
    back until then, whichever finished first. So each arm's sequence of proposals is a function of
    the seed, the budget and `window` (the study's --max-concurrent) alone, never of the order in
    which concurrent trials finish; the same holds for ASHA's cuts (`rung`). With `window` equal to the
    concurrency an arm can still fill every slot: it waits only when its trial n-window is still
    running, and then the other arm takes the slot. The next trial goes to the arm with fewer trials
    so far (ties to the first in `searchers`), so the arms alternate. One experiment instead of one per
    arm saves a Tune start-up and lets the other arm fill the slot an arm's last trial leaves idle."""

    def __init__(self, searchers: dict[str, Searcher], budgets: dict[str, int], metric: str | None = None,
                 mode: str | None = None, window: int = 1):
        super().__init__(metric=metric, mode=mode)
        if window < 1:
            raise ValueError(f"window={window}: use at least 1 (the study's concurrency)")
        self.searchers = searchers  # in the order ties go
        self.budgets = dict(budgets)
        self.window = window
        self.started: dict[str, list[str]] = {arm: [] for arm in searchers}  # Tune trial ids, by index
        self.finished: dict[str, tuple[dict | None, bool]] = {}  # Tune trial id -> (result, error)
        self.told = {arm: 0 for arm in searchers}  # trials 0..told-1 were passed on to the arm's searcher
        self.arm_of: dict[str, str] = {}  # Tune trial id -> arm
        # ASHA's rung values, {arm: {epoch: {index: objective}}}: kept here because Tune checkpoints the
        # searcher with the experiment but not the scheduler, and a restored study must cut as before.
        self.rungs: dict[str, dict[int, dict[int, float]]] = {arm: {} for arm in searchers}

    @property
    def suggested(self) -> dict[str, int]:
        return {arm: len(ids) for arm, ids in self.started.items()}

    def _ready(self, arm: str) -> bool:
        """Trials 0..n-window of the arm have finished, n being its next index."""
        ids = self.started[arm]
        return all(t in self.finished for t in ids[:max(0, len(ids) - self.window + 1)])

    def _tell(self, arm: str, upto: int) -> None:
        """Pass finished results of trials told..upto-1 on to the arm's searcher, in index order."""
        ids = self.started[arm]
        while self.told[arm] < min(upto, len(ids)) and ids[self.told[arm]] in self.finished:
            tid = ids[self.told[arm]]
            result, error = self.finished[tid]
            self.searchers[arm].on_trial_complete(tid, result=result, error=error)
            self.told[arm] += 1

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        open_arms = [arm for arm in self.searchers if len(self.started[arm]) < self.budgets[arm]]
        if not open_arms:
            return Searcher.FINISHED
        for arm in sorted(open_arms, key=lambda a: len(self.started[a])):  # stable: ties keep the first
            if not self._ready(arm):
                continue
            n = len(self.started[arm])
            self._tell(arm, n - self.window + 1)  # the proposal sees trials 0..n-window, no more
            config = self.searchers[arm].suggest(trial_id)
            if isinstance(config, dict):
                self.started[arm].append(trial_id)
                self.arm_of[trial_id] = arm
                self._flush_if_done(arm)
            return config
        return None  # every open arm waits for an earlier trial; Tune asks again

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searchers[self.arm_of[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        arm = self.arm_of[trial_id]
        self.finished[trial_id] = (result, error)
        self._flush_if_done(arm)

    def _flush_if_done(self, arm: str) -> None:
        if len(self.started[arm]) >= self.budgets[arm]:
            self._tell(arm, self.budgets[arm])  # no proposal is left to influence: record them all

    def index(self, trial_id: str) -> int:
        return self.started[self.arm_of[trial_id]].index(trial_id)

    def rung(self, trial_id: str, epoch: int, value: float, reduction_factor: float) -> bool:
        """Record the trial's objective at an ASHA rung; True if ASHA should stop it: its value is below
        the top 1/reduction_factor of the rung's values of trials 0..n-window of its arm (the trials
        that had finished when it started), as Ray's ASHA computes the cutoff."""
        arm, n = self.arm_of[trial_id], self.index(trial_id)
        recorded = self.rungs[arm].setdefault(epoch, {})
        recorded[n] = value
        earlier = [v for k, v in recorded.items() if k <= n - self.window]
        if not earlier:
            return False
        return value < float(np.nanpercentile(earlier, (1 - 1 / reduction_factor) * 100))

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
