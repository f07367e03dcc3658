"""No checkpoint that the experiment state on disk names is ever deleted: Ray's own `num_to_keep`
deletes it (why the study keeps every checkpoint and prunes them itself), the study's pruner never
does, and a restore whose named checkpoint is gone anyway starts the trial again instead of failing."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray
import ray.cloudpickle
from ray import tune

from study.checkpoints import RESTART_FILE, CheckpointPruner, named_checkpoints, prune, repair

pytestmark = pytest.mark.slow

EPOCHS = 10


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def epochs(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            if not (Path(d) / RESTART_FILE).exists():
                start = int((Path(d) / "epoch").read_text())
    for epoch in range(start + 1, EPOCHS + 1):
        time.sleep(0.2)
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "epoch").write_text(str(epoch))
            tune.report({"epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(d))


class Probe(tune.Callback):
    """Before each registration and after each step: is a checkpoint that the snapshot on disk names
    about to be deleted by Ray (`num_to_keep`), or already gone?"""

    def __init__(self, experiment: Path, num_to_keep: int | None):
        self.experiment, self.num_to_keep = experiment, num_to_keep
        self.checks, self.named_deleted = 0, []

    def _named(self) -> dict[str, str]:
        return {n.trial_dir: n.checkpoint for n in named_checkpoints(self.experiment) or () if n.checkpoint}

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        kept = trial.run_metadata.checkpoint_manager._checkpoint_results  # noqa: SLF001 - Ray's own list
        if self.num_to_keep and len(kept) >= self.num_to_keep:  # this registration deletes kept[0]
            victim = Path(kept[0].checkpoint.path)
            if self._named().get(victim.parent.name) == victim.name:
                self.named_deleted.append(f"{victim.parent.name}/{victim.name} (by Ray)")

    def on_step_end(self, iteration, trials, **info):
        for trial_dir, name in self._named().items():
            self.checks += 1
            if not (self.experiment / trial_dir / name).is_dir():
                self.named_deleted.append(f"{trial_dir}/{name} (gone)")


def run(storage: Path, name: str, num_to_keep: int | None, pruner: bool) -> Probe:
    experiment = storage / name
    probe = Probe(experiment, num_to_keep)
    callbacks = [probe] + ([CheckpointPruner(experiment, every_s=0.0)] if pruner else [])
    tune.Tuner(epochs, tune_config=tune.TuneConfig(num_samples=2),
               run_config=tune.RunConfig(name=name, storage_path=str(storage), callbacks=callbacks, verbose=0,
                                         checkpoint_config=tune.CheckpointConfig(num_to_keep=num_to_keep))).fit()
    return probe


def test_rays_num_to_keep_deletes_the_checkpoint_the_snapshot_on_disk_names(tmp_path):
    # Why the study keeps every checkpoint in Tune: with num_to_keep=2 Ray forces a snapshot only after
    # 2 new checkpoints, after the second one's registration has deleted what the last snapshot named.
    probe = run(tmp_path, "ray-keeps-2", num_to_keep=2, pruner=False)
    assert probe.named_deleted, "Ray 2.60 no longer deletes a checkpoint that its snapshot on disk still names: " \
                                "num_to_keep could be used again (study/checkpoints.py)"


def test_the_pruner_keeps_every_named_checkpoint_and_only_those_at_the_end(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0.3")  # snapshots every few epochs, as the study sets it
    probe = run(tmp_path, "pruned", num_to_keep=None, pruner=True)
    experiment = tmp_path / "pruned"
    assert probe.checks > EPOCHS, f"the probe looked only {probe.checks} times"
    assert not probe.named_deleted, f"checkpoints named by the snapshot on disk were deleted " \
                                    f"{len(probe.named_deleted)} times, e.g. {probe.named_deleted[:3]}"
    prune(experiment)  # what the study does after fit()
    for trial in (d for d in experiment.iterdir() if d.is_dir()):
        left = sorted(c.name for c in trial.glob("checkpoint_*"))
        assert left == [f"checkpoint_{EPOCHS - 1:06d}"], f"{trial.name}: expected the last checkpoint only, got {left}"


class CtrlC(tune.Callback):
    """Ctrl-C in the middle of the first session: Tune stops the trial and saves the experiment."""

    def __init__(self, done: Path):
        self.done = done  # the restored Tuner brings this callback back: once is enough

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result["epoch"] == 4 and not self.done.exists():
            self.done.touch()
            os.kill(os.getpid(), signal.SIGINT)


def test_a_missing_named_checkpoint_restarts_the_trial_instead_of_failing_it(tmp_path):
    experiment = tmp_path / "lost"
    tune.Tuner(epochs, tune_config=tune.TuneConfig(num_samples=1),
               run_config=tune.RunConfig(name="lost", storage_path=str(tmp_path), verbose=0, callbacks=[CtrlC(tmp_path / "interrupted")])).fit()
    (named,) = named_checkpoints(experiment)
    assert named.checkpoint is not None and not named.finished, f"the trial should be unfinished: {named}"
    lost = experiment / named.trial_dir / named.checkpoint
    shutil.rmtree(lost)  # what num_to_keep=1 did at a hang-up: Tune would fail the trial after its retries

    assert repair(experiment) == [named.trial_dir], "the trial whose checkpoint is missing must start again"
    assert (lost / RESTART_FILE).is_file(), "the missing checkpoint must be replaced by the restart marker"
    assert sorted(c.name for c in lost.parent.glob("checkpoint_*")) == [named.checkpoint], \
        "repair leaves each trial exactly the checkpoint its snapshot names"
    (result,) = tune.Tuner.restore(str(experiment), trainable=epochs, resume_unfinished=True).fit()
    assert result.error is None, f"the restored trial failed: {result.error}"
    reported = [json.loads(line)["epoch"] for line in (lost.parent / "result.json").read_text().splitlines()]
    assert reported[-EPOCHS:] == list(range(1, EPOCHS + 1)), f"it must start again from epoch 1: {reported}"
