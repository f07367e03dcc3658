# Where the report's slowest figure is drawn: the attention overlays in a spawned second process
# while this one computes and draws the rest (write_report(parallel=True)), or here (InProcess).
from __future__ import annotations

import importlib
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from analysis import figures
from analysis.analyse import Analysis
from analysis.tables import BASELINE


class InProcess:
    """The part of an executor that write_report uses, drawing in this process."""

    def submit(self, fn: Any, *args: Any) -> Future:
        done: Future = Future()
        done.set_result(fn(*args))
        return done


def figure_worker() -> ProcessPoolExecutor:
    # A second process for the attention overlays: 24 panels whose constrained layout and tick labels
    # take ~3 s to draw, while this process computes and draws the rest (the report runs after the
    # study's last trial, when both CPU slots are free). Spawned, not forked: the launcher's process
    # holds Ray's threads, and a forked copy of a thread's locks can deadlock. (Spawning re-imports the
    # caller's main module: hence opt-in, `write_report(parallel=True)`.) It starts here and imports analysis.figures
    # while this process analyses the tables.
    worker = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=importlib.import_module, initargs=("analysis.figures",))
    worker.submit(os.getpid)  # the process starts on the first submit
    return worker


@dataclass(frozen=True)
class Overlays:
    png: Future  # of figures.attention_overlays(...) as PNG bytes
    seed: int
    alpha: float


def submit_overlays(worker: ProcessPoolExecutor | InProcess, a: Analysis) -> Overlays | str:
    # The attention-overlay figure, submitted to the worker as soon as the analysis names its seed and
    # α; or the note saying why it is left out.
    st, primary = a.st, a.family.primary()
    if st.attention is None or st.examples is None or primary is None:
        return "attention.parquet or examples.npz missing: attention overlays left out."
    att_seeds = sorted(set(st.attention.loc[st.attention["arm"] == BASELINE, "seed"]) & set(primary.seeds))
    shown = set(map(str, st.examples["image_ids"])) & set(st.attention["image_id"].astype(str))
    if not att_seeds:
        return "no seed has attention maps for both baseline and the primary GAIN α."
    if not shown:
        return "examples.npz holds none of the images in attention.parquet: attention overlays left out."
    png = worker.submit(figures.render, figures.attention_overlays, st.attention, st.examples, att_seeds[0], primary.alpha)
    return Overlays(png, int(att_seeds[0]), primary.alpha)
