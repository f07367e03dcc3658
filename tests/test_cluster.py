"""Clusters: cluster.yaml against the schema shipped in the ray package, and a small study on a
two-node Ray cluster started on loopback inside the test (both nodes on this machine)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def test_cluster_yaml_is_valid_for_the_ray_cluster_launcher():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config = prepare_config(raw)
    validate_config(config)  # raises on a schema violation
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu = [t for t in types.values() if t.get("resources", {}).get("GPU")]
    cpu = [n for n, t in types.items() if n != config["head_node_type"] and not t.get("resources", {}).get("GPU")]
    assert gpu and cpu, "need autoscaling CPU and GPU worker types"
    assert all(t.get("min_workers", 0) == 0 for n, t in types.items() if n != config["head_node_type"])
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "-e ." in setup, "setup must install the project"
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head, "the dashboard must not be public"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs: list[subprocess.Popen]) -> None:
    # `ray start --block` shuts its node down on SIGTERM; SIGKILL the process group if it lingers.
    # Only the groups this test started are signalled (never `ray stop`, which would stop every
    # Ray on the machine).
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=15)


@pytest.mark.slow
def test_a_study_on_a_two_node_cluster_runs_trials_on_both_nodes(tmp_path):
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
           "GAINSTUDY_CACHE": str(tmp_path / "cache")}
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--block", "--disable-usage-stats"]
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen(
            [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp_dir}", *common],
            env=env, start_new_session=True, stdout=open(tmp_path / "head.log", "w"), stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert procs[0].poll() is None, (tmp_path / "head.log").read_text()
                time.sleep(0.5)
        procs.append(subprocess.Popen(
            [RAY, "start", f"--address=127.0.0.1:{port}", *common],
            env=env, start_new_session=True, stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT))
        _wait_for_nodes(port, 2, env)

        storage = tmp_path / "runs"
        run = subprocess.run(
            [sys.executable, "-m", "study.launch", "--preset", "smoke", "--trials", "4", "--seeds", "2",
             "--name", "twonode", "--storage", str(storage), "--address", f"127.0.0.1:{port}",
             "--max-concurrent", "2", "--selection-k", "1", "--selection-seeds", "1", "--alphas", "tuned"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
        assert run.returncode == 0, f"study on the cluster failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        t = pd.read_parquet(storage / "twonode" / "trials.parquet")
        assert len(t) == 4 + 2 + 4 and t.node_id.notna().all(), "4 search, 2 selection, 4 confirmation runs"
        assert t.node_id.nunique() == 2, f"trials ran on {t.node_id.nunique()} node(s): {t.node_id.value_counts()}"
    finally:
        _stop(procs)
        left = [p.pid for p in psutil.process_iter(["cmdline"]) if temp_dir in " ".join(p.info["cmdline"] or [])]
        for pid in left:  # only processes of this test's cluster (its temp dir is in their command line)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"processes of the test cluster outlived `ray start --block`: {left}"


def _wait_for_nodes(port: int, n: int, env: dict[str, str]) -> None:
    code = ("import ray, time, sys\n"
            f"ray.init(address='127.0.0.1:{port}', logging_level='ERROR')\n"
            "for _ in range(120):\n"
            f"    if sum(x['Alive'] for x in ray.nodes()) >= {n}: sys.exit(0)\n"
            "    time.sleep(0.5)\n"
            "sys.exit(1)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"the cluster never had {n} nodes:\n{r.stderr[-2000:]}"
