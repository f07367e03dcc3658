"""Train one run: `python -m trainables.run --arm gain --alpha 1 --seed 0 --preset cpu [--out result.json]`."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from .config import (
    PRESETS,
    ArgumentParser,
    ConfigError,
    RunConfig,
    check_writable,
    parse_data,
    parse_overrides,
    preset,
)
from .data import DataError, load_splits
from .loop import DeviceError, EpochRecord, RunResult, TrainState, resolve_device, train
from .model import MissingPackageError, WeightsError, build_model


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m trainables.run", description=__doc__)
    p.add_argument("--arm", choices=["baseline", "gain"], default="gain")
    p.add_argument("--preset", choices=list(PRESETS), default="cpu",
                   help="paper: the paper's setting (GPU); cpu: embedded default (~1 min per GAIN run on one core); smoke: seconds")
    p.add_argument("--seed", type=int, default=0, help="run seed: initialisation, data order, augmentation")
    p.add_argument("--alpha", type=float, help="weight of L_am (GAIN)")
    p.add_argument("--sigma", type=float, help="soft-mask threshold")
    p.add_argument("--omega", type=float, help="soft-mask sharpness")
    p.add_argument("--warmup-epochs", type=int, help="classification-only epochs before L_am")
    p.add_argument("--cam-grad", action="store_true", default=None, help="let gradients flow through the Grad-CAM weights")
    p.add_argument("--ext-weight", type=float, help="weight of L_e (GAIN_ext pixel supervision)")
    p.add_argument("--mask-fraction", type=float, help="share of training masks L_e may see")
    p.add_argument("--lr", type=float)
    p.add_argument("--epochs", type=int, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--patience", type=int)
    p.add_argument("--data", metavar="SPEC",
                   help="'mimicry' (procedural benchmark), a photo folder, and/or knobs: 'PATH,image_size=96' "
                        "(the folder first; it may hold commas); a dataset as published: "
                        "'cod10k:PATH,classes=Lizard+Gecko', 'camo:PATH,negatives=DIR', 'nc4k:PATH,negatives=DIR'")
    p.add_argument("--camouflage", type=float, help="mimicry: 0 conspicuous .. 1 background-matched")
    p.add_argument("--bias", type=float, help="mimicry: share of train/val images whose habitat agrees with the label")
    p.add_argument("--weights", help="'none', 'imagenet' (local torch hub cache) or a state-dict path")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config field, e.g. --set model.width=8 --set data.image_size=96 (repeatable)")
    p.add_argument("--out", type=Path, help="write the full result as JSON here (checked before training)")
    return p


_FLAG_TO_KEY = {
    "alpha": "gain.alpha", "sigma": "gain.sigma", "omega": "gain.omega", "warmup_epochs": "gain.warmup_epochs",
    "cam_grad": "gain.cam_grad", "ext_weight": "gain.ext_weight", "mask_fraction": "gain.mask_fraction",
    "lr": "train.lr", "epochs": "train.max_epochs", "patience": "train.patience",
    "camouflage": "data.camouflage", "bias": "data.bias", "weights": "model.weights", "device": "train.device",
    "threads": "train.num_threads",
}


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Preset < flags < --data < --set; every value typed by trainables.config's one parser."""
    overrides: dict[str, object] = {"arm": args.arm, "seed": args.seed}
    for flag, key in _FLAG_TO_KEY.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    for flag, parse, raw in (("--data", parse_data, args.data), ("--set", parse_overrides, args.set)):
        try:
            overrides.update(parse(raw) if raw is not None else {})
        except ConfigError as e:
            raise ConfigError(f"{flag}: {e}") from None
    return preset(args.preset, **overrides)


def _print_epoch(rec: EpochRecord, _state: TrainState) -> None:
    losses = " ".join(f"{k}={v:.4f}" for k, v in rec.losses.items())
    print(f"epoch {rec.epoch:3d}  {losses}  val_acc={rec.val_acc:.4f}  val_loss={rec.val_loss:.4f}  ({rec.seconds:.1f}s)",
          flush=True)


def summary(result: RunResult) -> str:
    c = result.config
    lines = [f"arm={c['arm']} seed={c['seed']} status={result.status} device={result.device} "
             f"epochs={len(result.history)} best_epoch={result.best_epoch} best_val_acc={result.best_val_acc:.4f} "
             f"time={result.seconds:.1f}s"]
    t = result.test
    if t is not None:
        fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"  # noqa: E731
        lines.append(f"test: accuracy={t.accuracy:.4f} (n={t.n})  worst_group={fmt(t.worst_group_accuracy)}  "
                     f"bias_aligned={fmt(t.bias_aligned_accuracy)}  bias_conflicting={fmt(t.bias_conflicting_accuracy)}")
        share = t.pred_positive_share
        lines.append(f"collapsed: {'YES' if t.collapsed else 'no'} (predicts positive for {fmt(share)} of test images)")
        cf = t.content_free
        lines.append("attention on positives (trained | uniform map | centred Gaussian map):")
        for key, label in (("pointing_game", "pointing game"), ("energy_pointing_game", "energy pointing"), ("iou", "IoU")):
            lines.append(f"  {label:<16} {fmt(getattr(t, key))} | {fmt(cf.get(key + '_uniform'))} | "
                         f"{fmt(cf.get(key + '_gaussian'))}")
        lines.append("groups: " + "  ".join(f"{k}={v:.3f}" for k, v in t.group_accuracy.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Everything knowable up front fails here (exit 2, one line), before any data or training.
    try:
        cfg = config_from_args(args)
    except ConfigError as e:
        parser.error(str(e))
    try:
        if args.out is not None:
            check_writable(args.out, folder=False)
    except ConfigError as e:
        parser.error(f"--out: {e}")
    try:
        resolve_device(cfg.train.device)
        build_model(cfg.model)  # loads (and so checks) the weights; train() seeds and builds its own
        splits = load_splits(cfg.data)
    except DeviceError as e:
        parser.error(f"--device: {e}")
    except MissingPackageError as e:
        parser.error(str(e))
    except WeightsError as e:
        parser.error(f"--weights: {e}")
    except DataError as e:
        parser.error(f"--data: {e}")
    print(f"data: {splits.provenance['summary']}; {cfg.data.image_size}px, fingerprint {splits.fingerprint[:12]}",
          flush=True)
    try:
        result = train(cfg, splits, on_epoch=_print_epoch)
    except WeightsError as e:
        parser.error(f"--weights: {e}")
    except DeviceError as e:
        parser.error(f"--device: {e}")
    print(summary(result))
    if args.out is not None:
        _write_result(args.out, json.dumps(result.to_dict(), indent=1))
    return 0 if result.status == "completed" else 1


def _write_result(out: Path, text: str) -> None:
    """Write atomically; if the path went bad during training, keep the result elsewhere and say where."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, out)
        print(f"wrote {out}")
    except OSError as e:
        fd, kept = tempfile.mkstemp(prefix="trainables-result-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        print(f"error: cannot write --out {out} ({e}); the result is kept in {kept}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    sys.exit(main())
