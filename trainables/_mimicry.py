"""The procedural "mimicry" benchmark: a lizard on bark or leaves, camouflage and habitat bias as knobs.

Every sample is a pure function of (generator parameters, split, index): its random numbers come
from `np.random.default_rng([seed, split_id, index])` and nothing else, so an image is the same
whatever the batch it is generated in, the number of processes or the order. The only split-level
randomness is the habitat assignment, a permutation seeded by (seed, split, class) that makes the
bias-aligned share exactly round(bias * n) per class.

Scene: a habitat texture (bark: brown, oriented 1/f noise with dark vertical furrows; leaves: green,
isotropic band-pass noise cut into leaf plates by dark veins), 1-3 distractor blobs filled with a
shifted copy of the same habitat texture (in positives and negatives alike, so "a patch with a
texture seam" is not the cue), and in positives a lizard silhouette on top (spine with head, neck,
body, tapering tail, four bent legs; random pose, size, rotation, mirror image and position).
The animal's pixels are mix(distinct, matched, w): distinct is a saturated blue with smooth shading,
matched is another shifted copy of the habitat texture (same colour and texture statistics), and
w = 1 - (1 - camouflage) ** 2. At camouflage 1 only the outline (a texture seam shaped like a lizard) remains.
"""
from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache

import numpy as np
import scipy.fft as sfft
from PIL import Image, ImageDraw

# Bump when the rendering changes: it is part of the fingerprint, so stale caches are never read.
GENERATOR_VERSION = 1
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
HABITAT_NAMES = ("bark", "leaves")
BARK, LEAVES = 0, 1

# Colours in 0..255 RGB. Bark is brown, leaves green; the distinct animal is a blue found in neither.
_BASE = np.array([[112.0, 82.0, 58.0], [62.0, 122.0, 42.0]], dtype=np.float32)  # (habitat, 3)
_HUE_AXIS = np.array([[14.0, 6.0, -4.0], [22.0, 16.0, -6.0]], dtype=np.float32)  # colour variation
_DISTINCT = np.array([55.0, 105.0, 235.0], dtype=np.float32)
# Share of the distinct colour in the animal: (1 - camouflage) ** power. A CNN notices even a few
# per cent of a consistent colour shift, so the distinct colour must fade fast for camouflage to bite.
# Measured (64 px, 300 images per class, no bias, a 4-layer BN CNN, 12 epochs): camouflage 0 ->
# 100 % test accuracy, 0.7 -> ~95 %, 1.0 -> ~70 % (outline only).
_CAMO_POWER = 2.0

# Lizard width profile: (position along the spine from the snout, half-width as a share of length).
_PROFILE_T = np.array([0.0, 0.035, 0.08, 0.115, 0.15, 0.24, 0.34, 0.40, 0.70, 1.0])
_PROFILE_W = np.array([0.012, 0.036, 0.046, 0.032, 0.048, 0.064, 0.052, 0.036, 0.018, 0.004])
_N_SPINE = 24


def fingerprint(seed: int, image_size: int, n_train: int, n_val: int, n_test: int,
                camouflage: float, bias: float) -> str:
    params = {"generator": "mimicry", "version": GENERATOR_VERSION, "seed": int(seed),
              "image_size": int(image_size), "n": [int(n_train), int(n_val), int(n_test)],
              "camouflage": float(camouflage), "bias": float(bias), "camo_power": _CAMO_POWER,
              "base": _BASE.tolist(), "distinct": _DISTINCT.tolist()}
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def split_layout(seed: int, split: str, n_per_class: int, bias: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels and habitats of a split: index 2k is the k-th positive, 2k+1 the k-th negative.

    Returns labels (2n,) int64 and habitats (2n,) int64. A sample is bias-aligned iff habitat == label;
    exactly floor(bias * n + 0.5) per class are (the test split passes bias 0.5).
    """
    sid = SPLIT_IDS[split]
    n_aligned = int(math.floor(bias * n_per_class + 0.5))
    labels = np.tile(np.array([1, 0], dtype=np.int64), n_per_class)
    habitats = np.empty(2 * n_per_class, dtype=np.int64)
    for label in (1, 0):
        # A different key length (and nonzero tag) from the per-sample keys, so streams never collide.
        perm = np.random.default_rng([seed, sid, label, 0xB1A5]).permutation(n_per_class)
        aligned = perm < n_aligned
        habitats[(1 - label)::2] = np.where(aligned, label, 1 - label)
    return labels, habitats


@lru_cache(maxsize=8)
def _freqs(size: int) -> tuple[np.ndarray, np.ndarray]:
    # Frequencies in cycles per image, so that a scene looks the same at 64 and 224 px
    # (larger images only add finer detail).
    ky = (np.fft.fftfreq(size) * size).astype(np.float32)[:, None]
    kx = (np.fft.rfftfreq(size) * size).astype(np.float32)[None, :]
    return np.broadcast_to(kx, (size, size // 2 + 1)), np.broadcast_to(ky, (size, size // 2 + 1))


@lru_cache(maxsize=8)
def _iso_filters(size: int) -> tuple[np.ndarray, np.ndarray]:
    kx, ky = _freqs(size)
    k = np.sqrt(kx * kx + ky * ky)
    k = np.maximum(k, 1.0)
    # Leaves: band-pass around ~6 leaves per image width, plus a weak 1/f tail for fine detail.
    leaves = np.exp(-0.5 * (np.log(k / 6.0) / 0.45) ** 2) + 0.08 * k ** -0.6
    # Colour / shading variation: smooth 1/f^1.5.
    smooth = k ** -1.5
    leaves[0, 0] = 0.0
    smooth[0, 0] = 0.0
    return leaves.astype(np.float32), smooth.astype(np.float32)


@lru_cache(maxsize=128)
def _bark_filter(size: int, tilt: int) -> np.ndarray:
    # Oriented 1/f noise: stretched 7x along the grain, so it forms long streaks. The grain is
    # tilted from the vertical by one of _BARK_TILTS angles (cached: a filter per angle and size).
    angle = _BARK_TILTS[tilt]
    kx, ky = _freqs(size)
    u = kx * np.cos(angle) + ky * np.sin(angle)  # across the grain
    v = -kx * np.sin(angle) + ky * np.cos(angle)  # along the grain
    r = np.sqrt(u * u + (7.0 * v) ** 2)
    filt = np.maximum(r, 1.0) ** -1.1
    filt[0, 0] = 0.0
    return filt.astype(np.float32)


_BARK_TILTS = np.linspace(-0.3, 0.3, 25)


def _roll(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    # np.roll over the last two axes by block copies (np.roll is several times slower on small arrays).
    out = np.empty_like(x)
    h, w = x.shape[-2:]
    out[..., dy:, dx:] = x[..., :h - dy, :w - dx]
    out[..., :dy, dx:] = x[..., h - dy:, :w - dx]
    out[..., dy:, :dx] = x[..., :h - dy, w - dx:]
    out[..., :dy, :dx] = x[..., h - dy:, w - dx:]
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    # Per-sample zero mean, unit std over the image (B, H, W).
    x = x - x.mean(axis=(1, 2), keepdims=True)
    x /= x.std(axis=(1, 2), keepdims=True) + 1e-6
    return x


def _lizards(u: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lizard outlines (B, 2N, 2) and legs (B, 4, 3, 2) in pixels, and leg widths (B,) in px.

    u: (B, 18) uniforms, one row per sample from its own generator (pose, proportions, position);
    the arithmetic is row-wise, so a row's result does not depend on the other rows.
    """
    t = _SPINE_T[None]  # (1, N), from the snout (0) to the tail tip (1)
    k_body, k_tail, k_wave = 1.4 * u[:, 0:1] - 0.7, 8.0 * u[:, 1:2] - 4.0, 0.8 * u[:, 2:3] - 0.4
    heading = (k_body * t + k_tail * np.maximum(t - 0.38, 0.0) ** 2
               + k_wave * np.sin(2 * np.pi * (t + u[:, 3:4])) * t)  # (B, N)
    cos_h, sin_h = np.cos(heading), np.sin(heading)
    pts = np.stack([np.cumsum(cos_h, axis=1), np.cumsum(sin_h, axis=1)], axis=2) / (_N_SPINE - 1)  # (B, N, 2)
    half = (_SPINE_W[None] * (0.9 + 0.35 * u[:, 4:5]))[:, :, None]  # (B, N, 1)
    normal = np.stack([-sin_h, cos_h], axis=2)
    outline = np.concatenate([pts + half * normal, (pts - half * normal)[:, ::-1]], axis=1)  # (B, 2N, 2)
    # Legs: the front pair leans forward, the hind pair backward; each has a knee and a foot.
    i = _LEG_AT
    lean = 0.15 + 0.75 * u[:, 5:9]  # (B, 4)
    a1 = heading[:, i] + _LEG_SIDE * (np.pi / 2 + _LEG_BACK * lean)
    a2 = heading[:, i] + np.where(_LEG_BACK > 0, np.pi, 0.0) + _LEG_SIDE * (0.2 + 0.8 * u[:, 9:13])
    root = pts[:, i] + (_LEG_SIDE * 0.7)[:, None] * half[:, i] * normal[:, i]  # (B, 4, 2)
    knee = root + 0.085 * np.stack([np.cos(a1), np.sin(a1)], axis=2)
    foot = knee + 0.07 * np.stack([np.cos(a2), np.sin(a2)], axis=2)
    legs = np.stack([root, knee, foot], axis=2)  # (B, 4, 3, 2)
    # Pose: mirror image, rotation, size, then a position that keeps the whole animal in the frame.
    angle, length = 2 * np.pi * u[:, 14], (0.55 + 0.3 * u[:, 15]) * size
    c, s = np.cos(angle) * length, np.sin(angle) * length
    mirror = np.where(u[:, 13] < 0.5, -1.0, 1.0)
    rot = np.stack([np.stack([c, s], 1), np.stack([-s * mirror, c * mirror], 1)], 1)  # (B, 2, 2)
    every = np.concatenate([outline, legs.reshape(len(u), -1, 2)], axis=1)
    every = (every[:, :, :, None] * rot[:, None]).sum(axis=2)  # (B, P, 2): row vector @ rot
    lo, hi = every.min(axis=1), every.max(axis=1)
    room_lo, room_hi = 1.0 - lo, size - 1.0 - hi
    offset = np.where(room_hi > room_lo, room_lo + u[:, 16:18] * (room_hi - room_lo), 0.5 * (room_lo + room_hi))
    every += offset[:, None]
    n_out = outline.shape[1]
    width = np.maximum(1, np.round(0.028 * length)).astype(np.int64)
    return every[:, :n_out], every[:, n_out:].reshape(legs.shape), width


def _blobs(u: np.ndarray, size: int) -> np.ndarray:
    """Star-convex blobs, round to stick-like: (B, K, 20, 2) pixel polygons from u: (B, K, 7) uniforms."""
    radius = (0.05 + 0.08 * u[..., 0:1]) * size
    aspect = 1.0 + 3.0 * u[..., 1:2]
    wobble = 1.0 + 0.18 * np.sin(2 * _PHI + 6.3 * u[..., 2:3]) + 0.12 * np.sin(3 * _PHI + 6.3 * u[..., 3:4])
    x = radius * np.sqrt(aspect) * wobble * _COS_PHI  # (B, K, 20)
    y = radius / np.sqrt(aspect) * wobble * _SIN_PHI
    a = np.pi * u[..., 4:5]
    c, s = np.cos(a), np.sin(a)
    return np.stack([c * x - s * y + size * u[..., 5:6], s * x + c * y + size * u[..., 6:7]], axis=-1)


_SPINE_T = np.linspace(0.0, 1.0, _N_SPINE)
_SPINE_W = np.interp(_SPINE_T, _PROFILE_T, _PROFILE_W)
_LEG_AT = np.round(np.array([0.16, 0.16, 0.37, 0.37]) * (_N_SPINE - 1)).astype(int)
_LEG_SIDE = np.array([1.0, -1.0, 1.0, -1.0])
_LEG_BACK = np.array([-1.0, -1.0, 1.0, 1.0])  # front legs lean forward (-), hind legs backward (+)
_PHI = np.linspace(0.0, 2 * np.pi, 20, endpoint=False)
_COS_PHI, _SIN_PHI = np.cos(_PHI), np.sin(_PHI)
_N_UNIFORMS = 48  # per sample: 9 scene parameters, 3 x 7 for the distractors, 18 for the lizard
_LOWRES = 16  # the smooth shading field is drawn at 16 x 16 and band-limited up to the image size


def _draw_shapes(size: int, blobs: np.ndarray, lizard: tuple | None) -> np.ndarray:
    # (S, S) uint8: 0 background, 1 distractor, 2 animal (drawn last, so it is on top).
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in blobs.reshape(len(blobs), -1).tolist():
        draw.polygon(poly, fill=1)
    if lizard is not None:
        outline, legs, width = lizard
        draw.polygon(outline.ravel().tolist(), fill=2)
        for leg in legs.reshape(len(legs), -1).tolist():
            draw.line(leg, fill=2, width=int(width), joint="curve")
    return np.asarray(canvas)


def _upsample_spectrum(spec: np.ndarray, size: int) -> np.ndarray:
    # (B, L, L//2+1) spectrum of an L x L field -> (B, S, S//2+1), zero above L/2 cycles per image.
    low = spec.shape[1]
    out = np.zeros(spec.shape[:1] + (size, size // 2 + 1), dtype=spec.dtype)
    h = low // 2
    out[:, :h, :h] = spec[:, :h, :h]
    out[:, size - h + 1:, :h] = spec[:, h + 1:, :h]
    return out * np.float32((size / low) ** 2)


def render(seed: int, split: str, indices: np.ndarray, labels: np.ndarray, habitats: np.ndarray,
           image_size: int, camouflage: float) -> tuple[np.ndarray, np.ndarray]:
    """Images (B, 3, S, S) uint8 and masks (B, S, S) uint8 of the given samples.

    Textures are filtered for the whole batch at once (per-sample filters); every random number
    comes from the sample's own generator, so a sample does not depend on the others in its batch.
    """
    size, n = int(image_size), len(indices)
    sid = SPLIT_IDS[split]
    white = np.empty((n, size, size), dtype=np.float32)
    white_low = np.empty((n, _LOWRES, _LOWRES), dtype=np.float32)
    u = np.empty((n, _N_UNIFORMS))
    for b in range(n):
        rng = np.random.default_rng([seed, sid, int(indices[b])])
        # Uniform white noise is white; after filtering it is Gaussian for all practical purposes.
        white[b] = rng.random((size, size), dtype=np.float32)
        white_low[b] = rng.random((_LOWRES, _LOWRES), dtype=np.float32)
        u[b] = rng.random(_N_UNIFORMS)
    params = u[:, :9]  # bark tilt, colour jitter (3), shifts of the two copies (4), number of blobs
    n_blobs = 1 + (3 * params[:, 8]).astype(np.int64)  # 1..3 distractors
    blobs = _blobs(u[:, 9:30].reshape(n, 3, 7), size)
    outlines, legs, widths = _lizards(u[:, 30:48], size)
    shapes = np.empty((n, size, size), dtype=np.uint8)
    for b in range(n):
        lizard = (outlines[b], legs[b], widths[b]) if labels[b] == 1 else None
        shapes[b] = _draw_shapes(size, blobs[b, :n_blobs[b]], lizard)

    leaves_f, smooth_f = _iso_filters(size)
    filt = np.empty((n, size, size // 2 + 1), dtype=np.float32)
    is_bark = habitats == BARK
    filt[~is_bark] = leaves_f
    tilts = (params[:, 0] * len(_BARK_TILTS)).astype(np.int64)
    for b in np.flatnonzero(is_bark):
        filt[b] = _bark_filter(size, int(tilts[b]))
    structure = _unit(sfft.irfft2(sfft.rfft2(white) * filt, s=(size, size)))  # (B, S, S)
    low_f = _iso_filters(_LOWRES)[1]
    shade = _unit(sfft.irfft2(_upsample_spectrum(sfft.rfft2(white_low) * low_f, size), s=(size, size)))

    # Luminance: bark = streaks with dark furrows at the zero crossings; leaves = plates cut by dark veins.
    bark = is_bark[:, None, None]
    gap = np.where(bark, np.float32(0.22), np.float32(0.12))
    lum = np.where(bark, 0.25 * structure, 0.22 * np.tanh(2.0 * structure))
    lum += 0.12 * shade - 0.55 * np.exp(-np.square(structure / gap))
    base = _BASE[habitats] * (1.0 + 0.1 * params[:, 1:4].astype(np.float32) - 0.05)  # (B, 3)
    background = (base[:, :, None, None] * np.exp(lum)[:, None]
                  + _HUE_AXIS[habitats][:, :, None, None] * shade[:, None])  # (B, 3, S, S)

    # Distractors and the animal's own texture: shifted copies of the same background (the FFT
    # noise is periodic, so a shift is seamless and keeps every statistic of the habitat).
    shift = (size // 4 + params[:, 4:8] * (size // 2)).astype(np.int64)  # (B, 4), in [S/4, 3S/4)
    distinct = _DISTINCT[None, :, None, None] * (1.0 + 0.08 * shade[:, None])
    w = np.float32(1.0 - (1.0 - camouflage) ** _CAMO_POWER)
    blob, animal = shapes == 1, shapes == 2
    image = background
    for b in range(n):  # in place: each sample's copies are taken before its background is changed
        animal_rgb = None
        if animal[b].any():
            animal_rgb = (1.0 - w) * distinct[b] + w * _roll(background[b], shift[b, 2], shift[b, 3])
        np.copyto(image[b], _roll(background[b], shift[b, 0], shift[b, 1]), where=blob[b])
        if animal_rgb is not None:
            np.copyto(image[b], animal_rgb, where=animal[b])
    np.clip(image, 0.0, 255.0, out=image)
    image += 0.5  # then truncate: round half up
    return image.astype(np.uint8), animal.astype(np.uint8)
