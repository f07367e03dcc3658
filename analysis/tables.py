# Load a study directory (runs/<name>/) into typed tables and pair the confirmation runs by seed.
# The study package writes these files; this module only reads them. trials.parquet is required, with
# every column this version of the study writes; every other input is optional and its absence becomes
# a note (study.json too: without it the report has no configuration, provenance or margin).
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BASELINE = "baseline"
GAIN = "gain"
SEARCH = "search"
SELECT = "select"  # each arm's top search configurations re-run on selection seeds (validation only)
CONFIRM = "confirm"  # the only phase that enters the statistics
COMPLETED = "completed"
DIVERGED = "diverged"

# The primary comparison, fixed before any result is seen. Validation accuracy only: the test set
# never chooses anything. Ties (mean val_acc equal within TIE_TOLERANCE: means of the same counts in
# another order differ in the last bits) go to the smaller alpha.
PRIMARY_RULE = "best mean validation accuracy among GAIN alphas in confirmation"
TIE_TOLERANCE = 1e-9

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

# Content-free attention levels (a uniform map, a centred Gaussian) on the same test positives.
CONTENT_FREE = ("uniform", "gaussian")
ATTENTION_METRICS = ("pointing_game", "energy_pointing_game", "iou")

# Every column the study writes that the analysis reads (study/records.py writes them all for every
# trial, NaN where they do not apply). "collapsed": the run learnt one class (trainables.metrics).
_TRIALS_REQUIRED = ("trial_id", "phase", "arm", "arm_label", "seed", "alpha", "status", "val_acc", "val_loss",
                    "best_epoch", "selected_warmup", "collapsed", "pred_positive_share", *OUTCOME_METRICS,
                    *(f"{m}_{c}" for c in CONTENT_FREE for m in ATTENTION_METRICS))


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


def model_name(run: dict[str, Any]) -> str:
    """The network the study trained, as the title names it: "VGG16", "EfficientNet-Lite0"."""
    return {"efficientnet_lite0": "EfficientNet-Lite0"}.get(run.get("model.arch", "vgg16"), "VGG16")


def model_line(run: dict[str, Any]) -> str:
    """The regime: which network, from which weights, how much of it frozen, where Grad-CAM looks."""
    if "model.arch" not in run:
        return "n/a"
    arch, weights = run["model.arch"], run.get("model.weights")
    width = run.get("model.width")
    name = model_name(run) + (f" (1/{width} width)" if arch == "vgg16" and width != 1 else "")
    start = f"pretrained ({weights})" if weights and weights != "none" else "from scratch"
    n, unit = run.get("model.frozen_convs") or 0, "convs" if arch == "vgg16" else "blocks"
    frozen = f"its first {n} {unit} frozen" if n else "nothing frozen"
    return f"{name}, {start}, {frozen}, Grad-CAM on block {run.get('model.cam_block')}"


def arm_label(arm: str, alpha: float | None) -> str:
    if arm == BASELINE:
        return BASELINE
    return f"GAIN α={fmt_alpha(alpha)}"


def fmt_alpha(alpha: float | None) -> str:
    # Three significant digits: a tuned alpha of 0.297794 reads 0.298.
    if alpha is None or (isinstance(alpha, float) and math.isnan(alpha)):
        return "?"
    return f"{float(alpha):.3g}"


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
    elif "margin_pp" not in (meta.get("config") or {}):
        raise ValueError(
            f"{study_path} declares no equivalence margin (config.margin_pp): it was written by a development version "
            "of the study package; run the study again with this version (python -m study.launch)"
        )

    trials = pd.read_parquet(trials_path)
    missing = [c for c in _TRIALS_REQUIRED if c not in trials.columns]
    if missing:
        raise ValueError(
            f"{trials_path} lacks columns {missing}: it was not written by this version of the study package; "
            "run the study again with this version (python -m study.launch)"
        )
    trials = trials.copy()
    trials["alpha"] = trials["alpha"].astype(float)
    trials.loc[trials["arm"] == BASELINE, "alpha"] = np.nan

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
    return min(a for a, m in means.items() if m >= best - TIE_TOLERANCE)


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
    # Phases in protocol order: search, select, confirm.
    t = trials.copy()
    t["arm_label"] = [arm_label(a, al) for a, al in zip(t["arm"], t["alpha"])]
    t.loc[t["phase"] != CONFIRM, "arm_label"] = t["arm"]
    out = t.groupby(["phase", "arm_label", "status"]).size().unstack("status", fill_value=0)
    order = {SEARCH: 0, SELECT: 1, CONFIRM: 2}
    return out.sort_index(key=lambda ix: ix.map(lambda v: order.get(v, 3)) if ix.name == "phase" else ix)


@dataclass(frozen=True)
class ArmOutcomes:
    # Every confirmation run of one arm (GAIN at one alpha), whatever its status.
    arm: str
    alpha: float
    label: str
    runs: int
    completed: int
    collapsed_seeds: tuple[int, ...]  # completed runs flagged collapsed
    diverged_seeds: tuple[int, ...]  # no test metrics
    failed_seeds: tuple[int, ...]  # status "error" (retries exhausted)
    collapse_known: bool  # False when the table has no collapse flags for this arm
    # completed GAIN runs that selected a warm-up epoch (never trained with L_am); () for the baseline
    warmup_seeds: tuple[int, ...] = ()


def warmup_selected(rows: pd.DataFrame) -> np.ndarray:
    """Rows whose run selected a GAIN warm-up epoch (study.records writes the flag)."""
    if "selected_warmup" not in rows:
        return np.zeros(len(rows), bool)
    return rows["selected_warmup"].astype("boolean").fillna(False).to_numpy(bool)


def confirm_outcomes(trials: pd.DataFrame) -> list[ArmOutcomes]:
    c = trials[trials["phase"].astype(str) == CONFIRM]
    keys = [(BASELINE, float("nan"))] + [(GAIN, a) for a in sorted(set(c.loc[c["arm"] == GAIN, "alpha"].dropna().astype(float)))]
    out = []
    for arm, alpha in keys:
        part = c[c["arm"] == BASELINE] if arm == BASELINE else c[(c["arm"] == GAIN) & np.isclose(c["alpha"].astype(float), alpha)]
        status = part["status"].astype(str)
        done = part[status == COMPLETED]
        flag = done["collapsed"].astype("boolean") if "collapsed" in done else pd.Series(pd.NA, index=done.index, dtype="boolean")
        seeds = lambda rows: tuple(sorted(int(s) for s in rows["seed"]))  # noqa: E731
        out.append(ArmOutcomes(
            arm=arm, alpha=alpha, label=arm_label(arm, alpha), runs=len(part), completed=len(done),
            collapsed_seeds=seeds(done[flag.fillna(False).to_numpy(bool)]),
            diverged_seeds=seeds(part[status == DIVERGED]),
            failed_seeds=seeds(part[status == "error"]),
            collapse_known=bool(len(done) == 0 or flag.notna().all()),
            warmup_seeds=seeds(done[warmup_selected(done)]),
        ))
    return out
