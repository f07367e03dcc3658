"""The launcher end to end, as a user runs it (a subprocess with its own local Ray): the smoke study,
its tables, and interrupt (Ctrl-C, then SIGKILL) followed by resume."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import psutil
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--preset", "smoke", "--no-dashboard", "--selection-k", "2", "--selection-seeds", "1"]


def launch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "study.launch", *args]


def env_for(tmp: Path) -> dict[str, str]:
    return {**os.environ, "GAINSTUDY_CACHE": str(tmp / "cache"), "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1"}


def assert_gone(pids: list[int], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.5)
    assert not alive, f"Ray processes {alive} outlived the launcher that started them"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    t0 = time.monotonic()
    proc = subprocess.run(launch_cmd(*SMOKE, "--trials", "4", "--seeds", "2", "--name", "smoke",
                                     "--storage", str(tmp / "runs")),
                          cwd=ROOT, env=env_for(tmp), capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, f"smoke study failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"\
        f"{proc.stderr[-3000:]}"
    return tmp / "runs" / "smoke", proc, seconds


def test_smoke_study_runs_end_to_end(smoke):
    run_dir, proc, seconds = smoke
    for name in ("study.json", "trials.parquet", "epochs.parquet", "predictions.parquet", "attention.parquet",
                 "examples.npz", "optuna.db"):
        assert (run_dir / name).exists(), f"{name} missing from {run_dir}"
    assert "confirmation (means over seeds" in proc.stdout and "selection (validation only)" in proc.stdout, \
        proc.stdout[-2000:]


def test_trials_table_has_the_planned_trials_and_columns(smoke):
    run_dir, _, _ = smoke
    t = pd.read_parquet(run_dir / "trials.parquet")
    search, select, confirm = t[t.phase == "search"], t[t.phase == "select"], t[t.phase == "confirm"]
    assert search.groupby("arm").size().to_dict() == {"baseline": 2, "gain": 2}, "2 search trials per arm"
    assert select.groupby("arm").size().to_dict() == {"baseline": 2, "gain": 2}, "top 2 x 1 selection seed per arm"
    assert set(select.candidate) == set(search.trial_id), "each selection run names the search trial it re-scores"
    assert set(select.seed) == {2000} and select.test_acc.isna().all(), "selection: fresh seeds, validation only"
    n_alphas = confirm[confirm.arm == "gain"].alpha.nunique()
    assert n_alphas in (1, 2) and len(confirm) == 2 * (1 + n_alphas) and set(confirm.seed) == {1000, 1001}, \
        "2 seeds x (baseline + GAIN at the tuned alpha and alpha 1) in confirmation"
    assert 1.0 in set(confirm.alpha), "the paper's alpha is confirmed by default"
    assert t.trial_id.is_unique
    assert set(t.status) <= {"completed", "stopped", "diverged", "error"}
    for c in ("hp_lr", "hp_weight_decay", "hp_batch_size", "hp_alpha", "hp_sigma", "hp_omega", "hp_warmup_epochs",
              "val_acc", "val_loss", "objective", "best_epoch", "epochs", "seconds", "node_id", "test_acc",
              "worst_group_acc", "bias_aligned_acc", "bias_conflicting_acc", "pointing_game",
              "energy_pointing_game", "iou", "arm_label", "collapsed", "pred_positive_share",
              "energy_pointing_game_uniform", "energy_pointing_game_gaussian", "iou_uniform", "iou_gaussian"):
        assert c in t, f"trials.parquet lacks {c}"
    assert confirm.collapsed.notna().all() and search.collapsed.isna().all(), "collapse is judged on test runs"
    assert set(confirm.arm_label) == {"baseline"} | {f"GAIN α={a:.3g}" for a in confirm.alpha.dropna()}
    assert search.test_acc.isna().all(), "the test split must not be evaluated during the search"
    assert confirm.test_acc.notna().all(), "every confirmation run evaluates the test split"
    assert t[t.arm == "baseline"].alpha.isna().all() and t[t.arm == "baseline"].hp_alpha.isna().all()
    assert t[t.arm == "gain"].alpha.notna().all()
    assert set(search.seed).isdisjoint(set(confirm.seed)), "confirmation seeds must be fresh"
    # Both arms of a pair ran the winning config of their arm on the same seed.
    for arm in ("baseline", "gain"):
        assert confirm[confirm.arm == arm].hp_lr.nunique() == 1


def test_epochs_predictions_attention_tables(smoke):
    run_dir, _, _ = smoke
    t = pd.read_parquet(run_dir / "trials.parquet")
    e = pd.read_parquet(run_dir / "epochs.parquet")
    assert set(e.trial_id) == set(t.trial_id[t.epochs > 0])
    planned = t.set_index("trial_id").epochs
    planned = planned[planned > 0].sort_index()
    assert e.groupby("trial_id").size().sort_index().astype(int).tolist() == planned.astype(int).tolist()
    assert e.epoch.min() == 1 and e.val_acc.between(0, 1).all()
    p = pd.read_parquet(run_dir / "predictions.parquet")
    confirm = t[t.phase == "confirm"]
    assert set(p.trial_id) == set(confirm.trial_id)
    n_test = p.groupby("trial_id").size()
    assert n_test.nunique() == 1 and not p.duplicated(["trial_id", "image_id"]).any()
    acc = p.groupby("trial_id").correct.mean()
    assert (acc - confirm.set_index("trial_id").test_acc).abs().max() < 1e-9, "test_acc must match the predictions"
    a = pd.read_parquet(run_dir / "attention.parquet")
    assert (a.cam.map(len) == a.cam_h * a.cam_w).all()
    import numpy as np

    ex = np.load(run_dir / "examples.npz")
    assert set(ex["image_ids"]) == set(a.image_id) and ex["images"].shape[-1] == 3


def test_study_json_records_the_plan(smoke):
    run_dir, _, _ = smoke
    s = json.loads((run_dir / "study.json").read_text())
    assert s["config"]["seeds"] == [1000, 1001] and s["config"]["trials"] == 4
    assert s["config"]["alphas"] == ["tuned", 1.0] and s["config"]["select_seeds"] == [2000]
    assert s["search_split"] == {"baseline": 2, "gain": 2}
    assert s["primary_rule"] and s["dataset_fingerprint"] and s["optuna_storage"].startswith("sqlite:///")
    assert {"python", "torch", "ray", "optuna"} <= set(s["versions"])
    assert s["selected"]["gain"]["trial_id"].startswith("search-gain-")
    assert len(s["selected"]["gain"]["select_trial_ids"]) == 1 and s["alpha_roles"]["paper"] == 1.0


def test_optuna_database_holds_both_studies_finished(smoke):
    run_dir, _, _ = smoke
    url = f"sqlite:///{run_dir}/optuna.db"
    t = pd.read_parquet(run_dir / "trials.parquet")
    for arm in ("baseline", "gain"):
        study = optuna.load_study(study_name=f"smoke-{arm}", storage=url)
        assert len(study.trials) == 2 and all(tr.state.is_finished() for tr in study.trials)
        searched = set(t.trial_id[(t.phase == "search") & (t.arm == arm)])
        assert {tr.user_attrs["trial_id"] for tr in study.trials} == searched


def test_ray_processes_are_shut_down_after_the_study(smoke):
    run_dir, _, _ = smoke
    rec = json.loads((run_dir / "ray_processes.json").read_text())
    assert_gone(rec["ray"] + [rec["reaper"]], within_s=5)


def test_on_a_pipe_the_live_view_prints_a_line_per_trial_event(smoke):
    _, proc, _ = smoke
    lines = [ln for ln in proc.stdout.splitlines() if re.match(r"search\s+\d+/4 \|", ln)]
    done = [int(re.match(r"search\s+(\d+)/", ln).group(1)) for ln in lines]
    assert "\r" not in proc.stdout and len(lines) >= 4 and done == sorted(done) and done[-1] == 4, \
        f"stdout is a pipe: a new line whenever a search trial starts or finishes, up to 4/4:\n" + "\n".join(lines)


LIVE_LINE = re.compile(r"(search|confirm)\s+(\d+)/(\d+) (\||\d\d:\d\d, study ~)")  # with its bar or without


def _in_pty(cmd: list[str], env: dict[str, str], cols: int, tick=lambda p: None) -> tuple[int, str, list[str]]:
    """`cmd` with stdin, stdout and stderr on a pseudo-terminal `cols` wide: its exit status, what it
    wrote and the screen lines that leaves. `tick(proc)` is called between reads."""
    from test_live_view import open_pty, read_pty, render

    master, slave = open_pty(cols=cols)
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        raw = read_pty(master, done=lambda: p.poll() is not None, tick=lambda: tick(p), timeout_s=400)
        p.wait(timeout=60)
    finally:
        p.kill()
        os.close(master)
    return p.returncode, raw.decode(errors="replace"), render(raw.decode(errors="replace"))


def test_on_a_terminal_each_phase_is_one_line_redrawn_in_place(tmp_path):
    # The smoke study as a user at a narrow terminal (72 columns) runs it: Ctrl-C during the search, then
    # the resume command to the end.
    storage = tmp_path / "runs"
    args = ["--preset", "smoke", "--no-dashboard", "--trials", "4", "--seeds", "1", "--alphas", "1",
            "--selection-seeds", "0", "--name", "tty", "--storage", str(storage)]
    sent = []

    def ctrl_c_after_a_result(p: subprocess.Popen) -> None:
        if not sent and _results(storage / "tty" / "search") >= 1:
            os.killpg(os.getpgid(p.pid), signal.SIGINT)
            sent.append(True)

    code, first, screen = _in_pty(launch_cmd(*args), env_for(tmp_path), 72, ctrl_c_after_a_result)
    live = [i for i, ln in enumerate(screen) if LIVE_LINE.match(ln)]
    assert code == 130 and len(live) == 1 and screen.index("resume with:") > live[0], \
        "Ctrl-C: the live line closed, then the resume command:\n" + "\n".join(screen)
    assert not LIVE_LINE.search(first.split("interrupted:")[-1]), "nothing redraws the line after the launcher's last words"

    code, raw, screen = _in_pty(shlex.split(screen[screen.index("resume with:") + 1]), env_for(tmp_path), 72)
    assert code == 0, f"exit {code}:\n" + "\n".join(screen[-40:])
    live = [(ln, m) for ln in screen if (m := LIVE_LINE.match(ln))]
    assert [(m[1], m[2], m[3]) for _, m in live] == [("search", "4", "4"), ("confirm", "2", "2")], \
        "one line per phase left on screen, each at its planned total:\n" + "\n".join(screen)
    draws = [m[1] for seg in re.split(r"\r(?!\n)", raw) if (m := LIVE_LINE.search(seg))]
    assert draws.count("confirm") >= 2 * 2, f"the line is redrawn in place at each trial's start and end: {draws}"
    widest = max((seg.split("\r\n")[0] for seg in re.split(r"\r(?!\n)", first + raw) if LIVE_LINE.search(seg)), key=len)
    assert len(widest) < 72, f"the live line must fit the 72-column terminal: {widest!r}"
    first_screen = next(i for i, ln in enumerate(screen) if ln.startswith("confirmation (means over seeds"))
    assert first_screen > screen.index(live[-1][0]), "the tables print after the last live line closed"
    assert "Traceback" not in first + raw and "\x1b[?25l" not in first + raw, "no error; the cursor is never hidden"

# ---- interrupt and resume ----------------------------------------------------------------------
def _wait_for(pred, proc: subprocess.Popen, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"launcher exited ({proc.returncode}) before {what}:\n{out[-3000:]}\n{err[-3000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def _results(exp: Path) -> int:
    return sum(1 for f in exp.glob("*/result.json") if f.stat().st_size > 0)


def _ctrl_c(p: subprocess.Popen) -> tuple[str, str]:
    """What a terminal does: SIGINT to the whole foreground process group (launcher, Ray, workers)."""
    os.killpg(os.getpgid(p.pid), signal.SIGINT)
    return p.communicate(timeout=180)


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_interrupt_then_kill_then_resume_runs_exactly_the_planned_trials(tmp_path):
    storage = tmp_path / "runs"
    run_dir = storage / "resume"
    args = [*SMOKE, "--trials", "6", "--seeds", "2", "--name", "resume", "--storage", str(storage)]
    env = env_for(tmp_path)

    # 1. Ctrl-C during the baseline search: exit 130, the exact command to resume, no tables.
    p = _start(launch_cmd(*args), env)
    _wait_for(lambda: _results(run_dir / "search") >= 1, p, 180, "a first search trial")
    out, err = _ctrl_c(p)
    assert p.returncode == 130, f"Ctrl-C must exit 130, got {p.returncode}:\n{out[-3000:]}\n{err[-3000:]}"
    line = out.split("resume with:")[1].strip().splitlines()[0]
    resume = shlex.split(line)
    assert resume[1:] == ["-m", "study.launch", *args], f"the printed resume command is not exact: {line}"
    assert not (run_dir / "trials.parquet").exists() and not (run_dir / "select").exists(), \
        "an interrupted search must not lead to a selection, tables or a report"

    # 2. Resume, then Ctrl-C during the selection phase.
    p = _start(resume, env)
    _wait_for(lambda: _results(run_dir / "select") >= 1, p, 300, "a first selection run")
    out, err = _ctrl_c(p)
    assert p.returncode == 130 and "resume with:" in out, f"got {p.returncode}:\n{out[-3000:]}\n{err[-3000:]}"
    assert not (run_dir / "confirm").exists() and not (run_dir / "trials.parquet").exists(), \
        "an interrupted selection must not lead to a confirmation"

    # 3. Resume, then SIGKILL the launcher during the confirmation.
    p = _start(resume, env)
    _wait_for(lambda: _results(run_dir / "confirm") >= 1, p, 300, "a first confirmation run")
    started = json.loads((run_dir / "ray_processes.json").read_text())
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    assert_gone(started["ray"], within_s=30)

    # 4. Resume again: the study completes with exactly its planned trials, and the confirmation ran
    #    exactly the configurations study.json records as selected.
    done = subprocess.run(resume, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, f"resume failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    t = pd.read_parquet(run_dir / "trials.parquet")
    search, select, confirm = (t[t.phase == ph] for ph in ("search", "select", "confirm"))
    assert search.groupby("arm").size().to_dict() == {"baseline": 3, "gain": 3}, search[["trial_id", "arm", "seed"]]
    assert not search.duplicated(["arm", "seed"]).any(), "a search trial ran twice"
    assert select.groupby("arm").size().to_dict() == {"baseline": 2, "gain": 2}, select[["trial_id", "arm", "seed"]]
    assert set(search.status) <= {"completed", "stopped"} and set(select.status) == {"completed"}, \
        "trials stopped by Ctrl-C must finish on resume, not stay stopped"
    record = json.loads((run_dir / "study.json").read_text())
    n_alphas = len(record["confirm_alphas"])
    assert len(confirm) == 2 * (1 + n_alphas) and t.trial_id.is_unique
    for arm in ("baseline", "gain"):
        hp = record["selected"][arm]["hyperparameters"]
        rows = confirm[confirm.arm == arm]
        for name, value in hp.items():
            if name == "alpha":
                continue
            assert (rows[f"hp_{name}"] == value).all(), f"{arm} confirmation ran {name}={rows[f'hp_{name}'].tolist()}, " \
                f"study.json records {value}"
    url = f"sqlite:///{run_dir}/optuna.db"
    for arm in ("baseline", "gain"):
        trials = optuna.load_study(study_name=f"resume-{arm}", storage=url).trials
        states = [tr.state.name for tr in trials]
        assert len(trials) == 3 and "RUNNING" not in states, f"{arm}: Optuna database holds {states}"
        assert sorted(tr.user_attrs["number"] for tr in trials) == [0, 1, 2]
    sessions = json.loads((run_dir / "study.json").read_text())["sessions"]
    assert len(sessions) == 4

    # 5. More seeds extend the finished study: only the new seed's runs are made, nothing else re-runs.
    before = t.set_index("trial_id")
    more = [a if a != "2" or args[i - 1] != "--seeds" else "3" for i, a in enumerate(args)]
    ext = subprocess.run(launch_cmd(*more), cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert ext.returncode == 0, f"extension failed:\n{ext.stdout[-3000:]}\n{ext.stderr[-3000:]}"
    t2 = pd.read_parquet(run_dir / "trials.parquet")
    assert set(before.index) <= set(t2.trial_id), "an extension keeps every run already made"
    new = t2[~t2.trial_id.isin(before.index)]
    assert set(new.phase) == {"confirm"} and set(new.seed) == {1002} and len(new) == 1 + n_alphas, \
        new[["trial_id", "phase", "seed", "alpha"]]
    assert json.loads((run_dir / "study.json").read_text())["extensions"][0]["seeds"]["now"] == [1000, 1001, 1002]

    # 6. Ctrl-C as the finished study's last session closes Ray (its last lines printed): the shutdown runs
    #    to the end and the launcher exits 0, without a traceback (it used to stop Ray half shut down).
    p = _start(launch_cmd(*more), env)
    for line in p.stdout:
        if line.startswith("where this session's time went"):
            time.sleep(0.3)  # into the report's timing table and Ray's shutdown
            break
    out, err = _ctrl_c(p)
    assert p.returncode == 0 and "total time" in out and "Traceback" not in err, \
        f"Ctrl-C during Ray's shutdown: exit {p.returncode}:\n{out[-2000:]}\n{err[-3000:]}"
    assert_gone(json.loads((run_dir / "ray_processes.json").read_text())["ray"], within_s=30)


TIMING_COLUMNS = ("seconds", "time_train_s", "time_val_s", "time_test_s", "time_checkpoint_s", "node_id")


@pytest.mark.timeout(2400)
def test_the_search_picks_the_same_configurations_whatever_order_trials_finish_in(tmp_path):
    """Two runs of one study, each trial's epochs slowed by random delays drawn from a different seed
    (a test-only hook, study.trainable.DELAY_ENV), so trials finish in different orders. 11 search
    trials per arm go past TPE's 10 random start-up trials; two run at once."""
    from study.trainable import DELAY_ENV

    args = ["--preset", "smoke", "--no-dashboard", "-q", "--trials", "22", "--max-concurrent", "2", "--seeds", "1",
            "--alphas", "1", "--selection-k", "1", "--selection-seeds", "1"]
    tables, selected, orders = [], [], []
    for delay_seed in ("1", "2"):
        storage = tmp_path / f"runs{delay_seed}"
        proc = subprocess.run(launch_cmd(*args, "--storage", str(storage)), cwd=ROOT,
                              env={**env_for(tmp_path), DELAY_ENV: delay_seed}, capture_output=True, text=True,
                              timeout=1100)
        assert proc.returncode == 0, f"study failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        run_dir = storage / "gainstudy"
        t = pd.read_parquet(run_dir / "trials.parquet").drop(columns=list(TIMING_COLUMNS))
        tables.append(t.sort_values("trial_id").reset_index(drop=True))
        selected.append({arm: s["hyperparameters"] for arm, s in
                         json.loads((run_dir / "study.json").read_text())["selected"].items()})
        done = {d.name: (d / "result.json").stat().st_mtime for d in (run_dir / "search").iterdir() if d.is_dir()}
        orders.append(sorted(done, key=done.get))
    assert orders[0] != orders[1], "check of the test: the delays should change the order in which trials finish"
    assert selected[0] == selected[1], f"the selected configurations differ between the two runs: {selected}"
    assert len(tables[0]) == 22 + 2 + 2, f"planned trials: {len(tables[0])}"
    pd.testing.assert_frame_equal(tables[0], tables[1], obj="trials.parquet without its timing columns")


def test_a_staged_confirmation_adds_seeds_until_decided_and_resumes_without_rerunning(tmp_path):
    # --max-seeds: stages on the extension path (confirm/, confirm-2/, ... each with its configs.json), the
    # verdict after each recorded in study.json, the first screen saying how many stages ran and why the
    # study stopped; the same command again resumes the finished study and runs nothing.
    storage = tmp_path / "runs"
    run_dir = storage / "staged"
    args = [*SMOKE, "--trials", "4", "--seeds", "2", "--max-seeds", "4", "--margin", "1", "--name", "staged",
            "--storage", str(storage)]
    env = env_for(tmp_path)
    first = subprocess.run(launch_cmd(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, f"staged study failed:\n{first.stdout[-3000:]}\n{first.stderr[-3000:]}"
    record = json.loads((run_dir / "study.json").read_text())
    assert record["config"]["design"]["looks"] == [2, 4] and record["config"]["margin_pp"] == 1.0
    stages = record["stages"]
    ran = len(stages["stages"])
    assert stages["looks"] == [2, 4] and 1 <= ran <= 2 and stages["stopped"], stages
    last = stages["stages"][-1]
    assert (last["label"] != "inconclusive") == stages["stopped"].startswith("decided"), stages
    assert ran == 2 or last["label"] != "inconclusive", "an undecided first stage must be followed by the second"
    folders = sorted(p.name for p in run_dir.iterdir() if p.is_dir() and p.name.startswith("confirm"))
    assert folders == ["confirm", "confirm-2"][:ran], folders
    assert all((run_dir / f"{f}.configs.json").is_file() for f in folders), "each stage keeps what it was asked to run"
    t = pd.read_parquet(run_dir / "trials.parquet")
    confirm = t[t.phase == "confirm"]
    assert sorted(set(confirm.seed)) == list(range(1000, 1000 + stages["looks"][ran - 1])), sorted(set(confirm.seed))
    assert f"stage {ran} of up to 2" in first.stdout
    assert f"Staged confirmation: {ran} of up to 2 stages ran" in first.stdout, first.stdout[-3000:]
    again = subprocess.run(launch_cmd(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, f"resume failed:\n{again.stdout[-3000:]}\n{again.stderr[-3000:]}"
    t2 = pd.read_parquet(run_dir / "trials.parquet")
    assert sorted(t2.trial_id) == sorted(t.trial_id), "resuming a finished staged study runs nothing new"
    assert json.loads((run_dir / "study.json").read_text())["stages"]["stages"] == stages["stages"], \
        "the same data give the same stage verdicts"
