"""Speed of the data layer on one thread: images/s of the procedural generator at 64, 128 and 224 px,
cache hit times, and the cost of augmenting one batch.

    .venv/bin/python bench/bench_data.py [--n 2000]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch load their thread pools

import torch  # noqa: E402

from trainables import data  # noqa: E402
from trainables.config import DataConfig  # noqa: E402


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="images per measurement at 64 px (fewer at larger sizes)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| measurement | result |\n|---|---|")
    for size in (64, 128, 224):
        n = max(64, args.n * 64 * 64 // (size * size))
        cfg = DataConfig(image_size=size, n_train=n // 2, n_val=1, n_test=1, camouflage=0.7)
        sec = best_of(lambda: data.generate_mimicry_split(cfg, "train"))
        print(f"| generate, {size} px, 1 thread | {n / sec:,.0f} images/s ({sec / n * 1e3:.2f} ms/image) |")

    cfg = DataConfig(image_size=64, n_train=839, n_val=226, n_test=378, camouflage=0.7)  # the paper's sizes
    n_all = 2 * (839 + 226 + 378)
    with tempfile.TemporaryDirectory() as cache:
        data.clear_memory_cache()
        cold = best_of(lambda: data.load_splits(cfg, cache), repeats=1)
        hot = best_of(lambda: data.load_splits(cfg, cache))

        def from_disk():
            data.clear_memory_cache()
            data.load_splits(cfg, cache)
        disk = best_of(from_disk)
    print(f"| load_splits, paper sizes ({n_all} images, 64 px), cold (generate + write cache) | {cold:.2f} s |")
    print(f"| load_splits, same, disk cache hit | {disk * 1e3:.0f} ms |")
    print(f"| load_splits, same, memory cache hit | {hot * 1e6:.0f} µs |")

    aug = data.TrainAugment(DataConfig(image_size=64))
    images = torch.randint(0, 256, (32, 3, 64, 64), dtype=torch.uint8)
    masks = torch.zeros(32, 64, 64, dtype=torch.uint8)
    aug(images, masks)
    sec = best_of(lambda: aug(images, masks), repeats=20)
    print(f"| TrainAugment, batch of 32 at 64 px, 1 thread | {sec * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
