"""Normalisation and augmentation of a batch of uint8 image tensors (made from a `data.Split`)."""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from trainables.config import DataConfig
from trainables.data import DataError

__all__ = ["normalize", "TrainAugment", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 with ImageNet mean/std: 0 is the mean colour, which GAIN's
    masked image x - T(A) * x relies on (masked pixels become "no information", not black)."""
    if images.dtype != torch.uint8:
        raise DataError(f"normalize got a {images.dtype} tensor: pass the uint8 images (B, 3, H, W) of a Split")
    mean, std = _MEAN.to(images.device), _STD.to(images.device)
    return (images.float() / 255.0 - mean) / std


class TrainAugment:
    """Random shifts (a crop of the original size out of a padded image), independently per sample.

    The paper shifted and cropped its training photos. The batch is padded by max_shift * size
    pixels on each side (reflection, so no border colour becomes a cue; `v2.functional.pad` on an
    Image and a Mask, so the mask is padded the same way) and each sample is cropped back to the
    original size at its own random offset, the same offset for its mask. The offsets come from
    torch's global RNG, so `torch.manual_seed` makes it reproducible. Identity when cfg.augment is off.
    (v2.RandomCrop per sample does the same but costs ~10 ms per image on CPU, hence the batched pad.)
    """

    def __init__(self, cfg: DataConfig):
        self.pad = int(round(cfg.max_shift * cfg.image_size))
        self.enabled = bool(cfg.augment) and self.pad > 0

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # images (B, 3, H, W) uint8, masks (B, H, W) uint8 -> same shapes and dtypes
        if not self.enabled:
            return images, masks
        if images.ndim != 4 or masks.shape != (images.shape[0], *images.shape[2:]):
            raise DataError(f"TrainAugment: images {tuple(images.shape)} and masks {tuple(masks.shape)}: "
                            "pass (B, 3, H, W) images and (B, H, W) masks of the same size")
        b, _, h, w = images.shape
        p = self.pad
        padded_i = v2.functional.pad(tv_tensors.Image(images), [p], padding_mode="reflect")  # (B, 3, H+2p, W+2p)
        padded_m = v2.functional.pad(tv_tensors.Mask(masks), [p], padding_mode="reflect")  # (B, H+2p, W+2p)
        offsets = torch.randint(0, 2 * p + 1, (b, 2)).tolist()  # (B, 2): top, left
        out_i, out_m = torch.empty_like(images), torch.empty_like(masks)
        for k, (top, left) in enumerate(offsets):
            out_i[k] = padded_i[k, :, top:top + h, left:left + w]
            out_m[k] = padded_m[k, top:top + h, left:left + w]
        return out_i, out_m
