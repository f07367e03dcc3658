"""The launcher's command line: --dry-run, bad values (exit 2 naming the flag), missing data, the
config file, refusing a changed configuration on resume, and the commands the launcher prints. None
of these start Ray, except the (slow) check that a local study's Ray listens on loopback only."""
from __future__ import annotations

import json

import pytest

from study.launch import build_parser, main, resolve
from study.plan import StudyConfig
from study.records import ConfigChanged, open_study_record


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GAINSTUDY_CACHE", str(tmp_path / "cache"))


def _exit_code(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, capsys.readouterr()


def test_dry_run_prints_the_plan_and_starts_nothing(tmp_path, capsys):
    code = main(["--dry-run", "--trials", "7", "--seeds", "3", "--alphas", "0.5,2", "--storage", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    for needle in ("3 baseline + 3 GAIN trials", "--trials 7 is odd", "9 runs = 3 seeds x (baseline + GAIN at 0.5, 2",
                   "seeds 1000..1002", "gain.alpha", "train.lr", "estimated cost",
                   "2. selection: 6 baseline + 6 GAIN runs", "top 3 search configurations x 2 fresh seeds (2000..2001)"):
        assert needle in out, f"dry-run output lacks {needle!r}:\n{out}"
    assert not (tmp_path / "gainstudy").exists(), "--dry-run must not create the run folder"
    main(["--dry-run", "--storage", str(tmp_path)])
    out = capsys.readouterr().out
    assert "GAIN at the tuned alpha, 1;" in out, f"by default the paper's alpha is confirmed next to the tuned one:\n{out}"
    assert "gain.cam_grad" not in out, "cam_grad is inert with the GAP->FC head and must not take search budget"


def test_help_states_the_trial_split(capsys):
    code, out = _exit_code(["--help"], capsys)
    assert code == 0
    assert "N//2" in out.out and "odd" in out.out, "--help must say how --trials is split between the arms"


@pytest.mark.parametrize("argv, flag", [
    (["--trials", "x"], "--trials"),
    (["--trials", "1"], "--trials"),
    (["--seeds", "0"], "--seeds"),
    (["--alphas", "1,-2"], "--alphas"),
    (["--alphas", "one"], "--alphas"),
    (["--alphas", ""], "--alphas"),
    (["--alphas", "tuned,tuned"], "--alphas"),
    (["--selection-k", "0"], "--selection-k"),
    (["--selection-seeds", "-1"], "--selection-seeds"),
    (["--select", "best"], "--select"),
    (["--preset", "huge"], "--preset"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial"),
    (["--max-concurrent", "0"], "--max-concurrent"),
    (["--data", "camouflage=2"], "--data"),
    (["--data", "colour=3"], "--data"),
    (["--set", "train.lr"], "--set"),
    (["--set", "train.nope=1"], "--set"),
    (["--address", "nohostport"], "--address"),
    (["--name", "a/b"], "--name"),
    (["--grace-period", "99", "--preset", "smoke"], "--grace-period"),
])
def test_bad_values_exit_2_naming_the_flag(argv, flag, capsys, tmp_path):
    code, out = _exit_code([*argv, "--storage", str(tmp_path), "--preset", "smoke"] if "--preset" not in argv
                           else [*argv, "--storage", str(tmp_path)], capsys)
    assert code == 2, f"{argv}: exit {code}, expected 2"
    assert flag in out.err, f"{argv}: the message should name {flag}:\n{out.err}"


def test_missing_data_folder_fails_before_ray(tmp_path, capsys):
    code, out = _exit_code(["--data", str(tmp_path / "no-such-photos"), "--storage", str(tmp_path)], capsys)
    assert code == 2 and "--data" in out.err and "no-such-photos" in out.err, out.err
    assert not (tmp_path / "gainstudy").exists(), "nothing may be written for a missing data folder"


def test_empty_photo_folder_fails_before_ray(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    code, out = _exit_code(["--data", str(photos), "--storage", str(tmp_path), "--preset", "smoke"], capsys)
    assert code == 2 and "--data" in out.err, out.err


def test_unreachable_address_fails_before_any_trial(tmp_path, capsys):
    code, out = _exit_code(["--address", "127.0.0.1:1", "--preset", "smoke", "--storage", str(tmp_path)], capsys)
    assert code == 2 and "--address" in out.err and "cannot reach" in out.err, out.err
    assert not (tmp_path / "gainstudy" / "study.json").exists()


def test_config_file_is_read_and_the_command_line_overrides_it(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("trials: 6\nseeds: 4\npreset: smoke\ndata: {camouflage: 0.3}\nset: {train.max_epochs: 2}\n")
    args = build_parser().parse_args(["--config", str(path), "--trials", "8", "--storage", str(tmp_path)])
    cfg = resolve(args)
    assert (cfg.trials, cfg.seeds, cfg.preset) == (8, 4, "smoke"), "the command line must win over the file"
    assert cfg.base.data.camouflage == 0.3 and cfg.base.train.max_epochs == 2


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_config_file_with_a_byte_order_mark_is_read_in_its_encoding(encoding, tmp_path):
    # Windows Notepad saves "Unicode" as UTF-16 LE with a BOM, and "UTF-8" with a BOM.
    path = tmp_path / "study.yaml"
    text = "trials: 6\npreset: smoke\nname: café\n"
    path.write_bytes(text.encode(encoding) if encoding != "utf-16-be" else b"\xfe\xff" + text.encode(encoding))
    cfg = resolve(build_parser().parse_args(["--config", str(path), "--storage", str(tmp_path)]))
    assert (cfg.trials, cfg.preset, cfg.name) == (6, "smoke", "café"), f"{encoding}: the file must read as written"


def test_config_file_with_unknown_key_exits_2(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text("trails: 6\n")
    code, out = _exit_code(["--config", str(path), "--dry-run"], capsys)
    assert code == 2 and "--config" in out.err and "trails" in out.err, out.err


def test_changed_configuration_on_resume_is_refused(tmp_path, capsys):
    storage = str(tmp_path / "runs")
    cfg = StudyConfig(name="s", storage=storage, preset="smoke", trials=4)
    run_dir = tmp_path / "runs" / "s"
    open_study_record(cfg, run_dir, ["--trials", "4"], "fp")
    with pytest.raises(ConfigChanged, match="trials: was 4, now 6"):
        open_study_record(StudyConfig(name="s", storage=storage, preset="smoke", trials=6), run_dir, [], "fp")
    with pytest.raises(ConfigChanged, match="dataset_fingerprint"):
        open_study_record(cfg, run_dir, [], "other")
    # Resources may change between sessions.
    _, resumed = open_study_record(StudyConfig(name="s", storage=storage, preset="smoke", trials=4,
                                               cpus_per_trial=2, max_concurrent=1), run_dir, [], "fp")
    assert resumed
    assert len(json.loads((run_dir / "study.json").read_text())["sessions"]) == 2

    # Through the launcher: exit 2 before Ray starts, with the original command in the message.
    code = main(["--name", "s", "--storage", storage, "--preset", "smoke", "--trials", "6", "--no-dashboard"])
    err = capsys.readouterr().err
    assert code == 2 and "different configuration" in err and "--trials 4" in err, err


def test_config_file_set_list_and_data_mapping(tmp_path):
    photos = tmp_path / "photos, 2024"
    path = tmp_path / "study.yaml"
    path.write_text(f"preset: smoke\ndata: {{source: '{photos}', image_size: 96}}\n"
                    "set: ['train.max_epochs=2', 'model.batch_norm=false', 'train.num_threads=1']\n")
    cfg = resolve(build_parser().parse_args(["--config", str(path), "--storage", str(tmp_path)]))
    assert cfg.base.data.source == str(photos) and cfg.base.data.image_size == 96, cfg.base.data
    assert cfg.base.train.max_epochs == 2 and cfg.base.model.batch_norm is False
    assert dict(cfg.overrides)["train.num_threads"] == 1, "a --set value is typed by its field (int, not '1')"


def test_printed_commands_run_without_activating_the_venv():
    import os
    import sys
    from pathlib import Path

    from study.session import auth_hint, venv_command

    for name in ("optuna-dashboard", "ray"):
        cmd = venv_command(name)
        assert Path(cmd).is_absolute() and os.access(cmd, os.X_OK), f"{name}: {cmd} is not an executable path"
        assert Path(cmd).parent == Path(sys.executable).parent
    assert f"{venv_command('ray')} get-auth-token" in auth_hint()


@pytest.mark.slow
def test_a_local_study_listens_on_loopback_only(tmp_path):
    """What a local study's Ray listens on (TCP), read from the kernel for the processes it started:
    nothing may listen on a non-loopback address (the GCS, raylet, workers and agents included)."""
    import ipaddress
    import os
    import socket

    import psutil
    import ray

    from study.session import start_ray

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_dir = tmp_path / "s"
    run_dir.mkdir()
    session = start_ray(StudyConfig(name="s", storage=str(tmp_path), preset="smoke", dashboard_port=port), run_dir)
    try:
        ray.get(ray.remote(lambda: os.getpid()).remote())  # a worker process, as a trial has
        pids = json.loads((run_dir / "ray_processes.json").read_text())["ray"] + [os.getpid()]
        procs = [psutil.Process(p) for p in pids if psutil.pid_exists(p)]
        procs += [c for p in procs for c in p.children(recursive=True)]
        def loopback(ip: str) -> bool:
            addr = ipaddress.ip_address(ip)
            return (getattr(addr, "ipv4_mapped", None) or addr).is_loopback  # ::ffff:127.0.0.1 too

        wide = sorted({(c.laddr.ip, c.laddr.port, p.name()) for p in procs for c in p.net_connections("tcp")
                       if c.status == psutil.CONN_LISTEN and not loopback(c.laddr.ip)})
        assert not wide, f"a local study's Ray listens beyond loopback: {wide}"
    finally:
        session.close()


def test_dry_run_of_a_staged_study_shows_its_looks_margin_and_cost(tmp_path, capsys):
    code = main(["--dry-run", "--seeds", "auto", "--max-seeds", "22", "--margin", "0.5", "--storage", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    for needle in ("in the first stage", "looks at 10, 15, 20, 22 seeds", "O'Brien-Fleming", "up to 66 runs",
                   "equivalent within ±0.5 pp", "all stages cost up to"):
        assert needle in out, f"dry-run output lacks {needle!r}:\n{out}"
    cfg = resolve(build_parser().parse_args(["--seeds", "auto", "--max-seeds", "40", "--margin", "1pp"]))
    assert (cfg.seeds, cfg.max_seeds, cfg.margin, cfg.sequential) == (10, 40, 1.0, True)
    assert cfg.design().looks == (10, 15, 20, 25, 30, 35, 40)
    one = resolve(build_parser().parse_args(["--seeds", "12", "--max-seeds", "12"]))
    assert not one.sequential and one.design().looks == (12,), "a budget equal to --seeds is one stage"


def test_one_option_table_feeds_the_command_line_the_config_file_and_the_plan():
    import dataclasses

    from study.options import FILE_KEYS, OPTIONS, markdown_table

    fields = {f.name for f in dataclasses.fields(StudyConfig) if f.init}
    targets = {o.target for o in OPTIONS}
    assert targets == fields - {"verbosity", "data_images"}, \
        f"every StudyConfig option must be declared once in OPTIONS: {sorted(fields ^ targets)}"
    flags = {a for action in build_parser()._actions for a in action.option_strings}  # noqa: SLF001
    assert {o.flag for o in OPTIONS} <= flags and set(FILE_KEYS) == {o.dest for o in OPTIONS}, \
        "each declared option must be both a flag and a --config key"
    table = markdown_table()
    assert all(f"{o.flag[2:]}`" in table for o in OPTIONS), "the options table must list every option"


@pytest.mark.parametrize("dest, text, yaml_value", [
    ("trials", "8", 8), ("seeds", "auto", "auto"), ("margin", "2pp", 2), ("alphas", "tuned,0.5", ["tuned", 0.5]),
    ("data", "bias=0.9", {"bias": 0.9}), ("set", "train.max_epochs=3", {"train.max_epochs": 3}),
    ("dashboard", None, False), ("cpus_per_trial", "2", 2), ("optuna_storage", "sqlite:///o.db", "sqlite:///o.db"),
])
def test_a_flag_and_its_config_key_give_the_same_plan(dest, text, yaml_value, tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    flag = "--" + dest.replace("_", "-")
    argv = [flag, text] if text is not None else ["--no-dashboard"]
    extra = ["--max-seeds", "20"] if dest == "seeds" else []
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({dest: yaml_value}))
    by_flag = resolve(build_parser().parse_args([*argv, *extra, "--preset", "smoke"]))
    by_file = resolve(build_parser().parse_args(["--config", str(tmp_path / "s.yaml"), *extra, "--preset", "smoke"]))
    assert by_flag == by_file and by_flag.base == by_file.base, f"{flag} and the YAML key {dest!r} must agree"


def test_bad_values_are_config_errors_that_name_their_option():
    from study.options import parse_alphas
    from study.plan import UsageError
    from trainables.config import ConfigError

    with pytest.raises(ConfigError) as e:
        StudyConfig(preset="smoke", overrides=(("train.max_epochs", 0),))
    assert isinstance(e.value, UsageError) and e.value.flag == "--data/--set", \
        "a bad run-config value must name the study's option, with the one error type"
    with pytest.raises(UsageError, match="--alphas"):
        parse_alphas("one")
