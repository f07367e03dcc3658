"""Starting Ray (locally, or joining a cluster) and shutting down exactly what the launcher started."""
from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._private_apis import local_ray_pids, loopback_node
from .plan import StudyConfig, UsageError

LOOPBACK = "127.0.0.1"


# A gRPC server (Ray's GCS) speaks HTTP/2: after the client's connection preface and SETTINGS frame it
# sends its own SETTINGS frame first (RFC 9113, 3.4). Anything else at the port is not Ray.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_H2_SETTINGS = 4


def check_address(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail before any trial starts when --address is unreachable or is not a Ray cluster (a port that
    is not Ray would make ray.init retry for ever)."""
    if address is None or address == "auto":
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UsageError("--address", f"{address!r}: use 'auto' or HOST:PORT, e.g. 10.0.0.5:6379")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as conn:
            if os.environ.get("RAY_USE_TLS", "0") in ("0", ""):  # a TLS GCS answers only after a handshake
                conn.sendall(_H2_PREFACE)
                reply = _read(conn, 9)
                if len(reply) < 9 or reply[3] != _H2_SETTINGS:
                    raise UsageError("--address", f"{address} answers, but not as a Ray cluster's GCS (no HTTP/2 "
                                                  f"reply): give the head's GCS port (`ray start --head` prints it, "
                                                  f"default 6379), or leave --address out for a local Ray")
    except socket.timeout:
        raise UsageError("--address", f"{address} accepted a connection but did not answer as Ray within "
                                      f"{timeout_s:g} s: give the head's GCS port (default 6379), or leave "
                                      "--address out for a local Ray") from None
    except OSError as e:
        raise UsageError("--address", f"cannot reach a Ray cluster at {address} ({e}); start one with "
                                      "`ray start --head` or `ray up cluster.yaml`, or leave --address out "
                                      "for a local Ray") from None


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def check_dashboard_port(cfg: StudyConfig) -> None:
    """A local Ray's dashboard port must be free now: Ray fails late, after the study is recorded."""
    if cfg.address is not None or not cfg.dashboard:
        return
    with socket.socket() as s:
        # SO_REUSEADDR as the dashboard's server sets it: only a listening socket makes the port busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", cfg.dashboard_port))
            return
        except OSError:
            pass
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    raise UsageError("--dashboard-port", f"port {cfg.dashboard_port} on 127.0.0.1 is in use (another Ray or "
                                         f"dashboard?): pass --dashboard-port {free} (free now) or --no-dashboard")


def venv_command(name: str) -> str:
    """A command of this environment that runs as printed, the venv activated or not."""
    path = Path(sys.executable).parent / name
    return shlex.quote(str(path)) if path.is_file() else name


@dataclass
class RaySession:
    started_locally: bool
    dashboard_url: str | None
    node_id: str
    _reaper: subprocess.Popen | None = field(default=None, repr=False)

    def close(self) -> None:
        import ray

        ray.shutdown()
        if self._reaper is not None:
            # Closing the pipe tells the reaper to kill whatever the shutdown left behind.
            self._reaper.stdin.close()
            try:
                self._reaper.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._reaper.kill()
            self._reaper = None


def start_ray(cfg: StudyConfig, run_dir: Path) -> RaySession:
    import ray

    quiet = cfg.verbosity < 2
    kwargs: dict[str, Any] = dict(
        log_to_driver=not quiet,
        logging_level=logging.WARNING if quiet else logging.INFO,
        configure_logging=True,
    )
    if cfg.address:
        _enable_token_auth_if_available()
        try:
            context = ray.init(address=cfg.address, **kwargs)
        except ConnectionError as e:
            raise UsageError("--address", f"cannot join a Ray cluster at {cfg.address!r}: {e}") from None
        return RaySession(False, _url(context.dashboard_url), ray.get_runtime_context().get_node_id())

    # Local Ray: the dashboard listens on loopback only.
    if cfg.dashboard:
        kwargs.update(include_dashboard=True, dashboard_host=LOOPBACK, dashboard_port=cfg.dashboard_port)
    else:
        kwargs.update(include_dashboard=False)
    with loopback_node():
        context = ray.init(**kwargs)
    reaper = _start_reaper(run_dir)
    return RaySession(True, _url(context.dashboard_url) if cfg.dashboard else None,
                      ray.get_runtime_context().get_node_id(), reaper)


def _url(address: str | None) -> str | None:
    """ray.init's dashboard address ("127.0.0.1:8265") as a URL; None without a dashboard."""
    if not address:
        return None
    return address if address.startswith("http") else f"http://{address}"


def _enable_token_auth_if_available() -> None:
    # Ray 2.60 clusters use token auth; ray.init(address=HOST:PORT) only sends the token when
    # RAY_AUTH_MODE=token, which `ray start` sets for its own processes but not for ours.
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if "RAY_AUTH_MODE" not in os.environ and ("RAY_AUTH_TOKEN" in os.environ or token_file.is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"


def _start_reaper(run_dir: Path) -> subprocess.Popen:
    import psutil

    pids = local_ray_pids()
    reaper = subprocess.Popen([sys.executable, "-m", "study.reaper"], stdin=subprocess.PIPE,
                              start_new_session=True, cwd=str(Path(__file__).resolve().parents[1]))
    lines = []
    for pid in pids:
        try:
            lines.append(f"{pid} {psutil.Process(pid).create_time()}\n")
        except psutil.Error:
            continue
    reaper.stdin.write("".join(lines).encode())
    reaper.stdin.flush()
    # The record lets an operator (and the tests) check that nothing outlived the launcher.
    (run_dir / "ray_processes.json").write_text(json.dumps({"launcher": os.getpid(), "reaper": reaper.pid,
                                                            "ray": pids}))
    return reaper


def auth_hint() -> str:
    return ("Ray 2.60 uses token auth: the dashboard asks for the token in ~/.ray/auth_token "
            f"(`{venv_command('ray')} get-auth-token`); API calls need `-H \"Authorization: Bearer $(cat ~/.ray/auth_token)\"`")
