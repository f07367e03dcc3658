"""Run metrics: the selection score, accuracy per (label, habitat) group, collapse, and attention
quality against masks next to what content-free maps score."""
from __future__ import annotations

import math
from fractions import Fraction

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
    # A map with no mass (all zero: what a collapsed run's Grad-CAM often is) points nowhere and
    # scores 0 on every metric; a threshold relative to its maximum would switch every pixel on.
    peak = flat.max(dim=1, keepdim=True).values
    has_mass = peak[:, 0] > 0
    pointing = m.gather(1, flat.argmax(dim=1, keepdim=True))[:, 0] * has_mass
    energy = (flat * m).sum(1) / flat.sum(1).clamp_min(1e-12)
    thr = (flat >= 0.5 * peak) & has_mass[:, None]
    inter = (thr & (m > 0)).sum(1).to(cam.dtype)
    union = (thr | (m > 0)).sum(1).to(cam.dtype)
    iou = inter / union.clamp_min(1)
    assert pointing.shape == (b,)
    return {"pointing_game": pointing, "energy_pointing_game": energy, "iou": iou}


def selection_score(acc: float, log_loss: float, n: int) -> float:
    """Accuracy first, validation log loss breaks ties: `acc - tiny * loss`.

    Accuracy on n images moves in steps of at least 1/n^2 (also a worst-group accuracy, a ratio of
    two counts <= n), and the loss term stays below 1/(2 n^2), so the score never reorders two
    different accuracies; among equal ones the lower (proper, continuous) log loss wins. One scalar
    serves early stopping, ASHA, Optuna and the study's selection alike, for both arms.
    """
    squashed = log_loss / (1.0 + log_loss) if math.isfinite(log_loss) else 1.0  # monotone, in [0, 1)
    return float(acc) - squashed / (2.0 * max(n, 1) ** 2)


def is_collapsed(preds: np.ndarray, labels: np.ndarray, share: float = 0.95, level: float = 0.95) -> bool:
    """A run collapsed if it predicts one class for >= `share` of the images, or its number of correct
    predictions lies inside the central `level` binomial interval of chance (p = 0.5)."""
    n = len(preds)
    if n == 0:
        return False
    pos_share = float(np.mean(preds == 1))
    lo, hi = chance_band(n, level)
    correct = int(np.sum(preds == labels))
    return bool(max(pos_share, 1.0 - pos_share) >= share or lo <= correct <= hi)


def chance_band(n: int, level: float = 0.95) -> tuple[int, int]:
    """The central `level` interval of the number of correct answers out of `n` coin flips (p = 0.5),
    as scipy.stats.binom.interval gives it: the smallest k with CDF(k) >= (1 - level) / 2, and the
    smallest k with CDF(k) >= (1 + level) / 2. Exact integer arithmetic (2**n overflows a float past
    n = 1023), and no scipy import in the Ray workers (0.6 s each)."""
    q = Fraction(str(level))
    scale = 2 ** n  # 2 * CDF(k) * den >= (den -+ num) * 2**n  <=>  CDF(k) / 2**n >= (1 -+ level) / 2
    cdf, lo = 0, None
    for k in range(n + 1):
        cdf += math.comb(n, k)
        if lo is None and 2 * cdf * q.denominator >= (q.denominator - q.numerator) * scale:
            lo = k
        if 2 * cdf * q.denominator >= (q.denominator + q.numerator) * scale:
            return int(lo), k
    return int(lo), n


def above_chance(acc: float, n: int, level: float = 0.95) -> bool:
    """Accuracy on `n` images above the upper end of chance's central `level` band: the run has learnt."""
    return round(acc * n) > chance_band(n, level)[1]


def has_learnt(best_acc: float, n: int, max_epochs: int) -> bool:
    """A run's best validation accuracy over its epochs so far is above chance's band at level
    1 - 0.05 / max_epochs (Bonferroni over the epochs it may run): a run still at chance looks at up to
    max_epochs noisy accuracies, and with the 95 % band one of 20 crosses it in 34 % of such runs (400
    images, simulated in tests/test_loop.py), with this band in 2.5 %. Where the patience clock
    starts (trainables/loop.py)."""
    return above_chance(best_acc, n, level=1.0 - 0.05 / max(1, max_epochs))


def content_free_scores(masks: torch.Tensor) -> dict[str, float]:
    """What maps that ignore the image score on these masks (B, H, W): a uniform map (any pixel as
    likely: every score equals the mask's area share) and a centred Gaussian (sd a quarter of the side).
    Trained maps must beat both for the attention numbers to mean anything."""
    if masks.shape[0] == 0:
        return {f"{k}_{ref}": math.nan for ref in ("uniform", "gaussian")
                for k in ("pointing_game", "energy_pointing_game", "iou")}
    b, h, w = masks.shape
    area = float(masks.flatten(1).float().mean(1).mean())
    out = {f"{k}_uniform": area for k in ("pointing_game", "energy_pointing_game", "iou")}
    yy = (torch.arange(h, dtype=torch.float64) - (h - 1) / 2) / (h / 4)
    xx = (torch.arange(w, dtype=torch.float64) - (w - 1) / 2) / (w / 4)
    gauss = torch.exp(-0.5 * (yy[:, None] ** 2 + xx[None, :] ** 2))
    scores = attention_scores(gauss.expand(b, h, w), masks)
    out.update({f"{k}_gaussian": float(v.mean()) for k, v in scores.items()})
    return out
