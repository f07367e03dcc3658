"""The live view on a terminal: one tqdm line per phase, redrawn in place, cut to the terminal's width
(a line that wraps cannot be redrawn in place) and left on screen when the phase ends.

The figures come first (study/progress.py: `Snapshot.status`, ordered so that what a narrow terminal
cuts, the end, matters least); a bar takes the room they leave. While the line is up, the console log
of Ray and Optuna (a trial's error, Tune's note on Ctrl-C) and Python's warnings (Optuna's
experimental-feature warnings) print above it through tqdm rather than into it. tqdm never hides the cursor, so however the study ends the terminal is left as it was.
"""
from __future__ import annotations

import atexit
import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

LABEL_WIDTH = 9  # "confirm-2": the phases' lines stay on screen one under another, aligned
FORMAT = "{desc} {n_fmt}/{total_fmt} {status}"
BAR_FORMAT = "{desc} {n_fmt}/{total_fmt} |{bar:%d}| {status}"
BAR_COLS = (6, 20)  # the bar takes the room the figures leave, up to 20 columns; none if under 6
_LOGGERS = ("ray", "optuna", "")  # "": the root logger


class _Line(tqdm):
    """A tqdm line with a `{status}` field (tqdm's documented way to add one: extend `format_dict`)."""

    def __init__(self, *args: Any, status: str = "", **kwargs: Any):
        self.status = status
        self.bar_cols = BAR_COLS[1]  # only narrows within a phase, so the bar does not come and go
        super().__init__(*args, **kwargs)

    @property
    def format_dict(self) -> dict[str, Any]:
        d = super().format_dict  # with the terminal's width of now (dynamic_ncols)
        if d["ncols"] is None:  # not known: no bar
            return {**d, "status": self.status, "bar_format": FORMAT}
        figures = FORMAT.format(desc=self.desc, n_fmt=self.n, total_fmt=self.total, status=self.status)
        spare = d["ncols"] - len(figures) - len("|| ")
        self.bar_cols = min(self.bar_cols, spare) if spare >= BAR_COLS[0] else 0
        return {**d, "status": self.status, "bar_format": BAR_FORMAT % self.bar_cols if self.bar_cols else FORMAT}

    def __del__(self) -> None:
        # A line its phase never closed (an exception went through Tune) is not redrawn whenever the
        # garbage collector gets to it, which could be after the launcher's last words.
        pass


class PhaseLine:
    """One phase's line, from its first state until `close()`: `done` of `planned` trials finished,
    then `status` (study/progress.py writes it) after the bar."""

    def __init__(self, label: str, planned: int, done: int, status: str, stream: TextIO | None = None):
        self._stack = ExitStack()
        self._line = self._stack.enter_context(_Line(
            total=planned, initial=done, desc=f"{label:<{LABEL_WIDTH}}", status=status,
            bar_format=FORMAT, file=stream or sys.stdout, dynamic_ncols=True, leave=True, position=0,
            mininterval=0,
        ))
        self._stack.enter_context(logging_redirect_tqdm(loggers=_console_loggers(), tqdm_class=_Line))
        self._stack.enter_context(_warnings_above_the_line())
        # If the phase ends by an exception (a second Ctrl-C while Tune saves), Tune does not tell the
        # view: at exit the log handlers go back and the line is dropped without drawing it again.
        atexit.register(self._abandon)

    def show(self, done: int, status: str) -> None:
        self._line.status = status
        self._line.n = done
        self._line.refresh()

    def close(self, done: int, status: str) -> None:
        """The last state drawn and the line ended with a newline; the log handlers are put back."""
        atexit.unregister(self._abandon)
        self._line.status = status
        self._line.n = done
        self._stack.close()  # the log handlers first, then the line (tqdm draws it once more, then '\n')

    def _abandon(self) -> None:
        self._line.disable = True  # close() then draws nothing
        self._stack.close()


def _console_loggers() -> list[logging.Logger]:
    """The loggers that print to the console; only those are routed through tqdm (their own format kept)."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    return [lg for lg in loggers
            if any(isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.stderr) for h in lg.handlers)]



@contextmanager
def _warnings_above_the_line() -> Iterator[None]:
    """Python warnings (`warnings.warn`, e.g. Optuna's when a trial starts) go to stderr by themselves,
    into the middle of the live line; while it is up they print above it, as the logs do."""
    shown = warnings.showwarning

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None,
             line: str | None = None) -> None:
        tqdm.write(warnings.formatwarning(message, category, filename, lineno, line).rstrip("\n"), file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown
