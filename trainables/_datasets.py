"""The public camouflaged-object datasets as they are published, and which photo layout a folder holds.

`open_source(cfg)` recognises the layout of `cfg.source` (or insists on `cfg.dataset`), lists and
checks every file, and returns a `Source` whose `load()` reads the pixels. Layouts, as the datasets'
own READMEs describe them (README.md, "Data", cites them):

- COD10K (Fan et al. 2020; the v3 release): `Train/Image`, `Train/GT_Object`, `Test/Image`,
  `Test/GT_Object` (`GT_Instance`, `GT_Edge` unused). Each file names its class:
  `COD10K-CAM-<super#>-<Super>-<sub#>-<Sub>-<n>` (camouflaged animals) and
  `COD10K-NonCAM-<super#>-<Super>[-<sub#>-<Sub>]-<n>` (no camouflaged animal; super-class
  `Background` = scenes without an animal). Positives: the CAM images, optionally only the
  sub-classes in `classes`. Negatives: the Background images, with `negatives=background+noncam`
  also the NonCAM images of visible animals. `GT_Object` holds the CAM images' masks; a NonCAM image
  without one is allowed (and counted).
- CAMO (Le et al. 2019; `CAMO-V.1.0-CVIU2019`): `Images/Train`, `Images/Test`, `GT` (the masks of both).
- NC4K (Lv et al. 2021): `Imgs`, `GT`. Published as a test set only, so it is split like a plain folder.
CAMO and NC4K hold camouflaged animals only: they need a folder of negatives (`negatives=DIR`): a
COD10K root (its Background images, with COD10K's split) or any folder of images without the animal
(a seeded split with val_fraction and test_fraction).

Splits: a dataset's published train/test split is kept; validation is a seeded part (val_fraction) of
train, stratified by class. Every image needs its mask (matched by file name, any image extension)
except where the layout says otherwise; a mask whose image is missing is refused.

Masks (the convention README.md names): read as grey (1-bit, 8-bit, 16-bit alike; a 0/1 label image
reads as 0/255), a pixel is the object where its value is above half the mask's brightest value (so
0/255, 0/1 and anti-aliased masks agree; an all-black mask marks nothing). A mask of another size than
its image (same shape within 5 %) is stretched over it with nearest-neighbour resampling and counted.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from trainables import _photos
from trainables._photos import Item
from trainables.config import NEGATIVE_KINDS, DataConfig
from trainables.splits import CLASSES, SPLIT_NAMES, DataError, Source, Split

LAYOUT_VERSION = 1  # the reading rules above; a change gives every dataset a new fingerprint
_ASPECT_TOLERANCE = 0.05  # a mask of another size is resized only if its shape is its image's
_COD10K_NAME = re.compile(r"COD10K-(?P<kind>CAM|NonCAM)-(?P<super_no>\d+)-(?P<super>[^-]+)"
                          r"(?:-(?P<sub_no>\d+)-(?P<sub>[^-]+))?-(?P<n>\d+)")
_BACKGROUND = "background"  # COD10K's super-class of scenes without an animal (NonCAM-5-Background)


@dataclass(frozen=True)
class Layout:
    key: str  # the --data prefix
    name: str
    images: Mapping[str, str]  # published split -> its image folder under the root
    masks: Mapping[str, str]  # published split -> its mask folder

    def describe(self) -> str:
        return ", ".join(f"{self.images[s]} + {self.masks[s]}" for s in self.images)


LAYOUTS = {
    "cod10k": Layout("cod10k", "COD10K", {"train": "Train/Image", "test": "Test/Image"},
                     {"train": "Train/GT_Object", "test": "Test/GT_Object"}),
    "camo": Layout("camo", "CAMO", {"train": "Images/Train", "test": "Images/Test"}, {"train": "GT", "test": "GT"}),
    "nc4k": Layout("nc4k", "NC4K", {"test": "Imgs"}, {"test": "GT"}),
}
_FOLDER_DIRS = {*CLASSES, *SPLIT_NAMES}  # an ImageFolder tree holds some of these


def _has_dir(root: Path, rel: str) -> bool:
    # Exact names, also on a case-insensitive file system (COD10K's Train/ is not an ImageFolder's train/).
    here = root
    for part in rel.split("/"):
        try:
            with os.scandir(here) as it:
                if not any(e.name == part and e.is_dir() for e in it):
                    return False
        except OSError:
            return False
        here = here / part
    return True


def recognise(root: Path) -> str | None:
    """The layout a folder holds: "cod10k", "camo", "nc4k", "folder" (ImageFolder), or None."""
    found = [k for k, lay in LAYOUTS.items() if all(_has_dir(root, d) for d in lay.images.values())]
    if any(_has_dir(root, d) for d in _FOLDER_DIRS):
        found.append("folder")
    if len(found) > 1:
        raise DataError(f"{root}: holds the folders of several layouts ({', '.join(found)}): name one with a "
                        f"prefix, e.g. --data {found[0]}:{root}, or move the other folders out")
    return found[0] if found else None


def _expected(key: str) -> str:
    if key == "folder":
        return "positive/ + negative/ (or train/ val/ test/ holding them)"
    return LAYOUTS[key].describe()


def open_source(cfg: DataConfig) -> Source:
    """A photo folder or dataset, its layout recognised (or checked against cfg.dataset) and every file listed."""
    root = Path(cfg.source).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: photo folder {_photos._not_found(root)}: set --data to a folder holding one of the "
                        "layouts (ImageFolder positive/ + negative/, COD10K, CAMO, NC4K), or to 'mimicry'")
    found = recognise(root)
    key = found if cfg.dataset == "auto" else cfg.dataset
    if key is None:
        raise DataError(f"{root}: no known layout: expected {_expected('folder')}, or a dataset as published: "
                        + "; ".join(f"{lay.name} ({lay.describe()})" for lay in LAYOUTS.values())
                        + f"{_nested_hint(root)}: give the folder that holds them")
    if found is not None and found != key:
        raise DataError(f"{root}: holds the {_title(found)} layout ({_expected(found)}), not {_title(key)}'s "
                        f"({_expected(key)}): use --data {found}:{root}, or give the folder plainly")
    if key == "folder":
        extra = [f"{k}={v}" for k, v in (("classes", cfg.classes), ("negatives", cfg.negatives)) if v is not None]
        if extra:
            raise DataError(f"{', '.join(extra)}: only for the COD10K, CAMO and NC4K layouts; {root} is an "
                            "ImageFolder tree, whose negative/ folder holds the negatives: drop the option")
        return _photos.open_folder(cfg)
    lay = LAYOUTS[key]
    if found is None:
        missing = [d for d in lay.images.values() if not _has_dir(root, d)]
        raise DataError(f"{root}: not the {lay.name} layout ({lay.describe()}): {', '.join(missing)} missing"
                        f"{_nested_hint(root)}: give the folder that holds them (the extracted release)")
    if cfg.mask_dir is not None:
        raise DataError(f"mask_dir={cfg.mask_dir}: {lay.name}'s masks are read from its "
                        f"{', '.join(sorted(set(lay.masks.values())))} folder(s): drop mask_dir")
    return _open_dataset(lay, root, cfg, recognised=cfg.dataset == "auto")


def _title(key: str) -> str:
    return "ImageFolder" if key == "folder" else LAYOUTS[key].name


def _nested_hint(root: Path) -> str:
    # The commonest slip: the folder the archive was extracted into, one level above the release.
    try:
        subs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return ""
    for sub in subs:
        key = _recognise_quietly(root / sub)
        if key is not None:
            return f" (its subfolder {sub}/ holds the {_title(key)} layout: --data {key}:{root / sub})"
    return ""


def _recognise_quietly(root: Path) -> str | None:
    try:
        return recognise(root)
    except DataError:
        return None


# ---------------------------------------------------------------------------------------------
# Listing a dataset

@dataclass(frozen=True)
class _Image:
    item: Item
    split: str  # the published split, "train" or "test"; "" where there is none (NC4K, a negatives folder)
    kind: str  # "cam" (a positive), "background" or "noncam" (COD10K), "negative" (a negatives folder)
    subclass: str  # COD10K's sub-class in the file name ("Lizard"); "" where there is none
    mask_file: bool  # a mask file exists (a negative's is not read: its label says there is no animal)


def _list_images(lay: Layout, root: Path) -> dict[str, dict[str, str]]:
    """{published split: {image stem: path relative to root}}."""
    out: dict[str, dict[str, str]] = {}
    for split, folder in lay.images.items():
        stems: dict[str, str] = {}
        for rel in _photos._images_under(root / folder, root):
            stem = Path(rel).stem
            if stem in stems:
                raise DataError(f"{root / rel}: a second image named {stem} (with {Path(stems[stem]).name}): keep one")
            stems[stem] = rel
        if not stems:
            raise DataError(f"{root / folder}: no images: restore {lay.name}'s {split} images from the release")
        out[split] = stems
    return out


def _list_masks(lay: Layout, root: Path, images: dict[str, dict[str, str]]) -> dict[str, dict[str, Path]]:
    """{published split: {image stem: mask file}}; a missing mask folder, or a mask without its image, is refused."""
    out: dict[str, dict[str, Path]] = {s: {} for s in lay.images}
    for folder in sorted(set(lay.masks.values())):
        splits = [s for s in lay.images if lay.masks[s] == folder]
        where = ", ".join(lay.images[s] for s in splits)
        if not _has_dir(root, folder):
            raise DataError(f"{root / folder}: missing: it holds the masks of {lay.name}'s images in {where}: restore "
                            f"it from the release (the folder that holds {where} holds it too)")
        for key, path in _photos._mask_index(root / folder).items():
            stem = Path(key).name
            owner = next((s for s in splits if stem in images[s]), None)
            if owner is None:
                raise DataError(f"{path}: a mask without its image (no {stem}.* in {where}): delete the mask or "
                                "restore the image")
            out[owner][stem] = path
    return out


def _cod10k_kind(path: Path) -> tuple[str, str]:
    m = _COD10K_NAME.fullmatch(path.stem)
    if m is None:
        raise DataError(f"{path}: not a COD10K file name (COD10K-CAM-<n>-<Super>-<n>-<Sub>-<n> or "
                        "COD10K-NonCAM-...): rename it as the release names it, or move it out")
    if m["kind"] == "CAM":
        return "cam", m["sub"] or ""
    return (_BACKGROUND if m["super"].lower() == _BACKGROUND else "noncam"), m["sub"] or ""


def _dataset_images(lay: Layout, root: Path, *, negatives_only: bool = False) -> list[_Image]:
    """Every image of the dataset, classified; the masks of positives attached (a positive without one is refused)."""
    images = _list_images(lay, root)
    masks = {} if negatives_only else _list_masks(lay, root, images)
    out = []
    for split, stems in images.items():
        for stem, rel in sorted(stems.items()):
            path = root / rel
            kind, sub = _cod10k_kind(path) if lay.key == "cod10k" else ("cam", "")
            if negatives_only and kind == "cam":
                continue
            mask = masks.get(split, {}).get(stem)
            if kind == "cam" and mask is None:
                raise DataError(f"{path}: no mask named {stem}.* in {root / lay.masks[split]}: restore it from the "
                                f"{lay.name} release, or move the image out")
            label = CLASSES["positive"] if kind == "cam" else CLASSES["negative"]
            item = Item(path, label, f"{lay.key}:{rel}", mask if kind == "cam" else None)
            out.append(_Image(item, split, kind, sub, mask is not None))
    return out


def _class_filter(cfg: DataConfig, lay: Layout, images: list[_Image]) -> tuple[str, ...] | None:
    if cfg.classes is None:
        return None
    if lay.key != "cod10k":
        raise DataError(f"classes={cfg.classes}: {lay.name}'s file names carry no class names: drop classes "
                        "(only COD10K's do)")
    names = sorted({im.subclass for im in images if im.kind == "cam" and im.subclass})
    by_lower = {n.lower(): n for n in names}
    wanted = [w.strip() for w in cfg.classes.split("+")]
    unknown = [w for w in wanted if w.lower() not in by_lower]
    if unknown:
        raise DataError(f"classes={cfg.classes}: {', '.join(unknown)} not among the sub-classes of the CAM images "
                        f"in {cfg.source}: {', '.join(names)}: use those names")
    return tuple(dict.fromkeys(by_lower[w.lower()] for w in wanted))


def _negative_kinds(cfg: DataConfig, lay: Layout) -> set[str] | None:
    """COD10K's NonCAM kinds used as negatives, or None when negatives come from a folder."""
    spec = cfg.negatives
    if spec is not None and not set(spec.split("+")) <= set(NEGATIVE_KINDS):
        return None
    if lay.key != "cod10k":
        raise DataError(f"{cfg.source}: {lay.name} holds camouflaged animals only, no images without one"
                        + (f" (negatives={spec} names COD10K's NonCAM images)" if spec else "")
                        + f": name a folder of negatives, e.g. --data {lay.key}:{cfg.source},negatives=COD10K_ROOT "
                        "(COD10K's Background images) or negatives=DIR of your own")
    return set(spec.split("+")) if spec else {_BACKGROUND}


def _negatives_folder(cfg: DataConfig, root: Path) -> list[_Image]:
    """Negatives from `cfg.negatives`: a COD10K root (its Background images) or a folder of images."""
    folder = Path(str(cfg.negatives)).expanduser()
    if not folder.is_dir():
        raise DataError(f"negatives={folder}: folder {_photos._not_found(folder)}: name a folder of images without "
                        "the animal or a COD10K root for its Background images (for COD10K itself: negatives="
                        f"{'+'.join(NEGATIVE_KINDS)} or {NEGATIVE_KINDS[0]}, lower case)")
    if folder.resolve() == root.resolve() or root.resolve() in folder.resolve().parents:
        raise DataError(f"negatives={folder}: is inside the dataset {root}, whose images show the animal: name a "
                        "folder of images without it")
    key = recognise(folder)
    if key == "cod10k":
        return [im for im in _dataset_images(LAYOUTS["cod10k"], folder, negatives_only=True) if im.kind == _BACKGROUND]
    if key is not None:
        raise DataError(f"negatives={folder}: holds the {_title(key)} layout ({_expected(key)}), whose images are "
                        "not all negatives: name a folder of images without the animal, or a COD10K root")
    rels = _photos._images_under(folder, folder)
    if not rels:
        raise DataError(f"negatives={folder}: no images: add images without the animal or fix the path")
    cam = next((r for r in rels if Path(r).stem.startswith("COD10K-CAM-")), None)
    if cam is not None:
        raise DataError(f"negatives={folder / cam}: a COD10K image of a camouflaged animal: name the COD10K root "
                        "(the folder holding Train/ and Test/) to use its Background images only")
    return [_Image(Item(folder / rel, CLASSES["negative"], f"negatives:{rel}"), "", "negative", "", False)
            for rel in rels]


def _split(images: list[_Image], cfg: DataConfig, where: Callable[[str], Path]) -> dict[str, list[_Image]]:
    """train/val/test: the published test split kept and a seeded val_fraction of train; images without
    a published split (NC4K, a negatives folder) split seeded with val_fraction and test_fraction."""
    out: dict[str, list[_Image]] = {s: [] for s in SPLIT_NAMES}
    by_id = {im.item.image_id: im for im in images}
    for published, test_fraction in (("train", 0.0), ("", cfg.test_fraction)):
        files: dict[str, list[str]] = {}
        for cls, label in CLASSES.items():
            ids = sorted(im.item.image_id for im in images if im.split == published and im.item.label == label)
            if ids:
                files[cls] = ids
        parts = _photos.stratified_split(files, cfg.seed, cfg.val_fraction, test_fraction, where)
        for s in SPLIT_NAMES:
            out[s] += [by_id[i] for ids in parts[s].values() for i in ids]
    out["test"] += [im for im in images if im.split == "test"]
    return {s: sorted(v, key=lambda im: im.item.image_id) for s, v in out.items()}


def _open_dataset(lay: Layout, root: Path, cfg: DataConfig, recognised: bool) -> Source:
    kinds = _negative_kinds(cfg, lay)
    images = _dataset_images(lay, root)
    classes = _class_filter(cfg, lay, images)
    keep = [im for im in images
            if (im.kind == "cam" and (classes is None or im.subclass in classes))
            or (kinds is not None and im.kind in kinds)]
    if lay.key == "nc4k":  # published as a test set only: split like a plain folder
        keep = [_Image(im.item, "", im.kind, im.subclass, im.mask_file) for im in keep]
    if kinds is None:
        keep += _negatives_folder(cfg, root)
    splits = _split(keep, cfg, lambda cls: Path(str(cfg.negatives)) if cls == "negative" and kinds is None else root)
    for s in SPLIT_NAMES:
        for cls, label in CLASSES.items():
            if not any(im.item.label == label for im in splits[s]):
                raise DataError(f"{root}: no {cls} images in the {s} split"
                                + (f" with classes={cfg.classes}" if classes else "")
                                + (f" and negatives={cfg.negatives}" if cfg.negatives else "")
                                + ": choose other classes or negatives, or restore the missing files")
    h = hashlib.sha256()
    h.update(json.dumps({"loader": "datasets", "version": [LAYOUT_VERSION, _photos.LOADER_VERSION],
                         "dataset": lay.key, "root": str(root.resolve()), "image_size": cfg.image_size,
                         "classes": classes, "negatives": cfg.negatives,
                         "split": [cfg.seed, cfg.val_fraction, cfg.test_fraction]}).encode())
    for s in SPLIT_NAMES:
        for im in splits[s]:
            _photos.file_digest(h, s, im.item.image_id, im.item.mask, files=(im.item.path, im.item.mask))
    info = {
        "dataset": lay.key, "name": lay.name, "root": str(root.resolve()), "folder_name": root.resolve().name,
        "layout": lay.describe(), "layout_version": LAYOUT_VERSION,
        "recognised": "recognised from its folders" if recognised else f"checked as named ({lay.key}:)",
        "classes": list(classes) if classes else None,
        "negatives": cfg.negatives if kinds is None else "+".join(k for k in NEGATIVE_KINDS if k in kinds),
        "split": ("seeded (NC4K is published as a test set only)" if lay.key == "nc4k"
                  else "published train/test") + f"; validation: a seeded {cfg.val_fraction:g} of train per class",
        "counts": {s: {cls: sum(im.item.label == label for im in splits[s]) for cls, label in CLASSES.items()}
                   for s in SPLIT_NAMES},
        "kinds": {s: dict(sorted(Counter(im.kind for im in splits[s]).items())) for s in SPLIT_NAMES},
        # NonCAM images without a GT_Object mask: the layout allows it (their label says there is no animal)
        "masks_missing": sum(not im.mask_file and im.kind in (_BACKGROUND, "noncam") for s in SPLIT_NAMES
                             for im in splits[s]),
    }
    if lay.key == "cod10k":
        info["subclasses"] = {s: dict(sorted(Counter(im.subclass for im in splits[s] if im.kind == "cam").items()))
                              for s in SPLIT_NAMES}
    items = {s: [im.item for im in splits[s]] for s in SPLIT_NAMES}

    def load() -> tuple[dict[str, Split], dict]:
        parts, found = _photos.load_splits_of(items, cfg.image_size, read_mask)
        return parts, {"masks_resized": found.get("resized", 0), "masks_empty": found.get("empty", 0)}

    return Source(h.hexdigest(), lay.key, info, load)


def read_mask(item: Item, full: tuple[int, int], size: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """A dataset's mask by the convention in the module docstring, squashed to (size, size) as its image."""
    assert item.mask is not None
    grey, mfull = _photos.mask_grey(item.mask, size, zero_one=True)
    on = grey > int(grey.max()) / 2  # all False for an all-black mask
    notes = () if on.any() else ("empty",)
    if mfull == full:
        return _photos.squash_mask(on, size), notes
    if abs(mfull[0] * full[1] - full[0] * mfull[1]) > _ASPECT_TOLERANCE * full[0] * mfull[1]:
        raise DataError(f"{item.mask}: mask is {mfull[0]}x{mfull[1]} but its image {item.path} is {full[0]}x{full[1]}, "
                        "another shape (rotated?): save the mask at the image's size and orientation")
    stretched = Image.fromarray(on.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)
    return np.asarray(stretched) > 127, (*notes, "resized")
