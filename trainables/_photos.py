"""Real photos in ImageFolder layout: `positive/` and `negative/`, or `train/ val/ test/` each holding them.

Every problem with the folder (missing or unknown folders, an empty class, an unreadable or
truncated file, a mask of the wrong size) is a `DataError` naming the path and the fix, raised
while loading, i.e. before any training starts.

Images are resized (squashed, no crop, so the animal is never cut off) to image_size x image_size.
Masks live in an optional mirrored tree (`mask_dir`): same relative path, any image extension;
mask = grey value > 127 after resizing.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS

from trainables.config import DataConfig
from trainables.data import SPLIT_NAMES, DataError, Split

LOADER_VERSION = 1
CLASSES = {"positive": 1, "negative": 0}
_BAD_IMAGE = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)
_EXIF_ORIENTATION = 0x0112


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS) and not name.startswith(".")


def _subdirs(folder: Path) -> set[str]:
    return {e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")}


def _images_under(folder: Path, root: Path) -> list[str]:
    # Relative posix paths (to root) of every image below folder, sorted; hidden entries skipped.
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath, f).relative_to(root).as_posix() for f in filenames if _is_image(f)]
    return sorted(out)


def _scan_classes(folder: Path, root: Path) -> dict[str, list[str]]:
    dirs = _subdirs(folder)
    unknown = sorted(dirs - set(CLASSES))
    if unknown:
        raise DataError(f"{folder}: unknown class folder(s) {', '.join(unknown)}: "
                        "use only positive/ (animal present) and negative/ (no animal); move the others out")
    files = {}
    for cls in CLASSES:
        if cls not in dirs:
            raise DataError(f"{folder}: missing {cls}/ folder: put images with the animal in positive/ "
                            "and images without it in negative/")
        files[cls] = _images_under(folder / cls, root)
        if not files[cls]:
            raise DataError(f"{folder / cls}: no images ({', '.join(IMG_EXTENSIONS[:4])}, ...): add some or fix the path")
    return files


def _scan(root: Path) -> dict[str, dict[str, list[str]]] | dict[str, list[str]]:
    """{split: {class: [relpath]}} for a split tree, {class: [relpath]} for a flat folder."""
    if not root.is_dir():
        raise DataError(f"{root}: photo folder not found: set data.source to a folder holding positive/ and "
                        "negative/ (or train/ val/ test/ each holding them), or to 'mimicry'")
    dirs = _subdirs(root)
    split_dirs = dirs & set(SPLIT_NAMES)
    if not split_dirs:
        return _scan_classes(root, root)
    if dirs & set(CLASSES):
        raise DataError(f"{root}: holds both split folders ({', '.join(sorted(split_dirs))}) and class folders "
                        f"({', '.join(sorted(dirs & set(CLASSES)))}): use one layout, not both")
    missing = [s for s in SPLIT_NAMES if s not in split_dirs]
    if missing:
        raise DataError(f"{root}: partial split tree, {', '.join(m + '/' for m in missing)} missing: "
                        "add it (each of train/ val/ test/ holds positive/ and negative/) or use a flat "
                        "positive/ + negative/ folder for a seeded split")
    unknown = sorted(dirs - set(SPLIT_NAMES))
    if unknown:
        raise DataError(f"{root}: unknown folder(s) {', '.join(unknown)} next to train/ val/ test/: move them out")
    return {s: _scan_classes(root / s, root) for s in SPLIT_NAMES}


def _split_flat(files: dict[str, list[str]], cfg: DataConfig, root: Path) -> dict[str, dict[str, list[str]]]:
    # Seeded split stratified by class: the same seed and files give the same split on every machine.
    out: dict[str, dict[str, list[str]]] = {s: {} for s in SPLIT_NAMES}
    for cls, paths in files.items():
        n = len(paths)
        n_test = max(1, round(cfg.test_fraction * n))
        n_val = max(1, round(cfg.val_fraction * n))
        if n - n_val - n_test < 1:
            raise DataError(f"{root / cls}: {n} image(s) are too few to split with val_fraction={cfg.val_fraction}, "
                            f"test_fraction={cfg.test_fraction}: add images (at least 3 per class)")
        perm = np.random.default_rng([cfg.seed, CLASSES[cls], 0x5A17]).permutation(n)
        pick = {"test": perm[:n_test], "val": perm[n_test:n_test + n_val], "train": perm[n_test + n_val:]}
        for s in SPLIT_NAMES:
            out[s][cls] = sorted(paths[i] for i in pick[s])
    return out


def _mask_index(mask_dir: Path) -> dict[str, Path]:
    # relative path without extension -> mask file
    if not mask_dir.is_dir():
        raise DataError(f"{mask_dir}: mask folder not found: set data.mask_dir to a tree mirroring the photo "
                        "folder, or to None")
    index: dict[str, Path] = {}
    for rel in _images_under(mask_dir, mask_dir):
        key = rel.rsplit(".", 1)[0]
        if key in index:
            raise DataError(f"{mask_dir / rel}: two masks for {key} ({index[key].name} and {Path(rel).name}): keep one")
        index[key] = mask_dir / rel
    return index


def _stat(path: Path) -> list:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def fingerprint_and_loader(cfg: DataConfig) -> tuple[str, Callable[[], dict[str, Split]]]:
    """Validates the folder layout now; returns the fingerprint and a function that loads the pixels."""
    root = Path(cfg.source).expanduser()
    scanned = _scan(root)
    tree = set(scanned) == set(SPLIT_NAMES)
    layout = scanned if tree else _split_flat(scanned, cfg, root)
    masks = _mask_index(Path(cfg.mask_dir).expanduser()) if cfg.mask_dir is not None else {}
    if masks:
        keys = {rel.rsplit(".", 1)[0] for s in layout.values() for paths in s.values() for rel in paths}
        if not keys & set(masks):
            raise DataError(f"{cfg.mask_dir}: {len(masks)} mask file(s) but none matches an image path "
                            f"(e.g. {next(iter(masks))}): mirror the photo folder's relative paths")
    h = hashlib.sha256()
    h.update(json.dumps({"loader": "photos", "version": LOADER_VERSION, "root": str(root.resolve()),
                         "image_size": cfg.image_size, "tree": tree, "mask_dir": cfg.mask_dir,
                         "split": None if tree else [cfg.seed, cfg.val_fraction, cfg.test_fraction]}).encode())
    for s in SPLIT_NAMES:
        for cls in CLASSES:
            for rel in layout[s][cls]:
                m = masks.get(rel.rsplit(".", 1)[0])
                h.update(json.dumps([s, rel, _stat(root / rel), str(m) if m else None,
                                     _stat(m) if m else None]).encode())

    def load() -> dict[str, Split]:
        return {s: _load_split(root, layout[s], masks, cfg.image_size) for s in SPLIT_NAMES}

    return h.hexdigest(), load


def _open(path: Path, size: int, mode: str) -> tuple[np.ndarray, tuple[int, int]]:
    """(size, size[, 3]) uint8 pixels and the full-resolution (width, height) after EXIF rotation."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                w, h = h, w
            im.draft(mode, (size, size))  # JPEG: decode at a reduced scale, still reads the whole file
            im.load()
            im = ImageOps.exif_transpose(im).convert(mode)
            return np.asarray(im.resize((size, size), Image.BILINEAR)), (w, h)
    except _BAD_IMAGE as e:
        raise DataError(f"{path}: unreadable or truncated image ({type(e).__name__}: {e}): "
                        "replace or delete the file") from e


def _load_split(root: Path, files: dict[str, list[str]], masks: dict[str, Path], size: int) -> Split:
    entries = [(rel, CLASSES[cls]) for cls in CLASSES for rel in files[cls]]
    entries.sort()
    n = len(entries)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    mask_arr = np.zeros((n, size, size), dtype=np.uint8)
    has_mask = np.zeros(n, dtype=bool)
    for i, (rel, label) in enumerate(entries):
        rgb, full = _open(root / rel, size, "RGB")
        images[i] = rgb.transpose(2, 0, 1)
        mpath = masks.get(rel.rsplit(".", 1)[0])
        if mpath is None:
            continue
        grey, mfull = _open(mpath, size, "L")
        if mfull != full:
            raise DataError(f"{mpath}: mask is {mfull[0]}x{mfull[1]} but its image {root / rel} is "
                            f"{full[0]}x{full[1]}: save the mask at the image's size")
        m = grey > 127
        if label == 0 and m.any():
            raise DataError(f"{mpath}: mask of a negative image marks an animal: delete the mask or move "
                            f"{root / rel} to positive/")
        mask_arr[i], has_mask[i] = m, True
    return Split(images=images, labels=np.array([lab for _, lab in entries], dtype=np.int64),
                 masks=mask_arr, habitats=np.full(n, -1, dtype=np.int64),
                 image_ids=np.array([f"photo:{rel}" for rel, _ in entries]), has_mask=has_mask)
