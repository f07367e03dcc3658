# A fabricated study directory that follows the contract with the study package (runs/<name>/:
# study.json, trials/epochs/predictions/attention parquet, examples.npz, a real Optuna sqlite DB),
# so the analysis can be tested without training anything. Not a conftest: imported by the
# analysis tests explicitly, so it cannot clash with other packages' fixtures.
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

HABITATS = 2  # 0 = leaf (green), 1 = bark (brown)


def _cam(rng: np.ndarray, h: int, w: int, centre: tuple[float, float], sharp: float) -> list[float]:
    yy, xx = np.mgrid[0:h, 0:w]
    c = np.exp(-(((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sharp**2)))
    c = c + 0.2 * rng.random((h, w))
    c = (c - c.min()) / (c.max() - c.min())
    return c.ravel().astype(float).tolist()


def make_fake_study(
    root: Path,
    name: str = "fake",
    *,
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0),
    gain_effect: float = 0.003,
    n_test: int = 200,
    epochs: int = 6,
    search_trials: int = 6,
    with_optuna: bool = True,
    with_attention: bool = True,
    with_groups: bool = True,
    collapse: dict[tuple[str, float], tuple[int, ...]] | None = None,
    diverge: dict[tuple[str, float], tuple[int, ...]] | None = None,
    seed: int = 0,
    margin_pp: float = 1.0,
    max_seeds: int | None = None,
    stages: dict | None = None,
) -> Path:
    # collapse / diverge: {(arm, alpha): seeds} whose confirmation run collapsed (predicts one class,
    # test accuracy 0.5) or diverged (no test metrics, no predictions); alpha NaN for the baseline is
    # written as ("baseline", 0.0). max_seeds / stages: a staged study (study.json's config and its "stages" record).
    collapse = collapse or {}
    diverge = diverge or {}
    rng = np.random.default_rng(seed)
    run = Path(root) / name
    run.mkdir(parents=True, exist_ok=True)
    trials, epoch_rows, pred_rows, att_rows = [], [], [], []

    def hp(arm: str, alpha: float) -> dict:
        return {
            "hp_lr": float(10 ** rng.uniform(-5, -3)),
            "hp_weight_decay": float(10 ** rng.uniform(-6, -3)),
            "hp_alpha": alpha if arm == "gain" else math.nan,
            "hp_sigma": 0.5 if arm == "gain" else math.nan,
            "hp_omega": 10.0 if arm == "gain" else math.nan,
        }

    def curve(final: float) -> list[float]:
        return [float(final - 0.15 * math.exp(-e / 2) + rng.normal(0, 0.003)) for e in range(1, epochs + 1)]

    # Search phase: a few ASHA trials per arm, some stopped early.
    for arm in ("baseline", "gain"):
        for i in range(search_trials):
            alpha = float(rng.choice(alphas)) if arm == "gain" else math.nan
            tid = f"search-{arm}-{i}"
            vals = curve(0.95 + rng.normal(0, 0.005))
            stopped = i % 3 == 2
            n_ep = epochs // 2 if stopped else epochs
            trials.append(
                {"trial_id": tid, "phase": "search", "arm": arm, "seed": 1000 + i, "alpha": alpha,
                 "status": "stopped" if stopped else "completed", **hp(arm, alpha), "val_acc": max(vals[:n_ep]),
                 "best_epoch": int(np.argmax(vals[:n_ep]) + 1), "epochs": n_ep, "seconds": 60.0, "node_id": "n0"}
            )
            for e in range(n_ep):
                epoch_rows.append({"trial_id": tid, "phase": "search", "arm": arm, "seed": 1000 + i, "alpha": alpha,
                                   "epoch": e + 1, "val_acc": vals[e], "val_loss": 1 - vals[e], "loss": 1 - vals[e],
                                   "loss_cl": 1 - vals[e], "loss_am": 0.1 if arm == "gain" else math.nan,
                                   "loss_e": math.nan, "seconds": 10.0})

    # Selection: each arm's top search configurations re-run on 2 selection seeds (validation only).
    for arm in ("baseline", "gain"):
        for k in range(2):
            for sel_seed in (500, 501):
                alpha = float(alphas[0]) if arm == "gain" else math.nan
                vals = curve(0.95 + rng.normal(0, 0.005))
                trials.append({"trial_id": f"select-{arm}-{k}-{sel_seed}", "phase": "select", "arm": arm, "seed": sel_seed,
                               "alpha": alpha, "status": "completed", **hp(arm, alpha), "val_acc": max(vals),
                               "best_epoch": int(np.argmax(vals) + 1), "epochs": epochs, "seconds": 60.0, "node_id": "n0"})

    # Confirmation: every seed runs baseline and each alpha on the same test images.
    labels = np.tile([0, 1], n_test // 2)
    habitat = rng.integers(0, HABITATS, n_test) if with_groups else np.full(n_test, -1)
    image_ids = [f"img{i:04d}" for i in range(n_test)]
    att_ids = [image_ids[i] for i in np.flatnonzero(labels == 1)[:3]]
    difficulty = rng.random(n_test)  # shared across runs: the same images are hard for every run
    for s in seeds:
        seed_shift = rng.normal(0, 0.004)  # training randomness shared by the arms of one seed
        for arm, alpha in [("baseline", math.nan)] + [("gain", a) for a in alphas]:
            key = (arm, 0.0 if arm == "baseline" else float(alpha))
            acc = 0.955 + seed_shift + rng.normal(0, 0.003) + (gain_effect if arm == "gain" else 0.0)
            correct = difficulty < acc + rng.normal(0, 0.01, n_test)
            is_collapsed = s in collapse.get(key, ())
            if is_collapsed:  # predicts "positive" for every image: right on exactly the positives
                correct = labels == 1
            tid = f"confirm-{arm}-{alpha}-{s}"
            if s in diverge.get(key, ()):
                trials.append({"trial_id": tid, "phase": "confirm", "arm": arm, "seed": s, "alpha": alpha,
                               "status": "diverged", **hp(arm, alpha), "val_acc": math.nan, "best_epoch": 1, "epochs": 2,
                               "seconds": 10.0, "node_id": "n1", "collapsed": pd.NA})
                continue
            aligned = habitat == labels
            groups = {}
            if with_groups:
                accs = [correct[(labels == lab) & (habitat == h)].mean() for lab in (0, 1) for h in range(HABITATS)]
                groups = {"worst_group_acc": float(min(accs)), "bias_aligned_acc": float(correct[aligned].mean()),
                          "bias_conflicting_acc": float(correct[~aligned].mean())}
            vals = curve(acc + rng.normal(0, 0.003))
            trials.append(
                {"trial_id": tid, "phase": "confirm", "arm": arm, "seed": s, "alpha": alpha, "status": "completed",
                 **hp(arm, alpha), "val_acc": max(vals), "best_epoch": int(np.argmax(vals) + 1), "epochs": epochs,
                 "seconds": 120.0, "node_id": "n1", "test_acc": float(correct.mean()),
                 "worst_group_acc": groups.get("worst_group_acc", math.nan),
                 "bias_aligned_acc": groups.get("bias_aligned_acc", math.nan),
                 "bias_conflicting_acc": groups.get("bias_conflicting_acc", math.nan),
                 "pointing_game": float(rng.uniform(0.5, 0.9)) if with_attention else math.nan,
                 "energy_pointing_game": float(rng.uniform(0.3, 0.7)) if with_attention else math.nan,
                 "iou": float(rng.uniform(0.2, 0.5)) if with_attention else math.nan,
                 "collapsed": is_collapsed, "val_loss": 0.1 + rng.uniform(0, 0.05),
                 "pred_positive_share": 1.0 if is_collapsed else 0.5 + rng.normal(0, 0.02),
                 **(_content_free() if with_attention else {})}
            )
            if is_collapsed:
                trials[-1]["test_acc"] = float(correct.mean())
            for e, v in enumerate(vals):
                epoch_rows.append({"trial_id": tid, "phase": "confirm", "arm": arm, "seed": s, "alpha": alpha,
                                   "epoch": e + 1, "val_acc": v, "val_loss": 1 - v, "loss": 1 - v, "loss_cl": 1 - v,
                                   "loss_am": 0.1 if arm == "gain" else math.nan, "loss_e": math.nan, "seconds": 10.0})
            prob = np.where(correct, labels, 1 - labels) * 0.8 + 0.1
            if is_collapsed:
                prob = np.full(n_test, 0.9)
            for i in range(n_test):
                pred_rows.append({"trial_id": tid, "arm": arm, "seed": s, "alpha": alpha, "image_id": image_ids[i],
                                  "label": int(labels[i]), "habitat": int(habitat[i]), "prob": float(prob[i]),
                                  "pred": int(prob[i] > 0.5), "correct": bool(correct[i])})
            for img in att_ids:
                centre = (3.0, 3.0) if arm == "gain" else (rng.uniform(0, 7), rng.uniform(0, 7))
                att_rows.append({"trial_id": tid, "arm": arm, "seed": s, "alpha": alpha, "image_id": img,
                                 "cam_h": 7, "cam_w": 7, "cam": _cam(rng, 7, 7, centre, 1.5)})

    # Same dtypes as study/records.py writes: pandas "string" columns, int64 seeds, float64 alpha.
    def frame(rows: list[dict]) -> pd.DataFrame:
        df = pd.DataFrame(rows)
        for c in ("trial_id", "phase", "arm", "status", "image_id", "node_id"):
            if c in df:
                df[c] = df[c].astype("string")
        if "collapsed" in df:
            df["collapsed"] = df["collapsed"].astype("boolean")  # NA for search / select rows
        return df

    # Every column study/records.py writes for every trial, NaN (or False) where it does not apply.
    for row in trials:
        row["arm_label"] = "baseline" if row["arm"] == "baseline" else f"GAIN α={row['alpha']:.3g}"
        row.setdefault("selected_warmup", False)
        for col in ("val_loss", "pred_positive_share", *_content_free()):
            row.setdefault(col, math.nan)

    frame(trials).to_parquet(run / "trials.parquet", index=False)
    frame(epoch_rows).to_parquet(run / "epochs.parquet", index=False)
    frame(pred_rows).to_parquet(run / "predictions.parquet", index=False)
    if with_attention:
        frame(att_rows).to_parquet(run / "attention.parquet", index=False)
        size = 56
        yy, xx = np.mgrid[0:size, 0:size]
        images = rng.integers(0, 255, (len(att_ids), size, size, 3), dtype=np.uint8)
        masks = np.stack([((yy - 28) ** 2 / 15**2 + (xx - 26 - k) ** 2 / 10**2 < 1).astype(np.uint8) for k in range(len(att_ids))])
        np.savez(run / "examples.npz", image_ids=np.array(att_ids), images=images, masks=masks)

    if with_optuna:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = f"sqlite:///{(run / 'optuna.db').resolve()}"
        for arm in ("baseline", "gain"):
            st = optuna.create_study(study_name=f"{name}-{arm}", storage=storage, direction="maximize",
                                     sampler=optuna.samplers.RandomSampler(seed=seed))

            def objective(t: optuna.Trial, arm: str = arm) -> float:
                lr = t.suggest_float("lr", 1e-5, 1e-3, log=True)
                wd = t.suggest_float("weight_decay", 1e-6, 1e-3, log=True)
                extra = t.suggest_float("alpha", 0.1, 5.0, log=True) if arm == "gain" else 0.0
                return 0.95 - 0.01 * abs(math.log10(lr) + 4) - 0.002 * abs(math.log10(wd) + 4.5) - 0.001 * abs(extra - 1)

            st.optimize(objective, n_trials=search_trials + 4)

    meta_new = {
        "confirm_alphas": list(alphas),
        "alpha_roles": {"tuned": float(alphas[0]), "paper": 1.0} if 1.0 in alphas else {"tuned": float(alphas[0])},
        "search_split": {"baseline": search_trials, "gain": search_trials},
        "selected": {arm: {"trial_id": f"search-{arm}-0", "select_trial_ids": [f"select-{arm}-0-500", f"select-{arm}-0-501"],
                           "objective": 0.951, "val_acc": 0.955,
                           "hyperparameters": {"lr": 0.000123456, "weight_decay": 1e-4, **({"alpha": float(alphas[0])} if arm == "gain" else {})}}
                     for arm in ("baseline", "gain")},
    }
    from trainables.config import preset

    config_new = {"select": "overall", "selection_k": 2, "select_seeds": [500, 501],
                  "run_config": preset("cpu").to_flat()}
    (run / "study.json").write_text(json.dumps({
        "name": name,
        **meta_new,
        # A staged study declares its first stage's seeds (the later ones are added by the looks).
        "config": {"seeds": list(seeds)[:(stages or {}).get("looks", [len(seeds)])[0]], "alphas": list(alphas), "trials": 2 * search_trials, "preset": "fake",
                   "data": {"kind": "synthetic"}, **config_new, "margin_pp": margin_pp,
                   **({"max_seeds": max_seeds, "spending": "obf"} if max_seeds else {})},
        **({"stages": stages} if stages else {}),
        "primary_rule": "best mean validation accuracy among GAIN alphas in confirmation",
        "versions": {"python": "3.11"},
        "git_commit": "0" * 40,
        "dataset_fingerprint": "fake",
    }, indent=2))
    return run


def _content_free() -> dict[str, float]:
    # Fixed per study (the test set is fixed): the scores of a uniform and a centred Gaussian map.
    return {"pointing_game_uniform": 0.31, "energy_pointing_game_uniform": 0.12, "iou_uniform": 0.08,
            "pointing_game_gaussian": 0.45, "energy_pointing_game_gaussian": 0.2, "iou_gaussian": 0.15}


def seed_table(
    rng: np.random.Generator, n_seeds: int, difference: float, sd_diff: float, alphas: tuple[float, ...] = (1.0,)
) -> pd.DataFrame:
    # A minimal confirm-only trials table for the calibration simulations: baseline test accuracy per
    # seed, and each GAIN alpha = baseline + difference + N(0, sd_diff). val_acc is independent noise,
    # so the primary alpha is picked at random among equals, as under the null it should be.
    base = 0.96 + rng.normal(0, 0.004, n_seeds)
    rows = {"trial_id": [], "phase": [], "arm": [], "seed": [], "alpha": [], "status": [], "val_acc": [], "test_acc": []}
    for arm, alpha in [("baseline", math.nan)] + [("gain", a) for a in alphas]:
        test = base if arm == "baseline" else base + difference + rng.normal(0, sd_diff, n_seeds)
        val = 0.95 + rng.normal(0, 0.004, n_seeds)
        for s in range(n_seeds):
            rows["trial_id"].append(f"{arm}-{alpha}-{s}")
            rows["phase"].append("confirm")
            rows["arm"].append(arm)
            rows["seed"].append(s)
            rows["alpha"].append(alpha)
            rows["status"].append("completed")
            rows["val_acc"].append(float(val[s]))
            rows["test_acc"].append(float(test[s]))
    return pd.DataFrame(rows)
