"""Loading a COD10K-sized dataset: a generated tree in COD10K's v3 layout (6,000 Train and 4,000 Test
images, 5,066 CAM with GT_Object masks, 4,934 NonCAM), then `load_splits` at a preset's image size:
the file listing alone (what the launcher's --dry-run does), the first load (read, squash, write the
disk cache), a repeated load in a new process (the disk cache) and a memory-cache hit.

    .venv/bin/python bench/bench_datasets.py --root /tmp/cod10k-bench [--size 64] [--width 1024 --height 768]

The tree is written once (skipped when ROOT already holds it): 64 different photo-like JPEGs and
their PNG masks, each copied to many names, so the files are full-size and real to decode but the
tree takes seconds to write. Each measurement runs in a fresh process; peak memory is that process's
high-water mark (ru_maxrss) and, for the first load, the largest worker process's. The files were just
written, so the first load reads them from the page cache: decoding, not the disk, is timed.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

# COD10K-v3: CAM 3,040 / 2,026 and NonCAM 2,960 / 1,974 (Train / Test); NonCAM split into Background
# scenes and visible animals in a proportion of our choosing (the README gives no figure).
SPLITS = {"Train": (3040, 2960), "Test": (2026, 1974)}
CAM_CLASSES = (("2-Terrestrial", 38, "Lizard"), ("2-Terrestrial", 26, "Chameleon"), ("2-Terrestrial", 31, "Gecko"),
               ("3-Flying", 55, "Butterfly"), ("1-Aquatic", 7, "Flounder"))
NONCAM = ("5-Background-5-Vegetation", "5-Background-2-Sky", "3-Flying", "2-Terrestrial-23-Cat")
N_DISTINCT = 64


def _photo(rng: np.random.Generator, w: int, h: int) -> tuple[bytes, bytes]:
    # A photo-like JPEG (smooth colour fields plus fine texture) and the PNG mask of an ellipse in it.
    base = rng.normal(size=(h // 32 + 1, w // 32 + 1, 3))
    base = (base - base.min()) / np.ptp(base) * 255
    img = np.asarray(Image.fromarray(base.astype(np.uint8)).resize((w, h), Image.BICUBIC), dtype=np.int16)
    img = np.clip(img + rng.integers(-25, 26, size=img.shape), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    cy, cx, ry, rx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, h * 0.15, w * 0.2
    mask = ((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) <= 1).astype(np.uint8) * 255
    jpeg, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(img).save(jpeg, "JPEG", quality=90)
    Image.fromarray(mask).save(png, "PNG")
    return jpeg.getvalue(), png.getvalue()


def make_tree(root: Path, w: int, h: int) -> None:
    if (root / "Test" / "GT_Object").is_dir():
        return
    rng = np.random.default_rng(0)
    pool = [_photo(rng, w, h) for _ in range(N_DISTINCT)]
    n = 0
    for split, (n_cam, n_noncam) in SPLITS.items():
        (root / split / "Image").mkdir(parents=True)
        (root / split / "GT_Object").mkdir(parents=True)
        for i in range(n_cam + n_noncam):
            n += 1
            jpeg, png = pool[n % N_DISTINCT]
            if i < n_cam:
                sup, no, sub = CAM_CLASSES[i % len(CAM_CLASSES)]
                name = f"COD10K-CAM-{sup}-{no}-{sub}-{n}"
                (root / split / "GT_Object" / f"{name}.png").write_bytes(png)
            else:
                name = f"COD10K-NonCAM-{NONCAM[i % len(NONCAM)]}-{n}"
            (root / split / "Image" / f"{name}.jpg").write_bytes(jpeg)


_MEASURE = """
import json, resource, sys, time
from trainables import data
from trainables.config import DataConfig
cfg = DataConfig(source=sys.argv[1], dataset="cod10k", image_size=int(sys.argv[2]), negatives="background+noncam")
what, cache = sys.argv[3], sys.argv[4]
t0 = time.perf_counter()
if what == "survey":
    found = data.survey(cfg)
    n = sum(sum(c.values()) for c in found["counts"].values())
else:
    s = data.load_splits(cfg, cache_dir=cache)
    n = len(s.train) + len(s.val) + len(s.test)
    if what == "memory":
        t0 = time.perf_counter()
        data.load_splits(cfg, cache_dir=cache)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "images": n,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def measure(root: Path, size: int, what: str, cache: Path) -> dict:
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(root), str(size), what, str(cache)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="where the tree is (written if absent)")
    parser.add_argument("--size", type=int, default=64, help="the preset's image size (cpu 64, paper 224)")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    args = parser.parse_args()
    t0 = time.perf_counter()
    make_tree(args.root, args.width, args.height)
    files = sum(1 for _ in args.root.rglob("*.*"))
    gib = sum(p.stat().st_size for p in args.root.rglob("*.*")) / 2 ** 30
    print(f"tree {args.root}: {files:,} files, {gib:.2f} GiB, {args.width}x{args.height} JPEGs "
          f"(ready in {time.perf_counter() - t0:.0f} s); {len(os.sched_getaffinity(0))} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    cache = args.root.parent / f"{args.root.name}-cache-{args.size}"
    for old in cache.glob("*.npz"):
        old.unlink()
    rows = [("file listing (--dry-run)", "survey"), ("first load: read, squash, write the cache", "first"),
            ("repeated load, new process: the disk cache", "disk"), ("same process again: memory cache", "memory")]
    print(f"| {args.size} px | seconds | images | peak memory (MiB) |\n|---|---|---|---|")
    for label, what in rows:
        r = measure(args.root, args.size, what, cache)
        peak = f"{r['peak_mib']:,.0f}" + (f" (+ workers, largest {r['worker_peak_mib']:,.0f})"
                                          if what == "first" and r["worker_peak_mib"] > 0 else "")
        print(f"| {label} | {r['seconds']:.3g} | {r['images']:,} | {peak} |", flush=True)
    sizes = sum(p.stat().st_size for p in cache.glob("*.npz")) / 2 ** 20
    print(f"cache file: {sizes:,.0f} MiB in {cache}; load average {os.getloadavg()[0]:.2f}; "
          f"this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
