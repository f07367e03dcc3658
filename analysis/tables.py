# Load a study directory (runs/<name>/) into typed tables and pair the confirmation runs by seed.
# The study package writes these files; this module only reads them. Only study.json and
# trials.parquet are required: every other input is optional and its absence becomes a note.
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

BASELINE = "baseline"
GAIN = "gain"
CONFIRM = "confirm"
COMPLETED = "completed"

# The primary comparison, fixed before any result is seen. Validation accuracy only: the test set
# never chooses anything. Ties (equal mean val_acc) go to the smaller alpha, the one closer to the paper.
PRIMARY_RULE = "best mean validation accuracy among GAIN alphas in confirmation"

# Per-run outcome columns of confirm rows; NaN where not applicable (e.g. photos without masks).
OUTCOME_METRICS = (
    "test_acc",
    "worst_group_acc",
    "bias_aligned_acc",
    "bias_conflicting_acc",
    "pointing_game",
    "energy_pointing_game",
    "iou",
)
METRIC_LABELS = {
    "test_acc": "test accuracy",
    "worst_group_acc": "worst-group accuracy",
    "bias_aligned_acc": "bias-aligned accuracy",
    "bias_conflicting_acc": "bias-conflicting accuracy",
    "pointing_game": "pointing game",
    "energy_pointing_game": "energy pointing game",
    "iou": "attention IoU",
    "val_acc": "validation accuracy",
}

_TRIALS_REQUIRED = ("trial_id", "phase", "arm", "seed", "alpha", "status", "val_acc")


@dataclass(frozen=True)
class StudyTables:
    run_dir: Path
    name: str
    config: dict
    meta: dict
    trials: pd.DataFrame
    epochs: pd.DataFrame | None
    predictions: pd.DataFrame | None
    attention: pd.DataFrame | None
    examples: dict[str, np.ndarray] | None
    optuna_storage: str | None
    notes: tuple[str, ...] = field(default=())


def arm_label(arm: str, alpha: float | None) -> str:
    if arm == BASELINE:
        return BASELINE
    return f"GAIN α={_fmt_alpha(alpha)}"


def _fmt_alpha(alpha: float | None) -> str:
    if alpha is None or (isinstance(alpha, float) and math.isnan(alpha)):
        return "?"
    return f"{alpha:g}"


def _read_parquet(path: Path, notes: list[str], what: str) -> pd.DataFrame | None:
    if not path.is_file():
        notes.append(f"{path.name} not found: {what} left out.")
        return None
    return pd.read_parquet(path)


def load_study(run_dir: str | Path) -> StudyTables:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"study directory {str(run_dir)!r} does not exist: pass runs/<name> as written by the study launcher"
        )
    trials_path = run_dir / "trials.parquet"
    if not trials_path.is_file():
        raise FileNotFoundError(
            f"{trials_path} not found: the study has not written any trial yet; run the study first"
        )
    study_path = run_dir / "study.json"
    meta: dict = json.loads(study_path.read_text()) if study_path.is_file() else {}
    notes: list[str] = []
    if not meta:
        notes.append("study.json not found: configuration and provenance left out.")

    trials = pd.read_parquet(trials_path)
    missing = [c for c in _TRIALS_REQUIRED if c not in trials.columns]
    if missing:
        raise ValueError(
            f"{trials_path} lacks columns {missing}: it was not written by this version of the study package"
        )
    trials = trials.copy()
    trials["alpha"] = trials["alpha"].astype(float)
    trials.loc[trials["arm"] == BASELINE, "alpha"] = np.nan
    for c in OUTCOME_METRICS:
        if c not in trials.columns:
            trials[c] = np.nan

    epochs = _read_parquet(run_dir / "epochs.parquet", notes, "learning curves")
    predictions = _read_parquet(run_dir / "predictions.parquet", notes, "per-image McNemar tests")
    attention = _read_parquet(run_dir / "attention.parquet", notes, "attention overlays")

    examples = None
    examples_path = run_dir / "examples.npz"
    if examples_path.is_file():
        with np.load(examples_path, allow_pickle=False) as z:
            examples = {k: z[k] for k in z.files}
    else:
        notes.append("examples.npz not found: attention overlays left out.")

    storage = _optuna_storage(meta.get("optuna_storage"), run_dir, notes)

    return StudyTables(
        run_dir=run_dir,
        name=str(meta.get("name", run_dir.name)),
        config=dict(meta.get("config", {})),
        meta=meta,
        trials=trials,
        epochs=epochs,
        predictions=predictions,
        attention=attention,
        examples=examples,
        optuna_storage=storage,
        notes=tuple(notes),
    )


def _optuna_storage(recorded: str | None, run_dir: Path, notes: list[str]) -> str | None:
    # Prefer the URL study.json records. A sqlite URL is only used when its file exists: optuna would
    # otherwise create an empty database, and the contract's URL (sqlite:///runs/<name>/optuna.db) is
    # relative to the launcher's working directory, which need not be ours.
    local = run_dir / "optuna.db"
    if recorded and not recorded.startswith("sqlite:///"):
        return recorded
    if recorded and Path(recorded.removeprefix("sqlite:///")).is_file():
        return f"sqlite:///{Path(recorded.removeprefix('sqlite:///')).resolve()}"
    if local.is_file():
        return f"sqlite:///{local.resolve()}"
    notes.append("optuna.db not found: optimisation history and parameter importances left out.")
    return None


def confirm_runs(trials: pd.DataFrame) -> pd.DataFrame:
    # Only completed confirmation runs count: a diverged or errored run has no valid outcome, and the
    # report lists how many there were rather than imputing them. Idempotent.
    # numpy masks: string comparisons on pandas' Arrow-backed columns cost ~0.3 ms each, and the
    # calibration tests call this thousands of times.
    keep = (trials["phase"].to_numpy(dtype=object) == CONFIRM) & (trials["status"].to_numpy(dtype=object) == COMPLETED)
    rows = trials[keep].copy()
    rows["arm_label"] = [arm_label(a, al) for a, al in zip(rows["arm"], rows["alpha"])]
    return rows


def _gain_rows(trials: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    rows = confirm_runs(trials)
    gain = rows["arm"].to_numpy(dtype=object) == GAIN
    return rows["alpha"].to_numpy(dtype=float)[gain], rows["val_acc"].to_numpy(dtype=float)[gain]


def gain_alphas(trials: pd.DataFrame) -> list[float]:
    alphas, _ = _gain_rows(trials)
    return sorted(float(a) for a in np.unique(alphas[~np.isnan(alphas)]))


def primary_alpha(trials: pd.DataFrame) -> float | None:
    alphas, val = _gain_rows(trials)
    ok = ~np.isnan(alphas) & ~np.isnan(val)
    if not ok.any():
        return None
    means = {float(a): float(val[ok][alphas[ok] == a].mean()) for a in np.unique(alphas[ok])}
    best = max(means.values())
    return min(a for a, m in means.items() if m == best)


def _arm_values(rows: pd.DataFrame, mask: np.ndarray, metric: str, label: str) -> tuple[np.ndarray, np.ndarray]:
    seeds = rows["seed"].to_numpy()[mask].astype(int)
    values = rows[metric].to_numpy(dtype=float)[mask]
    uniq, counts = np.unique(seeds, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(
            f"{label} has more than one completed confirm run for seed(s) {uniq[counts > 1].tolist()}: "
            "the pairing needs one run per (arm, alpha, seed); drop the reruns from trials.parquet"
        )
    return seeds, values


def paired_metric(trials: pd.DataFrame, alpha: float, metric: str = "test_acc") -> pd.DataFrame:
    # One row per seed that has both a completed baseline run and a completed GAIN run at this alpha.
    # Columns: seed, baseline, gain. Seeds with only one arm (or a NaN metric) are dropped: unpaired
    # runs cannot enter a paired test. Written with numpy because the calibration tests call it
    # thousands of times.
    rows = confirm_runs(trials)
    arm = rows["arm"].to_numpy(dtype=object)
    al = rows["alpha"].to_numpy(dtype=float)
    sb, vb = _arm_values(rows, arm == BASELINE, metric, BASELINE)
    sg, vg = _arm_values(rows, (arm == GAIN) & np.isclose(al, alpha), metric, arm_label(GAIN, alpha))
    common, ib, ig = np.intersect1d(sb, sg, assume_unique=True, return_indices=True)  # sorted by seed
    out = pd.DataFrame({"seed": common, "baseline": vb[ib], "gain": vg[ig]})
    return out.dropna(subset=["baseline", "gain"]).reset_index(drop=True)


def run_status_counts(trials: pd.DataFrame) -> pd.DataFrame:
    # (phase, arm label) x status counts, to show how many runs were stopped, diverged or failed.
    t = trials.copy()
    t["arm_label"] = [arm_label(a, al) for a, al in zip(t["arm"], t["alpha"])]
    t.loc[t["phase"] != CONFIRM, "arm_label"] = t["arm"]
    return t.groupby(["phase", "arm_label", "status"]).size().unstack("status", fill_value=0)
