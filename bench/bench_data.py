"""Speed of the data layer on one thread: the procedural generator at 64, 128 and 224 px, `load_splits`
cold / disk-cache hit / memory-cache hit, and augmenting one batch.

    .venv/bin/python bench/bench_data.py [--n 2000] [--rounds 7]

Things compared run interleaved (64, 128, 224, 64, 128, 224, ...; cold, disk, memory, cold, ...) after
one warm-up call each; every row is median [min-max] over rounds of wall time and of this thread's CPU
time (`time.thread_time`), so a busy machine shows as a wide wall range with a steady CPU time.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from itertools import count

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch load their thread pools

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/ holds scripts, not a package
from bench_step import interleave, med_range  # noqa: E402

from trainables import data  # noqa: E402
from trainables.augment import TrainAugment  # noqa: E402
from trainables.config import DataConfig  # noqa: E402


def row(what: str, wall: list[float], cpu: list[float], scale: float, unit: str, digits: int = 2,
        throughput: str = "") -> str:
    return f"| {what} | {med_range(wall, scale, digits)} {unit} | {med_range(cpu, scale, digits)} {unit} | {throughput} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="images per measurement at 64 px (fewer at larger sizes)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (samples per row)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    lines = ["| measurement | wall, median [min-max] | thread CPU, median [min-max] | throughput |", "|---|---|---|---|"]

    sizes = (64, 128, 224)
    n_of = {s: max(64, args.n * 64 * 64 // (s * s)) for s in sizes}
    cfgs = {s: DataConfig(image_size=s, n_train=n_of[s] // 2, n_val=1, n_test=1, camouflage=0.7) for s in sizes}
    gen = interleave({s: (lambda c=cfgs[s]: data.generate_mimicry_split(c, "train")) for s in sizes}, args.rounds)
    for s in sizes:
        n = 2 * (n_of[s] // 2)
        lines.append(row(f"generate, {s} px ({n} images), per image", gen[s].wall, gen[s].cpu, 1e3 / n, "ms",
                         throughput=f"{n / statistics.median(gen[s].wall):,.0f} (wall) / "
                                    f"{n / statistics.median(gen[s].cpu):,.0f} (CPU) images/s"))

    cfg = DataConfig(image_size=64, n_train=839, n_val=226, n_test=378, camouflage=0.7)  # the paper's sizes
    n_all = 2 * (839 + 226 + 378)
    with tempfile.TemporaryDirectory() as root:
        fresh = count()
        warm_dir = os.path.join(root, "warm")
        data.load_splits(cfg, warm_dir)  # fills the disk cache that the disk-hit calls read

        def cold() -> None:  # generate + write the cache in a new directory
            data.clear_memory_cache()
            data.load_splits(cfg, os.path.join(root, f"cold{next(fresh)}"))

        def disk() -> None:
            data.clear_memory_cache()
            data.load_splits(cfg, warm_dir)

        def memory() -> None:
            data.load_splits(cfg, warm_dir)  # the previous call (disk) left it in memory

        load = interleave({"cold": cold, "disk": disk, "memory": memory}, args.rounds,
                          block={"cold": 1, "disk": 3, "memory": 1000})
    lines.append(row(f"load_splits, paper sizes ({n_all} images, 64 px), cold: generate + write cache",
                     load["cold"].wall, load["cold"].cpu, 1, "s"))
    lines.append(row("same, disk-cache hit", load["disk"].wall, load["disk"].cpu, 1e3, "ms", 1))
    lines.append(row("same, memory-cache hit", load["memory"].wall, load["memory"].cpu, 1e6, "µs", 1))

    aug = TrainAugment(DataConfig(image_size=64))
    images = torch.randint(0, 256, (32, 3, 64, 64), dtype=torch.uint8)
    masks = torch.zeros(32, 64, 64, dtype=torch.uint8)
    a = interleave({"augment": lambda: aug(images, masks)}, args.rounds, block=20)["augment"]
    lines.append(row("`TrainAugment`, batch of 32 at 64 px", a.wall, a.cpu, 1e3, "ms"))

    print(f"one thread, {args.rounds} interleaved rounds, torch {torch.__version__}, "
          f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
