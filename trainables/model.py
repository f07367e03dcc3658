"""VGG16 as in the paper: torchvision's conv stack, first N convs frozen, GAP -> FC 256 -> ReLU -> FC 1.

`features(x)` is the attention layer's map: by default the last conv block (post-ReLU, before the
last max-pool: 14x14 at 224 px), or an earlier block with `cam_block`; `head(f)` is the rest of the
network up to the logit. GAIN needs both by name, so there are no hooks.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from torchvision.models import VGG16_BN_Weights, VGG16_Weights, vgg16, vgg16_bn

from .config import ModelConfig

# torchvision's "D" configuration (VGG16): conv widths, "M" = max-pool.
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class WeightsError(RuntimeError):
    pass


class MissingPackageError(WeightsError):
    """A package the chosen model needs is not installed; the message names it and the install command."""


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network `cfg.arch` names, with VGGBinary's interface (features, head, the BN contexts)."""
    if cfg.arch == "efficientnet_lite0":
        from .efficientnet import EfficientNetBinary  # imports timm: only when asked for
        return EfficientNetBinary(cfg)
    return VGGBinary(cfg)


def check_model(cfg: ModelConfig) -> None:
    """Fail now (MissingPackageError, WeightsError) if the model cannot be built, before a study starts
    its trials. EfficientNet-Lite0 is small enough to build; a full-width VGG16 is left to its runs."""
    if cfg.arch == "efficientnet_lite0":
        build_model(cfg)


@contextlib.contextmanager
def running_bn_statistics(bns: list[nn.BatchNorm2d]) -> Iterator[None]:
    """These batch norms normalise with their running statistics (eval mode) and leave them alone."""
    modes = [bn.training for bn in bns]
    for bn in bns:
        bn.eval()
    try:
        yield
    finally:
        for bn, mode in zip(bns, modes):
            bn.train(mode)


@contextlib.contextmanager
def frozen_bn_statistics(bns: list[nn.BatchNorm2d]) -> Iterator[None]:
    """These batch norms use batch statistics but leave their running statistics alone (momentum 0)."""
    saved = [(bn.momentum, bn.num_batches_tracked.clone()) for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    try:
        yield
    finally:
        for bn, (mom, n) in zip(bns, saved):  # the batch counter too: the state is as if never run
            bn.momentum = mom
            bn.num_batches_tracked.copy_(n)


def _conv_stack(width: int, batch_norm: bool) -> nn.Sequential:
    # Same module indices as torchvision's vgg16().features (vgg16_bn().features with batch_norm),
    # so their state dicts load at width 1.
    layers: list[nn.Module] = []
    in_ch = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            out_ch = int(v) // width
            layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            # inplace=False: an in-place ReLU would overwrite the tensor Grad-CAM differentiates against.
            layers.append(nn.ReLU(inplace=False))
            in_ch = out_ch
    return nn.Sequential(*layers)


class VGGBinary(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        stack = _conv_stack(cfg.width, cfg.batch_norm)
        # Drop the final max-pool: GAIN's attention lives on the last conv block's map.
        self.trunk = stack[:-1]
        # features(x) ends with conv block `cam_block` (before its max-pool); head(f) runs the rest of
        # the trunk, GAP and the FC layers. Plain tuples: the modules stay registered once, in trunk.
        pools = [i for i, m in enumerate(stack) if isinstance(m, nn.MaxPool2d)]
        end = pools[cfg.cam_block - 1]
        self._to_cam = tuple(self.trunk[:end])
        self._after_cam = tuple(self.trunk[end:])
        self.n_features = VGG16_CFG[-2] // cfg.width  # type: ignore[operator]
        self.fc = nn.Sequential(nn.Linear(self.n_features, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1))
        self._init_weights()
        load_weights(self, cfg.weights)
        self._freeze(cfg.frozen_convs)

    def _init_weights(self) -> None:
        # torchvision's VGG initialisation (kaiming for convs, small normal for linears).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    @property
    def convs(self) -> list[nn.Conv2d]:
        return [m for m in self.trunk if isinstance(m, nn.Conv2d)]

    def _freeze(self, n: int) -> None:
        # A frozen conv keeps its batch-norm affine parameters and running statistics fixed too.
        frozen = 0
        self._frozen_bn: list[nn.BatchNorm2d] = []
        for m in self.trunk:
            if isinstance(m, nn.Conv2d):
                frozen += 1
                if frozen > n:
                    break
                m.requires_grad_(False)
            elif isinstance(m, nn.BatchNorm2d):
                m.requires_grad_(False)
                self._frozen_bn.append(m)

    def train(self, mode: bool = True) -> VGGBinary:
        super().train(mode)
        for bn in getattr(self, "_frozen_bn", []):
            bn.eval()
        return self

    def running_bn_statistics(self) -> contextlib.AbstractContextManager[None]:
        """Batch norm normalises with its running statistics (eval mode) and leaves them alone; its
        affine parameters still learn. Each image's output then depends on that image alone."""
        return running_bn_statistics([m for m in self.trunk if isinstance(m, nn.BatchNorm2d)])

    def frozen_bn_statistics(self) -> contextlib.AbstractContextManager[None]:
        """Batch norm still normalises with batch statistics but leaves its running statistics alone
        (momentum 0): GAIN's masked second stream must not pull them towards masked images."""
        return frozen_bn_statistics([m for m in self.trunk if isinstance(m, nn.BatchNorm2d)])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for m in self._to_cam:
            x = m(x)
        return x  # (B, C, H/s, W/s), s = 2 ** (cam_block - 1): 16 for the last block

    def head(self, f: torch.Tensor) -> torch.Tensor:
        for m in self._after_cam:
            f = m(f)
        return self.fc(f.mean(dim=(2, 3))).squeeze(1)  # GAP -> (B, C) -> logit (B,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# What to do about a bad weights file of one's own (model.weights=<path>).
OWN_FILE_FIX = "give a file written by torch.save(model.state_dict(), path), 'imagenet' or 'none'"


def load_weights(model: VGGBinary, weights: str) -> None:
    """'none' keeps the random init; 'imagenet' loads the conv stack from the local torch hub cache;
    anything else is a path to a state dict of either the whole model or a torchvision vgg16."""
    if weights == "none":
        return
    if weights == "imagenet":
        if model.cfg.width != 1:
            raise WeightsError(f"weights='imagenet' needs model.width=1 (got {model.cfg.width}): ImageNet weights are full width")
        w = VGG16_BN_Weights.IMAGENET1K_V1 if model.cfg.batch_norm else VGG16_Weights.IMAGENET1K_V1
        hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
        path = hub_dir / os.path.basename(w.url)
        if not path.is_file():
            raise WeightsError(
                f"ImageNet weights not found at {path}; fetch them on a machine with internet with "
                f"`python -c \"import torchvision; torchvision.models.{'vgg16_bn' if model.cfg.batch_norm else 'vgg16'}(weights='IMAGENET1K_V1')\"` "
                f"and copy the file there, or use weights='none'")
        _load_vgg_features(model, read_state_dict(path))
        return
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weights={weights!r}: not 'none', 'imagenet' or an existing state-dict file")
    state = read_state_dict(path)
    if any(k.startswith("trunk.") for k in state):
        model.load_state_dict(state)
    else:
        _load_vgg_features(model, state)


def read_state_dict(path: Path, fix: str = OWN_FILE_FIX) -> dict[str, torch.Tensor]:
    """A state dict (name -> tensor) saved with torch.save, or a WeightsError naming the file and `fix`,
    what to do about it (a photo, a text file, a truncated download or a missing file is not one:
    torch.load raises UnpicklingError, EOFError, RuntimeError or OSError)."""
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError) as e:
        raise WeightsError(f"weights={str(path)!r}: not a PyTorch state dict ({type(e).__name__}: "
                           f"{' '.join(str(e).split())[:120] or 'empty'}); {fix}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise WeightsError(f"weights={str(path)!r}: holds a {type(state).__name__}, not a state dict of "
                           f"name -> tensor; {fix}")
    return state


def _load_vgg_features(model: VGGBinary, state: dict[str, torch.Tensor]) -> None:
    feats = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    if not feats:
        raise WeightsError("state dict has neither 'trunk.*' (this model) nor 'features.*' (torchvision vgg16) keys")
    own = model.trunk.state_dict()
    missing = sorted(set(own) - set(feats))
    if missing:
        raise WeightsError(f"state dict lacks weights {missing[:4]}...: model.batch_norm={model.cfg.batch_norm} "
                           f"needs a {'vgg16_bn' if model.cfg.batch_norm else 'vgg16'} state dict")
    for k, v in own.items():
        if feats[k].shape != v.shape:
            raise WeightsError(f"weight {k} has shape {tuple(feats[k].shape)}, model expects {tuple(v.shape)}: check model.width")
    model.trunk.load_state_dict({k: feats[k] for k in own})


def reference_vgg16_features(batch_norm: bool = False) -> nn.Sequential:
    """torchvision's own vgg16 (or vgg16_bn) conv stack, random init, for tests that the structures match."""
    return (vgg16_bn if batch_norm else vgg16)(weights=None).features
