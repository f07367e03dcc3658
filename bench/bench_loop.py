"""Does the data path keep the model busy? Training batches made where the model runs (the loop's
`train_batches`: the split uploaded once, then index, crop and normalise on the device) against
batches made on the host (index, crop and normalise on the CPU, upload each batch: the loop until
2026-11-27), alone and feeding the arm's training step.

    python bench/bench_loop.py                                       # cpu preset, 1 thread
    python bench/bench_loop.py --preset paper --device cuda --bf16 --threads 4   # 224 px on a GPU

Rows, interleaved per round (host, device, host + step, device + step, ...), `--batches` batches each
after a warm-up: median [min-max] over rounds of wall and CPU time per batch, and images/s. On a GPU
"batches alone" is what the data path can deliver and "+ step" what training gets; when the host
path alone delivers fewer images/s than the step consumes, the GPU starves. The ratio host / device
(+ step, wall) is printed last.
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/ holds scripts, not a package
from bench_step import interleave, med_range, ratios  # noqa: E402

from trainables.config import preset  # noqa: E402
from trainables.augment import TrainAugment, normalize  # noqa: E402
from trainables.data import Split, load_splits  # noqa: E402
from trainables.gain import Batch, make_step  # noqa: E402
from trainables.loop import resolve_device, train_batches, upload_split  # noqa: E402
from trainables.model import VGGBinary  # noqa: E402


def host_batches(split: Split, augment: TrainAugment, bs: int, epoch: int, device: torch.device,
                 memory_format: torch.memory_format):
    """Batches as the loop made them before 2026-11-27: numpy indexing and TrainAugment on the CPU,
    then one upload per batch (the reference the device path is measured against)."""
    order = np.random.default_rng([0, epoch]).permutation(len(split))
    for start in range(0, len(order), bs):
        idx = order[start:start + bs]
        x, m = augment(torch.from_numpy(split.images[idx]), torch.from_numpy(split.masks[idx]))
        yield Batch(x=normalize(x).to(device, non_blocking=True).contiguous(memory_format=memory_format),
                    y=torch.from_numpy(split.labels[idx]).float().to(device), mask=m.float().to(device),
                    mask_known=torch.zeros(len(idx), dtype=torch.bool, device=device))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--arm", default="gain", choices=["baseline", "gain"], help="the step that consumes the batches")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="torch threads (a trial's --cpus-per-trial)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batches", type=int, default=8, help="batches per arm per round")
    p.add_argument("--n-train", type=int, default=160, help="images per class in the benchmark split")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = preset(args.preset, arm=args.arm, **{"train.device": device.type, "data.n_train": args.n_train,
                                               "data.n_val": 1, "data.n_test": 1, "train.bf16": args.bf16})
    mf = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    split = load_splits(cfg.data).train
    augment, bs = TrainAugment(cfg.data), cfg.train.batch_size
    pixels = upload_split(split.images, device), upload_split(split.masks, device)
    no_masks = np.zeros(len(split), dtype=bool)

    torch.manual_seed(0)
    model = VGGBinary(cfg.model).to(device=device, memory_format=mf).train()
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=cfg.train.lr)
    step = make_step(cfg)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.bf16)
    epochs = itertools.count(1)

    def source(kind: str):
        epoch = next(epochs)
        if kind == "host":
            return host_batches(split, augment, bs, epoch, device, mf)
        return train_batches(split, pixels, no_masks, augment, cfg.replace(seed=epoch), epoch, mf)

    def consume(kind: str, train: bool) -> None:
        batches = source(kind)
        for _ in range(args.batches):
            try:
                batch = next(batches)
            except StopIteration:
                batches = source(kind)
                batch = next(batches)
            if train:
                with autocast:
                    loss = step(model, batch, 10**6)["loss"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    clock = time.thread_time if args.threads == 1 and device.type == "cpu" else time.process_time
    arms = {"host": lambda: consume("host", False), "device": lambda: consume("device", False),
            "host + step": lambda: consume("host", True), "device + step": lambda: consume("device", True)}
    load0 = os.getloadavg()[0]
    s = interleave(arms, args.rounds, warmup=1, cpu_clock=clock, sync=sync)

    print(f"preset={args.preset} arm={args.arm} device={device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''} threads={args.threads} "
          f"bf16={args.bf16} batch={bs} image={cfg.data.image_size}px torch={torch.__version__}; "
          f"{args.rounds} rounds x {args.batches} batches, load average {load0:.2f} -> {os.getloadavg()[0]:.2f}")
    per = args.batches * bs
    print(f"{'batches made':<16}{'wall ms/batch':>26}{'CPU ms/batch':>26}{'images/s (wall)':>26}")
    for name in arms:
        w, c = s[name].wall, s[name].cpu
        print(f"{name:<16}{med_range(w, 1e3 / args.batches):>26}{med_range(c, 1e3 / args.batches):>26}"
              f"{med_range([per / t for t in w], digits=0):>26}")
    print(f"host / device, batches alone, wall: "
          f"{med_range(ratios(s['host'].wall, s['device'].wall), digits=2, unit='x')}")
    print(f"host / device, + step, wall: "
          f"{med_range(ratios(s['host + step'].wall, s['device + step'].wall), digits=2, unit='x')}")
    print(f"(median images/s: step-bound {per / statistics.median(s['device + step'].wall):,.0f}, "
          f"host path alone {per / statistics.median(s['host'].wall):,.0f})")


if __name__ == "__main__":
    main()
