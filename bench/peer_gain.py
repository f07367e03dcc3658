"""A peer GAIN step written the way public GAIN code writes it, for the benchmark to time against ours.

Public implementations (pytorch-grad-cam's ActivationsAndGradients, ilyak93/GAIN-pytorch, ngxbac/GAIN)
hook the attention layer instead of splitting the model: a forward hook keeps its output and a tensor
hook its gradient, the class score is back-propagated with `retain_graph=True` through the whole
network (filling every parameter's .grad, which is then zeroed), and Grad-CAM is built from the two
hooked tensors. Ours (trainables/gain.py) asks autograd for d score / d f through the head only; the
hooked backward also runs through every layer before the attention map, one extra trunk backward.

Everything after Grad-CAM (min-max, soft mask, masked second stream with the same batch-norm
handling, L_am, L_e) is the same mathematics as ours, so the two must agree to rounding:
tests/test_bench_peer.py checks loss and parameter gradients in float64.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from trainables.config import GainConfig, RunConfig
from trainables.gain import Batch, StepFn, normalise_cam
from trainables.model import VGGBinary


def peer_gain_step(model: VGGBinary, batch: Batch, epoch: int, *, cfg: GainConfig) -> dict[str, torch.Tensor]:
    layer = model._to_cam[-1]  # the attention layer: the module that ends model.features
    hooked: dict[str, torch.Tensor] = {}
    grad_handles = []

    def keep(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        hooked["f"] = out  # (B, C, h, w)
        grad_handles.append(out.register_hook(lambda g: hooked.__setitem__("g", g)))

    handle = layer.register_forward_hook(keep)
    try:
        z = model(batch.x)  # (B,)
    finally:
        handle.remove()  # only the first stream is hooked
    l_cl = F.binary_cross_entropy_with_logits(z, batch.y)
    zero = l_cl.new_zeros(())
    if epoch <= cfg.warmup_epochs:
        for h in grad_handles:
            h.remove()
        return {"loss": l_cl, "cl": l_cl, "am": zero, "e": zero}

    sign = torch.ones_like(batch.y) if cfg.am_samples == "positives" else 2 * batch.y - 1
    # The hooked way: a full backward of the class score, kept graph, then clear what it accumulated.
    (sign * z).sum().backward(retain_graph=True)
    for h in grad_handles:
        h.remove()
    model.zero_grad(set_to_none=True)
    f, g = hooked["f"], hooked["g"].detach()
    w = g.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1), constants as in every public implementation
    cam = normalise_cam(F.relu((w * f).sum(dim=1)), size=tuple(batch.x.shape[-2:]))  # (B, H, W)
    soft_mask = torch.sigmoid(cfg.omega * (cam - cfg.sigma))[:, None]  # (B, 1, H, W)

    scored = batch.y > 0.5 if cfg.am_samples == "positives" else torch.ones_like(batch.y, dtype=torch.bool)
    if not scored.any():
        l_am = zero
    elif cfg.masked_bn == "running":
        x = batch.x[scored]
        with model.running_bn_statistics():
            z_masked = model(x - soft_mask[scored] * x)
        l_am = torch.sigmoid(sign[scored] * z_masked).mean()
    else:
        with model.frozen_bn_statistics():
            z_masked = model(batch.x - soft_mask * batch.x)
        l_am = torch.sigmoid(sign[scored] * z_masked[scored]).mean()

    known = batch.mask_known
    l_e = ((cam[known] - batch.mask[known]) ** 2).mean() if cfg.ext_weight > 0 and known.any() else zero
    loss = l_cl + cfg.alpha * l_am + cfg.ext_weight * l_e
    return {"loss": loss, "cl": l_cl, "am": l_am, "e": l_e}


def make_peer_step(cfg: RunConfig) -> StepFn:
    if cfg.gain.cam_grad:
        raise ValueError("gain.cam_grad=True: the hooked peer treats Grad-CAM weights as constants, as public "
                         "code does; benchmark with gain.cam_grad=False")
    return functools.partial(peer_gain_step, cfg=cfg.gain)
