"""Trial checkpoints that a kill at any moment cannot take away.

Ray 2.60 with `CheckpointConfig(num_to_keep=K)` deletes a trial's oldest kept checkpoint inside the
registration of a new one (`_CheckpointManager.register_checkpoint`), and forces a snapshot of the
experiment state only once a trial has checkpointed K times since the last snapshot
(`_ExperimentCheckpointManager.on_trial_checkpoint`); that snapshot is written at the end of the
controller's step and reaches the run folder by a background copy (`sync_up_experiment_state`). So
the K-th registration deletes the very checkpoint that the snapshot on disk names, whatever K is, and
a kill before the copy lands leaves a snapshot that no restore can follow ("Could not recover from
checkpoint as it does not exist on storage anymore"). A probe callback that looked just before each
registration found the deleted checkpoint named by the snapshot on disk in 22 of 22 deletions with
K=1, 7 of 20 with K=2 and 3 of 18 with K=3.

So Tune deletes nothing here (`num_to_keep=None`), and this module does, on the snapshot that a
restore reads (the newest `experiment_state-*.json` in the phase's folder):
- `CheckpointPruner`, a Tune callback, deletes a trial's checkpoints older than the one that snapshot
  names: no snapshot a restore can read names them any more.
- `repair`, run before a phase is restored (nothing runs then), leaves each trial exactly the
  checkpoint the snapshot names: one written after the snapshot is removed (the trial replays from the
  named one and writes it again), and a named one that is missing (removed by an earlier version of
  this program, or by hand) becomes a marker that makes the trial start again from epoch 1 with its
  own seed, which gives the same epochs as before.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback

log = logging.getLogger(__name__)

STATE_PATTERN = "experiment_state-*.json"  # Tune's snapshot; a restore reads the newest name
CHECKPOINT_PREFIX = "checkpoint_"
RESTART_FILE = "restart.json"  # in a checkpoint folder: the trial starts again from epoch 1


@dataclass(frozen=True)
class Named:
    trial_dir: str  # the trial's folder in the phase's folder
    checkpoint: str | None  # the checkpoint folder a restore continues the trial from; None: from the start
    finished: bool  # TERMINATED or ERROR: a restore does not run it again


def newest_snapshot(experiment: Path) -> Path | None:
    files = sorted(experiment.glob(STATE_PATTERN))  # the timestamped names sort in time, as Tune picks
    return files[-1] if files else None


def named_checkpoints(experiment: Path) -> list[Named] | None:
    """What the snapshot that a restore would read names, per trial; None when there is no snapshot
    or it cannot be read (the background copy is rewriting it)."""
    from ray.tune.experiment import Trial

    path = newest_snapshot(experiment)
    if path is None:
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):  # ValueError: JSON cut short by a copy in progress
        return None
    out = []
    for trial_json, metadata in state["trial_data"]:
        # Decoded as Tune's own restore decodes them (TuneController._restore_trials).
        trial = Trial.from_json_state(trial_json, stub=True)
        trial.restore_run_metadata(metadata)
        checkpoint = trial.checkpoint
        out.append(Named(trial.storage.trial_dir_name, Path(checkpoint.path).name if checkpoint else None,
                         trial.status in (Trial.TERMINATED, Trial.ERROR)))
    return out


def checkpoint_index(name: str) -> int:
    return int(name.removeprefix(CHECKPOINT_PREFIX))


def _checkpoints(trial_dir: Path) -> list[Path]:
    if not trial_dir.is_dir():
        return []
    found = [p for p in trial_dir.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and p.is_dir()]
    return sorted(found, key=lambda p: checkpoint_index(p.name))


def _remove(path: Path) -> bool:
    try:
        shutil.rmtree(path)
        return True
    except OSError as e:  # it only costs disk space: say so and go on
        log.warning("could not delete the superseded checkpoint %s: %s", path, e)
        return False


def prune(experiment: Path) -> int:
    """Deletes each trial's checkpoints older than the one that the snapshot a restore would read
    names; returns how many. Checkpoints newer than it are kept (the next snapshot may name them)."""
    if not experiment.is_dir():
        return 0
    crowded = {d.name for d in experiment.iterdir() if d.is_dir() and len(_checkpoints(d)) > 1}
    if not crowded:
        return 0  # nothing to delete: no need to read the snapshot
    named = named_checkpoints(experiment)
    removed = 0
    for n in named or ():
        if n.trial_dir in crowded and n.checkpoint is not None:
            keep = checkpoint_index(n.checkpoint)
            removed += sum(_remove(p) for p in _checkpoints(experiment / n.trial_dir)
                           if checkpoint_index(p.name) < keep)
    return removed


def repair(experiment: Path) -> list[str]:
    """Before a restore, while nothing runs: each trial keeps exactly the checkpoint the snapshot
    names. Returns the unfinished trials whose named checkpoint was missing: they start again from
    epoch 1 (a `RESTART_FILE` marker in place of the checkpoint)."""
    named = named_checkpoints(experiment)
    restarted = []
    for n in named or ():
        trial_dir = experiment / n.trial_dir
        for p in _checkpoints(trial_dir):
            if p.name != n.checkpoint:
                _remove(p)
        if n.checkpoint is not None and not n.finished and not (trial_dir / n.checkpoint).is_dir():
            (trial_dir / n.checkpoint).mkdir(parents=True)
            (trial_dir / n.checkpoint / RESTART_FILE).write_text(json.dumps(
                {"why": f"{n.checkpoint} was missing when the study resumed: the trial starts again from "
                        "epoch 1 with its own seed"}))
            restarted.append(n.trial_dir)
    return restarted


class CheckpointPruner(Callback):
    """Prunes the phase's superseded checkpoints (see `prune`) at most every `every_s` seconds, and
    only when the snapshot on disk changed since the last time."""

    def __init__(self, experiment: str | Path, every_s: float = 5.0):
        self.experiment = Path(experiment)
        self.every_s = every_s
        self._next = 0.0
        self._seen: Any = None

    def setup(self, **info: Any) -> None:
        self._next, self._seen = 0.0, None

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every_s
        path = newest_snapshot(self.experiment)
        if path is None:
            return
        try:
            stat = path.stat()
        except OSError:
            return
        seen = (path.name, stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            prune(self.experiment)
            self._seen = seen
