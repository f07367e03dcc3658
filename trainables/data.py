"""Data for one run: train/val/test splits as uint8 numpy arrays in memory (normalisation and
augmentation of the tensors made from them: `augment.py`). No torch here, so that the study's
driver, which only makes and ships the splits, does not import it.

Three kinds of source, one result type (`Splits`, types in `splits.py`):
- "mimicry": the procedural benchmark of `_mimicry.py` (a lizard on bark or leaves; camouflage and
  habitat bias are knobs; pixel masks for free). Generated once per fingerprint, then read from an
  on-disk cache (`cache_dir`, default $GAINSTUDY_CACHE or ~/.cache/gainstudy) and a per-process
  memory cache.
- a folder of photos in ImageFolder layout (see `_photos.py`);
- a public camouflaged-object dataset as published: COD10K, CAMO, NC4K (see `_datasets.py`).
Photos are resized once and cached on disk the same way, keyed by a fingerprint of every file.

Arrays in a `Splits` are read-only because the memory cache hands the same arrays to every caller;
copy before changing them in place (`torch.from_numpy` warns about read-only arrays, `torch.tensor`
copies and does not).
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trainables import _datasets, _mimicry
from trainables.config import DataConfig
from trainables.splits import SPLIT_NAMES, DataError, Source, Split, Splits, class_counts

__all__ = ["DataError", "Split", "Splits", "load_splits", "survey", "describe_provenance", "SPLIT_NAMES",
           "default_cache_dir"]

_MEMORY_CACHE_SIZE = 8
_CHUNK_PIXELS = 1 << 18  # generate ~64 images of 64 px (5 of 224 px) at a time: arrays stay in cache


# ---------------------------------------------------------------------------------------------
# Loading and caching

def default_cache_dir() -> Path:
    return Path(os.environ.get("GAINSTUDY_CACHE") or Path.home() / ".cache" / "gainstudy")


_memory: OrderedDict[str, Splits] = OrderedDict()  # fingerprint -> Splits, least recently used first


def load_splits(cfg: DataConfig, cache_dir: str | os.PathLike | None = None) -> Splits:
    """The three splits of `cfg.source`: the procedural benchmark, or photos (a folder or a dataset).

    Looked up by fingerprint in this process's memory, then in `cache_dir` (one .npz per
    fingerprint), else generated or loaded and written there.
    """
    src = source(cfg)
    fp = src.fingerprint
    if fp in _memory:
        _memory.move_to_end(fp)
        return _memory[fp]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    parts, found = _disk_cached(cache / f"{src.cache_prefix}-{fp[:20]}.npz", fp, src.load)
    provenance = {**src.info, "counts": class_counts(parts), **found, "fingerprint": fp}
    provenance["summary"] = describe_provenance(provenance)  # the launcher's line and the report's
    names = _mimicry.HABITAT_NAMES if cfg.is_procedural else ()
    splits = _freeze(Splits(**parts, fingerprint=fp, habitat_names=names, provenance=provenance))
    _memory[fp] = splits
    while len(_memory) > _MEMORY_CACHE_SIZE:
        _memory.popitem(last=False)
    return splits


def source(cfg: DataConfig) -> Source:
    """`cfg.source` checked and listed, no pixels read: a photo folder's or dataset's layout problems
    raise DataError here."""
    if not cfg.is_procedural:
        return _datasets.open_source(cfg)
    fp = mimicry_fingerprint(cfg)
    info = {"dataset": "mimicry", "layout": "procedural benchmark (trainables/_mimicry.py)",
            "camouflage": cfg.camouflage, "bias": cfg.bias, "seed": cfg.seed,
            "counts": {s: {"positive": n, "negative": n}
                       for s, n in zip(SPLIT_NAMES, (cfg.n_train, cfg.n_val, cfg.n_test))}}
    return Source(fp, "mimicry", info,
                  lambda: ({s: generate_mimicry_split(cfg, s, fingerprint=fp) for s in SPLIT_NAMES}, {}))


def survey(cfg: DataConfig) -> dict:
    """What `load_splits` would load, from the file listing alone (seconds for 10,000 photos): the
    provenance without what reading the pixels finds, and the fingerprint."""
    src = source(cfg)
    found = {**src.info, "fingerprint": src.fingerprint}
    return {**found, "summary": describe_provenance(found)}


def describe_provenance(p: Mapping[str, Any]) -> str:
    """One line: what the data are (for a photo source, the layout the launcher recognised) and the
    positive/negative images per split."""
    if p["dataset"] == "mimicry":
        head = f"mimicry benchmark (camouflage {p['camouflage']}, bias {p['bias']}, seed {p['seed']})"
    elif p["dataset"] == "folder":
        head = f"ImageFolder {p['root']} ({p['layout']})"
    else:
        head = (f"{p['name']} at {p['root']}, {p['recognised']} ({p['layout']}; reading rules "
                f"v{p['layout_version']})" + (f", classes {'+'.join(p['classes'])}" if p.get("classes") else "")
                + f", negatives {p['negatives']}")
    counts = "; ".join(f"{s} {c['positive']:,}/{c['negative']:,}" for s, c in p["counts"].items())
    notes = [f"{p[k]:,} {what}" for k, what in (("masks_missing", "NonCAM images without a mask (allowed)"),
                                                 ("masks_resized", "masks resized to their image"),
                                                 ("masks_empty", "all-black masks")) if p.get(k)]
    return f"{head}; positive/negative images {counts}" + (f"; {', '.join(notes)}" if notes else "")


def clear_memory_cache() -> None:
    _memory.clear()


def mimicry_fingerprint(cfg: DataConfig) -> str:
    return _mimicry.fingerprint(cfg.seed, cfg.image_size, cfg.n_train, cfg.n_val, cfg.n_test,
                                cfg.camouflage, cfg.bias)


def generate_mimicry_split(cfg: DataConfig, split: str, indices: np.ndarray | None = None,
                           fingerprint: str | None = None) -> Split:
    """One split of the benchmark (or the samples `indices` of it), generated now, never cached."""
    n = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]
    bias = 0.5 if split == "test" else cfg.bias
    labels, habitats = _mimicry.split_layout(cfg.seed, split, n, bias)
    idx = np.arange(2 * n) if indices is None else np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= 2 * n):
        raise DataError(f"indices outside 0..{2 * n - 1} of split {split!r}: pass indices of that split")
    fp8 = (fingerprint or mimicry_fingerprint(cfg))[:8]
    size = cfg.image_size
    images = np.empty((len(idx), 3, size, size), dtype=np.uint8)
    masks = np.empty((len(idx), size, size), dtype=np.uint8)
    chunk = max(1, _CHUNK_PIXELS // (size * size))
    for start in range(0, len(idx), chunk):
        sel = idx[start:start + chunk]
        images[start:start + chunk], masks[start:start + chunk] = _mimicry.render(
            cfg.seed, split, sel, labels[sel], habitats[sel], size, cfg.camouflage)
    return Split(images=images, labels=labels[idx], masks=masks, habitats=habitats[idx],
                 image_ids=np.array([f"mimicry-{fp8}-{split}-{i:06d}" for i in idx]),
                 has_mask=np.ones(len(idx), dtype=bool))


_FIELDS = ("images", "labels", "masks", "habitats", "image_ids", "has_mask")


def _disk_cached(path: Path, fp: str, build: Callable[[], tuple[dict[str, Split], dict]]
                 ) -> tuple[dict[str, Split], dict]:
    if not path.exists():
        parts, found = build()
        _write_cache(path, fp, parts, found)
        return parts, found
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        stored_fp = str(arrays.pop("fingerprint"))
        # What loading found (masks resized, ...): absent from caches written before it was recorded.
        found = json.loads(str(arrays.pop("found"))) if "found" in arrays else {}
        parts = {s: Split(**{f: arrays[f"{s}.{f}"] for f in _FIELDS}) for s in SPLIT_NAMES}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: unreadable cache file ({type(e).__name__}: {e}): delete it to regenerate") from e
    if stored_fp != fp:
        raise DataError(f"{path}: cache file holds fingerprint {stored_fp[:12]}, expected {fp[:12]}: delete it")
    return parts, found


def _write_cache(path: Path, fp: str, parts: dict[str, Split], found: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file and rename: concurrent workers never see a half-written cache.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    except OSError as e:
        raise DataError(f"cache folder {path.parent} is not writable ({e}); "
                        "set GAINSTUDY_CACHE or pass cache_dir= to a writable folder") from e
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache may be shared
        with os.fdopen(fd, "wb") as f:
            np.savez(f, fingerprint=np.array(fp), found=np.array(json.dumps(found)),
                     **{f"{s}.{k}": getattr(p, k) for s, p in parts.items() for k in _FIELDS})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _freeze(splits: Splits) -> Splits:
    for name in SPLIT_NAMES:
        for f in _FIELDS:
            getattr(splits[name], f).setflags(write=False)
    return splits
