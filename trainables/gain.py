"""The two training steps: baseline (BCE) and GAIN (BCE + alpha * L_am [+ ext_weight * L_e]).

Both have the signature `step(model, batch, epoch) -> {"loss": total, ...named parts}` so that one
training loop runs either arm (see `make_step`). Grad-CAM is computed from the logit through the
head only: `autograd.grad(z, f)` never touches the layers before the attention map, which keeps it
cheap (with `model.cam_block < 5` the head includes the later conv blocks).

Batch norm in the masked stream S_am (`gain.masked_bn`), decided by evidence. "running" normalises
the masked images with the running statistics, as the test-time classifier does, so each positive's
masked score depends on that image alone and only positives need the second stream; "batch" uses the
masked batch's own statistics (momentum 0, so the running statistics never see masked images).
`python -m bench.calibrate --seeds 5 --arms gain --set data.camouflage=0.65 --set data.n_train=300
--set train.max_epochs=12 --set train.patience=4 --set gain.warmup_epochs=2 --set gain.masked_bn=...`
(the cpu preset as it stood then; seeds 1000-1004, alpha 1), 2026-11-27:

| masked_bn | val acc | test acc (sd) | worst group | runs stuck at the warm-up | energy / IoU |
|-----------|---------|---------------|-------------|---------------------------|--------------|
| running   | 0.686   | 0.709 (0.115) | 0.365       | 5 of 5                    | 0.088 / 0.130 |
| batch     | 0.811   | 0.825 (0.160) | 0.658       | 2 of 5                    | 0.125 / 0.170 |

(baseline: test 0.961, energy 0.118, IoU 0.180; content-free maps: energy 0.047 / 0.075, IoU 0.047 /
0.096.) With running statistics L_am is minimised through the eval-mode normalisation, which only
L_am trains (L_cl uses batch statistics), and that path is exactly what validation and test run:
every run selected its last warm-up epoch and never improved once L_am was on. So "batch" is the
default; "running" stays as an option (and with it the positives-only second stream). With batch
statistics the second stream must see the whole batch, so the step costs about two baseline steps.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .config import GainConfig, RunConfig
from .model import VGGBinary

EPS = 1e-7  # the same epsilon pytorch-grad-cam uses in its min-max scaling


@dataclass
class Batch:
    x: torch.Tensor  # (B, 3, H, W) normalised images
    y: torch.Tensor  # (B,) float labels in {0, 1}
    mask: torch.Tensor  # (B, H, W) float ground-truth masks (zeros where unknown)
    mask_known: torch.Tensor  # (B,) bool: L_e may use this image's mask (GAIN_ext)


StepFn = Callable[[VGGBinary, Batch, int], dict[str, torch.Tensor]]


def grad_cam(f: torch.Tensor, score: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Raw Grad-CAM, ReLU(sum_k w_k f_k) with w_k = GAP(d score / d f_k); (B, C, h, w) -> (B, h, w).

    `score` is one scalar per image (B,) computed from `f`; images are independent, so the gradient
    of the sum gives each image its own weights. With create_graph=False the weights w are
    constants, as in every public implementation; the map still depends on f differentiably.
    """
    (g,) = torch.autograd.grad(score.sum(), f, retain_graph=True, create_graph=create_graph)
    w = g.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    return F.relu((w * f).sum(dim=1))  # (B, h, w)


def normalise_cam(cam: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Per-image min-max to [0, 1], then bilinear upsampling to `size`: (B, h, w) -> (B, H, W)."""
    flat = cam.flatten(1)
    lo = flat.min(dim=1).values[:, None, None]
    cam = cam - lo
    hi = cam.flatten(1).max(dim=1).values[:, None, None]
    cam = cam / (hi + EPS)
    if size is not None and tuple(cam.shape[-2:]) != tuple(size):
        # Bilinear upsampling (align_corners=False) is separable: rows then columns, as two small
        # matrix products with fixed weights. Equal to F.interpolate(..., "bilinear") to ~5e-7, and
        # forward + backward cost 0.3 ms instead of 2.2 ms per GAIN step at 8 -> 64 px
        # (bench/bench_step.py), about 2% of the step.
        rows = _upsample_matrix(cam.shape[-2], size[0]).to(cam)  # (H, h)
        cols = _upsample_matrix(cam.shape[-1], size[1]).to(cam)  # (W, w)
        cam = rows @ cam @ cols.T  # (B, H, W)
    return cam


@functools.lru_cache(maxsize=16)
def _upsample_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in): row j holds the weights of 1-D linear interpolation (align_corners=False)."""
    basis = torch.eye(n_in, dtype=torch.float64)[:, None, :]  # (n_in, 1, n_in): one unit signal per row
    return F.interpolate(basis, size=n_out, mode="linear", align_corners=False)[:, 0, :].T.contiguous()


def baseline_step(model: VGGBinary, batch: Batch, epoch: int) -> dict[str, torch.Tensor]:
    z = model(batch.x)
    l_cl = F.binary_cross_entropy_with_logits(z, batch.y)
    return {"loss": l_cl, "cl": l_cl}


def gain_step(model: VGGBinary, batch: Batch, epoch: int, *, cfg: GainConfig) -> dict[str, torch.Tensor]:
    """One GAIN step (Li et al. 2018, eqs. 1-5 of the paper, plus the optional L_e of GAIN_ext)."""
    f = model.features(batch.x)  # (B, C, h, w)
    z = model.head(f)  # (B,)
    l_cl = F.binary_cross_entropy_with_logits(z, batch.y)
    zero = l_cl.new_zeros(())
    if epoch <= cfg.warmup_epochs:  # classification-only warm-up
        return {"loss": l_cl, "cl": l_cl, "am": zero, "e": zero}

    # Class score whose attention is mined: the positive logit, or each sample's true-class logit
    # (a binary sigmoid's negative-class score is -z).
    sign = torch.ones_like(batch.y) if cfg.am_samples == "positives" else 2 * batch.y - 1
    cam = normalise_cam(grad_cam(f, sign * z, create_graph=cfg.cam_grad), size=tuple(batch.x.shape[-2:]))  # (B, H, W)
    soft_mask = torch.sigmoid(cfg.omega * (cam - cfg.sigma))[:, None]  # T(A), (B, 1, H, W)
    # The images L_am scores: the positives, or every image with its true-class score.
    scored = batch.y > 0.5 if cfg.am_samples == "positives" else torch.ones_like(batch.y, dtype=torch.bool)
    if not scored.any():
        l_am = zero
    elif cfg.masked_bn == "running":
        # Running statistics make each image's masked score a function of that image alone, so only
        # the scored images need the second stream (about half the batch for "positives").
        x = batch.x[scored].contiguous(memory_format=_memory_format(batch.x))
        with model.running_bn_statistics():
            z_masked = model(x - soft_mask[scored] * x)  # same weights, second stream S_am
        l_am = torch.sigmoid(sign[scored] * z_masked).mean()
    else:
        with model.frozen_bn_statistics():
            z_masked = model(batch.x - soft_mask * batch.x)
        l_am = torch.sigmoid(sign[scored] * z_masked[scored]).mean()

    known = batch.mask_known
    if cfg.ext_weight > 0 and known.any():
        l_e = ((cam[known] - batch.mask[known]) ** 2).mean()
    else:
        l_e = zero
    alpha = cfg.alpha * min(1.0, (epoch - cfg.warmup_epochs) / (cfg.alpha_ramp_epochs + 1))  # the ramp, if any
    loss = l_cl + alpha * l_am + cfg.ext_weight * l_e
    return {"loss": loss, "cl": l_cl, "am": l_am, "e": l_e}


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def make_step(cfg: RunConfig) -> StepFn:
    if cfg.arm == "baseline":
        return baseline_step
    return functools.partial(gain_step, cfg=cfg.gain)
