"""Bad input never costs compute: every case below exits 2 with one line that names the flag or key,
before Ray starts and before anything on disk changes (a study already in the run folder stays
byte-identical). Both entry points run in-process (`main([...])`); no case starts Ray."""
from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import pytest
import torch

from study import launch
from study.plan import StudyConfig, UsageError
from study.records import open_study_record
from study.session import check_address
from trainables import run
from trainables.config import ConfigError, parse_data, parse_overrides, parse_value


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GAINSTUDY_CACHE", str(tmp_path / "cache"))


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None for folders)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*")) if "cache" not in p.parts}


def one_line_exit_2(main, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2, f"{argv}: exit {e.value.code}, expected 2\n{err}"
    assert len(err.splitlines()) == 1 and ": error: " in err, f"{argv}: expected one error line, got:\n{err}"
    return err


@pytest.fixture
def existing_study(tmp_path):
    """A study already recorded in runs/s: a launch that resumed it would append a session to study.json."""
    storage = tmp_path / "runs"
    cfg = StudyConfig(name="s", storage=str(storage), preset="smoke", trials=4)
    open_study_record(cfg, storage / "s", ["--name", "s", "--preset", "smoke", "--trials", "4"], "fp")
    (storage / "s" / "search").mkdir()
    (storage / "s" / "search" / "experiment_state.json").write_text("{}")
    return storage


@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def http_server():
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # the server's log is not the launcher's message
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _file(tmp_path: Path) -> str:
    (tmp_path / "afile").write_text("not a folder")
    return str(tmp_path / "afile")


def _yaml(text: str, encoding: str = "utf-8"):
    return _raw_yaml(text.encode(encoding))


def _raw_yaml(data: bytes):
    def make(tmp_path: Path) -> list[str]:
        (tmp_path / "study.yaml").write_bytes(data)
        return ["--config", str(tmp_path / "study.yaml")]
    return make


# (argv, or a function of tmp_path that returns it; the flag or key the message must name)
LAUNCH_CASES = {
    "negative --seed": (["--seed", "-1"], "--seed"),
    "--seed beyond numpy's range": (["--seed", str(2 ** 31)], "--seed"),
    "--optuna-storage not a URL": (["--optuna-storage", "runs/optuna.db"], "--optuna-storage"),
    "--optuna-storage unknown dialect": (["--optuna-storage", "foo://host/db"], "--optuna-storage"),
    "--optuna-storage in memory": (["--optuna-storage", "sqlite://"], "--optuna-storage"),
    "--optuna-storage folder missing": (lambda t: ["--optuna-storage", f"sqlite:///{t}/no/such/o.db"],
                                        "--optuna-storage"),
    "--storage is a file": (lambda t: ["--storage", _file(t)], "--storage"),
    "--storage under a file": (lambda t: ["--storage", _file(t) + "/runs"], "--storage"),
    "--storage cannot be created": (["--storage", "/proc/gainstudy-runs"], "--storage"),
    "--set wrong type": (["--set", "train.num_threads=x"], "train.num_threads"),
    "--set bool not a bool": (["--set", "model.batch_norm=maybe"], "model.batch_norm"),
    "--set not a Literal": (["--set", "train.device=gpu"], "train.device"),
    "--set without =": (["--set", "train.lr"], "--set"),
    "--data knob before the folder": (["--data", "bias=0.9,/photos"], "--data"),
    "--data unknown knob": (["--data", "colour=3"], "data.colour"),
    "YAML set: a number": (_yaml("set: 5\n"), "--set"),
    "YAML in Latin-1": (_yaml("name: caf\xe9\n", "latin-1"), "--config"),
    "YAML in UTF-16 without a BOM": (_yaml("trials: 4\n", "utf-16-le"), "--config"),
    "YAML in UTF-16 with a bad unit": (_raw_yaml("\ufefftrials: 4\n".encode("utf-16-le") + b"\x00\xdc"), "--config"),
    "YAML set: a bare string": (_yaml("set: train.lr=0.1\n"), "--set"),
    "YAML set: list of numbers": (_yaml("set: [1, 2]\n"), "--set"),
    "YAML set: float for an int": (_yaml("set: {train.max_epochs: 2.5}\n"), "train.max_epochs"),
    "YAML dashboard: maybe": (_yaml("dashboard: maybe\n"), "--dashboard"),
    "YAML seeds: 2.5": (_yaml("seeds: 2.5\n"), "--seeds"),
    "YAML select: a list": (_yaml("select: [overall]\n"), "--select"),
    "--margin zero": (["--margin", "0"], "--margin"),
    "--margin negative": (["--margin", "-1"], "--margin"),
    "--margin a fraction": (["--margin", "0.01"], "--margin"),
    "--margin in percent": (["--margin", "1%"], "--margin"),
    "--margin not a number": (["--margin", "one"], "--margin"),
    "YAML margin: a fraction": (_yaml("margin: 0.02\n"), "--margin"),
    "--max-seeds below --seeds": (["--seeds", "10", "--max-seeds", "5"], "--max-seeds"),
    "--seeds auto without --max-seeds": (["--seeds", "auto"], "--seeds"),
    "--seeds auto, budget below its first stage": (["--seeds", "auto", "--max-seeds", "8"], "--max-seeds"),
    "--seeds neither a number nor auto": (["--seeds", "many"], "--seeds"),
}


@pytest.mark.parametrize("case", list(LAUNCH_CASES))
def test_launcher_refuses_bad_input_up_front(case, tmp_path, existing_study, capsys):
    argv, flag = LAUNCH_CASES[case]
    argv = argv(tmp_path) if callable(argv) else argv
    before = snapshot(tmp_path)
    err = one_line_exit_2(launch.main, ["--name", "s", "--preset", "smoke", "--trials", "4",
                                        "--storage", str(existing_study), *argv], capsys)
    assert flag in err, f"{case}: the message should name {flag}:\n{err}"
    assert snapshot(tmp_path) == before, f"{case}: files under the storage changed"


@pytest.mark.parametrize("argv, says", [
    (["--margin", "0.01"], "percentage points"),
    (["--margin", "0.05"], "pass 5"),
    (["--margin", "1%"], "percentage points"),
    (["--margin", "0"], "percentage points"),
    (["--seeds", "auto"], "--max-seeds"),
    (["--seeds", "auto", "--max-seeds", "8"], "at least 10"),
])
def test_margin_and_seed_budget_errors_say_the_fix(argv, says, tmp_path, existing_study, capsys):
    err = one_line_exit_2(launch.main, ["--name", "s", "--preset", "smoke", "--trials", "4",
                                        "--storage", str(existing_study), *argv], capsys)
    assert says in err, f"{argv}: the message should say {says!r}:\n{err}"


def test_busy_dashboard_port_names_both_ways_out(tmp_path, existing_study, busy_port, capsys):
    before = snapshot(tmp_path)
    err = one_line_exit_2(launch.main, ["--name", "s", "--preset", "smoke", "--trials", "4", "--storage",
                                        str(existing_study), "--dashboard-port", str(busy_port)], capsys)
    assert "--dashboard-port" in err and "--no-dashboard" in err, err
    assert snapshot(tmp_path) == before, "a busy dashboard port must fail before study.json is touched"


def test_address_that_is_not_ray_fails_fast(tmp_path, existing_study, http_server, busy_port, capsys):
    before = snapshot(tmp_path)
    err = one_line_exit_2(launch.main, ["--name", "s", "--preset", "smoke", "--trials", "4", "--storage",
                                        str(existing_study), "--address", http_server], capsys)
    assert "--address" in err and "not as a Ray" in err, err
    assert snapshot(tmp_path) == before
    # A port that accepts and stays silent: a timeout, not an endless retry.
    with pytest.raises(UsageError, match="did not answer") as e:
        check_address(f"127.0.0.1:{busy_port}", timeout_s=0.5)
    assert e.value.flag == "--address"


def test_address_probe_accepts_a_grpc_server():
    # Ray's GCS is a gRPC server; any gRPC server answers the probe the same way.
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        check_address(f"127.0.0.1:{port}", timeout_s=5)
    finally:
        server.stop(0)


def test_trial_larger_than_the_cluster_is_refused_with_max_concurrent(tmp_path, monkeypatch):
    import ray

    from study import phases

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(phases, "make_trainable", lambda *a: pytest.fail("the fit check must come first"))
    cfg = StudyConfig(name="s", storage=str(tmp_path), preset="smoke", trials=4, cpus_per_trial=8,
                      max_concurrent=2)
    with pytest.raises(UsageError, match="cluster has 2 CPU") as e:
        launch._run(cfg, tmp_path, None, print)
    assert "--cpus-per-trial" in e.value.flag


# ---- trainables.run ---------------------------------------------------------------------------
RUN_CASES = {
    "negative --seed": (["--seed", "-1"], "seed"),
    "--set wrong type": (["--set", "train.num_threads=x"], "train.num_threads"),
    "--set zero threads": (["--set", "train.num_threads=0"], "num_threads"),
    "--set bool not a bool": (["--set", "model.batch_norm=maybe"], "model.batch_norm"),
    "--set not a Literal": (["--set", "train.device=gpu"], "train.device"),
    "--set without =": (["--set", "train.lr"], "--set"),
    "--set unknown key": (["--set", "train.nope=1"], "train.nope"),
    "--data missing folder": (["--data", "/no/such/photos,image_size=96"], "--data"),
    "--weights missing file": (["--weights", "/no/such/weights.pt"], "--weights"),
    "--weights imagenet at width 16": (["--weights", "imagenet"], "--weights"),
    "--weights a photo": (lambda t: ["--weights", _photo(t)], "not a PyTorch state dict"),
    "--weights an empty file": (lambda t: ["--weights", _empty(t)], "not a PyTorch state dict"),
    "--weights a saved tensor": (lambda t: ["--weights", _tensor(t)], "not a state dict"),
}
if not torch.cuda.is_available():
    RUN_CASES["--device cuda without CUDA"] = (["--device", "cuda"], "--device")
    RUN_CASES["bf16 without CUDA"] = (["--set", "train.bf16=true"], "train.bf16")


def _photo(tmp_path: Path) -> str:
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 20, 20)).save(tmp_path / "photo.jpg")
    return str(tmp_path / "photo.jpg")


def _empty(tmp_path: Path) -> str:
    (tmp_path / "empty.pt").write_bytes(b"")
    return str(tmp_path / "empty.pt")


def _tensor(tmp_path: Path) -> str:
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    return str(tmp_path / "tensor.pt")


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_single_run_refuses_bad_input_and_keeps_its_output(case, tmp_path, capsys):
    argv, key = RUN_CASES[case]
    argv = argv(tmp_path) if callable(argv) else argv
    out = tmp_path / "result.json"
    out.write_text('{"kept": true}')  # an earlier result: a failed run must not touch it
    before = snapshot(tmp_path)
    err = one_line_exit_2(run.main, ["--preset", "smoke", "--set", "train.max_epochs=1", *argv,
                                     "--out", str(out)], capsys)
    assert key in err, f"{case}: the message should name {key}:\n{err}"
    assert snapshot(tmp_path) == before, f"{case}: files changed"


@pytest.mark.parametrize("make_out, what", [
    (lambda t: t / "results", "is a folder"),
    (lambda t: t / "afile" / "result.json", "is a file, not a folder"),
    (lambda t: Path("/proc/gainstudy/result.json"), "cannot write"),
])
def test_single_run_checks_out_before_training(make_out, what, tmp_path, capsys):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "old.json").write_text("{}")
    (tmp_path / "afile").write_text("x")
    before = snapshot(tmp_path)
    err = one_line_exit_2(run.main, ["--preset", "smoke", "--out", str(make_out(tmp_path))], capsys)
    assert "--out" in err and what in err, err
    assert "data:" not in capsys.readouterr().out, "the data must not even load"
    assert snapshot(tmp_path) == before


# ---- the one parser: what it accepts ----------------------------------------------------------
def test_values_are_typed_by_the_field_they_set():
    assert parse_value("train.num_threads", "1") == 1 and isinstance(parse_value("train.num_threads", "1"), int)
    assert parse_value("train.num_threads", "none") is None
    assert parse_value("model.batch_norm", "False") is False and parse_value("model.batch_norm", True) is True
    assert parse_value("train.max_epochs", 8.0) == 8, "a YAML 8.0 is a whole number"
    assert parse_value("model.weights", "none") == "none", "a str field keeps 'none' as text"
    for key, raw in (("train.lr", "nan"), ("train.lr", True), ("arm", "both"), ("seed", "1.5")):
        with pytest.raises(ConfigError, match=key):
            parse_value(key, raw)
    assert parse_overrides({"train": {"lr": "1e-3"}, "gain.alpha": 2}) == {"train.lr": 1e-3, "gain.alpha": 2.0}


def test_data_spec_keeps_commas_in_folder_names(tmp_path):
    folder = tmp_path / "lizards, 2024"
    folder.mkdir()
    assert parse_data(str(folder)) == {"data.source": str(folder)}, "an existing path is a folder as a whole"
    assert parse_data(f"{folder},image_size=96, data.bias=0.9") == {
        "data.source": str(folder), "data.image_size": 96, "data.bias": 0.9}
    assert parse_data("camouflage=0.8,bias=0.9") == {"data.camouflage": 0.8, "data.bias": 0.9}
    assert parse_data({"source": "mimicry", "bias": 0.9}) == {"data.source": "mimicry", "data.bias": 0.9}
