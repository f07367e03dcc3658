"""The Ray Tune function trainable: a thin wrapper around `trainables.loop.train`.

Each epoch is reported with a checkpoint (the loop's TrainState), so a crashed trial resumes where
it stopped and a paused one continues after Ctrl-C. After training, one last report carries the
run's summary (and, for confirmation runs, the test metrics); its checkpoint also holds the full
`RunResult` as run.json, from which the launcher writes the predictions and attention tables.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from trainables.config import RunConfig
from trainables.data import Splits

from .checkpoints import RESTART_FILE

STATE_FILE = "state.pt"
RESULT_FILE = "run.json"
# In every checkpoint: the run's epochs so far, one `epoch_metrics` dict each. The tables' epoch rows
# come from here, not from Tune's metrics log, which can miss the epoch reported just before a worker
# dies (the checkpoint was written, the result never reached the driver's log).
HISTORY_FILE = "history.json"
# The best selection score so far (validation accuracy, or worst-group accuracy with --select
# worst-group, ties broken by log loss: trainables.metrics.selection_score); 0 before the first epoch.
# ASHA, Optuna, the selection phase and the loop's early stopping all use this one number.
METRIC = "objective"
PHASES = ("search", "select", "confirm")


@dataclass(frozen=True)
class TrialConfig:
    """What a Tune trial's config holds: the run, its phase and, for a selection run, the search trial
    it re-scores (`candidate`, not a run setting). Tune's config is a flat dict (the search space's
    dotted keys are Optuna's parameter names): `to_tune` writes it and `from_tune` reads it, and nothing
    else in the study reads `config["..."]`."""
    phase: str
    run: RunConfig
    candidate: str | None = None

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase={self.phase!r}: expected one of {', '.join(PHASES)}")

    def to_tune(self) -> dict[str, Any]:
        out = {**self.run.to_flat(), "phase": self.phase}
        if self.candidate is not None:
            out["candidate"] = self.candidate
        return out

    @classmethod
    def from_tune(cls, config: dict[str, Any]) -> TrialConfig:
        d = dict(config)
        phase, candidate = d.pop("phase"), d.pop("candidate", None)
        return cls(phase, RunConfig.from_dict(d), candidate)


def split_config(config: dict[str, Any]) -> tuple[str, RunConfig]:
    """A trial's flat config -> (phase, RunConfig)."""
    trial = TrialConfig.from_tune(config)
    return trial.phase, trial.run


def run_trial(config: dict[str, Any], splits: Splits) -> None:
    # The training loop (torch) is imported here, in the Ray worker: the driver that imports this
    # module to hand the function to Tune never trains, and starts ~4 s sooner without torch.
    from trainables.loop import EpochRecord, TrainState, train

    phase, cfg = split_config(config)
    node_id = ray.get_runtime_context().get_node_id()
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            if (Path(d) / RESULT_FILE).exists():
                # The run had finished but the trial was restored from its final checkpoint (the
                # driver died before recording it): report the same final result again.
                summary = json.loads((Path(d) / "summary.json").read_text())
                tune.report(summary, checkpoint=tune.Checkpoint.from_directory(d))
                return
            if not (Path(d) / RESTART_FILE).exists():  # the marker: its checkpoint was lost, train from epoch 1
                resume = TrainState.load(Path(d) / STATE_FILE)

    max_epochs, patience = cfg.train.max_epochs, cfg.train.patience
    checkpoint_s = [0.0]  # seconds spent saving checkpoints and reporting them to Tune
    first = len(resume.history) if resume else 0  # epochs run in an earlier session of this trial

    delay = _test_delay(config)

    def on_epoch(rec: EpochRecord, state: TrainState) -> None:
        delay()
        # Mirrors the loop's stopping rule so a report knows it is the run's last epoch: ASHA may
        # stop the trial on that report, before the final one below arrives.
        last = state.epoch >= max_epochs or (state.best_epoch > 0 and state.bad_epochs >= patience)
        metrics = {
            **epoch_metrics(asdict(rec)), "best_epoch": state.best_epoch,
            "best_val_acc": state.best_val_acc if state.best_epoch else math.nan,
            METRIC: max(state.best_score, 0.0), "last_epoch": bool(last), "final": False,
            "status": "running", "node_id": node_id,
            # Cumulative, so that a trial ASHA stops after this report still says where its time went.
            "time_val_s": sum(h["val_seconds"] for h in state.history[first:]), "time_checkpoint_s": checkpoint_s[0],
        }
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as d:
            state.save(Path(d) / STATE_FILE)
            _write_history(Path(d), state.history)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        checkpoint_s[0] += time.perf_counter() - t0

    result = train(cfg, splits, on_epoch=on_epoch, resume=resume, evaluate_test=(phase == "confirm"))

    best = result.best_val_acc if result.best_epoch else math.nan
    summary: dict[str, Any] = {
        "epoch": len(result.history), "best_epoch": result.best_epoch, "best_val_acc": best,
        "best_val_loss": result.best_val_loss,
        METRIC: max(result.best_score, 0.0), "last_epoch": True, "final": True,
        "status": result.status, "node_id": node_id, "run_seconds": result.seconds,
        # Where this session's time in the trial went (a resumed trial counts its new epochs only);
        # the records derive the training time from the trial's total.
        "time_val_s": sum(h.val_seconds for h in result.history[first:]),
        "time_test_s": result.test_seconds, "time_checkpoint_s": checkpoint_s[0],
    }
    if result.test is not None:
        t = result.test
        summary.update({
            "test_acc": t.accuracy, "test_n": t.n, "worst_group_acc": t.worst_group_accuracy,
            "bias_aligned_acc": t.bias_aligned_accuracy, "bias_conflicting_acc": t.bias_conflicting_accuracy,
            "pointing_game": t.pointing_game, "energy_pointing_game": t.energy_pointing_game, "iou": t.iou,
            "collapsed": t.collapsed, "pred_positive_share": t.pred_positive_share, **t.content_free,
        })
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / RESULT_FILE).write_text(json.dumps(result.to_dict()))
        (Path(d) / "summary.json").write_text(json.dumps(_json_safe(summary)))
        _write_history(Path(d), [asdict(h) for h in result.history])
        tune.report(summary, checkpoint=tune.Checkpoint.from_directory(d))


def epoch_metrics(rec: dict[str, Any]) -> dict[str, Any]:
    """One epoch (an `EpochRecord` as a dict) as reported to Tune and kept in HISTORY_FILE."""
    losses = rec["losses"]
    return {"epoch": rec["epoch"], "val_acc": rec["val_acc"], "val_loss": rec["val_loss"],
            "val_worst_group_acc": rec["val_worst_group_acc"], "score": rec["score"],
            "loss": losses.get("loss", math.nan), "loss_cl": losses.get("cl", math.nan),
            "loss_am": losses.get("am", math.nan), "loss_e": losses.get("e", math.nan),
            "epoch_seconds": rec["seconds"]}


def _write_history(folder: Path, history: list[dict[str, Any]]) -> None:
    (folder / HISTORY_FILE).write_text(json.dumps([_json_safe(epoch_metrics(h)) for h in history]))


def read_history(checkpoint: Any) -> list[dict[str, Any]]:
    """The epochs a trial's checkpoint holds (its latest: every epoch the run has trained), in order;
    [] without a checkpoint or for one that marks a restart from epoch 1."""
    if checkpoint is None:
        return []
    with checkpoint.as_directory() as d:
        path = Path(d) / HISTORY_FILE
        return json.loads(path.read_text()) if path.exists() else []


# Test-only: GAINSTUDY_TEST_DELAY_SEED=<int> makes every epoch of a trial sleep a random 0-0.3 s, drawn
# from (that seed, the trial's config), so two runs of one study finish their trials in different
# orders (tests/test_study_e2e.py checks that the search's picks do not depend on it).
DELAY_ENV = "GAINSTUDY_TEST_DELAY_SEED"


def _test_delay(config: dict[str, Any]) -> Any:
    raw = os.environ.get(DELAY_ENV)
    if not raw:
        return lambda: None
    import zlib

    import numpy as np

    rng = np.random.default_rng([int(raw), zlib.crc32(json.dumps(config, sort_keys=True, default=str).encode())])
    return lambda: time.sleep(float(rng.uniform(0.0, 0.3)))


def _json_safe(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
