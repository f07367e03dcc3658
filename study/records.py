"""The study's record on disk: study.json and tidy Parquet tables, readable with pandas alone.

Tables (one row per ...):
  trials.parquet       trial: phase (search/select/confirm), arm, arm_label, seed, alpha, status, hp_<name>,
                       val_acc, val_loss, objective, candidate, test metrics, collapsed, content-free
                       attention levels, node_id
  epochs.parquet       (trial, epoch): learning curves
  predictions.parquet  (confirmation run, test image): id, label, group, probability, prediction
  attention.parquet    (confirmation run, example image): Grad-CAM map at feature resolution
  examples.npz         the example images and masks the attention maps refer to
"""
from __future__ import annotations

import json
import math
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainables.config import ARMS

from .plan import PRIMARY_RULE, StudyConfig
from .progress import trial_outcome
from .spaces import search_dims
from .trainable import METRIC, RESULT_FILE, TrialConfig, read_history

STUDY_FILE = "study.json"
ATTENTION_SCORES = ("pointing_game", "energy_pointing_game", "iou")
# Test metrics of confirmation runs; "<score>_uniform" / "<score>_gaussian" are what content-free maps
# score on the same test positives (the level a trained map must beat for its score to mean anything).
TEST_COLUMNS = ("test_acc", "worst_group_acc", "bias_aligned_acc", "bias_conflicting_acc", *ATTENTION_SCORES,
                "pred_positive_share",
                *(f"{s}_{ref}" for ref in ("uniform", "gaussian") for s in ATTENTION_SCORES))
EPOCH_COLUMNS = ("val_acc", "val_loss", "val_worst_group_acc", "score", "loss", "loss_cl", "loss_am", "loss_e")


class ConfigChanged(ValueError):
    """A resumed study was started with a different configuration."""


# ---- study.json ------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    import optuna
    import pyarrow
    import ray

    return {"python": platform.python_version(), "torch": _build_version("torch"),
            "torchvision": _build_version("torchvision"), "ray": ray.__version__, "optuna": optuna.__version__,
            "numpy": np.__version__, "pandas": pd.__version__, "pyarrow": pyarrow.__version__,
            "platform": platform.platform()}


def _build_version(package: str) -> str:
    """`package.__version__` with its build tag (2.14.1+cu130), read from its version.py: the driver
    does not import torch (~4 s), and the installed metadata leaves the tag out."""
    import importlib.metadata
    import importlib.util
    import re

    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "version.py"
        found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)", path.read_text(), re.M) if path.is_file() else None
        if found:
            return found.group(1)
    return importlib.metadata.version(package)


def git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def open_study_record(cfg: StudyConfig, run_dir: Path, cli: list[str], fingerprint: str,
                      data: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
    """Create study.json, or check that a resumed study matches it. Returns (record, resumed).
    `data`: the splits' provenance (source, layout, images per split and class), the report's "Data" line."""
    path = run_dir / STUDY_FILE
    session = {"cli": cli, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "host": platform.node(), "git_commit": git_commit()}
    if path.exists():
        record = json.loads(path.read_text())
        old = record["config"]
        new = cfg.to_json()
        differences = _differences(old, new, list(cfg.identity()))
        # A staged confirmation's looks and boundaries are fixed by its first stage and its budget: more
        # --seeds would move them after the data were seen, so only a one-stage study can be extended.
        changed = [d for d in differences if not (_extends(*d) and not cfg.sequential)]
        if record.get("dataset_fingerprint") != fingerprint:
            changed.append(("dataset_fingerprint", record.get("dataset_fingerprint"), fingerprint))
        if changed:
            lines = [f"  {k}: was {_short(a)}, now {_short(b)}" for k, a, b in changed]
            raise ConfigChanged(
                f"study {cfg.name!r} in {run_dir} was started with a different configuration:\n"
                + "\n".join(lines)
                + "\nResume it with its original flags:\n  python -m study.launch "
                + " ".join(record["cli"]) + "\nor start a new study with another --name (more --seeds or "
                "--alphas extend a study; nothing else may change)."
            )
        if differences:  # only extensions: more confirmation seeds and/or alphas; everything run is kept
            record.setdefault("extensions", []).append(
                {"started": session["started"], **{k: {"was": a, "now": b} for k, a, b in differences}})
            record["config"], record["cli"] = new, cli
        record.setdefault("sessions", []).append(session)
        if data is not None:  # the same fingerprint: the same images, wherever the folder is now
            record["data_provenance"] = data
        _write_json(path, record)
        return record, True
    from analysis.verdict import RULES  # the verdict's rules, written down before the first trial

    run_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "name": cfg.name, "config": cfg.to_json(), "cli": cli, "primary_rule": PRIMARY_RULE,
        "verdict_rules": list(RULES),
        "versions": versions(), "git_commit": session["git_commit"], "dataset_fingerprint": fingerprint,
        "data_provenance": data,
        "optuna_storage": cfg.optuna_url, "search_split": cfg.search_split,
        "created": session["started"], "sessions": [session],
    }
    _write_json(path, record)
    return record, False


def update_study_record(run_dir: Path, **fields: Any) -> None:
    path = run_dir / STUDY_FILE
    record = json.loads(path.read_text())
    record.update(fields)
    _write_json(path, record)


def _differences(old: dict[str, Any], new: dict[str, Any], keys: list[str]) -> list[tuple[str, Any, Any]]:
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [(f"{k}.{sub}" if "." not in sub else sub, a.get(sub), b.get(sub))
                    for sub in sorted(set(a) | set(b)) if _norm(a.get(sub)) != _norm(b.get(sub))]
        elif _norm(a) != _norm(b):
            out.append((k, a, b))
    return out


def _extends(key: str, old: Any, new: Any) -> bool:
    """More confirmation seeds (the old ones first) or more alphas (the old ones kept) extend a study."""
    if not (isinstance(old, list) and isinstance(new, list) and len(new) > len(old)):
        return False
    if key == "seeds":
        return new[:len(old)] == old
    return key == "alphas" and all(a in new for a in old)


def _norm(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def _short(v: Any) -> str:
    s = json.dumps(v, sort_keys=True, default=str)
    return s if len(s) <= 200 else s[:197] + "..."


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str, allow_nan=False))
    tmp.replace(path)


# ---- rows from Tune results ------------------------------------------------------------------
def _f(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and v is not None and not isinstance(v, bool) else math.nan


def result_rows(result: Any, load_run: bool = True
                ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """One Tune Result -> (trial row, epoch rows, full RunResult dict or None)."""
    trial = TrialConfig.from_tune(result.config)
    phase, cfg = trial.phase, trial.run
    flat = cfg.to_flat()
    tune_id = Path(result.path).name
    last = result.metrics or {}
    status = "error" if result.error is not None else trial_outcome("TERMINATED", last)
    alpha = cfg.gain.alpha if cfg.arm == "gain" else math.nan
    row: dict[str, Any] = {
        "trial_id": tune_id, "phase": phase, "arm": cfg.arm, "arm_label": arm_label(cfg.arm, alpha), "seed": cfg.seed,
        "alpha": alpha, "status": status, "candidate": trial.candidate,
    }
    for d in search_dims("gain", cfg):
        applies = d.key.startswith(("train.", "data.", "model.")) or cfg.arm == "gain"
        row[f"hp_{d.name}"] = flat[d.key] if applies else None
    history = read_history(result.checkpoint)  # complete after any restore, unlike Tune's metrics log
    row.update({
        "val_acc": _f(last.get("best_val_acc")),
        "val_loss": _f(last.get("best_val_loss")),
        "best_epoch": int(last.get("best_epoch") or 0),
        "epochs": len(history),
        "seconds": _f(last.get("time_total_s")),
        "node_id": last.get("node_id"),
        "objective": _f(last.get(METRIC)),
    })
    # A GAIN run that selected one of its warm-up epochs never trained with L_am: its model is a
    # classifier trained on L_cl alone (with GAIN's hyperparameters), not GAIN.
    row["selected_warmup"] = bool(cfg.arm == "gain" and cfg.gain.alpha > 0
                                  and 0 < row["best_epoch"] <= cfg.gain.warmup_epochs)
    for c in ("time_val_s", "time_test_s", "time_checkpoint_s"):
        row[c] = _f(last.get(c)) if c in last else 0.0
    row["time_train_s"] = max(0.0, row["seconds"] - row["time_val_s"] - row["time_test_s"] - row["time_checkpoint_s"]) \
        if math.isfinite(row["seconds"]) else math.nan
    for c in TEST_COLUMNS:
        row[c] = _f(last.get(c)) if phase == "confirm" else math.nan
    collapsed = last.get("collapsed") if phase == "confirm" else None
    row["collapsed"] = bool(collapsed) if isinstance(collapsed, bool) else None
    row["error"] = str(result.error).splitlines()[0][:300] if result.error is not None else None
    epochs = [{"trial_id": tune_id, "phase": phase, "arm": cfg.arm, "seed": cfg.seed, "alpha": alpha,
               "epoch": int(h["epoch"]), **{c: _f(h.get(c)) for c in EPOCH_COLUMNS},
               "seconds": _f(h.get("epoch_seconds"))} for h in history]
    full = None
    if load_run and last.get("final") and result.checkpoint is not None:
        with result.checkpoint.as_directory() as d:
            p = Path(d) / RESULT_FILE
            if p.exists():
                full = json.loads(p.read_text())
    return row, epochs, full


def arm_label(arm: str, alpha: float) -> str:
    """"baseline" or "GAIN α=1": a key that survives groupby (alpha is NaN for the baseline)."""
    return "baseline" if arm == "baseline" else f"GAIN α={alpha:.3g}"


def preflight(cfg: StudyConfig) -> None:
    """Write what the study will write, from the resolved configuration, to memory: study.json and a
    trials table with a row per arm and phase. Whatever the study accepted must be writable, and a
    value that is not must fail now, before the first trial, not after the last."""
    import io
    from types import SimpleNamespace

    json.dumps(cfg.to_json(), allow_nan=False, default=str)
    rows = []
    for arm in ARMS:
        for phase in ("search", "select", "confirm"):
            config = TrialConfig(phase, cfg.base.replace(arm=arm)).to_tune()
            last = {"epoch": 1, "best_val_acc": 0.5, "best_val_loss": 0.7, "best_epoch": 1, METRIC: 0.5,
                    "time_total_s": 1.0, "final": True, "status": "completed", "collapsed": False}
            fake = SimpleNamespace(config=config, path=f"/x/{phase}-{arm}-0", metrics=last, error=None,
                                   checkpoint=None)
            rows.append(result_rows(fake, load_run=False)[0])
    df = _frame(rows, ["trial_id", "phase", "arm", "arm_label", "seed", "alpha", "status"])
    df.to_parquet(io.BytesIO(), index=False)


# ---- tables ----------------------------------------------------------------------------------
def write_tables(run_dir: Path, grids: dict[str, Any], splits: Any) -> dict[str, pd.DataFrame]:
    trials, epochs, preds, att = [], [], [], []
    names = list(getattr(splits, "habitat_names", ()) or ())
    for grid in grids.values():
        for result in grid:
            row, ep, full = result_rows(result)
            trials.append(row)
            epochs += ep
            if row["phase"] == "confirm" and full and full.get("test"):
                key = {k: row[k] for k in ("trial_id", "arm", "arm_label", "seed", "alpha")}
                for p in full["test"]["predictions"]:
                    h = int(p["habitat"])
                    preds.append({**key, "image_id": str(p["image_id"]), "label": int(p["label"]),
                                  "habitat": h, "habitat_name": names[h] if 0 <= h < len(names) else None,
                                  "prob": _f(p["prob"]), "pred": int(p["pred"]),
                                  "correct": bool(int(p["pred"]) == int(p["label"]))})
                for a in full["test"]["attention"]:
                    cam = np.asarray(a["cam"], dtype=np.float32)
                    att.append({**key, "image_id": str(a["image_id"]), "cam_h": int(cam.shape[0]),
                                "cam_w": int(cam.shape[1]), "cam": cam.ravel().tolist()})
    tables = {
        "trials": _frame(trials, ["trial_id", "phase", "arm", "arm_label", "seed", "alpha", "status"]),
        "epochs": _frame(epochs, ["trial_id", "phase", "arm", "seed", "alpha", "epoch", *EPOCH_COLUMNS, "seconds"]),
        "predictions": _frame(preds, ["trial_id", "arm", "arm_label", "seed", "alpha", "image_id", "label", "habitat",
                                      "habitat_name", "prob", "pred", "correct"]),
        "attention": _frame(att, ["trial_id", "arm", "arm_label", "seed", "alpha", "image_id", "cam_h", "cam_w",
                                  "cam"]),
    }
    t = tables["trials"]
    for c in ("hp_cam_grad", "collapsed"):
        if c in t:
            t[c] = t[c].astype("boolean")
    for c in ("hp_batch_size", "hp_warmup_epochs"):
        if c in t:
            t[c] = t[c].astype("Int64")
    for name, df in tables.items():
        df.to_parquet(run_dir / f"{name}.parquet", index=False)
    _write_examples(run_dir, tables["attention"], splits)
    return tables


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in columns:
        if c not in df:
            df[c] = pd.Series(dtype="float64")
    df = df[columns + [c for c in df.columns if c not in columns]]
    for c in ("trial_id", "phase", "arm", "arm_label", "status", "image_id", "node_id", "error", "candidate",
              "habitat_name"):
        if c in df:
            df[c] = df[c].astype("string")
    for c in ("seed", "epoch", "epochs", "best_epoch", "label", "habitat", "pred", "cam_h", "cam_w"):
        if c in df and len(df):
            df[c] = df[c].astype("int64")
    if "alpha" in df:
        df["alpha"] = df["alpha"].astype("float64")
    return df.sort_values([c for c in ("phase", "arm", "seed", "trial_id") if c in df], kind="stable",
                          ignore_index=True) if len(df) else df


def _write_examples(run_dir: Path, attention: pd.DataFrame, splits: Any) -> None:
    test = splits.test
    wanted = list(dict.fromkeys(attention["image_id"].tolist())) if len(attention) else []
    index = {str(i): k for k, i in enumerate(test.image_ids)}
    rows = [index[i] for i in wanted if i in index]
    images = np.asarray(test.images[rows]).transpose(0, 2, 3, 1) if rows else np.zeros((0, 1, 1, 3), np.uint8)
    masks = np.asarray(test.masks[rows]) if rows else np.zeros((0, 1, 1), np.uint8)
    np.savez_compressed(run_dir / "examples.npz", image_ids=np.array([wanted[k] for k in range(len(rows))], dtype=str),
                        images=images.astype(np.uint8), masks=masks.astype(np.uint8))


# ---- where the time went --------------------------------------------------------------------
TIME_PARTS = ("time_train_s", "time_val_s", "time_test_s", "time_checkpoint_s")


def phase_timing(rows: list[dict[str, Any]], wall_s: float, slots: int) -> dict[str, float]:
    """One phase of this session: wall time, the trials' own time split into training, validation,
    test evaluation and checkpointing, and what is left of the slots' time (Ray/Tune: actor start-up,
    scheduling, restores, slots left idle while a phase drains)."""
    trial_s = sum(r["seconds"] for r in rows if math.isfinite(r["seconds"]))
    out = {"wall_s": wall_s, "slots": slots, "trials": len(rows), "trial_s": trial_s}
    for part in TIME_PARTS:
        out[part.removeprefix("time_")] = sum(r[part] for r in rows if math.isfinite(r[part]))
    out["overhead_s"] = max(0.0, wall_s * slots - trial_s)
    return out


def format_timing(timing: dict[str, Any]) -> str:
    phases = timing.get("phases", {})
    lines = ["where this session's time went (trial parts sum over trials; overhead = wall x slots - trial time):",
             f"  {'phase':<16}{'wall':>8}{'trials':>8}{'train':>9}{'val':>8}{'test':>8}{'ckpt':>8}{'overhead':>10}"]
    for name, p in phases.items():
        lines.append(f"  {name:<16}{p['wall_s']:>7.0f}s{p['trials']:>8}{p['train_s']:>8.0f}s{p['val_s']:>7.0f}s"
                     f"{p['test_s']:>7.0f}s{p['checkpoint_s']:>7.0f}s{p['overhead_s']:>9.0f}s")
    other = {k: v for k, v in timing.items() if k.endswith("_s")}
    lines.append("  " + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.0f} s" for k, v in other.items()))
    total, slots = timing.get("total_s", math.nan), max((p["slots"] for p in phases.values()), default=1)
    busy = sum(p["train_s"] + p["val_s"] + p["test_s"] for p in phases.values())
    if total and math.isfinite(total):
        lines.append(f"  training, validation and test evaluation fill {busy / (total * slots):.0%} of "
                     f"{slots} slot(s) x {total:.0f} s wall time; the rest is overhead")
    return "\n".join(lines)


# ---- terminal summary (until the analysis report lands, and always as a glance) ---------------
def summary_table(trials: pd.DataFrame) -> str:
    lines = []
    for phase, what in (("search", "search (validation only)"), ("select", "selection (validation only)")):
        s = trials[trials["phase"] == phase]
        if len(s):
            g = s.groupby("arm").agg(trials=("trial_id", "size"),
                                     completed=("status", lambda x: int((x == "completed").sum())),
                                     stopped=("status", lambda x: int((x == "stopped").sum())),
                                     diverged=("status", lambda x: int((x == "diverged").sum())),
                                     failed=("status", lambda x: int((x == "error").sum())),
                                     best_val=("val_acc", "max"))
            lines += [f"{what}:", g.to_string(float_format=lambda v: f"{v:.4f}"), ""]
    c = trials[trials["phase"] == "confirm"]
    if len(c):
        c = c.assign(collapsed=c["collapsed"].fillna(False).astype(bool))
        g = c.groupby("arm_label", sort=False).agg(
            runs=("trial_id", "size"), diverged=("status", lambda x: int((x == "diverged").sum())),
            failed=("status", lambda x: int((x == "error").sum())), collapsed=("collapsed", "sum"),
            val_acc=("val_acc", "mean"), test_acc=("test_acc", "mean"), test_sd=("test_acc", "std"),
            worst_group=("worst_group_acc", "mean"), energy=("energy_pointing_game", "mean"), iou=("iou", "mean"))
        lines += ["confirmation (means over seeds; collapsed = one class for >= 95% of test images or chance-level "
                  "accuracy, counted and kept in the means):", g.to_string(float_format=lambda v: f"{v:.4f}")]
        cf = c[[f"{s}_{ref}" for ref in ("uniform", "gaussian") for s in ("energy_pointing_game", "iou")]].mean()
        lines.append(f"content-free attention on the same positives: energy {cf['energy_pointing_game_uniform']:.4f} "
                     f"(uniform) / {cf['energy_pointing_game_gaussian']:.4f} (centred Gaussian), IoU "
                     f"{cf['iou_uniform']:.4f} / {cf['iou_gaussian']:.4f}")
        base = c[c["arm"] == "baseline"].set_index("seed")["test_acc"]
        for label, grp in c[c["arm"] == "gain"].groupby("arm_label", sort=False):
            diff = (grp.set_index("seed")["test_acc"] - base).dropna()
            if len(diff):
                lines.append(f"paired test-accuracy difference {label} - baseline over {len(diff)} seeds: mean "
                             f"{diff.mean():+.4f}, GAIN ahead on {int((diff > 0).sum())}, behind on "
                             f"{int((diff < 0).sum())}")
    return "\n".join(lines)
