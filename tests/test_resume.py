"""A run interrupted after epoch k and restored from its checkpoint (a file, read back in a process
whose random generators have moved on) continues exactly as the run that was never stopped: the same
epochs, selected epoch, early stop and test predictions, for both arms."""
import dataclasses

import numpy as np
import pytest
import torch

from trainables.config import preset
from trainables.data import load_splits
from trainables.loop import TrainState, train

TIMING = {"seconds", "val_seconds"}


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return load_splits(preset("smoke").data, cache_dir=tmp_path_factory.mktemp("cache"))


def epochs(result) -> list[dict]:
    return [{k: v for k, v in dataclasses.asdict(h).items() if k not in TIMING} for h in result.history]


# Settings whose runs have epochs without improvement, so the interruption falls while the patience
# clock runs (the GAIN run ends by early stopping after it resumes; the baseline run improves again).
@pytest.mark.parametrize("arm, lr", [("baseline", 0.03), ("gain", 0.005)])
def test_interrupted_at_epoch_k_and_restored_continues_exactly(arm, lr, splits, tmp_path):
    cfg = preset("smoke", arm=arm, **{"train.num_threads": 1, "train.max_epochs": 8, "train.patience": 3,
                                      "train.lr": lr, "gain.warmup_epochs": 1})
    clocks = {}

    def checkpoint(rec, state):
        state.save(tmp_path / f"epoch{rec.epoch}.pt")  # what the study's trainable reports to Tune
        clocks[rec.epoch] = (state.best_epoch, state.bad_epochs)

    full = train(cfg, splits, on_epoch=checkpoint)
    n = len(full.history)
    waiting = [e for e in range(1, n) if clocks[e][1] > 0]  # after epoch k the patience clock is running
    k = waiting[0] if waiting else n // 2

    torch.manual_seed(12345)  # a worker that did other work first: its global generators have moved on
    np.random.seed(6789)
    torch.rand(1000)
    resumed = train(cfg, splits, resume=TrainState.load(tmp_path / f"epoch{k}.pt"))

    assert epochs(resumed) == epochs(full), f"{arm}: epochs after a restore at epoch {k} differ from the uninterrupted run"
    assert (resumed.best_epoch, resumed.best_val_acc, resumed.best_score, resumed.status) == \
           (full.best_epoch, full.best_val_acc, full.best_score, full.status), f"{arm}: selected epoch or status differ"
    assert [p["prob"] for p in resumed.test.predictions] == [p["prob"] for p in full.test.predictions], \
        f"{arm}: test predictions of the run restored at epoch {k} differ from the uninterrupted run's"
    assert waiting, f"{arm}: no epoch without improvement before the last: the patience clock was never restored " \
                    f"mid-way ({clocks}); choose a learning rate whose validation accuracy dips"
