"""The live view's two forms: on a terminal one line per phase redrawn in place (under a pseudo-terminal
here), on a pipe or with -v a line per trial event. The time-left estimate is tested in test_study_units.py."""
from __future__ import annotations

import fcntl
import io
import logging
import os
import pickle
import pty
import select
import struct
import sys
import warnings
import termios
import time
import tty

import pytest

from study.progress import LiveView


class Trial:
    def __init__(self, i: int, arm: str):
        self.trial_id, self.config, self.status, self.last_result = f"t{i}", {"arm": arm}, "PENDING", {}


def run_phase(view: LiveView, n: int, between=None) -> None:
    """Tune's calls for a phase of n trials, two at a time: start, one epoch, finish; `between(i)` after trial i."""
    trials = [Trial(i, "gain" if i % 2 else "baseline") for i in range(n)]
    view.setup()
    for i, t in enumerate(trials):
        t.status = "RUNNING"
        view.on_trial_start(0, trials, t)
        view.on_trial_result(0, trials, t, {"epoch": 1, "objective": 0.5 + i / 100})
        t.last_result = {"epoch": 1, "objective": 0.5 + i / 100}
        view.on_step_end(0, trials)
        t.status, t.last_result = "TERMINATED", {**t.last_result, "final": True, "status": "completed"}
        view.on_trial_complete(0, trials, t)
        if between is not None:
            between(i)
    view.on_experiment_end(trials)


def render(text: str) -> list[str]:
    """The screen lines that `text` leaves on a terminal: '\\r' returns to the line's start and later
    characters overwrite earlier ones ('\\r\\n' as one newline, as a terminal shows it)."""
    lines, cur, col = [], [], 0
    for ch in text.replace("\r\n", "\n"):
        if ch == "\n":
            lines.append("".join(cur).rstrip())
            cur, col = [], 0
        elif ch == "\r":
            col = 0
        else:
            cur[col:col + 1] = [ch]
            col += 1
    if cur:
        lines.append("".join(cur).rstrip())
    return lines


def open_pty(cols: int, rows: int = 24) -> tuple[int, int]:
    """A pseudo-terminal `cols` wide; (master, slave) file descriptors."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return master, slave


def read_pty(master: int, done=lambda: True, tick=lambda: None, timeout_s: float = 5.0) -> bytes:
    """What is written to the terminal until `done()` and nothing more comes (or every writer has closed
    it); `tick()` is called between reads."""
    out, deadline = b"", time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tick()
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            if done():
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        out += chunk
    return out


@pytest.fixture
def terminal(monkeypatch):
    """`attach(cols)` puts sys.stdout on a pseudo-terminal `cols` wide, written as is (raw: no '\\n' ->
    '\\r\\n'), and returns a function that returns what the terminal received so far. (Called in the
    test: pytest puts its own sys.stdout back when the test begins.)"""
    opened = []

    def attach(cols: int = 40):
        master, slave = open_pty(cols=cols)
        tty.setraw(slave)
        stream = open(slave, "w", encoding="utf-8", closefd=True)
        opened.append((master, stream))
        monkeypatch.setattr(sys, "stdout", stream)

        def received() -> str:
            stream.flush()
            return read_pty(master).decode()

        return received

    yield attach
    for master, stream in opened:
        stream.close()
        os.close(master)


def test_on_a_terminal_a_phase_is_one_line_redrawn_in_place_within_the_width(terminal):
    received = terminal()
    ray_logger = logging.getLogger("ray")
    handlers = list(ray_logger.handlers)
    view = LiveView("search", planned=6, concurrency=2, min_interval_s=0.0)
    run_phase(view, 6)
    out = received()
    assert out.count("\n") == 1 and out.endswith("\n"), f"the phase must leave exactly one line: {out!r}"
    drawn = [seg for seg in out.rstrip("\n").split("\r") if seg.strip()]
    assert len(drawn) >= 6 * 2, f"each start and finish redraws the line in place: {len(drawn)} draws"
    assert max(len(seg.rstrip()) for seg in drawn) <= 39, \
        f"a line wider than the 40-column terminal wraps and cannot be redrawn: {max(drawn, key=len)!r}"
    (screen,) = render(out)
    assert screen.startswith("search") and "6/6" in screen, f"the line left on screen shows the end: {screen!r}"
    assert "\x1b[?25l" not in out, "the cursor is never hidden"
    assert ray_logger.handlers == handlers, "the console log handlers are put back when the phase ends"


def test_a_bar_only_where_the_figures_leave_room_for_it(terminal):
    for cols, bar in ((100, False), (170, True)):
        received = terminal(cols)
        run_phase(LiveView("search", planned=6, concurrency=2, min_interval_s=0.0), 6)
        (screen,) = render(received())
        assert screen.startswith("search    6/6 ") and (screen.count("|") == 5) == bar, \
            f"{cols} columns: {'a' if bar else 'no'} bar expected: {screen!r}"
        assert bar or len(screen) == cols - 1, f"{cols} columns: the figures fill the line: {screen!r}"


def test_a_log_message_prints_above_the_line_not_into_it(terminal, monkeypatch):
    received = terminal()
    logger = logging.getLogger("ray.tune.test")
    monkeypatch.setattr(sys, "stderr", sys.stdout)  # both on the terminal, as in a shell
    monkeypatch.setattr(logging.getLogger("ray"), "handlers", [logging.StreamHandler(sys.stderr)])  # as Ray's own
    view = LiveView("confirm", planned=3, concurrency=1, min_interval_s=0.0)
    run_phase(view, 3, between=lambda i: logger.warning("Stop signal received") if i == 1 else None)
    screen = render(received())
    assert screen[0] == "Stop signal received" and screen[1].startswith("confirm") and len(screen) == 2, \
        f"the message gets its own line above the live one, which carries on: {screen}"


def test_a_python_warning_prints_above_the_line_not_into_it(terminal, monkeypatch):
    # Optuna warns (warnings.warn, straight to stderr) when a search trial starts; on a resumed smoke study
    # under load that landed in the middle of the search line and left a second, stale one on screen.
    received = terminal()
    monkeypatch.setattr(sys, "stderr", sys.stdout)  # both on the terminal, as in a shell
    view = LiveView("search", planned=3, concurrency=1, min_interval_s=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        run_phase(view, 3, between=lambda i: warnings.warn("an experimental feature", UserWarning) if i == 1 else None)
    screen = render(received())
    live = [ln for ln in screen if ln.startswith("search")]
    assert len(live) == 1 and "an experimental feature" in screen[0] and screen[-1] == live[0], \
        f"the warning gets its own lines above the live one, which carries on: {screen}"


def test_on_a_pipe_or_with_v_a_line_per_trial_event(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, verbosity in ((io.StringIO(), 1), (Terminal(), 2)):
        monkeypatch.setattr(sys, "stdout", stream)
        run_phase(LiveView("search", planned=4, concurrency=2, verbosity=verbosity), 4)
        lines = stream.getvalue().splitlines()
        done = [int(ln.split()[1].split("/")[0]) for ln in lines]
        assert "\r" not in stream.getvalue() and done == [0, 1, 2, 3, 4], \
            f"{type(stream).__name__}, verbosity {verbosity}: a new line whenever the counts change: {lines}"
        assert all(ln.startswith("search") and "study ~" in ln for ln in lines), lines
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    run_phase(LiveView("search", planned=4, concurrency=2, verbosity=0), 4)
    assert sys.stdout.getvalue() == "", "-q: no live view"


def test_a_view_with_its_line_open_can_be_pickled(terminal):
    received = terminal()
    view = LiveView("search", planned=2, concurrency=1)
    trials = [Trial(0, "gain")]
    view.setup()
    view.on_trial_start(0, trials, trials[0])
    copy = pickle.loads(pickle.dumps(view))  # the Tuner pickles its callbacks
    assert copy.label == "search" and copy._line is None, "the open terminal line stays with the original"
    view.on_experiment_end(trials)
    assert received().endswith("\n")


def test_the_terminal_line_names_diverged_and_failed_trials_only_when_there_are_any():
    from study.progress import Snapshot

    snap = Snapshot("search", 4, 2, 2, 1, 1, 0, 0, (("gain", 0.9),), elapsed_s=5.0, left_s=65.0)
    assert snap.status() == "00:05, study ~01:05 left | running 2 | done 1 stopped 1 | best val gain 0.9000", snap.status()
    bad = Snapshot("search", 4, 4, 0, 1, 1, 1, 1, (("gain", 0.9),), elapsed_s=5.0, left_s=0.0)
    assert "stopped 1 diverged 1 failed 1 |" in bad.status(), bad.status()
    assert "diverged 0 failed 0" in snap.line(), "the pipe's line keeps every count, for the logs' readers"
