"""The chance plateau: per-epoch validation curves of many seeds, without early stopping.

    python -m bench.plateau --seeds 12 --set train.lr=1e-3        # the old preset's learning rate
    python -m bench.plateau --seeds 12                            # the cpu preset (lr 3e-3)
    python -m bench.plateau --seeds 12 --head-init default        # the head as PyTorch initialises it

For each seed (1000, 1001, ...) trains the baseline for --epochs epochs (patience off) and prints its
validation accuracy per epoch; then the take-off epoch of each seed (the first epoch at or above
--takeoff validation accuracy; 99: never), its median, how many seeds never took off, and the mean
and minimum best validation accuracy. bench/README.md ("plateau.py") holds the table these made.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from typing import Any

import numpy as np

from trainables.config import ConfigError, parse_overrides, preset
from trainables.data import load_splits


def _head_init(kind: str) -> None:
    # Re-initialise the head (FC 256 -> ReLU -> FC 1) after the model's own init, in this process.
    from torch import nn

    from trainables import model

    original = model.VGGBinary._init_weights

    def init(self: Any) -> None:
        original(self)
        if kind == "default":
            for m in self.fc:
                if isinstance(m, nn.Linear):
                    m.reset_parameters()
        elif kind == "kaiming":
            first, last = self.fc[0], self.fc[2]
            nn.init.kaiming_normal_(first.weight, nonlinearity="relu")
            nn.init.zeros_(first.bias)
            nn.init.normal_(last.weight, 0.0, last.in_features ** -0.5)
            nn.init.zeros_(last.bias)

    model.VGGBinary._init_weights = init


def one_run(job: tuple[int, dict[str, Any], str]) -> tuple[int, list[float]]:
    from trainables.loop import train

    seed, overrides, head = job
    if head != "vgg":
        _head_init(head)
    cfg = preset("cpu", arm="baseline", seed=seed, **{"train.num_threads": 1, "train.device": "cpu", **overrides})
    r = train(cfg, load_splits(cfg.data), evaluate_test=False)
    return seed, [h.val_acc for h in r.history]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.plateau", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=12)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--takeoff", type=float, default=0.7, help="validation accuracy that counts as taken off")
    p.add_argument("--head-init", choices=("vgg", "default", "kaiming"), default="vgg",
                   help="vgg: N(0, 0.01) as torchvision's VGG; default: PyTorch's Linear init; kaiming")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    try:
        overrides = {**parse_overrides(args.set), "train.max_epochs": args.epochs, "train.patience": args.epochs}
        load_splits(preset("cpu", **overrides).data)  # generate (and cache) once, before the workers
    except ConfigError as e:
        p.error(str(e))
    curves = {}
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for seed, val in pool.imap(one_run, [(1000 + k, overrides, args.head_init) for k in range(args.seeds)]):
            curves[seed] = val
            print(f"{seed}  " + " ".join(f"{v:.3f}" for v in val), flush=True)
    takeoff = [next((i + 1 for i, v in enumerate(curves[s]) if v >= args.takeoff), 99) for s in sorted(curves)]
    best = [max(curves[s]) for s in sorted(curves)]
    print(f"\ntake-off epoch (validation >= {args.takeoff}; 99 = never): {takeoff}")
    print(f"median {np.median(takeoff):g}; not taken off by epoch {args.epochs}: {sum(t > args.epochs for t in takeoff)} "
          f"of {len(takeoff)}; best validation mean {np.mean(best):.3f} (min {np.min(best):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
