"""The study's time, kept in one place (`Timekeeper`): each phase's wall time and the launcher's own steps
for study.json's `timing`, and the live view's estimate of the time left (the cost model's work left,
study/plan.py, times the pace this machine has shown so far, study/progress.py's Clock)."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .plan import StudyConfig, estimate
from .progress import Clock, LiveView


class Timekeeper:
    """The study's time, kept in one place: the wall time of each phase and of the launcher's own steps
    (study.json's `timing`), and what the live view needs to say how long the study has left: the cost
    model's work for the phases after the current one (`later_s`) and the pace measured so far (`clock`,
    which counts the modelled work of every finished phase)."""

    def __init__(self, cfg: StudyConfig, before_phases_s: float = 0.0):
        est = estimate(cfg)
        self.cfg, self._est = cfg, est
        conc = est["concurrency"]
        # Wall seconds of the phases after each one, in the model's units (the pace corrects them).
        self._later_s = {"search": (est["select_core_s"] + est["confirm_core_s"]) / conc,
                         "select": est["confirm_core_s"] / conc, "confirm": 0.0}
        self.clock = Clock(started=time.time(), concurrency=cfg.max_concurrent or conc,
                           epoch_s=tuple(est["epoch_s"].items()))
        self.walls: dict[str, float] = {}  # phase -> seconds of wall time in this session
        self.timing: dict[str, Any] = {"before_phases_s": before_phases_s}  # imports, data, Ray start-up

    def live_view(self, phase: str, planned: int) -> LiveView:
        """The live view of one Tune experiment (`search`, `select`, `confirm-2`, ...): its trials' modelled
        seconds, the later phases' work and the study's clock so far."""
        kind = phase.split("-")[0]
        clock = dataclasses.replace(self.clock, trial_extra_s=self._est["trial_extra_s"][kind])  # this phase's own
        concurrency = self.cfg.max_concurrent or self._est["concurrency"]
        return LiveView(phase, planned, concurrency, later_s=self._later_s[kind], verbosity=self.cfg.verbosity,
                        trial_s=self._est["trial_s"][kind], clock=clock)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        with self.timed(name, into=self.walls):
            yield

    @contextmanager
    def timed(self, key: str, into: dict[str, Any] | None = None) -> Iterator[None]:
        """Seconds the block took, stored as timing[key] (or into[key])."""
        t0 = time.monotonic()
        yield
        (self.timing if into is None else into)[key] = time.monotonic() - t0

    def advance(self, rows: list[dict[str, Any]], phase: str) -> None:
        """After a phase: the modelled core-seconds its trials did join the work done."""
        epoch_s = dict(self.clock.epoch_s)
        done = sum(int(r["epochs"]) * epoch_s.get(str(r["arm"]), 0.0) + self._est["trial_extra_s"][phase]
                   for r in rows)
        self.clock = dataclasses.replace(self.clock, done_before_s=self.clock.done_before_s + done)

    def phase_timing(self, trials: Any, slots: int) -> dict[str, Any]:
        """Each phase's wall time against its trials' own time (records.phase_timing), for study.json."""
        from .records import phase_timing

        def rows(name: str) -> list[dict[str, Any]]:
            phase, _, arm = name.partition("-")
            sel = trials[(trials["phase"] == phase) & ((trials["arm"] == arm) if arm else True)]
            return sel.to_dict("records")

        self.timing["phases"] = {name: phase_timing(rows(name), wall, slots) for name, wall in self.walls.items()}
        return self.timing
