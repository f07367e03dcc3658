"""The transfer preset's step (EfficientNet-Lite0): what channels_last and running the frozen prefix
under no_grad in the first stream buy, for the baseline and the GAIN step, on one thread.

    python bench/bench_transfer.py                       # 96 px, batch 32, the transfer preset
    python bench/bench_transfer.py --set data.image_size=128

Variants (each its own model, same initial weights and batch):
  default    channels_last, frozen prefix (stem + stages 0-3) under no_grad when its input needs no gradient
  graph      channels_last, the frozen prefix recorded by autograd in the first stream too
  nchw       contiguous (NCHW) tensors, no_grad prefix
The variants run interleaved (A, B, C, A, B, C, ...) after a warm-up, so load drift from other jobs hits
them alike; per variant the median [min-max] over rounds of wall time and of this thread's CPU time
(`time.thread_time`, which other processes' load barely moves), then the paired ratios, last the
headline: GAIN / baseline.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/ holds scripts, not a package
from bench_step import interleave, med_range, ratios  # noqa: E402

from trainables.config import parse_overrides, preset  # noqa: E402
from trainables.gain import Batch, make_step  # noqa: E402
from trainables.model import build_model  # noqa: E402

VARIANTS = {"default": (True, True), "graph": (True, False), "nchw": (False, True)}  # channels_last, no_grad prefix


def make_one(arm: str, variant: str, overrides: dict):
    channels_last, shortcut = VARIANTS[variant]
    cfg = preset("transfer", arm=arm, **{"train.device": "cpu", **overrides})
    torch.manual_seed(0)
    mf = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(cfg.model).to(memory_format=mf).train()
    if not shortcut:
        model._frozen_in_features = 0  # the prefix then runs as trainable code: recorded, activations kept
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
    step = make_step(cfg)
    bs, size = cfg.train.batch_size, cfg.data.image_size
    g = torch.Generator().manual_seed(0)
    batch = Batch(x=torch.randn(bs, 3, size, size, generator=g).contiguous(memory_format=mf),
                  y=(torch.arange(bs) % 2).float(), mask=torch.zeros(bs, size, size),
                  mask_known=torch.zeros(bs, dtype=torch.bool))

    def one() -> None:
        loss = step(model, batch, 10**6)["loss"]  # past any warm-up
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return one, bs, cfg


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--block", type=int, default=2, help="steps of one variant per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--arms", default="baseline,gain")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    overrides = parse_overrides(args.set)
    torch.set_num_threads(1)
    arms = args.arms.split(",")
    variants = args.variants.split(",")
    made = {f"{arm}/{v}": make_one(arm, v, overrides) for arm in arms for v in variants}
    cfg = next(iter(made.values()))[2]
    bs = cfg.train.batch_size
    load0 = os.getloadavg()[0]
    s = interleave({k: one for k, (one, _, _) in made.items()}, args.rounds, args.block, args.warmup)
    load1 = os.getloadavg()[0]
    print(f"preset=transfer {overrides or ''} image={cfg.data.image_size}px batch={bs} frozen_convs="
          f"{cfg.model.frozen_convs} cam_block={cfg.model.cam_block} threads=1 torch={torch.__version__}")
    print(f"{args.rounds} rounds x {args.block} steps per variant, interleaved {', '.join(made)}; "
          f"{args.warmup} warm-up steps each; load average {load0:.2f} -> {load1:.2f}")
    print(f"{'arm/variant':<18}{'wall ms':>24}{'thread CPU ms':>24}")
    for k in made:
        print(f"{k:<18}{med_range(s[k].wall, 1e3):>24}{med_range(s[k].cpu, 1e3):>24}")
    print("ratios per round (paired), median [min-max], thread CPU time | wall:")
    for arm in arms:
        for v in variants[1:]:
            a, b = f"{arm}/{v}", f"{arm}/{variants[0]}"
            print(f"{a + ' / ' + variants[0]:<28} {med_range(ratios(s[a].cpu, s[b].cpu), digits=2, unit='x')}  |  "
                  f"{med_range(ratios(s[a].wall, s[b].wall), digits=2, unit='x')}")
    if "baseline" in arms and "gain" in arms:
        a, b = f"gain/{variants[0]}", f"baseline/{variants[0]}"
        print(f"{'GAIN / baseline':<28} {med_range(ratios(s[a].cpu, s[b].cpu), digits=2, unit='x')}  |  "
              f"{med_range(ratios(s[a].wall, s[b].wall), digits=2, unit='x')}")


if __name__ == "__main__":
    main()
