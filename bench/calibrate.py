"""Calibrate a preset: both arms at the preset's own hyperparameters over several seeds.

    python -m bench.calibrate --seeds 5                         # the cpu preset, 2 runs at a time
    python -m bench.calibrate --seeds 5 --set data.camouflage=0.7 --arms baseline
    python -m bench.calibrate --seeds 5 --arms gain --set gain.masked_bn=batch

Prints, per arm and seed, validation and test accuracy, the selected epoch, collapse, and attention
quality (energy pointing game, IoU, pointing game) next to what content-free maps (uniform, centred
Gaussian) score on the same test positives, and each run's validation accuracy (and GAIN's L_am) by
epoch; then the means per arm. Seeds are 1000.. (the study's
confirmation seeds), one thread per run.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from typing import Any

import numpy as np

from trainables.config import PRESETS, ConfigError, parse_overrides, preset
from trainables.data import load_splits
from trainables.loop import train
from trainables.metrics import above_chance

SCORES = ("energy_pointing_game", "iou", "pointing_game")
SHORT = {"energy_pointing_game": "energy", "iou": "iou", "pointing_game": "point"}


def one_run(job: tuple[str, str, int, dict[str, Any]]) -> dict[str, Any]:
    preset_name, arm, seed, overrides = job
    cfg = preset(preset_name, arm=arm, seed=seed, **{"train.num_threads": 1, "train.device": "cpu", **overrides})
    t0 = time.perf_counter()
    splits = load_splits(cfg.data)
    r = train(cfg, splits)
    row: dict[str, Any] = {"arm": arm, "seed": seed, "status": r.status, "val_acc": r.best_val_acc,
                           "best_epoch": r.best_epoch, "epochs": len(r.history), "seconds": time.perf_counter() - t0,
                           "cap": cfg.train.max_epochs, "at_chance": not above_chance(r.best_val_acc, len(splits.val)),
                           "warmup": arm == "gain" and 0 < r.best_epoch <= cfg.gain.warmup_epochs,
                           "curve": [(h.val_acc, h.losses.get("am", 0.0)) for h in r.history]}
    if r.test is not None:
        t = r.test
        row.update(test_acc=t.accuracy, worst_group=t.worst_group_accuracy, collapsed=t.collapsed,
                   pos_share=t.pred_positive_share, **{k: getattr(t, k) for k in SCORES}, **t.content_free)
    return row


def _fmt_row(r: dict[str, Any]) -> str:
    if "test_acc" not in r:
        return f"{r['arm']:<9}{r['seed']:>6}  {r['status']}"
    att = "  ".join(f"{SHORT[k]} {r[k]:.3f}|{r[k + '_uniform']:.3f}|{r[k + '_gaussian']:.3f}" for k in SCORES)
    return (f"{r['arm']:<9}{r['seed']:>6}{r['val_acc']:>8.4f}{r['test_acc']:>8.4f}{r['worst_group']:>8.4f}"
            f"{r['best_epoch']:>5}/{r['epochs']:<3}{'YES' if r['collapsed'] else 'no':>5}{r['seconds']:>6.0f}s  {att}")


def _fmt_curve(r: dict[str, Any]) -> str:
    """The run's validation accuracy per epoch, and its mean L_am where L_am was on."""
    val = " ".join(f"{v:.3f}" for v, _ in r["curve"])
    am = " ".join(f"{a:.3f}" if a else "-" for _, a in r["curve"])
    return f"    val by epoch: {val}" + (f"\n    L_am by epoch: {am}" if r["arm"] == "gain" else "")


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'arm':<9}{'seed':>6}{'val':>8}{'test':>8}{'worst':>8}{'epoch':>9}{'coll':>5}{'time':>7}  "
            "attention: trained|uniform|gaussian")
    lines = [head] + [_fmt_row(r) for r in rows]
    lines.append("")
    for arm in dict.fromkeys(r["arm"] for r in rows):
        done = [r for r in rows if r["arm"] == arm and "test_acc" in r]
        if not done:
            continue
        mean = lambda k: float(np.mean([r[k] for r in done]))  # noqa: E731
        sd = float(np.std([r["test_acc"] for r in done], ddof=1)) if len(done) > 1 else float("nan")
        att = "  ".join(f"{SHORT[k]} {mean(k):.3f}|{mean(k + '_uniform'):.3f}|{mean(k + '_gaussian'):.3f}"
                        for k in SCORES)
        beats = all(mean(k) > max(mean(k + "_uniform"), mean(k + "_gaussian")) for k in ("energy_pointing_game", "iou"))
        lines.append(f"mean {arm:<9} over {len(done)} seeds: val {mean('val_acc'):.4f} (max {max(r['val_acc'] for r in done):.4f})"
                     f"  test {mean('test_acc'):.4f} (sd {sd:.4f}, min {min(r['test_acc'] for r in done):.4f})  worst group "
                     f"{mean('worst_group'):.4f}  {mean('seconds'):.0f} s/run")
        lines.append(f"     at chance {sum(r['at_chance'] for r in done)}/{len(done)}  collapsed "
                     f"{sum(bool(r['collapsed']) for r in done)}/{len(done)}  ended on the cap "
                     f"{sum(r['epochs'] == r['cap'] for r in done)}/{len(done)}  selected a warm-up epoch "
                     f"{sum(r['warmup'] for r in done)}/{len(done)}  epochs {mean('epochs'):.1f}")
        lines.append(f"     attention {att}  -> trained beats both content-free maps on energy and IoU: "
                     f"{'yes' if beats else 'NO'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=list(PRESETS), default="cpu")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (1000, 1001, ...)")
    p.add_argument("--first-seed", type=int, default=1000)
    p.add_argument("--arms", default="baseline,gain", help="comma-separated: baseline, gain")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    args = p.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
        arms = [a.strip() for a in args.arms.split(",") if a.strip()]
        for arm in arms:
            preset(args.preset, arm=arm, **overrides)  # fail on a bad value before any run
        if args.seeds < 1 or args.jobs < 1:
            raise ConfigError(f"--seeds {args.seeds} --jobs {args.jobs}: use at least 1 of each")
    except ConfigError as e:
        p.error(str(e))
    base = preset(args.preset, **overrides)
    load_splits(base.data)  # generate (and cache) the data once, before the workers start
    print(f"preset {args.preset} {overrides or ''}: {base.data.image_size}px, camouflage {base.data.camouflage}, "
          f"bias {base.data.bias}, {base.data.n_train}/{base.data.n_val}/{base.data.n_test} per class, "
          f"attention on conv block {base.model.cam_block}", flush=True)
    jobs = [(args.preset, arm, args.first_seed + k, overrides) for k in range(args.seeds) for arm in arms]
    rows = []
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for row in pool.imap(one_run, jobs):
            rows.append(row)
            print(_fmt_row(row), flush=True)
            print(_fmt_curve(row), flush=True)
    rows.sort(key=lambda r: (arms.index(r["arm"]), r["seed"]))
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
