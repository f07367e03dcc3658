"""The study's parts without Ray running: spaces, the plan, seeds, selection, the Optuna mirror."""
from __future__ import annotations

import math

import optuna
import pytest

from study.phases import NoWinner, Winner, confirmation_configs, select_winner
from study.plan import StudyConfig
from study.progress import trial_outcome
from study.searchers import ConfigList, mirror_study
from study.spaces import CONFIRM_SEED_BASE, ArmSpace, search_dims
from study.trainable import split_config
from trainables.config import RunConfig, preset


def test_gain_searches_the_baseline_knobs_and_its_own():
    base = preset("cpu")
    b = {d.key for d in search_dims("baseline", base, 3)}
    g = {d.key for d in search_dims("gain", base, 3)}
    assert b < g, "GAIN must tune every knob the baseline tunes (equal treatment), plus its own"
    assert {"gain.alpha", "gain.sigma", "gain.omega", "gain.warmup_epochs", "gain.cam_grad"} <= g
    assert not any(k.startswith("gain.") for k in b), "the baseline must not tune GAIN knobs"
    warmup = next(d for d in search_dims("gain", base, 3) if d.name == "warmup_epochs")
    assert warmup.high < 3, "warm-up must end before ASHA's first rung, or ASHA cuts every warm-up trial"


def test_arm_space_gives_a_complete_config_seeded_by_the_trial_number():
    base = preset("smoke")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    space = ArmSpace("gain", base, grace_period=1)
    for n in range(3):
        trial = study.ask()
        config = space(trial)
        phase, cfg = split_config(config)
        assert phase == "search" and cfg.arm == "gain" and cfg.seed == n
        assert cfg.gain.alpha == trial.params["gain.alpha"], "the suggestion must be what the run uses"
        assert cfg.data == base.data, "the data must be the study's, for every trial"
        study.tell(trial, 0.5)


def test_equal_budget_and_disjoint_seeds():
    cfg = StudyConfig(trials=51, seeds=10, preset="smoke")
    assert cfg.search_split == {"baseline": 25, "gain": 25}, "an odd --trials must not favour one arm"
    assert set(cfg.search_seeds).isdisjoint(cfg.confirm_seeds), "confirmation seeds must be fresh"
    assert min(cfg.confirm_seeds) >= CONFIRM_SEED_BASE > max(cfg.search_seeds)
    assert cfg.sampler_seed("baseline") != cfg.sampler_seed("gain")


def test_identity_ignores_resources_but_not_the_protocol():
    a = StudyConfig(preset="smoke")
    assert a.identity() == StudyConfig(preset="smoke", cpus_per_trial=2, gpus_per_trial=0.5,
                                       max_concurrent=3, address="auto").identity()
    assert a.identity() != StudyConfig(preset="smoke", seeds=11).identity()
    assert a.identity() != StudyConfig(preset="smoke", overrides=(("data.bias", 0.9),)).identity()


def _winner(arm, **over):
    cfg = preset("smoke", arm=arm, seed=3, **over)
    return Winner(arm, f"search-{arm}-x", 0.9, {**cfg.to_flat(), "phase": "search"}, {})


def test_confirmation_pairs_share_seeds_and_gain_runs_every_alpha():
    cfg = StudyConfig(preset="smoke", seeds=3, alphas=(0.5, 2.0))
    configs, alphas = confirmation_configs(cfg, {"baseline": _winner("baseline"),
                                                 "gain": _winner("gain", **{"gain.alpha": 7.0})})
    assert alphas == [0.5, 2.0]
    assert len(configs) == cfg.n_confirm() == 9
    runs = [split_config(c) for c in configs]
    assert all(phase == "confirm" for phase, _ in runs)
    for seed in cfg.confirm_seeds:
        arms = sorted((r.arm, r.gain.alpha) for _, r in runs if r.seed == seed)
        assert [a for a, _ in arms] == ["baseline", "gain", "gain"], f"seed {seed} must run both arms"
        assert sorted(al for a, al in arms if a == "gain") == [0.5, 2.0]
    winners = {"baseline": _winner("baseline"), "gain": _winner("gain", **{"gain.alpha": 7.0})}
    tuned, alphas = confirmation_configs(StudyConfig(preset="smoke", seeds=1), winners)
    assert alphas == [7.0] and split_config(tuned[1])[1].gain.alpha == 7.0, "default: the tuned alpha"


def test_selection_skips_diverged_and_failed_trials():
    rows = [
        {"trial_id": "a", "arm": "gain", "phase": "search", "status": "diverged", "val_acc": 0.99, "seed": 0},
        {"trial_id": "b", "arm": "gain", "phase": "search", "status": "error", "val_acc": 0.98, "seed": 1},
        {"trial_id": "c", "arm": "gain", "phase": "search", "status": "stopped", "val_acc": 0.80, "seed": 2},
        {"trial_id": "d", "arm": "gain", "phase": "search", "status": "completed", "val_acc": 0.85, "seed": 3},
        {"trial_id": "e", "arm": "gain", "phase": "search", "status": "completed", "val_acc": math.nan, "seed": 4},
    ]
    configs = {r["trial_id"]: {**preset("smoke", arm="gain").to_flat(), "phase": "search"} for r in rows}
    assert select_winner("gain", rows, configs).trial_id == "d"
    with pytest.raises(NoWinner, match="no baseline search trial"):
        select_winner("baseline", rows, configs)


@pytest.mark.parametrize("status, last, outcome", [
    ("ERROR", {"epoch": 2}, "error"),
    ("RUNNING", {"epoch": 2}, "running"),
    ("TERMINATED", {"epoch": 2, "last_epoch": False, "final": False}, "stopped"),
    ("TERMINATED", {"epoch": 3, "last_epoch": True, "final": False}, "completed"),
    ("TERMINATED", {"epoch": 3, "final": True, "status": "completed"}, "completed"),
    ("TERMINATED", {"epoch": 1, "final": True, "status": "diverged"}, "diverged"),
])
def test_trial_outcome(status, last, outcome):
    assert trial_outcome(status, last) == outcome


def test_mirror_copies_finished_trials_once_and_never_running_ones(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    live = optuna.create_study(direction="maximize")
    done = live.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    live.tell(done, 0.7)
    live.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # still RUNNING
    assert mirror_study(live, url, "s-gain", {"arm": "gain"}, {0: "search-gain-abc"}) == 1
    assert mirror_study(live, url, "s-gain", {"arm": "gain"}, {0: "search-gain-abc"}) == 0, "copying must be idempotent"
    db = optuna.load_study(study_name="s-gain", storage=url)
    assert [t.state for t in db.trials] == [optuna.trial.TrialState.COMPLETE]
    assert db.trials[0].user_attrs == {"number": 0, "trial_id": "search-gain-abc"}
    assert db.user_attrs["arm"] == "gain" and db.best_value == 0.7


def test_config_list_suggests_each_config_once_and_survives_a_restore(tmp_path):
    configs = [{"seed": 1000, "arm": "baseline"}, {"seed": 1000, "arm": "gain"}, {"seed": 1001, "arm": "baseline"}]
    s = ConfigList(configs)
    assert s.suggest("t1") == configs[0]
    s.save(str(tmp_path / "state.pkl"))
    r = ConfigList([])
    r.restore(str(tmp_path / "state.pkl"))
    assert [r.suggest("t2"), r.suggest("t3")] == configs[1:]
    assert r.suggest("t4") == ConfigList.FINISHED


def test_run_config_round_trip_through_a_trial_config():
    cfg = preset("smoke", arm="baseline", seed=1003)
    phase, back = split_config({**cfg.to_flat(), "phase": "confirm"})
    assert phase == "confirm" and back == cfg
    with pytest.raises(ValueError, match="phase"):
        split_config({**cfg.to_flat(), "phase": "test"})
    assert isinstance(back, RunConfig)


class _FakeResult:
    """The attributes of ray.tune.Result that the records read."""

    def __init__(self, config, path, metrics, history, error=None):
        self.config, self.path, self.metrics, self.error, self.checkpoint = config, path, metrics, error, None
        import pandas as pd

        self.metrics_dataframe = pd.DataFrame(history) if history else None


def _epoch(e, best, last=False):
    return {"epoch": e, "val_acc": best, "val_loss": 0.5, "loss": 0.6, "loss_cl": 0.6, "loss_am": math.nan,
            "loss_e": math.nan, "epoch_seconds": 1.0, "best_val_acc": best, "best_epoch": e, "objective": best,
            "last_epoch": last, "final": False, "node_id": "n1", "time_total_s": float(e)}


@pytest.mark.parametrize("history, final, error, status", [
    ([_epoch(1, 0.6), _epoch(2, 0.7)], None, None, "stopped"),
    ([_epoch(1, 0.6), _epoch(2, 0.7, last=True)], None, None, "completed"),
    ([_epoch(1, 0.6)], {"final": True, "status": "diverged"}, None, "diverged"),
    ([_epoch(1, 0.6)], None, RuntimeError("boom\ntrace"), "error"),
    ([], None, RuntimeError("died before its first epoch"), "error"),
])
def test_trial_rows_from_tune_results(history, final, error, status):
    from study.records import result_rows

    cfg = preset("smoke", arm="baseline", seed=4)
    metrics = dict(history[-1]) if history else {}
    if final:
        metrics.update({**final, "epoch": len(history), "best_val_acc": 0.6, "best_epoch": 1})
    rows = history + ([{**metrics}] if final else [])
    row, epochs, full = result_rows(_FakeResult({**cfg.to_flat(), "phase": "search"}, "/x/search-baseline-ab12",
                                                metrics, rows, error))
    assert row["status"] == status and row["trial_id"] == "search-baseline-ab12"
    assert row["arm"] == "baseline" and row["seed"] == 4 and math.isnan(row["alpha"]) and row["hp_alpha"] is None
    assert [e["epoch"] for e in epochs] == [h["epoch"] for h in history], "the final report is not an epoch"
    assert full is None and math.isnan(row["test_acc"]), "search trials carry no test metrics"
    if error is not None:
        assert row["error"] == str(error).splitlines()[0]
