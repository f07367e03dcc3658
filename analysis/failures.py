# Runs that failed for a reason of their own (Tune gave up after its retries): the report's first
# screen names each one above the verdict (which run, which arm, the error's last line, where its
# error.txt is), and says whether the missing runs could have changed the verdict.
#
# What a missing run could change, by phase:
# - confirmation: the verdict is recomputed with each failed run finished at either extreme, its
#   validation and test accuracy 0 for GAIN and 1 for the baseline (the worst case for GAIN), then the
#   other way round (the best case). If both give the verdict the study gave, the missing runs cannot
#   change it (checked at the extremes, not at every value in between).
# - selection: the study scored the failed run 0, so its configuration could only have lost. With 1
#   instead, could its configuration's mean objective reach the winner's? If not, or if it won anyway,
#   the selection and so the verdict stand.
# - search: its objective is unknown, and any value up to 1 could have made it a candidate and the
#   winner: the verdict cannot rule out a change.
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.stats import compare_alphas
from analysis.tables import COMPLETED, CONFIRM, GAIN, SEARCH, SELECT, arm_label
from analysis.sequential import design_from_config
from analysis.verdict import make_verdict

FAILED = "error"  # the status study/records.py writes for a trial whose retries ran out
PHASE_NAMES = {SEARCH: "search", SELECT: "selection", CONFIRM: "confirmation"}


@dataclass(frozen=True)
class FailedRun:
    trial_id: str
    phase: str
    arm: str
    label: str  # "baseline", "GAIN α=1"
    seed: int
    error: str  # the last line of error.txt (the exception), else what the tables recorded
    error_file: Path | None

    def line(self) -> str:
        where = f"see {self.error_file}" if self.error_file is not None else "no error.txt found"
        return (f"FAILED RUN: {PHASE_NAMES.get(self.phase, self.phase)} run {self.trial_id} ({self.label}, "
                f"seed {self.seed}) failed after its retries: {self.error} ({where}).")


def failed_runs(trials: pd.DataFrame, run_dir: str | Path) -> list[FailedRun]:
    run_dir = Path(run_dir)
    rows = trials[trials["status"].astype(str) == FAILED]
    out = []
    for r in rows.itertuples(index=False):
        trial_id = str(r.trial_id)
        files = sorted(run_dir.glob(f"*/{trial_id}/error.txt"))  # <phase folder>/<trial>/error.txt
        error = _last_line(files[0]) if files else ""
        if not error:
            recorded = getattr(r, "error", None)
            error = str(recorded) if isinstance(recorded, str) and recorded else "no error recorded"
        alpha = float(r.alpha) if r.arm == GAIN else float("nan")
        out.append(FailedRun(trial_id, str(r.phase), str(r.arm), arm_label(str(r.arm), alpha), int(r.seed), error,
                             files[0].resolve() if files else None))
    return out


def _last_line(path: Path) -> str:
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def finished_at(trials: pd.DataFrame, gain_value: float, baseline_value: float) -> pd.DataFrame:
    """The trials table with every failed confirmation run completed, its validation and test accuracy
    `gain_value` for a GAIN run and `baseline_value` for a baseline run."""
    t = trials.copy()
    failed = (t["phase"].astype(str) == CONFIRM) & (t["status"].astype(str) == FAILED)
    value = np.where(t["arm"].astype(str) == GAIN, gain_value, baseline_value)
    t["status"] = t["status"].astype(object)
    t.loc[failed, "status"] = COMPLETED
    for col in ("val_acc", "test_acc"):
        t[col] = t[col].astype(float)
        t.loc[failed, col] = value[failed.to_numpy()]
    return t


def verdict_label(trials: pd.DataFrame, meta: dict, seed: int = 0) -> str:
    """The verdict's label on these trials, by the verdict's own rules and the study's declared design
    (margin, stages; no bootstrap: not needed for it)."""
    design = design_from_config(meta.get("config") or {})
    family = compare_alphas(trials, seed=seed, full=False, margin=design.margin)
    if not design.sequential:
        return make_verdict(family).label
    n_seeds = len(set(trials.loc[trials["phase"].astype(str) == CONFIRM, "seed"]))
    return make_verdict(family, design=design, look=design.look_of(n_seeds)).label


def could_change_sentence(trials: pd.DataFrame, meta: dict, label: str, seed: int = 0) -> str:
    """One sentence for the verdict: whether the failed runs could have changed it ("" if none failed)."""
    failed = trials[trials["status"].astype(str) == FAILED]
    if failed.empty:
        return ""
    phases = set(failed["phase"].astype(str))
    parts = []
    if SEARCH in phases:
        arms = ", ".join(sorted(set(failed.loc[failed["phase"].astype(str) == SEARCH, "arm"].astype(str))))
        parts.append(f"a failed search run ({arms}) could have been selected had it finished, so the missing "
                     "run could change the verdict")
    if SELECT in phases:
        changes = [arm for arm in sorted(set(failed.loc[failed["phase"].astype(str) == SELECT, "arm"].astype(str)))
                   if _selection_could_change(trials, meta, arm)]
        parts.append(f"with its objective at 1 a failed selection run could make {', '.join(changes)}'s selected "
                     "configuration another one, so the verdict could change" if changes else
                     "the failed selection run(s) could not change which configuration was selected (scored 1 "
                     "instead of 0)")
    if CONFIRM in phases:
        worst = verdict_label(finished_at(trials, 0.0, 1.0), meta, seed)
        best = verdict_label(finished_at(trials, 1.0, 0.0), meta, seed)
        verb = "could change it" if {worst, best} != {label} else "cannot change it"
        parts.append(f"with the failed confirmation run(s) finished at the extremes the verdict would be "
                     f"\"{worst}\" (GAIN 0, baseline 1) or \"{best}\" (GAIN 1, baseline 0): the missing runs {verb}")
    n = len(failed)
    return f"{n} run{'s' if n > 1 else ''} failed (named above): " + "; ".join(parts) + "."


def _selection_could_change(trials: pd.DataFrame, meta: dict, arm: str) -> bool:
    sel = trials[(trials["phase"].astype(str) == SELECT) & (trials["arm"].astype(str) == arm)]
    winner = ((meta.get("selected") or {}).get(arm) or {})
    if ("candidate" not in sel or "objective" not in sel or not winner.get("trial_id")
            or not math.isfinite(winner.get("objective", math.nan))):
        return True  # what was selected is not recorded: it cannot be ruled out
    for candidate, runs in sel.groupby(sel["candidate"].astype(str)):
        if candidate == winner["trial_id"] or not (runs["status"].astype(str) == FAILED).any():
            continue
        ok = runs["status"].astype(str).isin([COMPLETED, "stopped"]) & runs["objective"].notna()
        best = np.where(ok, runs["objective"].astype(float), 0.0)
        best[(runs["status"].astype(str) == FAILED).to_numpy()] = 1.0
        if best.mean() >= winner["objective"]:
            return True
    return False


def failure_lines(trials: pd.DataFrame, run_dir: str | Path) -> list[str]:
    return [f.line() for f in failed_runs(trials, run_dir)]
