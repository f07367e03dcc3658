"""ASHA per arm, deciding by trial index (`LaggedASHA`): both arms' searches run as one Tune
experiment, but a trial must only be compared with trials of its own arm (one ASHA over both would
rank GAIN trials against baseline trials at each rung and cut the arm whose validation accuracy runs
lower more often, so the arms would get unequal search budgets), and only with the trials of its arm
that had finished when it started, so that a cut never depends on which concurrent trial reached a
rung first. The rung values live in the searcher (`ArmsSearch.rung`), which Tune checkpoints."""
from __future__ import annotations

from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from .searchers import ArmsSearch


def rung_epochs(grace_period: int, max_t: int, reduction_factor: int) -> tuple[int, ...]:
    """The epochs at which ASHA compares trials: grace * rf^k below max_t (Ray's ASHA, one bracket)."""
    out, t = [], grace_period
    while t < max_t:
        out.append(t)
        t *= reduction_factor
    return tuple(out)


class LaggedASHA(FIFOScheduler):
    """Asynchronous successive halving over epochs, per arm, against earlier trial indices only.
    Trials start in the order the searcher made them (FIFO, as ASHA itself does)."""

    def __init__(self, search: ArmsSearch, *, time_attr: str, metric: str, max_t: int, grace_period: int,
                 reduction_factor: int):
        super().__init__()
        self.search = search  # the same object Tune checkpoints and restores (tuner.pkl holds both)
        self.time_attr, self.metric_name = time_attr, metric
        self.reduction_factor = reduction_factor
        self.rungs = rung_epochs(grace_period, max_t, reduction_factor)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        epoch = int(result.get(self.time_attr, 0))
        if epoch in self.rungs and self.search.rung(trial.trial_id, epoch, float(result[self.metric_name]),
                                                    self.reduction_factor):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return f"LaggedASHA: rungs at epochs {list(self.rungs)}, keep 1 in {self.reduction_factor} per arm"
