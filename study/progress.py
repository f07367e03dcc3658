"""The live view: what a phase has done and how long the study has left.

On a terminal (and without -v) one line per phase, redrawn in place (study/terminal.py, tqdm), a bar
where the terminal is wide enough:

    search     28/50 |███████████▏        | 03:12, study ~04:40 left | running 2 | done 12 stopped 14 diverged 1 failed 1 | best val baseline 0.9900 gain 0.9433

On a pipe (CI, a log file), or with -v, a line whenever a trial starts or finishes instead:

    search          28/50 | running 2 | done 12 stopped 14 diverged 1 failed 1 | best val baseline 0.9900 gain 0.9433 | 03:12 | study ~04:40 left

A Tune Callback because it needs every trial's state; the Tuner pickles its callbacks, so the view
opens its terminal line at the first draw (never before it is pickled) and resets its clock in `setup()`.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any

from ray.tune import Callback

from .terminal import PhaseLine
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


def clock_text(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


@dataclass(frozen=True)
class Snapshot:
    """A phase at one moment, as the live view shows it."""
    label: str
    planned: int
    finished: int  # completed + stopped + diverged + failed
    running: int  # slots busy, or about to be
    completed: int
    stopped: int
    diverged: int
    failed: int
    best: tuple[tuple[str, float], ...]  # (arm, best validation score so far), by arm
    elapsed_s: float  # since this phase began in this session
    left_s: float  # the whole study's time left (`Clock`)

    def best_text(self) -> str:
        return " ".join(f"{arm} {value:.4f}" for arm, value in self.best) if self.best else "  -   "

    def line(self) -> str:
        """The line printed on a pipe."""
        return (f"{self.label:<14} {self.finished:>3}/{self.planned} | running {self.running} | "
                f"done {self.completed} stopped {self.stopped} diverged {self.diverged} failed {self.failed} | "
                f"best val {self.best_text()} | {clock_text(self.elapsed_s)} | study ~{clock_text(self.left_s)} left")

    def status(self) -> str:
        """What the terminal line shows after the counts (and a bar): the times first, as a narrow terminal
        cuts the end; diverged and failed trials only when there are any."""
        bad = "".join(f" {what} {n}" for what, n in (("diverged", self.diverged), ("failed", self.failed)) if n)
        return (f"{clock_text(self.elapsed_s)}, study ~{clock_text(self.left_s)} left | running {self.running} | "
                f"done {self.completed} stopped {self.stopped}{bad} | best val {self.best_text()}")


@dataclass(frozen=True)
class Clock:
    """How the live view estimates the study's time left, in the cost model's units (study/plan.py:
    core-seconds of one trial slot on the reference machine). The model says how much work is left;
    the wall time the study took for the work it has done (each reported epoch counts its modelled
    seconds, each finished trial its modelled overhead) says how fast this machine does it. The ratio
    (the pace) is the study's, over every epoch of every phase so far, so one short or long trial
    barely moves it, and it carries over phase changes."""
    started: float  # time.time() when the first phase of this session began
    done_before_s: float = 0.0  # modelled core-seconds the earlier phases of this session did
    concurrency: int = 1
    epoch_s: tuple[tuple[str, float], ...] = ()  # (arm, modelled seconds of one epoch)
    trial_extra_s: float = 0.0  # modelled seconds of a trial besides its epochs (start-up, test)
    min_done_s: float = 20.0  # modelled core-seconds needed before the pace is measured
    prior_s: float = 30.0  # the model's own pace counts as this many wall seconds of work done per slot


class LiveView(Callback):
    def __init__(self, label: str, planned: int, concurrency: int, later_s: float = 0.0,
                 verbosity: int = 1, min_interval_s: float = 1.0, trial_s: float = 0.0,
                 clock: Clock | None = None):
        self.label = label
        self.planned = planned
        self.concurrency = max(1, concurrency)
        # The study's time left: this phase's trials left (`trial_s` each, the model's), then the later
        # phases (`later_s`, the model's wall seconds), both times the pace (`Clock`).
        self.later_s = later_s
        self.trial_s = trial_s
        self.clock = clock or Clock(started=time.time(), concurrency=self.concurrency)
        self.verbosity = verbosity
        self.min_interval_s = min_interval_s
        self._t0 = time.monotonic()
        self._last_draw = 0.0
        self._seen = (0, 0)
        self._epochs: dict[str, tuple[str, int]] = {}  # trial id -> (arm, epochs reported)
        self._line: PhaseLine | None = None  # the terminal line, while the phase runs

    def setup(self, **info: Any) -> None:
        self._t0 = time.monotonic()
        self._last_draw = 0.0
        self._seen = (0, 0)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_line": None}  # an open terminal line is not pickled

    # ---- the state ------------------------------------------------------------------------------
    def snapshot(self, trials: list[Any]) -> Snapshot:
        counts = {k: 0 for k in ("running", "pending", "completed", "stopped", "diverged", "error")}
        best: dict[str, float] = {}  # per arm: a phase runs both arms' trials
        unfinished = []
        for t in trials:
            outcome = trial_outcome(t.status, t.last_result)
            counts[outcome] += 1
            value = (t.last_result or {}).get(METRIC)
            if isinstance(value, (int, float)) and math.isfinite(value) and (t.last_result or {}).get("epoch", 0):
                arm = str((getattr(t, "config", None) or {}).get("arm", "trial"))
                best[arm] = max(best.get(arm, -math.inf), value)
            if outcome in ("running", "pending"):
                unfinished.append(str(t.trial_id))
        finished = counts["completed"] + counts["stopped"] + counts["diverged"] + counts["error"]
        # At the moment a trial finishes, the next one is still PENDING for an instant (the view draws
        # then): count the slots that are busy or about to be.
        running = min(self.concurrency, counts["running"] + counts["pending"], self.planned - finished)
        return Snapshot(self.label, self.planned, finished, running, counts["completed"], counts["stopped"],
                        counts["diverged"], counts["error"], tuple(sorted(best.items())),
                        elapsed_s=time.monotonic() - self._t0, left_s=self.seconds_left(finished, unfinished))

    def summary(self, trials: list[Any]) -> tuple[str, tuple[int, int]]:
        """The pipe's line, and (finished, running): a new line is printed when these change."""
        snap = self.snapshot(trials)
        return snap.line(), (snap.finished, snap.running)

    def _modelled(self, trial_id: str) -> float:
        arm, epochs = self._epochs.get(trial_id, ("", 0))
        return epochs * dict(self.clock.epoch_s).get(arm, 0.0)

    def done_s(self, finished: int) -> float:
        """Modelled core-seconds this session has done: earlier phases, this phase's epochs, and the
        overhead of this phase's finished trials."""
        epochs = sum(self._modelled(t) for t in self._epochs)
        return self.clock.done_before_s + epochs + finished * self.clock.trial_extra_s

    def pace(self, finished: int, now: float | None = None) -> float:
        """Wall seconds per modelled second on this machine, once enough work is done to tell (1.0 before).
        The model's pace (1.0) counts as `prior_s` seconds of work per slot, so the first epochs, which
        carry the workers' start-up, move the estimate only part of the way (without it the default
        study's first estimates read 12:24, 18:26, 12:45 within 30 s)."""
        done = self.done_s(finished)
        if done < self.clock.min_done_s:
            return 1.0
        wall = (time.time() if now is None else now) - self.clock.started
        prior = self.clock.prior_s
        return (max(wall, 1e-9) + prior) / (done / self.clock.concurrency + prior)

    def seconds_left(self, finished: int, unfinished: list[str] = (), now: float | None = None) -> float:
        partial = sum(min(self.trial_s, self._modelled(t)) for t in unfinished)
        phase_left = max(0.0, (self.planned - finished) * self.trial_s - partial) / self.concurrency
        return self.pace(finished, now) * (phase_left + self.later_s)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any) -> None:
        epoch = result.get("epoch")
        if isinstance(epoch, int) and not result.get("final"):
            arm = str((getattr(trial, "config", None) or {}).get("arm", ""))
            self._epochs[str(trial.trial_id)] = (arm, max(epoch, self._epochs.get(str(trial.trial_id), ("", 0))[1]))

    def in_place(self) -> bool:
        """Redraw one line (a terminal at the default verbosity), or print a line per event."""
        return self.verbosity == 1 and sys.stdout.isatty()

    def _draw(self, trials: list[Any], force: bool = False) -> None:
        if self.verbosity < 1:
            return
        now = time.monotonic()
        snap = self.snapshot(trials)
        state = (snap.finished, snap.running)
        if self.in_place():
            if force or now - self._last_draw >= self.min_interval_s:
                if self._line is None:
                    self._line = PhaseLine(self.label, self.planned, snap.finished, snap.status())
                else:
                    self._line.show(snap.finished, snap.status())
                self._last_draw = now
        elif state != self._seen:
            print(snap.line(), flush=True)
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
        """Tune's last call of a phase (also after Ctrl-C or a failure): the terminal line is closed
        before the launcher prints anything else."""
        if not self.in_place():
            return
        snap = self.snapshot(trials)
        line = self._line or PhaseLine(self.label, self.planned, snap.finished, snap.status())
        self._line = None
        line.close(snap.finished, snap.status())
