"""The data layer: the procedural benchmark, the caches, augmentation and photo folders."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainables import data
from trainables.config import DataConfig
from trainables.augment import IMAGENET_MEAN, TrainAugment, normalize
from trainables.data import DataError, generate_mimicry_split, load_splits

SMALL = DataConfig(image_size=32, n_train=24, n_val=8, n_test=12, camouflage=0.0, bias=0.75, seed=3)


@pytest.fixture(autouse=True)
def _fresh_memory_cache():
    data.clear_memory_cache()
    yield
    data.clear_memory_cache()


@pytest.fixture(scope="module")
def splits64(tmp_path_factory) -> data.Splits:
    cfg = DataConfig(image_size=64, n_train=40, n_val=10, n_test=20, camouflage=0.0, bias=0.9, seed=1)
    return load_splits(cfg, cache_dir=tmp_path_factory.mktemp("cache"))


# ---------------------------------------------------------------------------------------------
# The procedural benchmark

def test_same_config_gives_identical_bytes():
    a, b = generate_mimicry_split(SMALL, "train"), generate_mimicry_split(SMALL, "train")
    for f in ("images", "masks", "labels", "habitats", "image_ids"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f"{f} differs between two generations of one config"


def test_sample_alone_equals_sample_in_batch():
    full = generate_mimicry_split(SMALL, "val")
    for idx in ([5], [11, 0, 7]):
        part = generate_mimicry_split(SMALL, "val", indices=idx)
        assert np.array_equal(part.images, full.images[idx]), f"samples {idx} differ when generated alone"
        assert np.array_equal(part.masks, full.masks[idx]), f"masks of {idx} differ when generated alone"
        assert list(part.image_ids) == list(full.image_ids[idx]), "ids depend on the batch"


def test_sample_does_not_depend_on_generation_chunk(splits64):
    # 64 px images are generated 64 at a time: indices 63 and 64 come from different chunks.
    cfg = DataConfig(image_size=64, n_train=40, n_val=10, n_test=20, camouflage=0.0, bias=0.9, seed=1)
    idx = [64, 63, 0, 79]
    part = generate_mimicry_split(cfg, "train", indices=idx)
    assert np.array_equal(part.images, splits64.train.images[idx]), "a sample depends on its generation chunk"


def test_different_seeds_give_different_images():
    a = generate_mimicry_split(SMALL, "train", indices=[0, 1])
    b = generate_mimicry_split(DataConfig(**{**SMALL.__dict__, "seed": 4}), "train", indices=[0, 1])
    assert not np.array_equal(a.images, b.images), "seeds 3 and 4 gave the same images"
    assert a.image_ids[0] != b.image_ids[0], "seeds 3 and 4 gave the same image ids"


def test_splits_differ():
    tr = generate_mimicry_split(SMALL, "train", indices=[0])
    te = generate_mimicry_split(SMALL, "test", indices=[0])
    assert not np.array_equal(tr.images, te.images), "train and test sample 0 are the same image"


def test_shapes_and_dtypes(splits64):
    s = splits64.train
    assert s.images.shape == (80, 3, 64, 64) and s.images.dtype == np.uint8, f"images {s.images.shape} {s.images.dtype}"
    assert s.masks.shape == (80, 64, 64) and set(np.unique(s.masks)) <= {0, 1}, "masks must be (N, H, W) in {0, 1}"
    assert s.labels.dtype == np.int64 and s.habitats.dtype == np.int64, "labels and habitats must be int64"
    assert s.has_mask.all(), "every procedural image has a real mask"
    assert splits64.habitat_names == ("bark", "leaves"), f"habitat names {splits64.habitat_names}"
    assert (len(splits64.train), len(splits64.val), len(splits64.test)) == (80, 20, 40), "2 n images per split"


def test_masks_cover_the_animal(splits64):
    s = splits64.train
    pos, neg = s.labels == 1, s.labels == 0
    assert not s.masks[neg].any(), "a negative image has a non-empty mask"
    area = s.masks[pos].mean(axis=(1, 2))
    assert area.min() > 0.01 and area.max() < 0.2, f"positive mask areas {area.min():.3f}..{area.max():.3f} implausible"
    # At camouflage 0 the animal is a saturated blue: inside the mask blue dominates, outside it does not.
    img = s.images[pos].astype(float)
    m = s.masks[pos].astype(bool)
    blue_minus_green = img[:, 2] - img[:, 1]  # (P, H, W)
    inside, outside = blue_minus_green[m].mean(), blue_minus_green[~m].mean()
    assert inside - outside > 80, f"blue - green inside the mask {inside:.0f} vs outside {outside:.0f}: mask misaligned"


def test_full_camouflage_matches_background_colour():
    cfg = DataConfig(image_size=64, n_train=30, n_val=1, n_test=1, camouflage=1.0, seed=2)
    s = generate_mimicry_split(cfg, "train")
    pos = s.labels == 1
    img, m = s.images[pos].astype(float), s.masks[pos].astype(bool)
    gap = np.abs(img.transpose(1, 0, 2, 3)[:, m].mean(1) - img.transpose(1, 0, 2, 3)[:, ~m].mean(1))
    assert gap.max() < 12, f"mean RGB inside vs outside the mask differs by {gap} at camouflage 1"


def test_habitats_differ_in_colour(splits64):
    s = splits64.train
    green_minus_red = s.images[:, 1].astype(float).mean(axis=(1, 2)) - s.images[:, 0].astype(float).mean(axis=(1, 2))
    leaves, bark = green_minus_red[s.habitats == 1], green_minus_red[s.habitats == 0]
    assert leaves.min() > bark.max(), f"green-red: leaves {leaves.min():.0f}.. vs bark ..{bark.max():.0f} overlap"


def test_bias_share_exact_in_train_val_and_balanced_test(splits64):
    for name, n, bias in (("train", 40, 0.9), ("val", 10, 0.9), ("test", 20, 0.5)):
        s = splits64[name]
        for label in (0, 1):
            cls = s.labels == label
            assert cls.sum() == n, f"{name}: {cls.sum()} images of class {label}, expected {n}"
            share = (s.habitats[cls] == label).mean()
            assert share == round(bias * n) / n, f"{name} class {label}: aligned share {share}, expected {bias}"


def test_image_ids_unique_and_stable(splits64):
    ids = np.concatenate([splits64[s].image_ids for s in ("train", "val", "test")])
    assert len(set(ids)) == len(ids), "image ids repeat across splits"
    fp8 = splits64.fingerprint[:8]
    assert splits64.test.image_ids[3] == f"mimicry-{fp8}-test-000003", f"id format: {splits64.test.image_ids[3]}"


def test_cache_hit_is_identical_and_fast(tmp_path):
    first = load_splits(SMALL, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("mimicry-*.npz"))) == 1, "no cache file written"
    t = time.perf_counter()
    again = load_splits(SMALL, cache_dir=tmp_path)
    assert again is first and time.perf_counter() - t < 0.01, "memory cache miss or slow"
    data.clear_memory_cache()
    t = time.perf_counter()
    disk = load_splits(SMALL, cache_dir=tmp_path)
    elapsed = time.perf_counter() - t
    assert elapsed < 0.5, f"disk cache hit took {elapsed:.2f} s"
    for name in ("train", "val", "test"):
        for f in ("images", "masks", "labels", "habitats", "image_ids", "has_mask"):
            assert np.array_equal(getattr(disk[name], f), getattr(first[name], f)), f"{name}.{f} differs after the disk cache"
    assert disk.fingerprint == first.fingerprint
    assert not disk.train.images.flags.writeable, "cached arrays must be read-only (they are shared)"


def test_fingerprint_tracks_generator_parameters():
    fp = data.mimicry_fingerprint
    assert fp(SMALL) == fp(DataConfig(**SMALL.__dict__)), "fingerprint is not a function of the config"
    for change in ({"camouflage": 0.5}, {"bias": 0.9}, {"seed": 9}, {"image_size": 64}, {"n_test": 13}):
        assert fp(SMALL) != fp(DataConfig(**{**SMALL.__dict__, **change})), f"fingerprint ignores {change}"
    assert fp(SMALL) == fp(DataConfig(**{**SMALL.__dict__, "augment": False})), "augment must not change the data"


def test_corrupt_cache_file_is_a_clear_error(tmp_path):
    load_splits(SMALL, cache_dir=tmp_path)
    data.clear_memory_cache()
    path = next(tmp_path.glob("mimicry-*.npz"))
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="delete it"):
        load_splits(SMALL, cache_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# Normalisation and augmentation

def test_normalize_maps_mean_colour_to_zero():
    mean = torch.tensor([round(255 * m) for m in IMAGENET_MEAN], dtype=torch.uint8).view(1, 3, 1, 1)
    out = normalize(mean.expand(2, 3, 4, 4).contiguous())
    assert out.dtype == torch.float32 and out.abs().max() < 0.02, f"mean colour normalises to {out.abs().max():.3f}"
    with pytest.raises(DataError, match="uint8"):
        normalize(torch.zeros(1, 3, 4, 4))


def _marked_batch(n: int = 8, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    # Images whose mask region, and only it, is pure red (255, 0, 0); elsewhere red stays below 200.
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 200, (n, 3, size, size), dtype=torch.uint8, generator=g)
    masks = torch.zeros(n, size, size, dtype=torch.uint8)
    for b in range(n):
        y, x = torch.randint(0, size - 12, (2,), generator=g).tolist()
        masks[b, y:y + 12, x:x + 20] = 1
    red = torch.tensor([255, 0, 0], dtype=torch.uint8).view(3, 1, 1)
    images = torch.where(masks.bool()[:, None], red, images)
    return images, masks


def test_augment_moves_image_and_mask_together():
    cfg = DataConfig(image_size=64, max_shift=0.125)
    images, masks = _marked_batch()
    torch.manual_seed(0)
    out_i, out_m = TrainAugment(cfg)(images, masks)
    assert out_i.shape == images.shape and out_i.dtype == torch.uint8, f"images {out_i.shape} {out_i.dtype}"
    assert out_m.shape == masks.shape and out_m.dtype == torch.uint8, f"masks {out_m.shape} {out_m.dtype}"
    is_red = out_i[:, 0] == 255
    assert torch.equal(is_red, out_m.bool()), "after augmentation the mask is not exactly the red region"
    assert not torch.equal(out_i, images), "augmentation changed nothing"
    moved = [not torch.equal(out_m[b], masks[b]) for b in range(len(masks))]
    assert sum(moved) >= len(moved) - 1, "samples are not shifted independently"


def test_augment_is_deterministic_under_manual_seed_and_cheap():
    cfg = DataConfig(image_size=64)
    images, masks = _marked_batch(32)
    aug = TrainAugment(cfg)
    torch.manual_seed(7)
    a = aug(images, masks)
    torch.manual_seed(7)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the speed bar is per core (several threads on a busy machine are slower)
    try:
        t = time.perf_counter()
        b = aug(images, masks)
        elapsed = time.perf_counter() - t
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), "same torch seed, different augmentation"
    assert elapsed < 0.1, f"augmenting 32 images of 64 px took {elapsed * 1e3:.0f} ms"


def test_augment_off_is_identity():
    images, masks = _marked_batch(2)
    out_i, out_m = TrainAugment(DataConfig(augment=False))(images, masks)
    assert torch.equal(out_i, images) and torch.equal(out_m, masks), "augment=False changed the batch"


# ---------------------------------------------------------------------------------------------
# Photo folders

def _png(path: Path, colour: tuple[int, int, int] = (10, 200, 30), size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _flat_folder(root: Path, n: int = 4) -> Path:
    for i in range(n):
        _png(root / "positive" / f"p{i}.png", (200, 10, 10))
        _png(root / "negative" / f"n{i}.png", (10, 10, 200))
    return root


def _photos(root: Path, **kw) -> DataConfig:
    return DataConfig(source=str(root), image_size=32, **kw)


def test_flat_photo_folder_loads_with_labels(tmp_path):
    root = _flat_folder(tmp_path / "photos", n=8)
    s = load_splits(_photos(root, val_fraction=0.25, test_fraction=0.25), cache_dir=tmp_path / "cache")
    ids = np.concatenate([s[n].image_ids for n in ("train", "val", "test")])
    assert len(ids) == 16 and len(set(ids)) == 16, f"{len(ids)} images loaded, expected 16 distinct"
    for name in ("train", "val", "test"):
        sp = s[name]
        assert sp.images.shape[1:] == (3, 32, 32), f"{name} images {sp.images.shape}: not resized"
        red = sp.images[:, 0].mean(axis=(1, 2)) > 100
        assert np.array_equal(red, sp.labels == 1), f"{name}: labels do not follow the class folders"
        assert (sp.habitats == -1).all() and not sp.has_mask.any(), "photos have no habitat and no mask here"
        assert (sp.labels == 0).sum() == (sp.labels == 1).sum() == {"train": 4, "val": 2, "test": 2}[name], \
            f"{name}: split is not stratified as asked"
    assert s.habitat_names == (), "photo folders have no habitat names"


def test_split_tree_and_masks(tmp_path):
    root, masks = tmp_path / "photos", tmp_path / "masks"
    for split in ("train", "val", "test"):
        _png(root / split / "positive" / "a.png", (200, 10, 10))
        _png(root / split / "negative" / "b.jpg", (10, 10, 200))
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[:, 20:] = 255  # right half
    masks.joinpath("train", "positive").mkdir(parents=True)
    Image.fromarray(mask).save(masks / "train" / "positive" / "a.png")
    s = load_splits(_photos(root, mask_dir=str(masks)), cache_dir=tmp_path / "cache")
    for split in ("train", "val", "test"):
        got = dict(zip(s[split].image_ids, s[split].labels))
        want = {f"photo:{split}/positive/a.png": 1, f"photo:{split}/negative/b.jpg": 0}
        assert got == want, f"{split}: labels by id {got}, expected {want}"
    tr = s.train
    p = int(np.flatnonzero(tr.labels == 1)[0])
    assert tr.has_mask[p] and tr.has_mask.sum() == 1, f"has_mask {list(tr.has_mask)}: only train/positive/a has a mask"
    assert tr.masks[p, :, 16:].all() and not tr.masks[p, :, :16].any(), "mask not resized with its image"
    assert not s.val.has_mask.any(), "val has no mask files"


def _missing_root(tmp_path: Path) -> Path:
    return tmp_path / "nowhere"


def _no_negative(tmp_path: Path) -> Path:
    _png(tmp_path / "p" / "positive" / "a.png")
    return tmp_path / "p"


def _empty_class(tmp_path: Path) -> Path:
    _png(tmp_path / "p" / "positive" / "a.png")
    (tmp_path / "p" / "negative").mkdir()
    (tmp_path / "p" / "negative" / "notes.txt").write_text("not an image")
    return tmp_path / "p"


def _truncated(tmp_path: Path) -> Path:
    root = _flat_folder(tmp_path / "p")
    good = (root / "positive" / "p0.png").read_bytes()
    (root / "positive" / "broken.png").write_bytes(good[:50])
    return root


def _unknown_class(tmp_path: Path) -> Path:
    root = _flat_folder(tmp_path / "p")
    _png(root / "maybe" / "x.png")
    return root


def _partial_tree(tmp_path: Path) -> Path:
    for split in ("train", "val"):
        _flat_folder(tmp_path / "p" / split, n=1)
    return tmp_path / "p"


@pytest.mark.parametrize("make, words", [
    (_missing_root, ["nowhere", "not found"]),
    (_no_negative, ["missing negative/"]),
    (_empty_class, ["negative", "no images"]),
    (_truncated, ["broken.png", "truncated"]),
    (_unknown_class, ["unknown class folder", "maybe"]),
    (_partial_tree, ["partial split tree", "test/"]),
])
def test_bad_photo_folder_is_a_clear_error(tmp_path, make, words):
    root = make(tmp_path)
    with pytest.raises(DataError) as err:
        load_splits(_photos(root), cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert "\n" not in msg, f"error message is not one line: {msg!r}"
    for w in words:
        assert w in msg, f"error message {msg!r} does not mention {w!r}"


def test_photo_mask_of_wrong_size_is_a_clear_error(tmp_path):
    root = _flat_folder(tmp_path / "p")
    _png(tmp_path / "m" / "positive" / "p0.png", (255, 255, 255), size=(10, 10))
    with pytest.raises(DataError, match="p0.png.*mask is 10x10"):
        load_splits(_photos(root, mask_dir=str(tmp_path / "m")), cache_dir=tmp_path / "cache")
