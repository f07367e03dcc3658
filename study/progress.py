"""The compact live view: one line per phase, rewritten in place on a terminal.

    search      28/50 | running 2 | done 12 stopped 14 diverged 1 failed 1 | best val baseline 0.9900 gain 0.9433 | 03:12 | study ~04:40 left

On a pipe (CI, a log file) it prints a line whenever a trial starts or finishes instead. A Tune Callback
because it needs every trial's state; the Tuner pickles its callbacks, so the view keeps no open
handles and resets its clock in `setup()`.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any

from ray.tune import Callback

from .trainable import METRIC


def trial_outcome(status: str, last_result: dict[str, Any] | None) -> str:
    """'running' | 'pending' | 'completed' | 'stopped' | 'diverged' | 'error' for a Tune trial's state."""
    if status == "ERROR":
        return "error"
    if status in ("PENDING", "PAUSED"):
        return "pending"
    if status == "RUNNING":
        return "running"
    last = last_result or {}
    if last.get("final"):
        return "diverged" if last.get("status") == "diverged" else "completed"
    if last.get("last_epoch"):
        return "completed"
    return "stopped"  # terminated before its last epoch: ASHA cut it


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


def _best(best: dict[str, float]) -> str:
    if not best:
        return "  -   "
    return " ".join(f"{arm} {value:.4f}" for arm, value in sorted(best.items()))


class LiveView(Callback):
    def __init__(self, label: str, planned: int, concurrency: int, later_s: float = 0.0,
                 verbosity: int = 1, min_interval_s: float = 1.0, trial_s: float = 0.0, pace: float | None = None):
        self.label = label
        self.planned = planned
        self.concurrency = max(1, concurrency)
        # The time left is the study's: this phase's trials left, then the phases after it. Both come
        # from the cost model (study/plan.py: `later_s` for the later phases, `trial_s` for one trial
        # of this one) times the pace measured so far (seconds a trial took / the model's seconds;
        # None before any trial finished), so the estimate keeps its scale across phase changes and on
        # machines unlike the reference.
        self.later_s = later_s
        self.trial_s = trial_s
        self.pace = pace
        self.verbosity = verbosity
        self.min_interval_s = min_interval_s
        self._t0 = time.monotonic()
        self._last_draw = 0.0
        self._seen = (0, 0)

    def setup(self, **info: Any) -> None:
        self._t0 = time.monotonic()
        self._last_draw = 0.0
        self._seen = (0, 0)

    # ---- the line -------------------------------------------------------------------------------
    def summary(self, trials: list[Any]) -> tuple[str, tuple[int, int]]:
        counts = {k: 0 for k in ("running", "pending", "completed", "stopped", "diverged", "error")}
        best: dict[str, float] = {}  # per arm: a phase runs both arms' trials
        durations = []
        for t in trials:
            outcome = trial_outcome(t.status, t.last_result)
            counts[outcome] += 1
            value = (t.last_result or {}).get(METRIC)
            if isinstance(value, (int, float)) and math.isfinite(value) and (t.last_result or {}).get("epoch", 0):
                arm = str((getattr(t, "config", None) or {}).get("arm", "trial"))
                best[arm] = max(best.get(arm, -math.inf), value)
            if outcome in ("completed", "stopped", "diverged", "error"):
                durations.append((t.last_result or {}).get("time_total_s", math.nan))
        finished = counts["completed"] + counts["stopped"] + counts["diverged"] + counts["error"]
        # At the moment a trial finishes, the next one is still PENDING for an instant (the view draws
        # then): count the slots that are busy or about to be.
        running = min(self.concurrency, counts["running"] + counts["pending"], self.planned - finished)
        elapsed = time.monotonic() - self._t0
        left = self.seconds_left(durations, finished)
        line = (
            f"{self.label:<14} {finished:>3}/{self.planned} | running {running} | "
            f"done {counts['completed']} stopped {counts['stopped']} diverged {counts['diverged']} "
            f"failed {counts['error']} | best val {_best(best)} | {_clock(elapsed)} | study ~{_clock(left)} left"
        )
        return line, (finished, running)

    def seconds_left(self, durations: list[float], finished: int) -> float:
        """The study's estimated seconds left. This phase's own pace counts once as many trials have
        finished as run at once (the first to finish are the ones ASHA cut early); before that, the
        pace of the phases before it, or in the first phase the first finished trials'."""
        known = [d for d in durations if isinstance(d, (int, float)) and math.isfinite(d)]
        mean = sum(known) / len(known) if known else math.nan
        pace = 1.0 if self.pace is None else self.pace
        if self.trial_s > 0 and known and (self.pace is None or len(known) >= self.concurrency):
            pace = mean / self.trial_s
        per_trial = self.trial_s * pace if self.trial_s > 0 else mean
        return (self.planned - finished) * per_trial / self.concurrency + self.later_s * pace

    def _draw(self, trials: list[Any], force: bool = False) -> None:
        if self.verbosity < 1:
            return
        now = time.monotonic()
        line, state = self.summary(trials)
        if sys.stdout.isatty() and self.verbosity == 1:
            if force or now - self._last_draw >= self.min_interval_s:
                sys.stdout.write("\r\x1b[K" + line)
                sys.stdout.flush()
                self._last_draw = now
        elif state != self._seen:
            print(line, flush=True)
        self._seen = state

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._draw(trials)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._draw(trials, force=True)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._draw(trials, force=True)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._draw(trials, force=True)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self.verbosity >= 1 and sys.stdout.isatty() and self.verbosity == 1:
            line, _ = self.summary(trials)
            sys.stdout.write("\r\x1b[K" + line + "\n")
            sys.stdout.flush()
