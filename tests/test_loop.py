"""The training loop: it learns, is deterministic, resumes exactly, records divergence, reports metrics."""
import json
import math

import numpy as np
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
    tied = [h for h in res.history if h.val_acc == max(accs)]
    best = min(tied, key=lambda h: h.val_loss)
    assert res.best_epoch == best.epoch, "among epochs with the best accuracy, the lowest validation loss wins"
    assert res.best_val_loss == best.val_loss
    assert len(accs) <= res.best_epoch + 1, "with patience 1 training stops one epoch after the best"


def test_gain_with_alpha_zero_selects_exactly_the_baselines_epoch_and_weights(smoke_cfg, smoke_splits):
    # Symmetric selection: GAIN's warm-up epochs are selectable and its patience clock is the
    # baseline's, so with alpha = 0 (L_am computed, weighted 0) the two runs are the same run.
    cfg = smoke_cfg.replace(**{"gain.alpha": 0.0, "gain.warmup_epochs": 2, "train.max_epochs": 6, "train.patience": 2})
    models = {}

    def keep(arm):
        def on_epoch(rec, state):
            models[arm] = state.best_model
        return on_epoch

    runs = {arm: train(cfg.replace(arm=arm), smoke_splits, on_epoch=keep(arm)) for arm in ("baseline", "gain")}
    b, g = runs["baseline"], runs["gain"]
    assert any(h.losses.get("am", 0) > 0 for h in g.history), "L_am must really be computed after the warm-up"
    assert [h.val_acc for h in b.history] == [h.val_acc for h in g.history], "every epoch must match"
    assert (b.best_epoch, len(b.history)) == (g.best_epoch, len(g.history)), \
        "same selected epoch and same stopping epoch (patience clock)"
    for k, v in models["baseline"].items():
        assert torch.equal(v, models["gain"][k]), f"selected weights differ at {k}"
    assert [p["prob"] for p in b.test.predictions] == [p["prob"] for p in g.test.predictions]


def test_collapse_and_selection_score_rules():
    from trainables.metrics import is_collapsed, selection_score
    import numpy as np

    labels = np.array([1, 0] * 200)
    assert is_collapsed(np.ones(400, dtype=int), labels), "one class for every image is a collapse"
    assert is_collapsed(np.r_[np.ones(381, dtype=int), np.zeros(19, dtype=int)], labels), ">= 95% one class"
    chance = labels.copy()
    chance[:190] = 1 - chance[:190]  # 210/400 correct: inside the binomial 95% interval of 0.5 (181..219)
    assert is_collapsed(chance, labels), "chance-level accuracy is a collapse"
    good = labels.copy()
    good[:20] = 1 - good[:20]  # 380/400 correct, balanced predictions
    assert not is_collapsed(good, labels), "a working classifier is not collapsed"
    n = 400
    assert selection_score(0.9975, 5.0, n) > selection_score(0.995, 0.0, n), "accuracy comes first"
    assert selection_score(0.995, 0.1, n) > selection_score(0.995, 0.2, n), "ties: the lower log loss wins"
    assert selection_score(2 / 3, 100.0, 300) > selection_score(199 / 300, 0.0, 300), \
        "a worst-group ratio is never reordered by the loss term"


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
    cf = t.content_free
    assert cf["energy_pointing_game_uniform"] == pytest.approx(float(smoke_splits.test.masks[smoke_splits.test.labels == 1].mean()), rel=0.2), \
        "a uniform map's energy share is the masks' area share"
    assert all(0 <= v <= 1 for v in cf.values()) and len(cf) == 6, "content-free levels for three scores, two maps"
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


def test_worst_group_selection_picks_the_epoch_with_the_best_worst_group(smoke_splits):
    cfg = preset("smoke", **{"train.num_threads": 1, "train.select": "worst-group", "train.max_epochs": 6,
                             "train.patience": 6})
    res = train(cfg.replace(arm="baseline"), smoke_splits, evaluate_test=False)
    best = max(res.history, key=lambda h: (h.val_worst_group_acc, -h.val_loss))
    assert res.best_epoch == best.epoch, \
        f"--select worst-group must pick the best worst-group validation epoch: {[(h.val_worst_group_acc, h.val_acc) for h in res.history]}"
    assert all(0 <= h.val_worst_group_acc <= h.val_acc + 1e-12 for h in res.history), "worst group <= overall"


def test_patience_does_not_stop_a_run_still_at_chance(smoke_cfg, smoke_splits):
    # A step that cannot learn: the loss has a graph but no gradient, so the model stays at its
    # initialisation and validation accuracy inside chance's band.
    def frozen_step(model, batch, epoch):
        loss = (model(batch.x) * 0.0).mean() + math.log(2.0)
        return {"loss": loss, "cl": loss}

    cfg = smoke_cfg.replace(**{"train.max_epochs": 4, "train.patience": 1})
    stuck = train(cfg, smoke_splits, step=frozen_step, evaluate_test=False)
    assert len(stuck.history) == 4, \
        f"a run at chance must run to max_epochs, not stop after patience; it ran {len(stuck.history)} epochs"
    learns = train(cfg.replace(**{"train.max_epochs": 5}), smoke_splits, evaluate_test=False)
    assert learns.best_val_acc > 0.8 and len(learns.history) <= 5, "check of the test: the smoke run learns"


def test_chance_band_is_scipys_binomial_interval():
    from scipy.stats import binom

    from trainables.metrics import above_chance, chance_band

    for n in (1, 2, 3, 10, 32, 400, 756, 1500):
        for level in (0.9, 0.95, 0.99):
            expect = tuple(int(x) for x in binom.interval(level, n, 0.5))
            assert chance_band(n, level) == expect, f"n={n} level={level}: {chance_band(n, level)} != {expect}"
    assert not above_chance(220 / 400, 400) and above_chance(221 / 400, 400), "400 images: 220 correct is chance"


def test_a_run_at_chance_rarely_starts_its_patience_clock_over_all_its_epochs():
    # 20 epochs of validation accuracy at chance (400 images): the best of them crosses the 95 % band in
    # about 40 % of runs, which then stop after `patience` epochs still at chance (a batch-64 baseline
    # did, at 0.5525). Bonferroni over the epochs keeps that under 5 %.
    from trainables.metrics import above_chance, has_learnt

    rng = np.random.default_rng(0)
    best = rng.binomial(400, 0.5, size=(4000, 20)).max(axis=1) / 400
    started = np.mean([has_learnt(b, 400, 20) for b in best])
    naive = np.mean([above_chance(b, 400) for b in best])
    assert started <= 0.05, f"a run at chance starts its patience clock in {started:.1%} of runs; must be <= 5%"
    assert naive >= 0.3, f"check of the test: the 95% band per epoch should start it often, got {naive:.1%}"
    assert not has_learnt(0.5525, 400, 20) and has_learnt(0.6, 400, 20), "0.5525 on 400 images is still chance"


def test_a_map_without_mass_scores_zero_on_every_attention_metric():
    from trainables.metrics import attention_scores

    mask = torch.zeros(2, 64, 64)
    mask[:, 10:30, 10:30] = 1.0  # a 20x20 object: its area share is 0.098
    cam = torch.zeros(2, 64, 64)
    cam[1, 12:28, 12:28] = 1.0  # the second map sits on the object
    scores = attention_scores(cam, mask)
    for name, values in scores.items():
        assert float(values[0]) == 0.0, f"an all-zero map must score 0 on {name}, got {float(values[0]):.3f}"
        assert float(values[1]) > 0.5, f"check of the test: a map on the object scores high on {name}"


def test_gain_lr_factor_lowers_the_lr_once_l_am_is_on_and_a_resume_keeps_it(smoke_cfg, smoke_splits, tmp_path):
    cfg = smoke_cfg.replace(arm="gain", **{"gain.warmup_epochs": 1, "gain.lr_factor": 0.25, "train.max_epochs": 3,
                                            "train.patience": 5})
    lrs: list[float] = []

    def keep(rec, state):
        lrs.append(state.optimizer["param_groups"][0]["lr"])
        if rec.epoch == 2:
            state.save(tmp_path / "ckpt.pt")

    full = train(cfg, smoke_splits, on_epoch=keep)
    base = cfg.train.lr
    assert lrs == pytest.approx([base, base / 4, base / 4]), f"lr per epoch {lrs}: the warm-up at train.lr, then x0.25"
    resumed = train(cfg, smoke_splits, resume=TrainState.load(tmp_path / "ckpt.pt"))
    assert [h.val_loss for h in resumed.history] == [h.val_loss for h in full.history], \
        "a run resumed after epoch 2 continues at the lowered lr, as the uninterrupted one did"
    baseline_lrs: list[float] = []
    train(cfg.replace(arm="baseline", **{"train.max_epochs": 2}), smoke_splits,
          on_epoch=lambda rec, state: baseline_lrs.append(state.optimizer["param_groups"][0]["lr"]))
    assert baseline_lrs == [base, base], "the baseline keeps train.lr: lr_factor is GAIN's"
