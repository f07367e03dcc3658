"""Test-split metrics: accuracy per (label, habitat) group and attention quality against masks."""
from __future__ import annotations

import math

import numpy as np
import torch


def group_accuracies(labels: np.ndarray, habitats: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    """Accuracy per group "y{label}_h{habitat}"; habitat -1 (unknown) groups by label only."""
    out: dict[str, float] = {}
    for y in np.unique(labels):
        for h in np.unique(habitats[labels == y]):
            sel = (labels == y) & (habitats == h)
            key = f"y{int(y)}" if h < 0 else f"y{int(y)}_h{int(h)}"
            out[key] = float(correct[sel].mean())
    return out


def bias_split_accuracies(labels: np.ndarray, habitats: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """(bias-aligned, bias-conflicting) accuracy; aligned means habitat == label. NaN without habitats."""
    known = habitats >= 0
    aligned = known & (habitats == labels)
    conflicting = known & (habitats != labels)
    acc = lambda sel: float(correct[sel].mean()) if sel.any() else math.nan  # noqa: E731
    return acc(aligned), acc(conflicting)


def attention_scores(cam: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image attention quality; cam (B, H, W) min-max normalised at input size, mask (B, H, W) in {0,1}.

    pointing: the map's maximum lies inside the mask; energy: share of the map's mass inside the
    mask (energy-based pointing game); iou: IoU of {cam >= 0.5 * max} with the mask.
    """
    b = cam.shape[0]
    flat, m = cam.flatten(1), mask.flatten(1).to(cam.dtype)
    pointing = m.gather(1, flat.argmax(dim=1, keepdim=True))[:, 0]
    energy = (flat * m).sum(1) / flat.sum(1).clamp_min(1e-12)
    thr = flat >= 0.5 * flat.max(dim=1, keepdim=True).values
    inter = (thr & (m > 0)).sum(1).to(cam.dtype)
    union = (thr | (m > 0)).sum(1).to(cam.dtype)
    iou = inter / union.clamp_min(1)
    assert pointing.shape == (b,)
    return {"pointing_game": pointing, "energy_pointing_game": energy, "iou": iou}
