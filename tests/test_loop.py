"""The training loop: it learns, is deterministic, resumes exactly, records divergence, reports metrics."""
import json
import math

import pytest
import torch

from trainables.config import ConfigError, preset
from trainables.data import load_splits
from trainables.gain import baseline_step
from trainables.loop import TrainState, train
from trainables import run as run_cli


@pytest.fixture(scope="module")
def smoke_cfg():
    return preset("smoke", **{"train.num_threads": 1})


@pytest.fixture(scope="module")
def smoke_splits(smoke_cfg, tmp_path_factory):
    return load_splits(smoke_cfg.data, cache_dir=tmp_path_factory.mktemp("cache"))


def test_smoke_run_learns_conspicuous_benchmark(smoke_cfg, smoke_splits):
    for arm in ("baseline", "gain"):
        res = train(smoke_cfg.replace(arm=arm), smoke_splits)
        assert res.status == "completed"
        assert res.test.accuracy > 0.9, f"{arm}: camouflage 0 must be learnt (>90% test accuracy), got {res.test.accuracy:.3f}"


def test_same_seed_gives_bitwise_identical_predictions(smoke_cfg, smoke_splits):
    cfg = smoke_cfg.replace(**{"train.max_epochs": 2})
    a, b = train(cfg, smoke_splits), train(cfg, smoke_splits)
    assert [p["prob"] for p in a.test.predictions] == [p["prob"] for p in b.test.predictions], \
        "same config and seed must give bitwise identical test predictions"
    c = train(cfg.replace(seed=1), smoke_splits)
    assert [p["prob"] for p in a.test.predictions] != [p["prob"] for p in c.test.predictions], "the seed must matter"


def test_resume_from_checkpoint_replays_the_run(smoke_cfg, smoke_splits, tmp_path):
    cfg = smoke_cfg.replace(**{"train.max_epochs": 3, "train.patience": 5})
    saved = {}

    def keep(rec, state):
        if rec.epoch == 1:
            state.save(tmp_path / "ckpt.pt")
            saved["epoch"] = rec.epoch

    full = train(cfg, smoke_splits, on_epoch=keep)
    resumed = train(cfg, smoke_splits, resume=TrainState.load(tmp_path / "ckpt.pt"))
    assert saved["epoch"] == 1 and len(resumed.history) == len(full.history), "resumed run keeps the earlier history"
    assert [h.val_acc for h in resumed.history] == [h.val_acc for h in full.history], "resumed epochs replay the same"
    assert [p["prob"] for p in resumed.test.predictions] == [p["prob"] for p in full.test.predictions], \
        "a run resumed from epoch 1 must end exactly where the uninterrupted run ends"


def test_non_finite_loss_is_recorded_as_diverged(smoke_cfg, smoke_splits):
    def exploding(model, batch, epoch):
        out = baseline_step(model, batch, epoch)
        return {**out, "loss": out["loss"] * (math.nan if epoch == 2 else 1.0)}

    res = train(smoke_cfg, smoke_splits, step=exploding)
    assert res.status == "diverged", "a NaN loss must end the run as diverged"
    assert len(res.history) == 1 and res.test is None, "only completed epochs are kept; no test evaluation"


def test_early_stopping_restores_best_epoch(smoke_cfg, smoke_splits):
    cfg = smoke_cfg.replace(**{"train.max_epochs": 12, "train.patience": 1, "train.lr": 0.05})
    res = train(cfg, smoke_splits)
    accs = [h.val_acc for h in res.history]
    assert res.best_val_acc == max(accs), "best validation accuracy is the maximum over epochs"
    assert res.best_epoch == accs.index(max(accs)) + 1, "best epoch is the first epoch reaching the maximum"
    assert len(accs) <= res.best_epoch + 1, "with patience 1 training stops one epoch after the best"


def test_test_result_has_groups_and_attention(smoke_cfg, smoke_splits):
    res = train(smoke_cfg.replace(**{"train.max_epochs": 1}), smoke_splits)
    t = res.test
    assert t.n == len(smoke_splits.test) == len(t.predictions), "one prediction per test image"
    assert set(t.group_accuracy) == {"y0_h0", "y0_h1", "y1_h0", "y1_h1"}, f"four (label, habitat) groups, got {t.group_accuracy}"
    assert t.worst_group_accuracy == min(t.group_accuracy.values()), "worst group is the minimum"
    for k in ("pointing_game", "energy_pointing_game", "iou", "bias_aligned_accuracy", "bias_conflicting_accuracy"):
        v = getattr(t, k)
        assert 0.0 <= v <= 1.0, f"{k}={v} must be a fraction"
    assert len(t.attention) == smoke_cfg.train.n_attention_examples, "attention examples kept for the report"
    cam = torch.tensor(t.attention[0]["cam"])
    assert cam.shape == (4, 4) and cam.min() >= 0 and cam.max() <= 1, "maps at feature resolution (64 px / 16), in [0, 1]"
    json.dumps(res.to_dict(), allow_nan=False)  # strict JSON


def test_cli_writes_json_and_rejects_bad_values(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GAINSTUDY_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    rc = run_cli.main(["--preset", "smoke", "--arm", "gain", "--alpha", "1", "--seed", "0", "--epochs", "1",
                       "--threads", "1", "--out", str(out)])
    assert rc == 0 and json.loads(out.read_text())["test"]["n"] > 0, "the CLI writes the full result as JSON"
    assert "test: accuracy=" in capsys.readouterr().out, "the CLI prints a summary"
    with pytest.raises(SystemExit) as e:
        run_cli.main(["--preset", "smoke", "--camouflage", "2"])
    assert e.value.code == 2, "bad values exit 2"
    assert "camouflage=2.0" in capsys.readouterr().err, "the message names the bad value"
    with pytest.raises(ConfigError):
        preset("nope")
