"""A Tune scheduler per arm inside one experiment (`PerArm`): both arms' searches run as one Tune
experiment, but ASHA must compare a trial only with trials of its own arm. One ASHA over both would
rank GAIN trials against baseline trials at each rung and cut the arm whose validation accuracy runs
lower more often, so the arms would get unequal search budgets."""
from __future__ import annotations

from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler


class PerArm(FIFOScheduler):
    """Routes each trial to the scheduler of its arm (`trial.config["arm"]`); trials start in the order
    the searcher made them (FIFO, as ASHA itself does)."""

    def __init__(self, schedulers: dict[str, TrialScheduler]):
        super().__init__()
        self.schedulers = schedulers

    def _of(self, trial: Any) -> TrialScheduler:
        return self.schedulers[trial.config["arm"]]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        ok = [s.set_search_properties(metric, mode, **spec) for s in self.schedulers.values()]
        self._metric = metric or self._metric
        return all(ok)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(f"{arm}: {s.debug_string()}" for arm, s in self.schedulers.items())
