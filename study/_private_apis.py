"""Every private Ray and Optuna API the study uses, in one place, each with why no public one serves.

They were verified on the versions in `PINNED` (constraints.txt pins the same). A private name can
change in any release: tests/test_private_apis.py fails loudly when the installed versions differ from
these pins or a name below is gone, so an upgrade is a deliberate step (re-verify each use, then
move the pin), never a silent change of behaviour.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PINNED = {"ray": "2.60.0", "optuna": "5.0.0"}


def version_problems() -> list[str]:
    """Installed versions that differ from the pins (empty when they match)."""
    import optuna
    import ray

    installed = {"ray": ray.__version__, "optuna": optuna.__version__}
    return [f"{name} {installed[name]} is installed, but study/_private_apis.py was verified on {name} {pin}: "
            f"re-check each private use there, then move the pin (and constraints.txt)"
            for name, pin in PINNED.items() if installed[name] != pin]


# ---- Ray Tune: settings of a restored experiment ------------------------------------------------
def apply_session_settings(tuner: Any, callbacks: list[Any], verbose: int, max_concurrent: int | None) -> None:
    """`Tuner.restore` unpickles the first session's RunConfig (callbacks, verbosity) and TuneConfig
    (max_concurrent_trials) and has no parameter for them (Ray 2.60: only param_space and the resume
    flags); a resumed study must use this session's live view and resources.
    Private: `Tuner._local_tuner` (a TunerInternal), its `_tune_config`."""
    internal = tuner._local_tuner  # noqa: SLF001
    run_config = internal.get_run_config()
    run_config.callbacks = callbacks
    run_config.verbose = verbose
    internal._tune_config.max_concurrent_trials = max_concurrent  # noqa: SLF001


# ---- Ray core: a local node on loopback, and the processes it started ----------------------------
@contextmanager
def loopback_node() -> Iterator[None]:
    """A local Ray whose GCS, raylet, workers and agents listen on 127.0.0.1 instead of every interface.

    Ray 2.60 turns `ray.init(_node_ip_address="127.0.0.1")` into this host's routable address
    (`services.resolve_ip_for_localhost`); the node address is loopback only where Ray runs without
    multi-node clusters (its macOS/Windows default, `ENABLE_RAY_CLUSTER`), and its gRPC servers then
    bind loopback. That flag is read only when the node address is chosen (Ray's `ray start` CLI reads
    it too), so it is switched off for this ray.init alone; its environment variable would be read
    once at `import ray` and reach every Ray process. Verified with `ss -ltnp`
    (tests/test_study_cli.py checks it). Private: `ray._private.ray_constants.ENABLE_RAY_CLUSTER`."""
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def local_ray_pids() -> list[int]:
    """The processes this driver's `ray.init` started (GCS, raylet, dashboard, ...): the reaper kills
    what `ray.shutdown` leaves behind. Ray has no public list of them.
    Private: `ray._private.worker._global_node.all_processes`."""
    import ray

    node = ray._private.worker._global_node  # noqa: SLF001
    return [info.process.pid for infos in node.all_processes.values() for info in infos if info.process]


# ---- Ray's OptunaSearch: its live Optuna study ------------------------------------------------------
def optuna_study(search: Any) -> Any:
    """The in-memory Optuna study of an OptunaSearch (None before its first suggestion), copied to the
    database after each finished trial (study/searchers.py). Private: `OptunaSearch._ot_study`."""
    return search._ot_study  # noqa: SLF001


def optuna_trials(search: Any) -> dict[str, Any]:
    """Tune trial id -> the Optuna trial an OptunaSearch asked for it: marks ASHA-stopped trials and names
    the database copies. Private: `OptunaSearch._ot_trials`."""
    return search._ot_trials  # noqa: SLF001
