"""The types every data source returns: `Split` (one split's uint8 arrays) and `Splits` (train, val,
test, fingerprint, provenance). numpy only, so that the launcher, which makes the splits and ships
them to the trials, imports neither torch nor an image library's torch glue.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CLASSES", "DataError", "SPLIT_NAMES", "Source", "Split", "Splits", "class_counts"]

SPLIT_NAMES = ("train", "val", "test")
CLASSES = {"positive": 1, "negative": 0}  # label of each class; the paper's classes: animal present or not


class DataError(ValueError):
    """Bad data input; the message names the path or value and the fix."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, 3, H, W) uint8, RGB
    labels: np.ndarray  # (N,) int64; 1 = animal present, 0 = negative
    masks: np.ndarray  # (N, H, W) uint8 in {0, 1}; all zero for negatives and where no mask exists
    habitats: np.ndarray  # (N,) int64; index into Splits.habitat_names, -1 = unknown
    image_ids: np.ndarray  # (N,) str, stable and unique across splits
    has_mask: np.ndarray  # (N,) bool: a real mask exists for this image

    def __post_init__(self) -> None:
        n = len(self.labels)
        ok = (self.images.ndim == 4 and self.images.shape[:2] == (n, 3) and self.images.dtype == np.uint8
              and self.masks.shape == (n, *self.images.shape[2:]) and self.masks.dtype == np.uint8
              and self.labels.dtype == np.int64 and self.habitats.shape == (n,)
              and self.image_ids.shape == (n,) and self.has_mask.shape == (n,) and self.has_mask.dtype == bool)
        if not ok:
            raise DataError(f"inconsistent Split arrays: images {self.images.shape} {self.images.dtype}, "
                            f"masks {self.masks.shape} {self.masks.dtype}, labels {self.labels.shape} "
                            f"{self.labels.dtype}: build a Split with (N,3,H,W) uint8 images and (N,) labels")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split
    test: Split
    fingerprint: str  # hex digest of every generator parameter, or of the photo folder and loader params
    habitat_names: tuple[str, ...]  # ("bark", "leaves") for mimicry; () for photos
    # What the data are, for study.json and the report: the source ("mimicry", "folder", "cod10k", ...),
    # its layout, images per split and class, and what the loader had to do (masks missing or resized).
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Split:
        if name not in SPLIT_NAMES:
            raise KeyError(f"split {name!r}: use one of {', '.join(SPLIT_NAMES)}")
        return getattr(self, name)


@dataclass(frozen=True)
class Source:
    """A photo source whose layout has been checked and whose files have been listed, pixels not read yet."""

    fingerprint: str  # hex digest of the loader's parameters and every file's path, size and mtime
    cache_prefix: str  # the disk cache file is <cache_prefix>-<fingerprint[:20]>.npz
    info: Mapping[str, Any]  # provenance known from the listing: dataset, layout, images per split and class
    # Reads the pixels: the splits and what reading them found (e.g. {"masks_resized": 3}).
    load: Callable[[], tuple[dict[str, Split], dict[str, Any]]]


def class_counts(splits: Mapping[str, Split]) -> dict[str, dict[str, int]]:
    """{split: {"positive": n, "negative": m}}."""
    return {s: {cls: int((splits[s].labels == label).sum()) for cls, label in CLASSES.items()} for s in SPLIT_NAMES}
