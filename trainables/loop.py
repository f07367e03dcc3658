"""One training loop for both arms: Adam, early stopping on one validation selection score (accuracy,
ties broken by log loss) with the same epochs and patience clock for both arms, best-epoch restore,
then one evaluation on the test split (accuracy, per-image predictions, groups, collapse, attention)."""
from __future__ import annotations

import copy
import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .config import RunConfig
from .augment import TrainAugment, normalize
from .data import Split, Splits
from .gain import Batch, StepFn, grad_cam, make_step, normalise_cam
from .metrics import (
    has_learnt,
    attention_scores,
    bias_split_accuracies,
    content_free_scores,
    group_accuracies,
    is_collapsed,
    selection_score,
)
from .model import VGGBinary, build_model


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    losses: dict[str, float]  # mean training losses: "loss", "cl" (+ "am", "e" for GAIN)
    val_acc: float
    val_loss: float
    seconds: float
    val_worst_group_acc: float = math.nan
    score: float = math.nan  # the selection score (trainables.metrics.selection_score)
    val_seconds: float = 0.0  # of `seconds`, the validation pass


@dataclass
class TestResult:
    accuracy: float
    n: int
    predictions: list[dict[str, Any]]  # image_id, label, habitat, prob, pred
    group_accuracy: dict[str, float]  # "y1_h0": positives on bark, ...
    worst_group_accuracy: float
    bias_aligned_accuracy: float
    bias_conflicting_accuracy: float
    pointing_game: float
    energy_pointing_game: float
    iou: float
    attention: list[dict[str, Any]]  # image_id, cam (h x w nested list, min-max normalised)
    collapsed: bool = False  # one class for >= 95% of images, or accuracy indistinguishable from chance
    pred_positive_share: float = math.nan
    content_free: dict[str, float] = field(default_factory=dict)  # "<score>_uniform", "<score>_gaussian"


@dataclass
class RunResult:
    config: dict[str, Any]
    status: Literal["completed", "diverged"]
    history: list[EpochRecord]
    best_epoch: int
    best_val_acc: float
    test: TestResult | None
    seconds: float
    device: str = "cpu"
    best_val_loss: float = math.nan
    best_score: float = -math.inf
    test_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return _finite_or_none(asdict(self))


@dataclass
class TrainState:
    """Everything needed to continue a run after its `epoch` finished (a checkpoint)."""
    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    best_model: dict[str, torch.Tensor] | None
    best_val_acc: float
    best_epoch: int
    bad_epochs: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float = -math.inf

    def save(self, path: str | Path) -> None:
        torch.save(asdict(self), path)

    @classmethod
    def load(cls, path: str | Path) -> TrainState:
        return cls(**torch.load(path, map_location="cpu", weights_only=True))


def epoch_lr(cfg: RunConfig, epoch: int) -> float:
    """The learning rate of a (1-based) epoch: train.lr, times gain.lr_factor in a GAIN run's epochs
    with L_am (after its warm-up)."""
    with_am = cfg.arm == "gain" and cfg.gain.alpha > 0 and epoch > cfg.gain.warmup_epochs
    return cfg.train.lr * (cfg.gain.lr_factor if with_am else 1.0)


class DeviceError(RuntimeError):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device='cuda' but torch sees no CUDA device: use device='cpu' or 'auto'")
    return torch.device(name)


def train(
    cfg: RunConfig,
    splits: Splits,
    *,
    step: StepFn | None = None,
    on_epoch: Callable[[EpochRecord, TrainState], None] | None = None,
    resume: TrainState | None = None,
    evaluate_test: bool = True,
) -> RunResult:
    t0 = time.perf_counter()
    tc = cfg.train
    if tc.num_threads is not None:
        torch.set_num_threads(tc.num_threads)
    device = resolve_device(tc.device)
    cuda = device.type == "cuda"
    # bf16 autocast is for CUDA only (CPU bf16 convolutions are slower than fp32 on most CPUs).
    if tc.bf16 and not cuda:
        raise DeviceError(f"train.bf16=True needs CUDA, but the device is {device}: set train.bf16=False")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if tc.bf16 else nullcontext()
    memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format

    torch.manual_seed(cfg.seed)  # initialisation is a function of the seed alone
    model = build_model(cfg.model).to(device=device, memory_format=memory_format)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    step = step if step is not None else make_step(cfg)  # the arm's step; tests may pass their own
    augment = TrainAugment(cfg.data)
    train_split = splits.train
    # Which training masks GAIN_ext may see: a fixed, seeded subset of the images that have one.
    mask_known = _exposed_masks(train_split, cfg.gain.mask_fraction, cfg.seed)
    train_pixels = upload_split(train_split.images, device), upload_split(train_split.masks, device)
    val_images = upload_split(splits.val.images, device)

    history: list[EpochRecord] = []
    best_state, best_val, best_epoch, bad, best_score = None, -1.0, 0, 0, -math.inf
    first_epoch = 1
    if resume is not None:
        model.load_state_dict(resume.model)
        opt.load_state_dict(resume.optimizer)
        best_state, best_val, best_epoch, bad = resume.best_model, resume.best_val_acc, resume.best_epoch, resume.bad_epochs
        best_score = resume.best_score
        history = [EpochRecord(**h) for h in resume.history]
        first_epoch = resume.epoch + 1
    # Both arms select among the same epochs (GAIN's warm-up epochs included) with the same patience
    # clock: a GAIN run with alpha = 0 selects exactly the baseline's epoch and weights.
    status: Literal["completed", "diverged"] = "completed"

    for epoch in range(first_epoch, tc.max_epochs + 1):
        if best_epoch and bad >= tc.patience:
            break
        te = time.perf_counter()
        for group in opt.param_groups:  # set each epoch, so a resumed run has it too
            group["lr"] = epoch_lr(cfg, epoch)
        model.train()
        sums: dict[str, float] = {}
        n_seen = 0
        for batch in train_batches(train_split, train_pixels, mask_known, augment, cfg, epoch, memory_format):
            with autocast:
                losses = step(model, batch, epoch)
            loss = losses["loss"]
            if not torch.isfinite(loss):
                status = "diverged"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bs = batch.y.shape[0]
            n_seen += bs
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * bs
        if status == "diverged":
            break
        tv = time.perf_counter()
        val_acc, val_loss, val_worst = _validate(model, splits.val, val_images, tc.eval_batch_size, memory_format, autocast)
        score = selection_score(val_worst if tc.select == "worst-group" else val_acc, val_loss, len(splits.val))
        now = time.perf_counter()
        rec = EpochRecord(epoch, {k: v / max(n_seen, 1) for k, v in sums.items()}, val_acc, val_loss,
                          now - te, val_worst, score, now - tv)
        history.append(rec)
        if score > best_score:
            best_score, best_val, best_epoch, bad = score, val_acc, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        elif has_learnt(best_val, len(splits.val), tc.max_epochs):
            bad += 1
        # else: the patience clock starts once the run has learnt (its best validation accuracy is
        # above chance's band, Bonferroni over max_epochs: `has_learnt`). From scratch, runs sit at
        # chance for a seed-dependent number of epochs before they take off; patience would otherwise
        # stop late starters at chance, in either arm (README, "Data"). Only max_epochs ends a run
        # that never learns.
        if on_epoch is not None:
            on_epoch(rec, TrainState(epoch, model.state_dict(), opt.state_dict(), best_state, best_val, best_epoch,
                                     bad, [asdict(h) for h in history], best_score))

    if best_state is not None:
        model.load_state_dict(best_state)
    test = None
    tt = time.perf_counter()
    if evaluate_test and status == "completed":
        test = evaluate(model, splits.test, cfg, device, memory_format, autocast)
    best_loss = history[best_epoch - 1].val_loss if best_epoch else math.nan
    now = time.perf_counter()
    return RunResult(cfg.to_dict(), status, history, best_epoch, best_val, test, now - t0, str(device),
                     best_loss, best_score, now - tt)


def _validate(model: VGGBinary, split: Split, images: torch.Tensor, batch_size: int,
              memory_format: torch.memory_format, autocast) -> tuple[float, float, float]:
    """(accuracy, log loss, worst-group accuracy: the worst class where habitats are unknown)."""
    probs = _predict(model, images, batch_size, memory_format, autocast)
    y = split.labels
    correct = (probs >= 0.5) == (y == 1)
    loss = float(F.binary_cross_entropy(torch.from_numpy(probs).clamp(1e-7, 1 - 1e-7),
                                        torch.tensor(y, dtype=torch.float64)))
    worst = min(group_accuracies(y, split.habitats, correct).values())
    return float(correct.mean()), loss, float(worst)


def _exposed_masks(split: Split, fraction: float, seed: int) -> np.ndarray:
    known = np.zeros(len(split), dtype=bool)
    candidates = np.flatnonzero(split.has_mask & (split.labels == 1))
    k = int(round(fraction * len(candidates)))
    if k:
        known[np.random.default_rng([seed, 7]).choice(candidates, size=k, replace=False)] = True
    return known


def upload_split(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A split's uint8 array (images or masks) as a tensor on `device`, uploaded once per run: batches
    are then indexed, augmented and normalised where the model runs, so a GPU never waits for the CPU
    to crop and upload 224 px images (bench/bench_loop.py). On the CPU nothing is copied; the array may
    be read-only (shared caches), which is safe because indexing and normalising make new tensors."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array).to(device)


def train_batches(split: Split, pixels: tuple[torch.Tensor, torch.Tensor], mask_known: np.ndarray,
                  augment: TrainAugment, cfg: RunConfig, epoch: int, memory_format: torch.memory_format):
    """One epoch's training batches from a split uploaded by `upload_split` (bench/bench_loop.py times them)."""
    bs = cfg.train.batch_size
    images, masks = pixels
    device = images.device
    # Data order and augmentation are functions of (seed, epoch) alone, so a run resumed from a
    # checkpoint replays exactly what the uninterrupted run would have seen, on any device.
    order = np.random.default_rng([cfg.seed, epoch]).permutation(len(split))
    torch.manual_seed(int(np.random.default_rng([cfg.seed, epoch, 1]).integers(2**62)))
    for start in range(0, len(order), bs):
        idx = order[start:start + bs]
        at = torch.from_numpy(idx).to(device)
        x, m = augment(images[at], masks[at])  # indexing copies: the split's arrays are never written
        yield Batch(
            x=normalize(x).contiguous(memory_format=memory_format),
            y=torch.from_numpy(split.labels[idx]).float().to(device),
            mask=m.float(),
            mask_known=torch.from_numpy(mask_known[idx]).to(device),
        )


@torch.no_grad()
def _predict(model: VGGBinary, images: torch.Tensor, batch_size: int, memory_format: torch.memory_format,
             autocast) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size]).contiguous(memory_format=memory_format)
        with autocast:
            z = model(x)
        out.append(torch.sigmoid(z.float()).cpu())
    return torch.cat(out).numpy().astype(np.float64)


def attention_maps(model: VGGBinary, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM of the positive logit: (raw (B, h, w), normalised at input size (B, H, W))."""
    model.eval()
    with torch.enable_grad():
        f = model.features(x).detach().requires_grad_(True)  # grads stop at f: the head is all Grad-CAM needs
        raw = grad_cam(f, model.head(f)).detach()
    return raw, normalise_cam(raw, size=tuple(x.shape[-2:]))


def evaluate(model: VGGBinary, split: Split, cfg: RunConfig, device: torch.device,
             memory_format: torch.memory_format = torch.contiguous_format, autocast=nullcontext()) -> TestResult:
    images = upload_split(split.images, device)
    probs = _predict(model, images, cfg.train.eval_batch_size, memory_format, autocast)
    labels, habitats = split.labels, split.habitats
    preds = (probs >= 0.5).astype(np.int64)
    correct = preds == labels
    groups = group_accuracies(labels, habitats, correct)
    aligned, conflicting = bias_split_accuracies(labels, habitats, correct)

    # Attention quality on positives that have a non-empty mask.
    scored = np.flatnonzero((labels == 1) & split.has_mask & (split.masks.reshape(len(split), -1).max(1) > 0))
    sums = {"pointing_game": 0.0, "energy_pointing_game": 0.0, "iou": 0.0}
    examples: list[dict[str, Any]] = []
    bs = cfg.train.eval_batch_size
    for start in range(0, len(scored), bs):
        idx = scored[start:start + bs]
        x = normalize(images[torch.from_numpy(idx).to(device)]).contiguous(memory_format=memory_format)
        raw, cam = attention_maps(model, x)
        scores = attention_scores(cam.float().cpu(), torch.from_numpy(split.masks[idx]))
        for k in sums:
            sums[k] += float(scores[k].sum())
        small = normalise_cam(raw.float()).cpu()
        for j, i in enumerate(idx):
            if len(examples) < cfg.train.n_attention_examples:
                examples.append({"image_id": str(split.image_ids[i]), "cam": small[j].tolist()})
    att = {k: (v / len(scored) if len(scored) else math.nan) for k, v in sums.items()}
    content_free = content_free_scores(torch.from_numpy(split.masks[scored]))

    predictions = [
        {"image_id": str(split.image_ids[i]), "label": int(labels[i]), "habitat": int(habitats[i]),
         "prob": float(probs[i]), "pred": int(preds[i])}
        for i in range(len(split))
    ]
    return TestResult(
        accuracy=float(correct.mean()), n=len(split), predictions=predictions, group_accuracy=groups,
        worst_group_accuracy=min(groups.values()), bias_aligned_accuracy=aligned,
        bias_conflicting_accuracy=conflicting, attention=examples, **att,
        collapsed=is_collapsed(preds, labels), pred_positive_share=float(preds.mean()) if len(preds) else math.nan,
        content_free=content_free,
    )


def _finite_or_none(obj: Any) -> Any:
    # Strict JSON has no NaN; metrics that do not apply (no masks, no habitats) become null.
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj
