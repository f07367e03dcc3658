"""Baseline vs GAIN training step on the same model and batch: images/s of each and the ratio.

    python bench/bench_step.py                    # the cpu preset's model and batch, 1 thread
    python bench/bench_step.py --preset paper     # full VGG16 at 224 px (use on a GPU)
"""
from __future__ import annotations

import argparse
import time

import torch

from trainables.config import preset
from trainables.gain import Batch, make_step
from trainables.loop import resolve_device
from trainables.model import VGGBinary


def bench(arm: str, args: argparse.Namespace, device: torch.device) -> float:
    cfg = preset(args.preset, arm=arm, **{"train.device": args.device, "train.channels_last": not args.no_channels_last})
    torch.manual_seed(0)
    mf = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = VGGBinary(cfg.model).to(device=device, memory_format=mf)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
    step = make_step(cfg)
    bs, size = cfg.train.batch_size, cfg.data.image_size
    g = torch.Generator().manual_seed(0)
    batch = Batch(x=torch.randn(bs, 3, size, size, generator=g).to(device).contiguous(memory_format=mf),
                  y=(torch.arange(bs) % 2).float().to(device),
                  mask=torch.zeros(bs, size, size, device=device),
                  mask_known=torch.zeros(bs, dtype=torch.bool, device=device))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and args.bf16)

    def one() -> None:
        with autocast:
            loss = step(model, batch, 10**6)["loss"]  # epoch past any warm-up
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * bs / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--no-channels-last", action="store_true", help="NCHW instead of the default channels-last")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    base = bench("baseline", args, device)
    gain = bench("gain", args, device)
    print(f"preset={args.preset} device={device} threads={args.threads} bf16={args.bf16} "
          f"channels_last={not args.no_channels_last}")
    print(f"{'step':<10}{'images/s':>12}")
    print(f"{'baseline':<10}{base:>12.1f}")
    print(f"{'gain':<10}{gain:>12.1f}")
    print(f"GAIN step costs {base / gain:.2f}x a baseline step (target <= 2.2x)")


if __name__ == "__main__":
    main()
