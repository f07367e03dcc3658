"""The public camouflaged-object datasets as published (COD10K, CAMO, NC4K; trainables/_datasets.py), on
small trees written here in each layout: tiny JPEGs with a red box where the animal is, and PNG masks
of the same box. Counts and labels, masks that line up with their images, the mask conventions, the
seeded validation split, the disk cache, and every refusal (one line naming the file or folder and the
fix; from the launcher: exit 2 and nothing written)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from study import launch
from trainables import _photos, data
from trainables.config import ConfigError, DataConfig, parse_data
from trainables.data import DataError, describe_provenance, load_splits, survey

SIZE = 32
W, H = 48, 32  # the files' size: squashed to SIZE x SIZE on loading
ANIMAL, GROUND = (220, 30, 30), (40, 90, 40)


@pytest.fixture(autouse=True)
def _fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("GAINSTUDY_CACHE", str(tmp_path / "cache"))
    data.clear_memory_cache()
    yield
    data.clear_memory_cache()


def _box(n: int) -> tuple[int, int, int, int]:
    # (x0, y0, x1, y1) of image n's animal: a different place in every image
    x, y = 3 + (n * 7) % 22, 2 + (n * 5) % 14
    return x, y, x + 14, y + 10


def _photo(path: Path, n: int | None) -> None:
    a = np.full((H, W, 3), GROUND, np.uint8)
    if n is not None:
        x0, y0, x1, y1 = _box(n)
        a[y0:y1, x0:x1] = ANIMAL
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, quality=95)


def _mask(path: Path, n: int, size: tuple[int, int] = (W, H), mode: str = "L", on: int = 255) -> None:
    x0, y0, x1, y1 = _box(n)
    sx, sy = size[0] / W, size[1] / H
    a = np.zeros((size[1], size[0]), np.uint8)
    a[round(y0 * sy):round(y1 * sy), round(x0 * sx):round(x1 * sx)] = on
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(a)
    (im.convert("1") if mode == "1" else im).save(path)


# (file name prefix, images in Train, in Test); positives have masks
COD10K_CAM = (("COD10K-CAM-2-Terrestrial-38-Lizard", 5, 2), ("COD10K-CAM-2-Terrestrial-26-Chameleon", 3, 2),
              ("COD10K-CAM-3-Flying-55-Butterfly", 4, 2))
COD10K_NONCAM = (("COD10K-NonCAM-5-Background-5-Vegetation", 8, 3), ("COD10K-NonCAM-3-Flying", 3, 1),
                 ("COD10K-NonCAM-2-Terrestrial-23-Cat", 2, 1))


def cod10k(root: Path) -> Path:
    """COD10K's v3 layout: {Train,Test}/{Image,GT_Object}; masks for the CAM images, and for one NonCAM."""
    n = 0
    for split, col in (("Train", 1), ("Test", 2)):
        for prefix, *k in COD10K_CAM:
            for _ in range(k[col - 1]):
                n += 1
                _photo(root / split / "Image" / f"{prefix}-{n}.jpg", n)
                _mask(root / split / "GT_Object" / f"{prefix}-{n}.png", n)
        for prefix, *k in COD10K_NONCAM:
            for _ in range(k[col - 1]):
                n += 1
                _photo(root / split / "Image" / f"{prefix}-{n}.jpg", None)
    # One NonCAM image with a mask (the release has none; a mask, if there is one, is not an error)
    first_bg = sorted((root / "Train" / "Image").glob("COD10K-NonCAM-5-*"))[0]
    Image.new("L", (W, H), 0).save(root / "Train" / "GT_Object" / f"{first_bg.stem}.png")
    return root


def camo(root: Path, n_train: int = 6, n_test: int = 3) -> Path:
    """CAMO-V.1.0-CVIU2019: Images/Train, Images/Test, and one GT folder with the masks of both."""
    for n in range(1, n_train + n_test + 1):
        split = "Train" if n <= n_train else "Test"
        _photo(root / "Images" / split / f"camourflage_{n:05d}.jpg", n)
        _mask(root / "GT" / f"camourflage_{n:05d}.png", n)
    return root


def nc4k(root: Path, n: int = 12) -> Path:
    for i in range(1, n + 1):
        _photo(root / "Imgs" / f"{i}.jpg", i)
        _mask(root / "GT" / f"{i}.png", i)
    return root


def negatives(root: Path, n: int = 12) -> Path:
    for i in range(n):
        _photo(root / ("sub" if i % 2 else "") / f"empty-{i}.jpg", None)
    return root


def _load(spec: str, tmp_path: Path, **kw) -> data.Splits:
    cfg = DataConfig(**{k.removeprefix("data."): v for k, v in parse_data(spec).items()}, image_size=SIZE, **kw)
    return load_splits(cfg, cache_dir=tmp_path / "cache")


def _counts(s: data.Splits) -> dict[str, tuple[int, int]]:
    return {n: (int((s[n].labels == 1).sum()), int((s[n].labels == 0).sum())) for n in ("train", "val", "test")}


def _ids(s: data.Splits, split: str, label: int) -> list[str]:
    return [str(i) for i, lab in zip(s[split].image_ids, s[split].labels) if lab == label]


# ---- counts and labels -----------------------------------------------------------------------------

def test_cod10k_positives_are_cam_and_negatives_background(tmp_path):
    s = _load(f"cod10k:{cod10k(tmp_path / 'COD10K-v3')}", tmp_path)
    # Train: 12 CAM -> val round(0.15 * 12) = 2; 8 Background -> val 1. Test: 6 CAM, 3 Background.
    assert _counts(s) == {"train": (10, 7), "val": (2, 1), "test": (6, 3)}, f"counts {_counts(s)}"
    for split in ("train", "val", "test"):
        pos, neg = _ids(s, split, 1), _ids(s, split, 0)
        assert all("-CAM-" in i for i in pos), f"{split}: a positive that is not a CAM image: {pos}"
        assert all("-NonCAM-5-Background-" in i for i in neg), f"{split}: a negative that is not Background: {neg}"
        published = "Test/" if split == "test" else "Train/"
        assert all(f"cod10k:{published}Image/" in i for i in pos + neg), f"{split}: not from {published}: {pos + neg}"
        assert s[split].has_mask[s[split].labels == 1].all(), f"{split}: a positive without its mask"
    p = s.provenance
    assert (p["dataset"], p["folder_name"], p["recognised"]) == ("cod10k", "COD10K-v3", "checked as named (cod10k:)"), p
    assert p["counts"]["test"] == {"positive": 6, "negative": 3}, f"provenance counts {p['counts']}"
    # 11 Background images used, one with a mask file: 10 without, which COD10K's layout allows
    assert p["masks_missing"] == 10, f"masks_missing {p['masks_missing']}: 10 NonCAM images have no mask"
    assert p["subclasses"]["test"] == {"Butterfly": 2, "Chameleon": 2, "Lizard": 2}, p["subclasses"]


def test_cod10k_class_filter_and_noncam_negatives(tmp_path):
    root = cod10k(tmp_path / "COD10K-v3")
    s = _load(f"cod10k:{root},classes=lizard+Chameleon,negatives=background+noncam", tmp_path)
    # Train: 8 Lizard/Chameleon CAM -> val 1; 13 NonCAM -> val 2. Test: 4 CAM, 5 NonCAM.
    assert _counts(s) == {"train": (7, 11), "val": (1, 2), "test": (4, 5)}, f"counts {_counts(s)}"
    pos = [i for n in ("train", "val", "test") for i in _ids(s, n, 1)]
    assert all(("-Lizard-" in i) or ("-Chameleon-" in i) for i in pos), f"a positive outside the filter: {pos}"
    neg = [i for n in ("train", "val", "test") for i in _ids(s, n, 0)]
    assert any("-NonCAM-3-Flying-" in i for i in neg), "NonCAM animals (no sub-class in the name) opted in"
    assert s.provenance["classes"] == ["Lizard", "Chameleon"], "the filter is recorded with the file names' spelling"


def test_camo_with_a_negatives_folder_keeps_the_published_split(tmp_path):
    root, neg = camo(tmp_path / "CAMO-V.1.0-CVIU2019"), negatives(tmp_path / "empty-scenes")
    s = _load(f"{root},negatives={neg}", tmp_path)
    # positives: Train 6 -> val 1, Test 3; negatives (12, no published split): test 3, val 2, train 7
    assert _counts(s) == {"train": (5, 7), "val": (1, 2), "test": (3, 3)}, f"counts {_counts(s)}"
    assert all("Images/Test/" in i for i in _ids(s, "test", 1)), "CAMO's published test split is kept"
    assert all(i.startswith("negatives:") for n in ("train", "val", "test") for i in _ids(s, n, 0)), \
        "every negative comes from the negatives folder"
    assert s.provenance["recognised"] == "recognised from its folders", "a plain CAMO folder is recognised"


def test_nc4k_with_cod10k_background_as_negatives(tmp_path):
    root, cod = nc4k(tmp_path / "NC4K"), cod10k(tmp_path / "COD10K-v3")
    s = _load(f"nc4k:{root},negatives={cod}", tmp_path)
    # NC4K (a test set only, 12): test round(0.25*12)=3, val 2, train 7; COD10K Background: as published
    assert _counts(s) == {"train": (7, 7), "val": (2, 1), "test": (3, 3)}, f"counts {_counts(s)}"
    neg = [i for n in ("train", "val", "test") for i in _ids(s, n, 0)]
    assert all("-NonCAM-5-Background-" in i for i in neg), f"only COD10K's Background images: {neg}"
    assert all(i.startswith("cod10k:Test/") for i in _ids(s, "test", 0)), "COD10K's own split for its images"


def test_validation_is_a_seeded_part_of_train(tmp_path):
    root = cod10k(tmp_path / "COD10K-v3")
    a, b = _load(f"cod10k:{root}", tmp_path), _load(f"cod10k:{root}", tmp_path, seed=0, val_fraction=0.15)
    c = _load(f"cod10k:{root}", tmp_path, seed=1)
    assert list(a.val.image_ids) == list(b.val.image_ids), "the same seed gives the same validation images"
    assert list(a.val.image_ids) != list(c.val.image_ids), "another seed picks other validation images"
    assert set(a.test.image_ids) == set(c.test.image_ids), "the published test split does not depend on the seed"
    assert a.fingerprint != c.fingerprint, "the seed is part of the fingerprint"


# ---- masks -----------------------------------------------------------------------------------------

def _centroids(split: data.Split, i: int) -> tuple[np.ndarray, np.ndarray]:
    red = (split.images[i, 0] > 150) & (split.images[i, 1] < 100)
    return np.argwhere(split.masks[i]).mean(axis=0), np.argwhere(red).mean(axis=0)


def test_masks_line_up_with_their_images(tmp_path):
    root = cod10k(tmp_path / "COD10K-v3")
    # Masks in every convention: half the image's size, 1-bit, a 0/1 label image, an anti-aliased JPEG
    gt = root / "Train" / "GT_Object"
    lizards = sorted(gt.glob("*-Lizard-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    numbers = [int(p.stem.rsplit("-", 1)[1]) for p in lizards]
    _mask(lizards[0], numbers[0], size=(W // 2, H // 2))
    _mask(lizards[1], numbers[1], mode="1")
    _mask(lizards[2], numbers[2], on=1)
    lizards[3].unlink()
    _mask(lizards[3].with_suffix(".jpg"), numbers[3])
    s = _load(f"{root},negatives=background+noncam", tmp_path)
    checked = 0
    for name in ("train", "val", "test"):
        sp = s[name]
        for i in np.flatnonzero(sp.labels == 1):
            mask_at, animal_at = _centroids(sp, i)
            assert np.abs(mask_at - animal_at).max() <= 1.0, \
                f"{sp.image_ids[i]}: mask centre {mask_at} is not the animal's {animal_at}"
            area = sp.masks[i].sum() / (SIZE * SIZE)
            assert 0.05 < area < 0.2, f"{sp.image_ids[i]}: mask covers {area:.2f} of the image, the box ~0.09"
            checked += 1
        assert not sp.masks[sp.labels == 0].any(), f"{name}: a negative with mask pixels"
    assert checked == 18, f"{checked} positives checked, expected all 18"
    assert s.provenance["masks_resized"] == 1, f"masks_resized {s.provenance['masks_resized']}: one half-size mask"


def test_a_rotated_mask_is_refused_not_stretched(tmp_path):
    root = camo(tmp_path / "CAMO")
    _mask(root / "GT" / "camourflage_00002.png", 2, size=(H, W))
    with pytest.raises(DataError) as err:
        _load(f"{root},negatives={negatives(tmp_path / 'neg')}", tmp_path)
    msg = str(err.value)
    assert "camourflage_00002.png" in msg and "32x48" in msg and "orientation" in msg, msg


# ---- cache, scale --------------------------------------------------------------------------------

def test_second_load_is_a_disk_cache_hit_and_a_changed_file_is_not(tmp_path):
    root = cod10k(tmp_path / "COD10K-v3")
    first = _load(f"cod10k:{root}", tmp_path)
    data.clear_memory_cache()
    t0 = time.perf_counter()
    again = _load(f"cod10k:{root}", tmp_path)
    assert np.array_equal(first.train.images, again.train.images) and again.fingerprint == first.fingerprint, \
        "a cache hit returns the same pixels"
    assert again.provenance == first.provenance, "what loading found (masks resized, ...) comes back from the cache"
    assert time.perf_counter() - t0 < 2.0, "a cache hit reads one file"
    assert len(list((tmp_path / "cache").glob("cod10k-*.npz"))) == 1, "one cache file, named by dataset"
    victim = next((root / "Test" / "Image").glob("*-Lizard-*.jpg"))
    _photo(victim, 1)  # another animal position, same name
    data.clear_memory_cache()
    changed = _load(f"cod10k:{root}", tmp_path)
    assert changed.fingerprint != first.fingerprint, "a rewritten file gives another fingerprint"


def test_worker_processes_read_the_same_pixels(tmp_path):
    from trainables import _datasets

    root = cod10k(tmp_path / "COD10K-v3")
    items = [_photos.Item(p, 1, p.name, root / split / "GT_Object" / f"{p.stem}.png")
             for split in ("Train", "Test") for p in sorted((root / split / "Image").glob("*-CAM-*.jpg"))]
    alone, found_alone = _photos.load_items(items, SIZE, _datasets.read_mask)
    with _photos.worker_pool(2) as workers:
        pooled, found_pooled = _photos.load_items(items, SIZE, _datasets.read_mask, workers, chunk=7)
    for f in ("images", "masks", "labels", "has_mask", "image_ids"):
        assert np.array_equal(getattr(alone, f), getattr(pooled, f)), f"{f} differ between 1 and 2 processes"
    assert alone.masks.any(axis=(1, 2)).all(), "every CAM image has its mask"
    assert found_alone == found_pooled, "the counts of what reading found do not depend on the processes"


# ---- refusals -------------------------------------------------------------------------------------

def _no_gt(t: Path) -> str:
    root = cod10k(t / "COD10K-v3")
    shutil.rmtree(root / "Test" / "GT_Object")
    return f"cod10k:{root}"


def _mask_without_image(t: Path) -> str:
    root = cod10k(t / "COD10K-v3")
    _mask(root / "Train" / "GT_Object" / "COD10K-CAM-2-Terrestrial-38-Lizard-9999.png", 1)
    return str(root)


def _cam_without_mask(t: Path) -> str:
    root = cod10k(t / "COD10K-v3")
    next((root / "Train" / "GT_Object").glob("*-Butterfly-*.png")).unlink()
    return str(root)


def _truncated(t: Path) -> str:
    root = cod10k(t / "COD10K-v3")
    victim = next((root / "Train" / "Image").glob("*-Chameleon-*.jpg"))
    victim.write_bytes(victim.read_bytes()[:200])
    return str(root)


def _foreign_name(t: Path) -> str:
    root = cod10k(t / "COD10K-v3")
    _photo(root / "Train" / "Image" / "IMG_0001.jpg", None)
    return str(root)


def _wrong_layout(t: Path) -> str:
    (t / "stuff" / "Train").mkdir(parents=True)
    return f"cod10k:{t / 'stuff'}"


def _negatives_are_cam(t: Path) -> str:
    root = cod10k(t / "COD10K-v3")
    return f"{camo(t / 'CAMO')},negatives={root / 'Train' / 'Image'}"


def _filter_leaves_test_empty(t: Path) -> str:
    root = cod10k(t / "COD10K-v3")
    for p in (root / "Test" / "Image").glob("*-Chameleon-*.jpg"):
        p.unlink()
        (root / "Test" / "GT_Object" / f"{p.stem}.png").unlink()
    return f"{root},classes=Chameleon"


def _extracted_one_level_up(t: Path) -> str:
    cod10k(t / "download" / "COD10K-v3")
    return f"cod10k:{t / 'download'}"


# name -> (spec maker, words the one-line message must hold: the file or folder, and the fix)
REFUSALS = {
    "missing GT folder": (_no_gt, ["Test/GT_Object", "missing", "restore it"]),
    "mask without image": (_mask_without_image, ["Lizard-9999.png", "without its image", "delete the mask"]),
    "CAM image without mask": (_cam_without_mask, ["Butterfly", "no mask", "restore it"]),
    "unreadable file": (_truncated, ["Chameleon", "truncated", "replace or delete"]),
    "file not named as COD10K names it": (_foreign_name, ["IMG_0001.jpg", "not a COD10K file name", "rename"]),
    "wrong layout": (_wrong_layout, ["stuff", "not the COD10K layout", "Train/Image"]),
    "folder with another dataset's prefix": (lambda t: f"camo:{cod10k(t / 'COD10K-v3')}",
                                             ["holds the COD10K layout", "not CAMO's", "cod10k:"]),
    "CAMO without negatives": (lambda t: f"camo:{camo(t / 'CAMO')}",
                               ["CAMO holds camouflaged animals only", "negatives="]),
    "negatives folder of CAM images": (_negatives_are_cam, ["COD10K-CAM-", "COD10K root"]),
    "unknown class": (lambda t: f"{cod10k(t / 'COD10K-v3')},classes=Lizard+Gecko",
                      ["Gecko", "Butterfly, Chameleon, Lizard", "use those names"]),
    "class filter on CAMO": (lambda t: f"{camo(t / 'CAMO')},classes=Lizard,negatives={negatives(t / 'neg')}",
                             ["classes=Lizard", "no class names", "drop classes"]),
    "class filter empties the test split": (_filter_leaves_test_empty, ["no positive images in the test split",
                                                                         "classes=Chameleon"]),
    "the folder above the release": (_extracted_one_level_up, ["download", "subfolder COD10K-v3/",
                                                               "--data cod10k:"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusal_is_one_line_naming_the_file_and_the_fix(case, tmp_path):
    make, words = REFUSALS[case]
    spec = make(tmp_path)
    with pytest.raises(DataError) as err:
        _load(spec, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg, f"{case}: not one line: {msg!r}"
    for w in words:
        assert w in msg, f"{case}: the message does not say {w!r}: {msg}"


@pytest.mark.parametrize("spec, words", [
    ("cod10k:/d,classes=", ["empty class filter", "classes=Lizard+Chameleon+Gecko"]),
    ("cod10k:/d,classes=Lizard++Gecko", ["empty class filter"]),
    ("cod10k:", ["give the dataset's folder"]),
    ("camo:/d,dataset=nc4k", ["disagree"]),
    ("classes=Lizard", ["only for photos"]),
])
def test_bad_data_spec_is_refused_when_parsed(spec, words):
    with pytest.raises(ConfigError) as err:
        DataConfig(**{k.removeprefix("data."): v for k, v in parse_data(spec).items()})
    for w in words:
        assert w in str(err.value), f"{spec}: the message does not say {w!r}: {err.value}"


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", ["missing GT folder", "unreadable file", "folder with another dataset's prefix",
                                  "unknown class", "CAMO without negatives"])
def test_launcher_refuses_with_exit_2_and_writes_nothing(case, tmp_path, capsys):
    spec = REFUSALS[case][0](tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as e:
        launch.main(["--data", spec, "--preset", "smoke", "--storage", str(tmp_path / "runs"), "--trials", "2",
                     "--no-dashboard"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2, f"{case}: exit {e.value.code}, expected 2: {err}"
    assert len(err.splitlines()) == 1 and "--data" in err, f"{case}: expected one line naming --data: {err}"
    assert _snapshot(tmp_path) == before, f"{case}: files were written"


def test_launcher_says_which_layout_it_recognised(tmp_path, capsys):
    root = cod10k(tmp_path / "COD10K-v3")
    assert launch.main(["--data", f"{root},classes=Lizard", "--preset", "smoke", "--dry-run",
                        "--storage", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("data:"))
    assert "COD10K" in line and "recognised from its folders" in line and "Train/GT_Object" in line, line
    assert "train 4/7; val 1/1; test 2/3" in line, f"positive/negative per split: {line}"
    assert "11/2/5 train/val/test images" in out, "the plan's sizes are the dataset's, not the preset's"
    assert not (tmp_path / "runs").exists(), "a dry run writes nothing"


def test_a_bigger_dataset_costs_more_by_the_cost_model(tmp_path):
    from study.plan import StudyConfig, estimate

    small = StudyConfig(preset="cpu", data_images=(100, 20, 50))
    large = StudyConfig(preset="cpu", data_images=(1000, 200, 500))
    ratio = estimate(large)["confirm_core_s"] / estimate(small)["confirm_core_s"]
    assert 5 < ratio < 10.5, f"10x the images cost {ratio:.1f}x the confirmation core-seconds"


def test_study_json_and_the_report_carry_the_provenance(tmp_path):
    from analysis.first_screen import data_line
    from study.plan import StudyConfig
    from study.records import open_study_record

    s = _load(f"cod10k:{cod10k(tmp_path / 'COD10K-v3')},classes=Lizard", tmp_path)
    cfg = StudyConfig(name="s", storage=str(tmp_path / "runs"), preset="smoke", trials=2)
    open_study_record(cfg, tmp_path / "runs" / "s", [], s.fingerprint, data=dict(s.provenance))
    meta = json.loads((tmp_path / "runs" / "s" / "study.json").read_text())
    assert meta["data_provenance"]["counts"] == s.provenance["counts"], "study.json holds the per-split counts"
    line = data_line(meta)
    for what in ("Data: COD10K at", "COD10K-v3", "classes Lizard", "negatives background",
                 "train 4/7; val 1/1; test 2/3", s.fingerprint[:12], "the paper used 839/226/378 images per class"):
        assert what in line, f"the report's data line lacks {what!r}: {line}"
    assert "no provenance recorded" in data_line({"dataset_fingerprint": "abc", "config": {"data": {"source": "x"}}})


def test_survey_lists_without_reading_pixels(tmp_path):
    root = cod10k(tmp_path / "COD10K-v3")
    victim = next((root / "Train" / "Image").glob("*-Chameleon-*.jpg"))
    victim.write_bytes(b"not a jpeg")  # only reading the pixels finds this
    found = survey(DataConfig(source=str(root)))
    assert found["counts"]["test"] == {"positive": 6, "negative": 3}, found["counts"]
    assert "COD10K" in describe_provenance(found), "the launcher's line names the dataset"
