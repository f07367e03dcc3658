"""Baseline, GAIN (ours) and a hooked peer GAIN step on the same model and batch: time per step and
images/s of each, and the ratios, on a machine that other jobs share.

    python bench/bench_step.py                    # the cpu preset's model and batch, 1 thread
    python bench/bench_step.py --preset paper --device cuda --bf16   # full VGG16 at 224 px (GPU)

The arms run interleaved (baseline, gain, peer, baseline, gain, peer, ...) after a warm-up, so load
drift hits them alike; each round times `--block` steps of each arm. Per arm: median [min-max] over
rounds of wall time and of this thread's CPU time (`time.thread_time`, which other processes'
load barely moves; with --threads > 1 the process CPU time, since torch's pool threads do the work).
The ratios are taken per round (paired) and summarised the same way; the last line is GAIN / baseline.
The FLOPs of each step (torch.utils.flop_counter) give the ratio no implementation can beat by much:
GAIN runs a second forward-backward and, for the mask's gradient, backpropagates the masked stream
through every layer down to the image, which the baseline never does (frozen layers included).
The peer (bench/peer_gain.py) is GAIN as public code writes it: forward hook on the attention layer and
a retain_graph backward of the class score; tests/test_bench_peer.py checks it equals ours.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/ holds scripts, not a package
from peer_gain import make_peer_step  # noqa: E402

from trainables.config import parse_overrides, preset  # noqa: E402
from trainables.gain import Batch, make_step  # noqa: E402
from trainables.loop import resolve_device  # noqa: E402
from trainables.model import build_model  # noqa: E402


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)  # seconds per call, one value per round
    cpu: list[float] = field(default_factory=list)


def interleave(fns: Mapping[str, Callable[[], object]], rounds: int, block: int | Mapping[str, int] = 1,
               warmup: int = 1, cpu_clock: Callable[[], float] = time.thread_time,
               sync: Callable[[], None] = lambda: None) -> dict[str, Samples]:
    """Time each function `block` calls in a row, in turn (A, B, C, A, B, C, ...) for `rounds` rounds,
    after `warmup` calls of each; seconds per call of wall and CPU time, one value per round."""
    blocks = {name: block if isinstance(block, int) else block[name] for name in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out = {name: Samples() for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync()
            w0, c0 = time.perf_counter(), cpu_clock()
            for _ in range(blocks[name]):
                fn()
            sync()
            out[name].wall.append((time.perf_counter() - w0) / blocks[name])
            out[name].cpu.append((cpu_clock() - c0) / blocks[name])
    return out


def med_range(xs: list[float], scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
    """'median [min-max]' of xs * scale."""
    return (f"{statistics.median(xs) * scale:,.{digits}f}{unit} "
            f"[{min(xs) * scale:,.{digits}f}-{max(xs) * scale:,.{digits}f}]")


def ratios(num: list[float], den: list[float]) -> list[float]:
    return [a / b for a, b in zip(num, den)]  # paired by round


def make_one(arm: str, args: argparse.Namespace, device: torch.device) -> tuple[Callable[[], None], int, int]:
    """One optimiser step of `arm` ("baseline", "gain" or "peer") on its own model, the batch size, and
    the bytes of the arm's trainable weights with their gradients and Adam state (4 copies)."""
    cfg = preset(args.preset, arm="baseline" if arm == "baseline" else "gain",
                 **{"train.device": args.device, "train.channels_last": not args.no_channels_last, **args.set})
    torch.manual_seed(0)  # the same initial weights for every arm
    mf = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = build_model(cfg.model).to(device=device, memory_format=mf).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
    step = make_peer_step(cfg) if arm == "peer" else make_step(cfg)
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

    state_bytes = 4 * sum(q.numel() * q.element_size() for q in model.parameters() if q.requires_grad)
    return one, bs, state_bytes


def step_flops(one: Callable[[], None]) -> float:
    """FLOPs of one call (forward, backward; convolutions and matrix products, which is where the
    arithmetic is), counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        one()
    return float(counter.get_total_flops())


def peak_memory(made: Mapping[str, tuple[Callable[[], None], int, int]]) -> dict[str, float]:
    """CUDA only: each arm's peak memory in one step, GiB: what the step allocates on top of what is
    resident (every arm's model is resident at once here), plus its own weights, gradients and Adam
    state, i.e. what one training process of that arm needs beyond the CUDA context."""
    out = {}
    for arm, (one, _, state_bytes) in made.items():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        one()
        torch.cuda.synchronize()
        out[arm] = (torch.cuda.max_memory_allocated() - before + state_bytes) / 2**30
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds (samples per arm)")
    p.add_argument("--block", type=int, default=3, help="steps of one arm per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps of each arm first")
    p.add_argument("--no-peer", action="store_true", help="time baseline and GAIN only")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--no-channels-last", action="store_true", help="NCHW instead of the default channels-last")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override of the preset, e.g. --set model.frozen_convs=0 (repeatable)")
    args = p.parse_args()
    args.set = parse_overrides(args.set)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    arms = ("baseline", "gain") if args.no_peer else ("baseline", "gain", "peer")
    made = {arm: make_one(arm, args, device) for arm in arms}
    bs = made["baseline"][1]
    cpu_clock, cpu_name = (time.thread_time, "thread CPU") if args.threads == 1 else (time.process_time, "process CPU")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    cfg = preset(args.preset, **args.set)
    load0 = os.getloadavg()[0]
    s = interleave({arm: one for arm, (one, _, _) in made.items()}, args.rounds, args.block, args.warmup, cpu_clock, sync)
    load1 = os.getloadavg()[0]
    peaks = peak_memory(made) if device.type == "cuda" else {}
    flops = {arm: step_flops(one) / bs for arm, (one, _, _) in made.items()}

    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"preset={args.preset} device={device}{gpu} threads={args.threads} bf16={args.bf16} "
          f"channels_last={not args.no_channels_last} batch={bs} image={cfg.data.image_size}px "
          f"width={cfg.model.width} frozen_convs={cfg.model.frozen_convs} batch_norm={cfg.model.batch_norm} "
          f"cam_block={cfg.model.cam_block} masked_bn={cfg.gain.masked_bn} "
          f"am_samples={cfg.gain.am_samples} torch={torch.__version__}")
    print(f"{args.rounds} rounds x {args.block} steps per arm, interleaved {', '.join(arms)}; "
          f"{args.warmup} warm-up steps each; load average {load0:.2f} -> {load1:.2f}")
    print("per step, median [min-max] over rounds; 'gain' is trainables/gain.py, 'peer' bench/peer_gain.py")
    print(f"{'arm':<10}{'wall ms':>22}{cpu_name + ' ms':>24}{'images/s (wall)':>24}{'images/s (CPU)':>24}"
          + (f"{'peak GiB':>10}" if peaks else ""))
    for arm in arms:
        w, c = s[arm].wall, s[arm].cpu
        print(f"{arm:<10}{med_range(w, 1e3):>22}{med_range(c, 1e3):>24}"
              f"{med_range([bs / t for t in w], digits=0):>24}{med_range([bs / t for t in c], digits=0):>24}"
              + (f"{peaks[arm]:>10.2f}" if peaks else ""))
    print("arithmetic per image (torch.utils.flop_counter): "
          + ", ".join(f"{arm} {flops[arm] / 1e9:.3g} GFLOP" for arm in arms)
          + f"; GAIN / baseline {flops['gain'] / flops['baseline']:.2f}x, the floor for any implementation of this step")
    print("ratios per round (paired), median [min-max]:")
    pairs = [("peer / gain", "peer", "gain")] if "peer" in arms else []
    pairs.append(("GAIN / baseline", "gain", "baseline"))  # the headline: printed last
    for label, a, b in pairs:
        target = "   (target <= 2.0x in CPU time)" if a == "gain" and device.type == "cpu" else ""
        print(f"{label:<16} {cpu_name} {med_range(ratios(s[a].cpu, s[b].cpu), digits=2, unit='x')}   "
              f"wall {med_range(ratios(s[a].wall, s[b].wall), digits=2, unit='x')}{target}")


if __name__ == "__main__":
    main()
