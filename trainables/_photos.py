"""Real photos in ImageFolder layout: `positive/` and `negative/`, or `train/ val/ test/` each holding them.

Every problem with the folder (missing or unknown folders, an empty class, an unreadable or
truncated file, a broken or looping symbolic link, a folder or FIFO named like an image, a mask of
the wrong size) is a `DataError` naming the path and the fix: layout problems while scanning, pixel
problems while loading, both before any training starts. Nested folders and folder links are
followed; a folder reached twice (a link loop, or two links to one folder) is an error.

Images are resized (squashed, no crop, so the animal is never cut off) to image_size x image_size.
Image files are those with the extensions in `_EXTENSIONS` (upper or lower case); other files are
ignored. Masks live in an optional mirrored tree (`mask_dir`): same relative path, any image extension;
mask = grey value > 127 (of 255) after resizing.

Pixel values, for every mode PIL opens (multi-frame files: the first frame; EXIF rotation applied;
embedded colour profiles are not applied, values are read as sRGB):
- 8-bit modes (1, L, P, RGB, CMYK, YCbCr, LAB, HSV, ... and 16-bit colour PNGs, which PIL reads as
  8-bit) are converted by PIL to RGB.
- Transparency (RGBA, LA, PA, a palette or tRNS transparent colour) is composited onto black: a
  transparent pixel is black, a half-transparent one half as bright, in images and masks alike.
- Unsigned 16-bit and narrower greyscale (I;16*, 16-bit PNG/TIFF/JPEG 2000, 12-bit TIFF): white is
  the file's full scale, 2**bits - 1 (65535 for 16 bits), so value v reads as round(255 v / white).
  Mode I from PGM/PPM (maxval above 255, scaled to 0..65535 by PIL) likewise; any other mode I image
  (32-bit or signed integers) is refused: such files have no standard white level.
- Float (F: float TIFF, PFM) is read in the [0, 1] convention (0 black, 1 white), as skimage and
  OpenCV write it; NaN, infinity or values outside [0, 1] are refused rather than guessed at.
- Masks follow the same rules and must be grey: a coloured mask (a red outline, a palette of class
  colours) is refused, and so is a 0/1 label image (nothing would pass grey > 127).

The pixel reader and the many-image loader (`load_items`: one image at full size in memory per
process, worker processes for large sources) also serve the public datasets (`_datasets.py`), whose
masks follow that module's convention instead (0/1 label images and masks of another size accepted).
"""
from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import json
import multiprocessing
import os
import stat
import struct
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageOps, UnidentifiedImageError

from trainables.config import DataConfig
from trainables.splits import CLASSES, SPLIT_NAMES, DataError, Source, Split

LOADER_VERSION = 2  # 2: high-bit-depth and float scaling, transparency onto black, links followed
# What PIL raises on a corrupt, truncated or unsupported file (its decoders are not consistent).
_BAD_IMAGE = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, Image.DecompressionBombError)
_EXIF_ORIENTATION = 0x0112
# torchvision's IMG_EXTENSIONS (copied: importing torchvision imports torch, which the launcher must
# not) and the other formats cameras and tools write that PIL decodes; HEIC (which PIL cannot read)
# is listed so that it is refused by name rather than silently left out.
_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".jpe", ".jfif", ".mpo",
               ".gif", ".jp2", ".j2k", ".jpx", ".tga", ".pbm", ".pnm", ".pfm", ".qoi", ".avif", ".heic", ".heif")
_UINT16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_WIDE_INT_MODES = _UINT16_MODES | {"I"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_FLOAT_TOLERANCE = 1e-3  # a float image may overshoot [0, 1] by rounding, not by more
_MASK_MAX_SPREAD = 48  # max(R, G, B) - min(R, G, B) of a grey mask: JPEG noise stays far below this


def _is_image(name: str) -> bool:
    return name.lower().endswith(_EXTENSIONS) and not name.startswith(".")


def _entry_problem(path: Path) -> tuple[str, str] | None:
    # (what is wrong, the fix) for an entry named like an image that is no readable image file.
    try:
        st = path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic link loop", "point the link at an image or delete it"
        if path.is_symlink():
            return f"a broken symbolic link to {os.readlink(path)}", "point it at an existing file or delete it"
        return f"unreadable ({e.strerror})", "fix its permissions or delete it"
    if stat.S_ISDIR(st.st_mode):
        return "a folder named like an image", "rename it (no image extension) or move it out"
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        return f"{kind} (not a regular file)", "replace it with the image file or delete it"
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)", "make it readable (chmod a+r) or delete it"
    return None


def _not_found(path: Path) -> str:
    if not os.path.lexists(path):
        return "not found"
    return f"is {(_entry_problem(path) or ('a file',))[0]}, not a folder"


def _raise_list_error(e: OSError) -> None:
    raise DataError(f"{e.filename}: cannot list folder ({e.strerror}): make it readable (chmod a+rx) "
                    "or move it out") from e


def _subdirs(folder: Path) -> set[str]:
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if not e.name.startswith(".")]
    except OSError as e:
        _raise_list_error(e)
    dirs = {e.name for e in entries if e.is_dir()}  # follows links; False for broken ones
    for e in entries:
        if e.name not in dirs and e.name in {*CLASSES, *SPLIT_NAMES}:
            raise DataError(f"{e.path}: {_not_found(Path(e.path))}: make it a folder (or a link to one)")
    return dirs


def _images_under(folder: Path, root: Path) -> list[str]:
    # Relative posix paths (to root) of every image below folder, sorted; hidden entries skipped.
    out, seen = [], {}
    for dirpath, dirnames, filenames in os.walk(folder, onerror=_raise_list_error, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            raise DataError(f"{dirpath}: reaches {seen[st.st_dev, st.st_ino]} a second time (a symbolic link "
                            "loop, or two links to one folder): remove the link")
        seen[st.st_dev, st.st_ino] = dirpath
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in [*dirnames, *filenames]:
            if _is_image(name) and (problem := _entry_problem(Path(dirpath, name))):
                raise DataError(f"{Path(dirpath, name)}: {problem[0]}: {problem[1]}")
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
            raise DataError(f"{folder / cls}: no images ({', '.join(_EXTENSIONS[:4])}, ...): add some or fix the path")
    return files


def _scan(root: Path) -> dict[str, dict[str, list[str]]] | dict[str, list[str]]:
    """{split: {class: [relpath]}} for a split tree, {class: [relpath]} for a flat folder."""
    if not root.is_dir():
        raise DataError(f"{root}: photo folder {_not_found(root)}: set data.source to a folder holding positive/ and "
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


def stratified_split(files: dict[str, list[str]], seed: int, val_fraction: float, test_fraction: float,
                     where: Callable[[str], Path]) -> dict[str, dict[str, list[str]]]:
    """{split: {class: [path]}}: a seeded split of each class's paths (the same seed and paths give the
    same split on every machine). test_fraction 0 makes no test part (a dataset's published test split
    is kept); `where(cls)` names the folder in the error when a class is too small to split."""
    out: dict[str, dict[str, list[str]]] = {s: {} for s in SPLIT_NAMES}
    for cls, paths in files.items():
        n = len(paths)
        n_test = max(1, round(test_fraction * n)) if test_fraction > 0 else 0
        n_val = max(1, round(val_fraction * n))
        if n - n_val - n_test < 1:
            raise DataError(f"{where(cls)}: {n} image(s) are too few to split with val_fraction={val_fraction}"
                            + (f", test_fraction={test_fraction}" if test_fraction > 0 else "")
                            + f": add images (at least {2 + (test_fraction > 0)} per class)")
        perm = np.random.default_rng([seed, CLASSES[cls], 0x5A17]).permutation(n)
        pick = {"test": perm[:n_test], "val": perm[n_test:n_test + n_val], "train": perm[n_test + n_val:]}
        for s in SPLIT_NAMES:
            out[s][cls] = sorted(paths[i] for i in pick[s])
    return out


def _mask_index(mask_dir: Path) -> dict[str, Path]:
    # relative path without extension -> mask file
    if not mask_dir.is_dir():
        raise DataError(f"{mask_dir}: mask folder {_not_found(mask_dir)}: set data.mask_dir to a tree mirroring the photo "
                        "folder, or to None")
    index: dict[str, Path] = {}
    for rel in _images_under(mask_dir, mask_dir):
        key = rel.rsplit(".", 1)[0]
        if key in index:
            raise DataError(f"{mask_dir / rel}: two masks for {key} ({index[key].name} and {Path(rel).name}): keep one")
        index[key] = mask_dir / rel
    return index


def _stat(path: Path) -> list:
    try:
        st = path.stat()
    except OSError as e:  # gone or changed since the scan
        raise DataError(f"{path}: cannot be read ({e.strerror}): restore it or delete it, then start again") from e
    return [st.st_size, st.st_mtime_ns]


def file_digest(h, *parts: object, files: Sequence[Path | None] = ()) -> None:
    """Adds `parts` and each file's (size, mtime) to the hash `h`: a file replaced or touched since the
    cache was written gives another fingerprint."""
    h.update(json.dumps([*map(str, parts), *(_stat(f) if f is not None else None for f in files)]).encode())


def open_folder(cfg: DataConfig) -> Source:
    """An ImageFolder tree: the layout validated now; its fingerprint and a function that loads the pixels."""
    root = Path(cfg.source).expanduser()
    scanned = _scan(root)
    tree = set(scanned) == set(SPLIT_NAMES)
    layout = scanned if tree else stratified_split(scanned, cfg.seed, cfg.val_fraction, cfg.test_fraction,
                                                   lambda cls: root / cls)
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
    items: dict[str, list[Item]] = {}
    for s in SPLIT_NAMES:
        for cls in CLASSES:
            for rel in layout[s][cls]:
                m = masks.get(rel.rsplit(".", 1)[0])
                h.update(json.dumps([s, rel, _stat(root / rel), str(m) if m else None,
                                     _stat(m) if m else None]).encode())
        items[s] = sorted((Item(root / rel, CLASSES[cls], f"photo:{rel}", masks.get(rel.rsplit(".", 1)[0]))
                           for cls in CLASSES for rel in layout[s][cls]), key=lambda it: (it.image_id, it.label))
    info = {"dataset": "folder", "name": "ImageFolder", "root": str(root.resolve()),
            "layout": "train/ val/ test/, each positive/ + negative/" if tree
            else "positive/ + negative/, seeded split", "mask_dir": cfg.mask_dir,
            "counts": {s: {cls: len(layout[s][cls]) for cls in CLASSES} for s in SPLIT_NAMES}}

    def load() -> tuple[dict[str, Split], dict]:
        return load_splits_of(items, cfg.image_size, _folder_mask)

    return Source(h.hexdigest(), "photos", info, load)


def _white_level(im: Image.Image, path: Path) -> int:
    # The value that means white in a single-channel integer image wider than 8 bits (the file as
    # opened: a transposed copy has lost its format and tags).
    if im.mode in _UINT16_MODES:
        bits = im.tag_v2.get(258, 16) if im.format == "TIFF" else 16  # BitsPerSample: 12-bit TIFFs exist
        return 2 ** min(16, bits[0] if isinstance(bits, tuple) else bits) - 1
    if im.format == "PPM":  # PIL scales a PGM's maxval (256..65535) to 65535
        return 65535
    raise DataError(f"{path}: {im.format} image of 32-bit or signed integers (PIL mode I) has no standard "
                    "white level: save it as 8- or 16-bit unsigned PNG or TIFF")


def _to_8bit(im: Image.Image, path: Path, white: int | None) -> Image.Image:
    """An image in a mode PIL converts to RGB exactly: wide integers and floats scaled to 0..255."""
    if im.mode not in _WIDE_INT_MODES | {"F"}:
        return im
    a = np.asarray(im, dtype=np.float32)  # (H, W)
    if im.mode == "F":
        if not np.isfinite(a).all():
            raise DataError(f"{path}: float image holds NaN or infinite values: replace them and save it again, "
                            "or save it as 8- or 16-bit")
        white, lo, hi = 1.0, -_FLOAT_TOLERANCE, 1 + _FLOAT_TOLERANCE
    else:
        assert white is not None, f"{im.mode} image without a white level"
        lo, hi = 0, white
    if a.min() < lo or a.max() > hi:
        rule = "0 black, 1 white" if im.mode == "F" else f"{im.mode} with {white} as white"
        raise DataError(f"{path}: values run from {a.min():g} to {a.max():g}, outside 0..{white:g} ({rule}): rescale "
                        f"them to 0..{white:g}, or save it as 8-bit")
    return Image.fromarray(np.rint(np.clip(a, 0, white) * (255 / white)).astype(np.uint8), "L")


def _rgb(im: Image.Image, path: Path, white: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of any PIL image; transparent pixels composited onto black."""
    im = _to_8bit(im, path, white)
    if im.mode == "La":  # premultiplied; PIL converts it to LA only
        im = im.convert("LA")
    try:
        if im.mode in _ALPHA_MODES or "transparency" in im.info:
            rgba = np.asarray(im.convert("RGBA"), dtype=np.uint16)  # (H, W, 4)
            return ((rgba[..., :3] * rgba[..., 3:] + 127) // 255).astype(np.uint8)
        return np.asarray(im.convert("RGB"))
    except ValueError as e:
        raise DataError(f"{path}: PIL cannot convert image mode {im.mode} to RGB ({e}): save it as 8-bit RGB "
                        "PNG or JPEG") from e


def _read(path: Path, size: int, mask: bool = False, zero_one: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """(H, W, 3) uint8 RGB, at least size x size for JPEGs, and the full (width, height) after EXIF rotation.
    A mask of only 0 and 1 (a label image) is refused, or with `zero_one` read as 0 and 255."""
    im, full, white = _open(path, size, mask, zero_one)
    return _rgb(im, path, white), full


def _open(path: Path, size: int, mask: bool, zero_one: bool) -> tuple[Image.Image, tuple[int, int], int | None]:
    # The decoded image (EXIF rotation applied), its full (width, height) and the white level of wide integers.
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                w, h = h, w
            im.draft(None, (size, size))  # JPEG: decode at a reduced scale, still reads the whole file
            im.load()
            white = _white_level(im, path) if im.mode in _WIDE_INT_MODES else None
            im = ImageOps.exif_transpose(im)
    except DataError:  # a ValueError, but already names the file and the fix
        raise
    except UnidentifiedImageError as e:
        raise DataError(f"{path}: not an image PIL can read (empty, another format, or an unsupported "
                        "variant): convert it to PNG or JPEG, or delete it") from e
    except _BAD_IMAGE as e:
        raise DataError(f"{path}: unreadable or truncated image ({type(e).__name__}: {e}): "
                        "replace or delete the file") from e
    if mask and im.mode in _WIDE_INT_MODES | {"L"} and np.asarray(im).max() == 1:
        if not zero_one:
            raise DataError(f"{path}: mask holds only 0 and 1, so no pixel is grey > 127 (of 255): save it with "
                            "the animal white (e.g. mask * 255)")
        im, white = Image.fromarray((np.asarray(im) == 1).astype(np.uint8) * 255, "L"), None
    return im, (w, h), white


def _image(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    rgb, full = _read(path, size)
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR)).transpose(2, 0, 1), full


def mask_grey(path: Path, size: int, zero_one: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """(H, W) uint8 grey of a mask file (at least size x size for JPEGs) and its full (width, height);
    a coloured mask is refused, and so is a 0/1 label image unless `zero_one` (then 1 reads as 255)."""
    im, full, white = _open(path, size, True, zero_one)
    im = _to_8bit(im, path, white)
    if im.mode in ("1", "L") and "transparency" not in im.info:  # grey already: the common mask, read directly
        return np.asarray(im.convert("L")), full
    im = Image.fromarray(_rgb(im, path))
    # max(R, G, B) - min(R, G, B) over the pixels, in PIL: numpy's reductions over the channel axis
    # took ~40 ms for a 1024 x 768 mask, ten times the rest of reading it.
    r, g, b = im.split()
    spread = max(ImageChops.difference(x, y).getextrema()[1] for x, y in ((r, g), (g, b), (r, b)))
    if spread > _MASK_MAX_SPREAD:
        raise DataError(f"{path}: mask is coloured (channels differ by up to {spread}): save it as a greyscale "
                        "image with the animal white and the rest black")
    return np.asarray(im.convert("L")), full


def squash_mask(on: np.ndarray, size: int) -> np.ndarray:
    """A boolean (H, W) mask squashed to (size, size) as its image is: a pixel is on where more than
    half of what it covers was."""
    grey = Image.fromarray(on.astype(np.uint8) * 255).resize((size, size), Image.BILINEAR)
    return np.asarray(grey) > 127


def _folder_mask(item: Item, full: tuple[int, int], size: int) -> tuple[np.ndarray, tuple[str, ...]]:
    # The folder rules: white (grey > 127 of 255) is the animal; a mask has its image's size.
    assert item.mask is not None
    grey, mfull = mask_grey(item.mask, size)
    if mfull != full:
        raise DataError(f"{item.mask}: mask is {mfull[0]}x{mfull[1]} but its image {item.path} is "
                        f"{full[0]}x{full[1]}: save the mask at the image's size")
    m = np.asarray(Image.fromarray(grey).resize((size, size), Image.BILINEAR)) > 127
    if item.label == 0 and m.any():
        raise DataError(f"{item.mask}: mask of a negative image marks an animal: delete the mask or move "
                        f"{item.path} to positive/")
    return m, ()


# ---------------------------------------------------------------------------------------------
# Reading many images: in this process, or in a few worker processes for large sources

@dataclass(frozen=True)
class Item:
    path: Path  # the image file
    label: int  # 1 = animal present, 0 = negative
    image_id: str  # stable and unique across splits
    mask: Path | None = None  # its mask file, if it has one


# (item, the image's full (width, height), size) -> the (size, size) bool mask and what to count about it
MaskReader = Callable[[Item, tuple[int, int], int], tuple[np.ndarray, tuple[str, ...]]]
_CHUNK = 256  # images per task of a worker process: ~3 MB of results at 64 px, ~39 MB at 224 px
_MAX_WORKERS = 8


def _read_chunk(items: Sequence[Item], size: int, read_mask: MaskReader
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    images = np.empty((len(items), 3, size, size), dtype=np.uint8)
    masks = np.zeros((len(items), size, size), dtype=np.uint8)
    has_mask = np.zeros(len(items), dtype=bool)
    found: collections.Counter[str] = collections.Counter()
    for i, item in enumerate(items):
        images[i], full = _image(item.path, size)
        if item.mask is not None:
            masks[i], notes = read_mask(item, full, size)
            has_mask[i] = True
            found.update(notes)
    return images, masks, has_mask, dict(found)


def default_workers(n_items: int) -> int:
    # Worker processes pay off from a few chunks on; the launcher runs before Ray, so the cores are free.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, _MAX_WORKERS, -(-n_items // _CHUNK)))


@dataclass(frozen=True)
class Workers:
    pool: ProcessPoolExecutor
    n: int  # processes: 2 n chunks are kept in flight


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[Workers | None]:
    """Worker processes for reading images (None for one process). Started before the arrays they fill
    are allocated: a process starts as a copy of its parent (fork, then exec), and the copy's size
    counts in its peak memory. spawn, not fork: the caller may hold threads (a fork copies their locks
    mid-use)."""
    if workers <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield Workers(pool, workers)
    except BaseException:
        pool.shutdown(cancel_futures=True)
        raise
    pool.shutdown()


def load_items(items: Sequence[Item], size: int, read_mask: MaskReader, workers: Workers | None = None,
               chunk: int = _CHUNK) -> tuple[Split, dict[str, int]]:
    """One split's images (and masks) read and squashed to size x size, one image in memory at full
    size per process; what `read_mask` counted. With workers, they read chunks of `chunk` images, a few
    chunks in flight at a time, so memory stays at the result plus a few chunks."""
    n = len(items)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    has_mask = np.zeros(n, dtype=bool)
    found: collections.Counter[str] = collections.Counter()
    starts = range(0, n, chunk)

    def place(start: int, part: tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]) -> None:
        stop = start + len(part[0])
        images[start:stop], masks[start:stop], has_mask[start:stop] = part[:3]
        found.update(part[3])

    if workers is None:
        for start in starts:
            place(start, _read_chunk(items[start:start + chunk], size, read_mask))
    else:
        pending: collections.deque[tuple[int, Future]] = collections.deque()
        for start in starts:
            pending.append((start, workers.pool.submit(_read_chunk, items[start:start + chunk], size, read_mask)))
            if len(pending) >= 2 * workers.n:
                place(pending[0][0], pending.popleft()[1].result())
        while pending:
            place(pending[0][0], pending.popleft()[1].result())
    split = Split(images=images, labels=np.array([it.label for it in items], dtype=np.int64), masks=masks,
                  habitats=np.full(n, -1, dtype=np.int64), image_ids=np.array([it.image_id for it in items]),
                  has_mask=has_mask)
    return split, dict(found)


def load_splits_of(items: dict[str, Sequence[Item]], size: int, read_mask: MaskReader
                   ) -> tuple[dict[str, Split], dict[str, int]]:
    """Every split's items loaded (worker processes for large sources); the counts of what `read_mask`
    noted, summed over splits."""
    parts, found = {}, collections.Counter()
    with worker_pool(default_workers(sum(map(len, items.values())))) as workers:
        for s in SPLIT_NAMES:
            parts[s], counted = load_items(items[s], size, read_mask, workers)
            found.update(counted)
    return parts, dict(found)
