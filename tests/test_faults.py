"""A kill at any moment loses nothing: a small study killed again and again (SIGKILL to the launcher,
SIGHUP and SIGINT to its process group, and once SIGKILL to one trial's worker, as the OOM killer
would), resumed after each kill with the same command, ends with the same tables as the same study
run without interruption; also when one unfinished trial's checkpoint is gone (it starts again)."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pandas as pd
import psutil
import pytest

from study.checkpoints import named_checkpoints

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("search", "select", "confirm")
# One trial at a time: the search is a function of --max-concurrent (ArmsSearch's window), the same in
# both runs, and each of the two studies running side by side keeps to one core.
ARGS = ["--preset", "smoke", "--no-dashboard", "-q", "--trials", "4", "--seeds", "1", "--alphas", "1",
        "--selection-k", "1", "--selection-seeds", "1", "--max-concurrent", "1", "--name", "faults"]
KILLS = {  # what each kind of kill does, and the exit status it leaves
    "SIGKILL launcher": -signal.SIGKILL,
    "SIGHUP group": -signal.SIGHUP,  # a closed terminal: the launcher and its Ray processes end at once
    "SIGINT group": 130,  # Ctrl-C: Tune saves the state, the launcher prints how to resume
}
# Columns that measure time or name things by Tune's random trial ids, not results.
NOT_RESULTS = {"trial_id", "candidate", "node_id", "seconds", "time_train_s", "time_val_s", "time_test_s",
               "time_checkpoint_s"}


def launch(storage: Path) -> list[str]:
    return [sys.executable, "-m", "study.launch", *ARGS, "--storage", str(storage)]


def env_for(tmp: Path) -> dict[str, str]:
    return {**os.environ, "GAINSTUDY_CACHE": str(tmp / "cache"), "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1"}


def progress(run_dir: Path, phase: str) -> int:
    """Checkpoints the phase's trials have written so far (Tune numbers them on, whatever is deleted)."""
    total = 0
    for trial in (run_dir / phase).glob("*-*-*"):
        indices = [int(c.name.removeprefix("checkpoint_")) for c in trial.glob("checkpoint_*")]
        total += max(indices) + 1 if indices else 0
    return total


def phase_now(run_dir: Path) -> str:
    return next((p for p in reversed(PHASES) if (run_dir / p).is_dir()), "start-up")


def session_processes(run_dir: Path) -> dict[int, float]:
    """This session's Ray processes, their descendants (trial workers) and the reaper: pid -> create time."""
    rec = json.loads((run_dir / "ray_processes.json").read_text())
    out = {}
    for pid in [*rec["ray"], rec["reaper"]]:
        try:
            proc = psutil.Process(pid)
            out[pid] = proc.create_time()
            out.update({c.pid: c.create_time() for c in proc.children(recursive=True)})
        except psutil.Error:
            continue
    return out


def alive(procs: dict[int, float]) -> list[str]:
    left = []
    for pid, created in procs.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{pid} {' '.join(proc.cmdline())[:80]}")
        except psutil.Error:
            continue
    return left


def assert_gone(procs: dict[int, float], what: str, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while alive(procs) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive(procs), f"{what}: Ray processes outlived the launcher: {alive(procs)}"


def kill_trial_worker(run_dir: Path) -> str:
    """SIGKILL to the process that runs the trial (`ray::ImplicitFunc`), as the OOM killer does."""
    for pid in session_processes(run_dir):
        try:
            proc = psutil.Process(pid)
            title = " ".join(proc.cmdline())
            if title.startswith("ray::ImplicitFunc"):
                proc.send_signal(signal.SIGKILL)
                return title.strip()
        except psutil.Error:
            continue
    pytest.fail("no ray::ImplicitFunc process among this session's Ray processes")


def tables(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """trials.parquet and epochs.parquet without timing, keyed by what a run is (phase, arm, seed,
    alpha) instead of Tune's random trial ids; a selection run's candidate by the search seed."""
    t = pd.read_parquet(run_dir / "trials.parquet")
    e = pd.read_parquet(run_dir / "epochs.parquet")
    seed_of = dict(zip(t.trial_id, t.seed))
    t = t.assign(candidate_seed=t.candidate.map(seed_of))
    keys = ["phase", "arm", "seed", "alpha"]
    t = t.drop(columns=[c for c in NOT_RESULTS if c in t]).sort_values(keys, ignore_index=True)
    e = e.drop(columns=[c for c in NOT_RESULTS if c in e]).sort_values(keys + ["epoch"], ignore_index=True)
    return t, e


def landed(pred, timeout_s: float) -> None:
    """Returns within 10 ms of pred() holding, or after timeout_s (the phase may have no epoch left)."""
    deadline = time.monotonic() + timeout_s
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.01)


def wait_for(pred, proc: subprocess.Popen, timeout_s: float, what: str) -> bool:
    """True once pred() holds; False if the launcher exited first (with 0: the study is done)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def test_a_study_killed_at_random_moments_equals_the_uninterrupted_one(tmp_path):
    env = env_for(tmp_path)
    t0 = time.monotonic()
    # The uninterrupted study runs alongside (its own folder and local Ray): the sessions below spend
    # most of their time starting up, which leaves it a core.
    with open(tmp_path / "ref.log", "w") as ref_log:
        ref = subprocess.Popen(launch(tmp_path / "ref"), cwd=ROOT, env=env, stdout=ref_log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        log, worker_killed, lost = kill_and_resume(tmp_path, env)
        ref_code = ref.wait(timeout=300)
    finally:
        if ref.poll() is None:
            os.killpg(ref.pid, signal.SIGKILL)
    assert ref_code == 0, f"the uninterrupted study failed:\n{(tmp_path / 'ref.log').read_text()[-3000:]}"
    run_dir = tmp_path / "runs" / "faults"
    done, last_session = run_to_end(launch(run_dir.parent), env, run_dir)
    print(f"\nkills (index, kind, phase, exit): {log}; worker: {worker_killed}; checkpoint deleted: {lost}; "
          f"total {time.monotonic() - t0:.0f} s")
    assert done.returncode == 0, f"the last resume failed ({done.returncode}) after {log}:\n" \
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert len(log) >= 8, f"only {len(log)} kills landed before the study finished: {log}"
    assert {where for _, _, where, _ in log} >= set(PHASES), f"kills must reach every phase: {log}"
    assert worker_killed, "one trial worker must have been killed during the selection"
    assert lost, "one unfinished trial's named checkpoint must have been deleted between two sessions"
    said = "".join(f.read_text() for f in (tmp_path / "logs").glob("*.out")) + done.stdout
    assert f"{lost}: its last checkpoint is missing; it starts again from epoch 1" in said, \
        f"the resume after the checkpoint of {lost} was deleted must say that the trial starts again"
    assert last_session, "check of the test: the last session's Ray processes were never seen"
    assert_gone(last_session, "the last session")

    for name, got, want in zip(("trials", "epochs"), tables(run_dir), tables(tmp_path / "ref" / "faults")):
        pd.testing.assert_frame_equal(got, want, obj=f"{name}.parquet after {len(log)} kills vs uninterrupted")
    url = f"sqlite:///{run_dir}/optuna.db"
    for arm in ("baseline", "gain"):
        states = [t.state.name for t in optuna.load_study(study_name=f"faults-{arm}", storage=url).trials]
        assert len(states) == 2 and not {"RUNNING", "FAIL"} & set(states), f"optuna.db, {arm}: {states}"
    for trial_id in pd.read_parquet(run_dir / "trials.parquet").trial_id:
        left = [c.name for c in run_dir.glob(f"*/{trial_id}/checkpoint_*")]
        assert len(left) == 1, f"{trial_id}: expected its last checkpoint only, found {left}"


def run_to_end(cmd: list[str], env: dict[str, str], run_dir: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """Runs the last session to its end; also returns every Ray process it had (pid -> create time)."""
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    seen: dict[int, float] = {}
    record = run_dir / "ray_processes.json"
    with ThreadPoolExecutor(1) as pool:  # read its pipes meanwhile, or it blocks once they fill up
        output = pool.submit(proc.communicate, timeout=300)
        while proc.poll() is None:
            if record.is_file() and record.stat().st_mtime > started:  # written by this session
                try:
                    for pid, created in session_processes(run_dir).items():
                        seen.setdefault(pid, created)  # the first process under that pid is the session's
                except (ValueError, OSError):  # the record being written
                    pass
            time.sleep(0.5)
        out, err = output.result()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), seen


def _hang_up_as_a_terminal_does() -> None:
    # A session started from a shell under nohup (or any parent that ignores SIGHUP) inherits SIG_IGN,
    # and a hang-up would then not end it: give it the default action a terminal's session has.
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def kill_and_resume(tmp_path: Path, env: dict[str, str]) -> tuple[list[tuple[int, str, str, int]], str | None, str]:
    """Starts the study, kills it at a random moment, and again after each resume: 8 kills aimed at
    the phases in turn. Once, between two sessions, the checkpoint that Tune's snapshot names for an
    unfinished trial is deleted (as num_to_keep=1 did at a hang-up). Returns (index, kind, phase, exit
    status) per kill, the killed worker and the trial whose checkpoint was deleted."""
    storage = tmp_path / "runs"
    run_dir = storage / "faults"
    rng = random.Random(20)
    targets = ["search"] * 3 + ["select"] * 2 + ["confirm"] * 3  # 8 kills, aimed at each phase in turn
    kinds = (list(KILLS) * 3)[:len(targets)]
    rng.shuffle(kinds)
    log, logs = [], tmp_path / "logs"
    logs.mkdir()
    worker_killed, lost = None, ""
    for i, (target, kind) in enumerate(zip(targets, kinds)):
        with open(logs / f"{i}.out", "w") as out, open(logs / f"{i}.err", "w") as err:
            proc = subprocess.Popen(launch(storage), cwd=ROOT, env=env, stdout=out, stderr=err, text=True,
                                    start_new_session=True, preexec_fn=_hang_up_as_a_terminal_does)
            # At a random moment once this session's trials are training in the target phase (or later).
            later = PHASES[PHASES.index(target) + 1:]
            base = progress(run_dir, target)
            if not wait_for(lambda: progress(run_dir, target) > base or any((run_dir / p).is_dir() for p in later),
                            proc, 240, f"kill {i}: training in the {target} phase"):
                break  # the study finished before this kill
            if worker_killed is None and phase_now(run_dir) == "select":
                # The OOM killer takes the trial's worker in the epoch after a checkpoint: Tune retries the
                # trial from that checkpoint within this session, which then goes on until the kill below.
                done = progress(run_dir, "select")
                worker_killed = kill_trial_worker(run_dir)
                assert wait_for(lambda: progress(run_dir, "select") > done or (run_dir / "confirm").is_dir(),
                                proc, 120, "progress after the worker's SIGKILL"), \
                    f"the launcher exited ({proc.returncode}) after one trial worker was killed:\n" \
                    + (logs / f"{i}.err").read_text()[-3000:]
            # Then the moment: a random time after the next checkpoint lands, when Tune registers it and
            # rewrites its snapshot (where num_to_keep=1 lost checkpoints), or later in the epoch.
            time.sleep(rng.uniform(0.0, 1.0))
            now = progress(run_dir, phase_now(run_dir))
            landed(lambda: progress(run_dir, phase_now(run_dir)) > now, timeout_s=5.0)
            time.sleep(rng.choice([rng.uniform(0.0, 0.2), rng.uniform(0.0, 1.0)]))
            where = phase_now(run_dir)
            procs = session_processes(run_dir)
            if proc.poll() is not None:
                break
            if kind == "SIGKILL launcher":
                proc.send_signal(signal.SIGKILL)
            else:
                os.killpg(os.getpgid(proc.pid), signal.SIGHUP if kind == "SIGHUP group" else signal.SIGINT)
            code = proc.wait(timeout=180)
        log.append((i, kind, where, code))
        if code == 0:
            break  # the signal came as the study finished
        text = (logs / f"{i}.out").read_text() + (logs / f"{i}.err").read_text()
        assert code == KILLS[kind], f"kill {i} ({kind} during {where}): exit {code}, expected {KILLS[kind]}:\n" \
                                    f"{text[-3000:]}"
        if kind == "SIGINT group":
            assert "resume with:" in text, f"kill {i}: Ctrl-C must print how to resume:\n{text[-2000:]}"
        assert_gone(procs, f"kill {i} ({kind} during {where})")
        if not lost and i >= 2 and where in PHASES:
            unfinished = [n for n in named_checkpoints(run_dir / where) or () if n.checkpoint and not n.finished]
            if unfinished:
                shutil.rmtree(run_dir / where / unfinished[0].trial_dir / unfinished[0].checkpoint)
                lost = unfinished[0].trial_dir
    return log, worker_killed, lost
