"""The study's parts without Ray running: spaces, the plan, seeds, selection, the Optuna mirror."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest

from study.protocol import (
    NoWinner,
    Winner,
    confirmation_configs,
    search_winner,
    select_winner,
    selection_configs,
    top_search_trials,
)
from study.plan import StudyConfig
from study.progress import trial_outcome
from study.schedulers import LaggedASHA
from study.searchers import STOPPED_ATTR, ArmsSearch, ConfigList, MirroredOptunaSearch, mirror_study
from study.spaces import CONFIRM_SEED_BASE, SELECT_SEED_BASE, ArmSpace, search_dims
from study.trainable import split_config
from trainables.config import RunConfig, preset


def test_gain_searches_the_baseline_knobs_and_its_own():
    base = preset("cpu")
    b = {d.key for d in search_dims("baseline", base)}
    g = {d.key for d in search_dims("gain", base)}
    assert b < g, "GAIN must tune every knob the baseline tunes (equal treatment), plus its own"
    assert {"gain.alpha", "gain.sigma", "gain.omega", "gain.warmup_epochs"} <= g
    assert "gain.cam_grad" not in g, "cam_grad changes no trunk gradient with the GAP->FC head: not worth budget"
    assert not any(k.startswith("gain.") for k in b), "the baseline must not tune GAIN knobs"


def test_arm_space_gives_a_complete_config_seeded_by_the_trial_number():
    base = preset("smoke")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    space = ArmSpace("gain", base)
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
    big = StudyConfig(trials=2 * CONFIRM_SEED_BASE - 1, seeds=SELECT_SEED_BASE - CONFIRM_SEED_BASE, preset="smoke",
                      selection_seeds=50)
    for c in (cfg, big):
        search, select, confirm = set(c.search_seeds), set(c.select_seeds), set(c.confirm_seeds)
        assert select and not (select & search) and not (select & confirm) and not (search & confirm), \
            "selection seeds must be disjoint from search and confirmation seeds"
    assert cfg.n_select() == 3 * 2, "each arm re-runs its top 3 configurations on 2 selection seeds"
    assert cfg.sampler_seed("baseline") != cfg.sampler_seed("gain")


def test_identity_ignores_resources_but_not_the_protocol():
    a = StudyConfig(preset="smoke")
    assert a.identity() == StudyConfig(preset="smoke", cpus_per_trial=2, gpus_per_trial=0.5,
                                       max_concurrent=3, address="auto").identity()
    assert a.identity() != StudyConfig(preset="smoke", seeds=11).identity()
    assert a.identity() != StudyConfig(preset="smoke", overrides=(("data.bias", 0.9),)).identity()


def _winner(arm, **over):
    cfg = preset("smoke", arm=arm, seed=3, **over)
    return Winner(arm, f"search-{arm}-x", 0.9, 0.9, cfg, {})


def test_confirmation_pairs_share_seeds_and_gain_runs_every_alpha():
    cfg = StudyConfig(preset="smoke", seeds=3, alphas=(0.5, 2.0))
    configs, alphas = confirmation_configs(cfg, {"baseline": _winner("baseline"),
                                                 "gain": _winner("gain", **{"gain.alpha": 7.0})})
    assert alphas == [0.5, 2.0]
    assert len(configs) == cfg.n_confirm() == 9
    runs = [(c.phase, c.run) for c in configs]
    assert all(phase == "confirm" for phase, _ in runs)
    assert all(c.to_tune()["phase"] == "confirm" and "candidate" not in c.to_tune() for c in configs), \
        "a confirmation run's Tune config is its flat RunConfig and its phase"
    for seed in cfg.confirm_seeds:
        arms = sorted((r.arm, r.gain.alpha) for _, r in runs if r.seed == seed)
        assert [a for a, _ in arms] == ["baseline", "gain", "gain"], f"seed {seed} must run both arms"
        assert sorted(al for a, al in arms if a == "gain") == [0.5, 2.0]
    winners = {"baseline": _winner("baseline"), "gain": _winner("gain", **{"gain.alpha": 7.0})}
    tuned, alphas = confirmation_configs(StudyConfig(preset="smoke", seeds=1), winners)
    assert alphas == [7.0, 1.0], "default: the tuned alpha and the paper's alpha = 1, one family"
    assert [(c.run.arm, c.run.gain.alpha) for c in tuned] == [("gain", 7.0), ("gain", 1.0), ("baseline", 1.0)], \
        "GAIN runs (the longer ones) start first within a seed, so a phase ends on a short run"
    one = {"baseline": _winner("baseline"), "gain": _winner("gain", **{"gain.alpha": 1.0})}
    configs, alphas = confirmation_configs(StudyConfig(preset="smoke", seeds=2), one)
    assert alphas == [1.0] and len(configs) == 4, "a tuned alpha equal to the paper's runs once, not twice"


def _row(tid, status, objective, seed, val_acc=None, phase="search", candidate=None):
    return {"trial_id": tid, "arm": "gain", "phase": phase, "status": status, "objective": objective,
            "val_acc": objective if val_acc is None else val_acc, "seed": seed, "candidate": candidate}


def test_search_ranking_skips_diverged_and_failed_trials():
    rows = [_row("a", "diverged", 0.99, 0), _row("b", "error", 0.98, 1), _row("c", "stopped", 0.80, 2),
            _row("d", "completed", 0.85, 3), _row("e", "completed", math.nan, 4)]
    configs = {r["trial_id"]: preset("smoke", arm="gain") for r in rows}
    assert search_winner("gain", rows, configs).trial_id == "d"
    assert [r["trial_id"] for r in top_search_trials("gain", rows, 3)] == ["d", "c"]
    with pytest.raises(NoWinner, match="no baseline search trial"):
        search_winner("baseline", rows, configs)


def test_ties_in_validation_accuracy_go_to_the_lower_log_loss():
    from trainables.metrics import selection_score

    n = 400
    rows = [_row(t, "completed", selection_score(0.995, loss, n), seed, val_acc=0.995)
            for t, loss, seed in (("first", 0.30, 0), ("second", 0.05, 1), ("third", 0.20, 2))]
    rows.append(_row("worse", "completed", selection_score(0.9925, 0.001, n), 3, val_acc=0.9925))
    ranked = [r["trial_id"] for r in top_search_trials("gain", rows, 4)]
    assert ranked == ["second", "third", "first", "worse"], \
        f"equal accuracy must be ranked by log loss, and never above a higher accuracy: {ranked}"


def test_selection_phase_configs_and_the_winner_by_mean_objective():
    cfg = StudyConfig(preset="smoke", trials=10, selection_k=2, selection_seeds=2)
    base = preset("smoke", arm="gain")
    tops = {"baseline": [_row("b1", "completed", 0.9, 0)],
            "gain": [_row("g1", "completed", 0.95, 0), _row("g2", "completed", 0.94, 1)]}
    configs = {"b1": base.replace(arm="baseline"), "g1": base.replace(**{"gain.alpha": 0.3}),
               "g2": base.replace(**{"gain.alpha": 2.0})}
    sel = selection_configs(cfg, tops, configs)
    assert sorted({c.run.seed for c in sel}) == cfg.select_seeds and all(c.phase == "select" for c in sel)
    assert sorted(c.candidate for c in sel) == ["b1", "b1", "g1", "g1", "g2", "g2"]
    assert {c.candidate: c.run.gain.alpha for c in sel}.get("g2") == 2.0, "a selection run is its candidate's configuration"
    assert split_config(sel[1].to_tune()) == ("select", sel[1].run), "the Tune config round-trips"
    assert [c.candidate for c in sel][-2:] == ["b1", "b1"], "every GAIN run starts before any baseline run"
    # g1 led the search but diverges on one selection seed: a fragile configuration must lose.
    select_rows = [_row("s1", "completed", 0.97, 2000, phase="select", candidate="g1"),
                   _row("s2", "diverged", 0.50, 2001, phase="select", candidate="g1"),
                   _row("s3", "completed", 0.93, 2000, phase="select", candidate="g2"),
                   _row("s4", "completed", 0.92, 2001, phase="select", candidate="g2")]
    w = select_winner("gain", tops["gain"], select_rows, configs)
    assert w.trial_id == "g2" and w.select_trial_ids == ("s3", "s4")
    assert w.objective == pytest.approx(0.925) and w.record()["trial_id"] == "g2"
    tie = [{**r, "objective": 0.9, "status": "completed"} for r in select_rows]
    assert select_winner("gain", tops["gain"], tie, configs).trial_id == "g1", "ties go to the better search rank"


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
    assert db.metric_names and "objective" in db.metric_names[0], "the objective must be named"
    cut = live.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # what ASHA stops after 2 epochs
    cut.report(0.5, 1)
    cut.report(0.55, 2)
    cut.set_user_attr(STOPPED_ATTR, True)
    live.tell(cut, 0.55)  # Tune completes a stopped trial with its partial value
    assert mirror_study(live, url, "s-gain", {"arm": "gain"}, {2: "search-gain-cut"}) == 1
    copy = [t for t in optuna.load_study(study_name="s-gain", storage=url).trials if t.user_attrs["number"] == 2][0]
    assert copy.state == optuna.trial.TrialState.PRUNED and copy.value is None, "ASHA-stopped trials are PRUNED"
    assert copy.intermediate_values == {1: 0.5, 2: 0.55}, "with the values they reached"


def test_config_list_suggests_each_config_once_and_survives_a_restore(tmp_path):
    configs = [{"seed": 1000, "arm": "baseline"}, {"seed": 1000, "arm": "gain"}, {"seed": 1001, "arm": "baseline"}]
    s = ConfigList(configs)
    assert s.suggest("t1") == configs[0]
    s.save(str(tmp_path / "state.pkl"))
    r = ConfigList([])
    r.restore(str(tmp_path / "state.pkl"))
    assert [r.suggest("t2"), r.suggest("t3")] == configs[1:]
    assert r.suggest("t4") == ConfigList.FINISHED


def _arms_search(cfg: StudyConfig, url: str, window: int = 2) -> ArmsSearch:
    subs = {arm: MirroredOptunaSearch(space=ArmSpace(arm, cfg.base), metric="objective", mode="max",
                                      sampler=optuna.samplers.TPESampler(seed=cfg.sampler_seed(arm)),
                                      mirror_url=url, mirror_study=f"s-{arm}", mirror_attrs={"arm": arm},
                                      trial_prefix=f"search-{arm}-")
            for arm in ("gain", "baseline")}
    return ArmsSearch(subs, cfg.search_split, "objective", "max", window=window)


def test_one_search_experiment_alternates_the_arms_within_equal_budgets_and_survives_a_restore(tmp_path):
    cfg = StudyConfig(preset="smoke", trials=5)  # 2 + 2: the odd trial stays unused
    url = f"sqlite:///{tmp_path}/optuna.db"
    s = _arms_search(cfg, url)
    arms = [s.suggest(f"t{i}")["arm"] for i in range(3)]
    assert arms == ["gain", "baseline", "gain"], f"the arms must alternate, GAIN first: {arms}"
    s.on_trial_complete("t1", {"objective": 0.7, "epoch": 2, "final": True})
    s.save(str(tmp_path / "state.pkl"))
    r = _arms_search(cfg, url)
    r.restore(str(tmp_path / "state.pkl"))
    last = r.suggest("t3")
    assert last["arm"] == "baseline" and last["seed"] == 1, "a restored search continues each arm's own study"
    assert r.suggest("t4") == ArmsSearch.FINISHED, "each arm stops at its budget, N//2"
    r.on_trial_complete("t0", {"objective": 0.9, "epoch": 2, "final": True})
    r.mirror()
    for arm, number, value in (("baseline", 0, 0.7), ("gain", 0, 0.9)):
        db = optuna.load_study(study_name=f"s-{arm}", storage=url)
        assert [(t.user_attrs["number"], t.value, t.user_attrs["trial_id"]) for t in db.trials] == \
            [(number, value, f"search-{arm}-s000")], f"{arm}: each result must reach its own arm's study only"


def _simulate(search: ArmsSearch, order_seed: int, slots: int, direct: bool = False) -> dict[str, list[dict]]:
    """Run a search to its end with `slots` trials at a time, finishing running trials in a random
    order drawn from `order_seed`; each trial's objective is a function of its config. With `direct`
    every result goes straight to the arm's Optuna searcher, as a plain OptunaSearch gets it."""
    rng = np.random.default_rng(order_seed)
    running: list[tuple[str, dict]] = []
    proposals: dict[str, list[dict]] = {"gain": [], "baseline": []}
    k = 0
    while True:
        while len(running) < slots:
            config = search.suggest(f"t{k}")
            if config is None or config == ArmsSearch.FINISHED:
                break
            running.append((f"t{k}", config))
            proposals[config["arm"]].append(config)
            k += 1
        if not running:
            return proposals
        tid, config = running.pop(int(rng.integers(len(running))))
        value = 1.0 - abs(math.log10(config["train.lr"]) + 2.5) / 3
        result = {"objective": value, "epoch": 5, "final": True, "training_iteration": 5}
        if direct:
            search.searchers[config["arm"]].on_trial_complete(tid, result)
            search.finished[tid] = (result, False)
            search.told[config["arm"]] = len(search.started[config["arm"]])
        else:
            search.on_trial_complete(tid, result)


def test_the_search_proposes_the_same_configurations_whatever_order_trials_finish_in(tmp_path):
    cfg = StudyConfig(preset="smoke", trials=30)  # 15 per arm: past TPE's 10 random start-up trials
    runs = [_simulate(_arms_search(cfg, f"sqlite:///{tmp_path}/{i}.db", window=3), order_seed=i, slots=3)
            for i in range(3)]
    for arm in ("gain", "baseline"):
        assert len(runs[0][arm]) == 15, f"{arm}: the search must run its whole budget"
        assert runs[1][arm] == runs[0][arm] and runs[2][arm] == runs[0][arm], \
            f"{arm}: the proposals must not depend on the order in which concurrent trials finish"
    # Check of the test: results passed on as they arrive (a plain OptunaSearch) do depend on it.
    direct = [_simulate(_arms_search(cfg, f"sqlite:///{tmp_path}/d{i}.db", window=10**6), order_seed=i, slots=3,
                        direct=True) for i in range(3)]
    assert any(d["gain"] != direct[0]["gain"] for d in direct[1:]), \
        "check of the test: without the hold-back, TPE's proposals should follow the finishing order"


def test_lagged_asha_compares_a_trial_only_with_earlier_trials_of_its_own_arm():
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    search = ArmsSearch({"gain": None, "baseline": None}, {"gain": 9, "baseline": 9}, "objective", "max", window=2)
    asha = LaggedASHA(search, time_attr="epoch", metric="objective", max_t=8, grace_period=1, reduction_factor=2)
    assert asha.rungs == (1, 2, 4), f"rungs at grace * rf^k below max_t, got {asha.rungs}"
    trials = []
    for arm, n in [("gain", 0), ("gain", 1), ("gain", 2), ("gain", 3), ("baseline", 0)]:
        t = SimpleNamespace(trial_id=f"{arm}{n}", config={"arm": arm})
        search.started[arm].append(t.trial_id)
        search.arm_of[t.trial_id] = arm
        trials.append(t)

    def decide(t, value):
        return asha.on_trial_result(None, t, {"epoch": 1, "objective": value})

    # gain 1 reaches the rung before gain 0 does: with window 2 it has nothing to be compared with.
    assert decide(trials[1], 0.2) == TrialScheduler.CONTINUE, "trial 1 may only meet trials 0..n-2: none"
    assert decide(trials[0], 0.9) == TrialScheduler.CONTINUE
    assert decide(trials[3], 0.5) == TrialScheduler.STOP, "trial 3 meets trials 0 and 1 (0.9, 0.2): cutoff 0.55"
    assert decide(trials[2], 0.5) == TrialScheduler.STOP, "trial 2 meets trial 0 only (0.9)"
    assert decide(trials[4], 0.1) == TrialScheduler.CONTINUE, "a baseline trial is never judged against GAIN trials"
    assert asha.on_trial_result(None, trials[0], {"epoch": 3, "objective": 0.1}) == TrialScheduler.CONTINUE, \
        "only the rung epochs decide"


def test_run_config_round_trip_through_a_trial_config():
    cfg = preset("smoke", arm="baseline", seed=1003)
    phase, back = split_config({**cfg.to_flat(), "phase": "confirm"})
    assert phase == "confirm" and back == cfg
    with pytest.raises(ValueError, match="phase"):
        split_config({**cfg.to_flat(), "phase": "test"})
    assert isinstance(back, RunConfig)


class _FakeResult:
    """The attributes of ray.tune.Result that the records read; `history` goes into the trial's latest
    checkpoint, as the trainable writes it."""

    def __init__(self, config, path, metrics, history, folder, error=None):
        from ray import tune

        from study.trainable import HISTORY_FILE

        self.config, self.path, self.metrics, self.error = config, path, metrics, error
        self.checkpoint = None
        if history:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / HISTORY_FILE).write_text(json.dumps(history))
            self.checkpoint = tune.Checkpoint.from_directory(folder)


def _epoch(e, best, last=False):
    return {"epoch": e, "val_acc": best, "val_loss": 0.5, "loss": 0.6, "loss_cl": 0.6, "loss_am": None,
            "loss_e": None, "epoch_seconds": 1.0, "best_val_acc": best, "best_epoch": e, "objective": best,
            "last_epoch": last, "final": False, "node_id": "n1", "time_total_s": float(e)}


@pytest.mark.parametrize("history, final, error, status", [
    ([_epoch(1, 0.6), _epoch(2, 0.7)], None, None, "stopped"),
    ([_epoch(1, 0.6), _epoch(2, 0.7, last=True)], None, None, "completed"),
    ([_epoch(1, 0.6)], {"final": True, "status": "diverged"}, None, "diverged"),
    ([_epoch(1, 0.6)], None, RuntimeError("boom\ntrace"), "error"),
    ([], None, RuntimeError("died before its first epoch"), "error"),
])
def test_trial_rows_from_tune_results(history, final, error, status, tmp_path):
    from study.records import result_rows

    cfg = preset("smoke", arm="baseline", seed=4)
    metrics = dict(history[-1]) if history else {}
    if final:
        metrics.update({**final, "epoch": len(history), "best_val_acc": 0.6, "best_epoch": 1})
    row, epochs, full = result_rows(_FakeResult({**cfg.to_flat(), "phase": "search"}, "/x/search-baseline-ab12",
                                                metrics, history, tmp_path / "checkpoint_000002", error))
    assert row["status"] == status and row["trial_id"] == "search-baseline-ab12"
    assert row["arm"] == "baseline" and row["seed"] == 4 and math.isnan(row["alpha"]) and row["hp_alpha"] is None
    assert [e["epoch"] for e in epochs] == [h["epoch"] for h in history], "one row per epoch the checkpoint holds"
    assert row["epochs"] == len(history), "the epoch count is the checkpoint's"
    assert full is None and math.isnan(row["test_acc"]), "search trials carry no test metrics"
    if error is not None:
        assert row["error"] == str(error).splitlines()[0]


def test_epoch_rows_come_from_the_checkpoint_not_from_tunes_log(tmp_path):
    """Issue 20: a worker killed right after its epoch-5 report leaves that epoch in the checkpoint (the
    restored run goes on from it) but not in Tune's metrics log; the tables must still have epoch 5."""
    import pandas as pd

    from study.records import result_rows

    cfg = preset("smoke", arm="baseline", seed=4)
    history = [_epoch(e, 0.5 + e / 20) for e in range(1, 6)]
    fake = _FakeResult({**cfg.to_flat(), "phase": "select"}, "/x/select-baseline-cd34",
                       {**history[-1], "final": True, "status": "completed", "epoch": 5}, history,
                       tmp_path / "checkpoint_000005")
    fake.metrics_dataframe = pd.DataFrame(history[:3] + history[4:])  # Tune's log lost epoch 4
    row, epochs, _ = result_rows(fake, load_run=False)
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5], f"epoch rows {[e['epoch'] for e in epochs]}"
    assert row["epochs"] == 5 and epochs[3]["val_acc"] == pytest.approx(0.7), "epoch 4's row is the checkpoint's"


def test_phase_timing_splits_trial_time_and_overhead():
    from study.records import format_timing, phase_timing

    rows = [{"seconds": 10.0, "time_train_s": 7.0, "time_val_s": 2.0, "time_test_s": 0.0, "time_checkpoint_s": 1.0},
            {"seconds": 6.0, "time_train_s": 4.0, "time_val_s": 1.0, "time_test_s": 0.5, "time_checkpoint_s": 0.5}]
    p = phase_timing(rows, wall_s=10.0, slots=2)
    assert (p["trial_s"], p["train_s"], p["val_s"], p["checkpoint_s"]) == (16.0, 11.0, 3.0, 1.5)
    assert p["overhead_s"] == pytest.approx(4.0), "2 slots x 10 s wall - 16 s of trials = 4 s overhead"
    text = format_timing({"before_phases_s": 5.0, "phases": {"search-gain": p}, "total_s": 20.0})
    assert "search-gain" in text and "overhead" in text and "36%" in text, text


def test_live_view_counts_busy_slots_and_says_the_estimate_is_for_the_study():
    from study.progress import LiveView

    class T:
        def __init__(self, status, last=None, arm="gain"):
            self.status, self.last_result, self.config = status, last or {}, {"arm": arm}
            self.trial_id = f"t{id(self)}"

    view = LiveView("search", planned=5, concurrency=2)
    done = {"final": True, "status": "completed", "epoch": 3, "time_total_s": 4.0, "objective": 0.9}
    line, (finished, running) = view.summary([T("TERMINATED", done), T("RUNNING", {"epoch": 1, "objective": 0.95},
                                                                        "baseline"), T("PENDING")])
    assert finished == 1 and running == 2 and "running 2" in line, f"a trial about to start fills its slot: {line}"
    assert "study ~" in line, "the time left is the whole study's, and must say so"
    assert "best val baseline 0.9500 gain 0.9000" in line, f"one phase runs both arms: the best of each: {line}"


def _simulate_phase(view, durations_epochs, arms, epoch_wall, slots, t0=0.0):
    """Two-slot event simulation: each trial runs its epochs; returns [(time, estimate, finished)] and
    the phase's end time. `epoch_wall[arm]` is the real seconds of one epoch."""
    from types import SimpleNamespace

    queue = list(range(len(durations_epochs)))
    running, finished, events, t = {}, 0, [], t0
    while queue or running:
        while queue and len(running) < slots:
            i = queue.pop(0)
            running[i] = [0, t]  # epochs done, time of the last epoch
        # the next epoch to end among running trials
        i = min(running, key=lambda k: running[k][1] + epoch_wall[arms[k]])
        t = running[i][1] + epoch_wall[arms[i]]
        running[i][0] += 1
        running[i][1] = t
        trial = SimpleNamespace(trial_id=f"t{i}", config={"arm": arms[i]})
        view.on_trial_result(0, [], trial, {"epoch": running[i][0], "final": False})
        if running[i][0] == durations_epochs[i]:
            del running[i]
            finished += 1
        events.append((t, view.seconds_left(finished, [f"t{k}" for k in running], now=t), finished))
    return events, t


def test_live_view_time_left_settles_within_a_quarter_of_the_truth():
    from study.progress import Clock, LiveView

    rng = np.random.default_rng(0)
    n = 40
    epochs = rng.choice([3, 9, 15], size=n, p=[2 / 3, 2 / 9, 1 / 9])  # what ASHA lets trials run
    arms = ["gain" if i % 2 == 0 else "baseline" for i in range(n)]
    model = {"baseline": 1.0, "gain": 2.1}
    later_model = 150.0  # modelled wall seconds of the later phases
    mean_trial = float(np.mean([epochs.mean() * model[a] for a in ("baseline", "gain")]))
    for speed in (1.4, 0.6):  # this machine is slower, or faster, than the reference
        clock = Clock(started=0.0, concurrency=2, epoch_s=tuple(model.items()), trial_extra_s=0.0, min_done_s=20.0)
        view = LiveView("search", planned=n, concurrency=2, later_s=later_model, trial_s=mean_trial, clock=clock)
        events, end = _simulate_phase(view, epochs, arms, {a: speed * m for a, m in model.items()}, slots=2)
        study_end = end + speed * later_model
        late = [(t, est) for t, est, _ in events if t >= 60.0]
        errors = [abs(est - (study_end - t)) / (study_end - t) for t, est in late]
        assert late and max(errors) <= 0.25, \
            f"speed {speed}: after the first minute the estimate must stay within 25% of the time left; worst " \
            f"{max(errors):.0%} at t={late[int(np.argmax(errors))][0]:.0f} s"
    fresh = LiveView("confirm", planned=4, concurrency=2, later_s=0.0, trial_s=10.0,
                     clock=Clock(started=0.0, concurrency=2, done_before_s=500.0, epoch_s=tuple(model.items())))
    assert fresh.seconds_left(0, [], now=250.0) == pytest.approx(4 * 10 / 2 * 250.0 / 250.0), \
        "a new phase keeps the pace the earlier phases measured (500 modelled core-s in 250 s on 2 slots)"
    # The first epochs carry the workers' start-up: 15 s of wall for 10 modelled s per slot looks like a
    # machine 1.5x slower than the model (the default study's estimate jumped from 12:24 to 18:26 so). The
    # model's pace weighs in until more work is done, so the estimate moves a third of the way or less.
    early = LiveView("search", planned=10, concurrency=2, later_s=600.0, trial_s=10.0,
                     clock=Clock(started=0.0, concurrency=2, done_before_s=20.0, epoch_s=tuple(model.items())))
    assert 1.0 < early.pace(0, now=15.0) <= 1.0 + (1.5 - 1.0) / 3, \
        f"an early pace must lean on the model's: {early.pace(0, now=15.0):.2f} (measured alone: 1.5)"


def test_more_seeds_or_alphas_extend_a_study_and_nothing_else_changes(tmp_path):
    from study.records import ConfigChanged, open_study_record

    storage = str(tmp_path / "runs")
    run_dir = tmp_path / "runs" / "s"
    base = dict(name="s", storage=storage, preset="smoke", trials=4, seeds=2)
    open_study_record(StudyConfig(**base), run_dir, ["--seeds", "2"], "fp")
    record, resumed = open_study_record(StudyConfig(**{**base, "seeds": 4, "alphas": ("tuned", 1.0, 2.0)}),
                                        run_dir, ["--seeds", "4", "--alphas", "tuned,1,2"], "fp")
    assert resumed and record["config"]["seeds"] == [1000, 1001, 1002, 1003]
    assert record["extensions"][0]["seeds"]["was"] == [1000, 1001] and record["cli"][1] == "4"
    for shrink in ({"seeds": 3}, {"alphas": ("tuned", 1.0)}, {"seeds": 4, "trials": 6}):
        with pytest.raises(ConfigChanged):
            open_study_record(StudyConfig(**{**base, "alphas": ("tuned", 1.0, 2.0), "seeds": 4, **shrink}),
                              run_dir, [], "fp")


def test_the_margin_and_a_staged_design_cannot_change_once_declared(tmp_path):
    import json

    from study.records import ConfigChanged, open_study_record

    storage = str(tmp_path / "runs")
    base = dict(storage=storage, preset="smoke", trials=4)
    run_dir = tmp_path / "runs" / "m"
    record, _ = open_study_record(StudyConfig(name="m", **base), run_dir, [], "fp")
    assert record["config"]["margin_pp"] == 1.0 and record["config"]["design"]["margin_pp"] == 1.0
    assert any("equivalent" in r for r in record["verdict_rules"]), "the four-way rules are written before the first trial"
    with pytest.raises(ConfigChanged, match="margin_pp"):
        open_study_record(StudyConfig(name="m", margin=2.0, **base), run_dir, [], "fp")
    staged = tmp_path / "runs" / "q"
    cfg = StudyConfig(name="q", seeds=10, max_seeds=20, **base)
    record, _ = open_study_record(cfg, staged, [], "fp")
    design = json.loads((staged / "study.json").read_text())["config"]["design"]
    assert design["looks"] == [10, 15, 20] and len(design["difference_levels"]) == 3 and design["spending"] == "obf"
    for change in ({"seeds": 15}, {"max_seeds": 25}, {"max_seeds": None}):
        with pytest.raises(ConfigChanged):
            open_study_record(StudyConfig(name="q", **{**dict(seeds=10, max_seeds=20), **change}, **base), staged, [], "fp")
    open_study_record(cfg, staged, [], "fp")  # the same flags resume


def test_preflight_writes_what_the_study_will_write():
    from study.records import preflight

    preflight(StudyConfig(preset="smoke"))  # must not raise on an ordinary configuration
    preflight(StudyConfig(preset="cpu", overrides=(("data.bias", 0.9), ("train.select", "worst-group"))))


def test_a_ctrl_c_that_tune_swallows_is_noticed_and_one_between_phases_stops_the_study():
    # Tune's fit() installs its own SIGINT handler, which on Ctrl-C stops the trials, puts back the
    # handler it found and lets fit() return as if finished. Use Tune's real handler (Ray 2.60).
    import os
    import signal as sig

    from ray.tune.tune import _setup_signal_catching

    from study import phases

    previous = sig.getsignal(sig.SIGINT)
    try:
        phases.install_sigint_handler()
        event = _setup_signal_catching()  # what fit() does first
        assert not phases._tune_was_interrupted(), "no Ctrl-C yet: Tune's handler is in place"
        os.kill(os.getpid(), sig.SIGINT)
        assert event.is_set() and phases._tune_was_interrupted(), "a Ctrl-C during fit() must be noticed"
        with pytest.raises(KeyboardInterrupt):  # between phases our handler is in place again
            os.kill(os.getpid(), sig.SIGINT)
    finally:
        sig.signal(sig.SIGINT, previous)


def _photo_folder(root: Path) -> str:
    from PIL import Image

    for cls, colour in (("positive", (200, 20, 20)), ("negative", (20, 20, 200))):
        for i in range(4):
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 30), colour).save(root / cls / f"{i}.png")
    return str(root)


def _cod10k_tree(root: Path) -> str:
    from PIL import Image

    for split in ("Train", "Test"):
        for i in range(4):
            n = i + (10 if split == "Test" else 0)
            name = f"COD10K-CAM-2-Terrestrial-38-Lizard-{n}"
            for folder, ext, im in (("Image", "jpg", Image.new("RGB", (40, 30), (90, 90, 90))),
                                    ("GT_Object", "png", Image.new("L", (40, 30), 255))):
                (root / split / folder).mkdir(parents=True, exist_ok=True)
                im.save(root / split / folder / f"{name}.{ext}")
            background = f"COD10K-NonCAM-5-Background-5-Sky-{n + 100}.jpg"
            Image.new("RGB", (40, 30), (20, 90, 20)).save(root / split / "Image" / background)
    return f"cod10k:{root}"


@pytest.mark.parametrize("data", ["benchmark", "photo folder", "COD10K"])
def test_the_driver_starts_without_importing_torch(data, tmp_path):
    # The launcher only makes and ships the splits; torch (~4 s of imports) is for the Ray workers.
    import os
    import subprocess
    import sys

    import torch

    spec = {"benchmark": lambda: "mimicry", "photo folder": lambda: _photo_folder(tmp_path / "photos"),
            "COD10K": lambda: _cod10k_tree(tmp_path / "COD10K-v3")}[data]()
    code = ("import sys; import study.launch, study.phases, study.protocol, study.records, study.session, "
            "study.trainable; "
            "from study.plan import StudyConfig; from study.options import parse_data; from study.records import versions, preflight; "
            f"from trainables.data import load_splits; cfg = StudyConfig(preset='smoke', overrides=parse_data({spec!r})); "
            "preflight(cfg); load_splits(cfg.base.data); print(versions()['torch'], sorted(m for m in "
            "('torch', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "GAINSTUDY_CACHE": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    version, imported = out.stdout.strip().split(" ", 1)
    assert imported == "[]", f"the driver imported {imported} for the {data}"
    assert version == torch.__version__, "study.json must record torch's version with its build tag"


def test_the_photo_loader_imports_neither_trainables_data_nor_torch():
    # The shared types live in trainables/splits.py (numpy only): _photos.py and data.py import it, not
    # each other, and a photo-folder study's launcher stays free of torch (see the test above).
    import subprocess
    import sys

    code = ("import sys, trainables._photos, trainables._datasets; "
            "print(sorted(m for m in ('trainables.data', 'torch', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"the photo loaders imported {out.stdout.strip()}"


def test_the_timekeeper_gives_each_phase_the_work_after_it_and_the_clock_so_far():
    from study.plan import estimate
    from study.timekeeper import Timekeeper

    cfg = StudyConfig(preset="smoke", trials=6, seeds=3, max_concurrent=2)
    est = estimate(cfg)
    keeper = Timekeeper(cfg, before_phases_s=5.0)
    search, select, confirm = (keeper.live_view(p, 4) for p in ("search", "select", "confirm-2"))
    conc = est["concurrency"]
    assert search.later_s == pytest.approx((est["select_core_s"] + est["confirm_core_s"]) / conc), \
        "the search's time left includes selection and confirmation"
    assert select.later_s == pytest.approx(est["confirm_core_s"] / conc) and confirm.later_s == 0.0
    assert confirm.clock.trial_extra_s == est["trial_extra_s"]["confirm"], "a phase counts its own overhead"
    keeper.advance([{"epochs": 3, "arm": "gain"}, {"epochs": 2, "arm": "baseline"}], "search")
    expected = 3 * est["epoch_s"]["gain"] + 2 * est["epoch_s"]["baseline"] + 2 * est["trial_extra_s"]["search"]
    assert keeper.live_view("select", 4).clock.done_before_s == pytest.approx(expected), \
        "a finished phase's modelled work carries over to the next phase's pace"
    with keeper.phase("search"):
        pass
    assert set(keeper.walls) == {"search"} and keeper.timing["before_phases_s"] == 5.0
