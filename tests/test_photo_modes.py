"""Photo folders hold every PIL mode and every kind of broken entry: each loads with the right values or is
a one-line DataError naming the file. The files are written here by PIL (a few by hand where PIL writes no
such file); see the rules in trainables/_photos.py."""
from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainables import _photos, data
from trainables.config import DataConfig
from trainables.data import DataError, load_splits

SIZE = 32
NAME = "train/positive/x"  # the file under test, next to one plain image per split and class


@pytest.fixture(autouse=True)
def _fresh_memory_cache():
    data.clear_memory_cache()
    yield
    data.clear_memory_cache()


def _tree(root: Path) -> Path:
    for split in ("train", "val", "test"):
        for cls in ("positive", "negative"):
            (root / split / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8), (90, 90, 90)).save(root / split / cls / "a.png")
    return root


def _load(root: Path, tmp_path: Path, **kw) -> data.Splits:
    return load_splits(DataConfig(source=str(root), image_size=SIZE, **kw), cache_dir=tmp_path / "cache")


def _loaded_image(tmp_path: Path, write: Callable[[Path], None], ext: str) -> np.ndarray:
    root = _tree(tmp_path / "photos")
    write(root / f"{NAME}.{ext}")
    s = _load(root, tmp_path)
    return s.train.images[list(s.train.image_ids).index(f"photo:{NAME}.{ext}")]  # (3, SIZE, SIZE)


def _one_line_error(run: Callable[[], object], *words: str) -> str:
    with pytest.raises(DataError) as err:
        run()
    msg = str(err.value)
    assert "\n" not in msg, f"error message is not one line: {msg!r}"
    for w in words:
        assert w in msg, f"error message {msg!r} does not mention {w!r}"
    return msg


# Files PIL cannot write --------------------------------------------------------------------------

def _png16(path: Path, a: np.ndarray, colour_type: int) -> None:
    # 16-bit PNG: colour type 0 grey, 2 RGB, 4 grey + alpha, 6 RGBA; a is (H, W[, C]) uint16
    h, w = a.shape[:2]
    raw = b"".join(b"\0" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def _grey_tiff(path: Path, w: int, h: int, bits: int, sample_format: int, pixels: bytes) -> None:
    # One-strip greyscale TIFF with any BitsPerSample and SampleFormat (1 unsigned, 2 signed)
    tags = [(256, w), (257, h), (258, bits), (259, 1), (262, 1), (273, 0), (277, 1), (278, h),
            (279, len(pixels)), (339, sample_format)]
    data_at = 8 + 2 + 12 * len(tags) + 4
    ifd = b"".join(struct.pack("<HHII", tag, 4, 1, data_at if tag == 273 else v) for tag, v in tags)
    path.write_bytes(b"II*\0" + struct.pack("<IH", 8, len(tags)) + ifd + struct.pack("<I", 0) + pixels)


def _pgm16(path: Path, value: int, maxval: int) -> None:
    path.write_bytes(f"P5 8 8 {maxval}\n".encode() + np.full(64, value, dtype=">u2").tobytes())


def _with_palette(im: Image.Image, colours: list[tuple[int, int, int]]) -> Image.Image:
    im.putpalette([c for rgb in colours for c in rgb])
    return im


def _p_transparent(path: Path) -> None:
    _with_palette(Image.new("P", (8, 8), 1), [(0, 0, 0), (250, 20, 20)]).save(path, transparency=1)


def _exif_rotated_16bit(path: Path) -> None:
    a = np.zeros((8, 8), dtype=np.uint16)
    a[:, 4:] = 65535  # right half white; orientation 6 = rotate 90 deg clockwise to view: bottom half white
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(path, exif=exif.tobytes())


def _two_frame_gif(path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 255, 255), (0, 0, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:])


# (writer, extension, expected RGB, tolerance): uniform images unless the expectation is an array
LOADS = {
    "1 white": (lambda p: Image.new("1", (8, 8), 1).save(p), "png", (255, 255, 255), 0),
    "L": (lambda p: Image.new("L", (8, 8), 100).save(p), "png", (100, 100, 100), 0),
    "L jpeg": (lambda p: Image.new("L", (8, 8), 100).save(p), "jpg", (100, 100, 100), 2),
    "P": (lambda p: _with_palette(Image.new("P", (8, 8), 1), [(0, 0, 0), (10, 200, 30)]).save(p),
          "png", (10, 200, 30), 0),
    "P, transparent index: black": (_p_transparent, "png", (0, 0, 0), 0),
    "RGB tRNS colour: black": (lambda p: Image.new("RGB", (8, 8), (7, 8, 9)).save(p, transparency=(7, 8, 9)),
                               "png", (0, 0, 0), 0),
    "RGB jpeg": (lambda p: Image.new("RGB", (8, 8), (200, 60, 20)).save(p, quality=95), "jpg", (200, 60, 20), 4),
    "RGBA half: onto black": (lambda p: Image.new("RGBA", (8, 8), (200, 100, 50, 128)).save(p),
                              "png", (100, 50, 25), 0),
    "RGBA transparent": (lambda p: Image.new("RGBA", (8, 8), (200, 100, 50, 0)).save(p), "webp", (0, 0, 0), 0),
    "LA": (lambda p: Image.new("LA", (8, 8), (200, 255)).save(p), "png", (200, 200, 200), 0),
    "PA tiff": (lambda p: _with_palette(Image.new("PA", (8, 8), (1, 255)), [(0, 0, 0), (0, 0, 250)]).save(p),
                "tiff", (0, 0, 250), 0),
    "CMYK tiff": (lambda p: Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(p), "tiff", (255, 0, 0), 0),
    "CMYK jpeg": (lambda p: Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(p, quality=95), "jpg",
                  (255, 0, 0), 4),
    "YCbCr tiff": (lambda p: Image.new("YCbCr", (8, 8), (128, 128, 255)).save(p), "tiff",
                   Image.new("YCbCr", (1, 1), (128, 128, 255)).convert("RGB").getpixel((0, 0)), 0),
    "LAB tiff (white)": (lambda p: Image.new("LAB", (8, 8), (255, 128, 128)).save(p), "tiff", (255, 255, 255), 1),
    "I;16 png 32768": (lambda p: Image.new("I;16", (8, 8), 32768).save(p), "png", (128, 128, 128), 0),
    "I;16 png 1000": (lambda p: Image.new("I;16", (8, 8), 1000).save(p), "png", (4, 4, 4), 0),
    "I;16 png white": (lambda p: Image.new("I;16", (8, 8), 65535).save(p), "png", (255, 255, 255), 0),
    "I;16B tiff": (lambda p: Image.new("I;16B", (8, 8), 65535).save(p), "tiff", (255, 255, 255), 0),
    "I;16 jpeg 2000": (lambda p: Image.new("I;16", (8, 8), 32768).save(p), "jp2", (128, 128, 128), 0),
    "12-bit tiff 4095": (lambda p: _grey_tiff(p, 2, 1, 12, 1, bytes([0xFF, 0xFF, 0xFF])), "tiff",
                         (255, 255, 255), 0),
    "I pgm 16-bit": (lambda p: _pgm16(p, 32768, 65535), "pgm", (128, 128, 128), 0),
    "I pgm maxval 4095": (lambda p: _pgm16(p, 4095, 4095), "pgm", (255, 255, 255), 0),
    "F tiff 0.5": (lambda p: Image.new("F", (8, 8), 0.5).save(p), "tiff", (128, 128, 128), 0),
    "F tiff 1.0000001": (lambda p: Image.new("F", (8, 8), 1.0000001).save(p), "tiff", (255, 255, 255), 0),
    "F pfm 0.25": (lambda p: Image.new("F", (8, 8), 0.25).save(p), "pfm", (64, 64, 64), 0),
    "16-bit RGB png": (lambda p: _png16(p, np.full((8, 8, 3), (65535, 32768, 0), np.uint16), 2), "png",
                       (255, 128, 0), 0),
    "16-bit grey+alpha png": (lambda p: _png16(p, np.full((8, 8, 2), (65535, 32896), np.uint16), 4), "png",
                              (128, 128, 128), 0),
    "16-bit RGBA png": (lambda p: _png16(p, np.full((8, 8, 4), (65535, 0, 0, 65535), np.uint16), 6), "png",
                        (255, 0, 0), 0),
    "GIF, first frame": (_two_frame_gif, "gif", (255, 255, 255), 0),
}


@pytest.mark.parametrize("case", LOADS)
def test_every_mode_loads_with_its_values(tmp_path, case):
    write, ext, want, tol = LOADS[case]
    img = _loaded_image(tmp_path, write, ext).astype(int)
    diff = np.abs(img - np.array(want).reshape(3, 1, 1)).max()
    assert diff <= tol, f"{case}: loaded RGB {img[:, 0, 0].tolist()} (and around), expected {list(want)} ± {tol}"


def test_exif_rotation_applies_to_16bit_images(tmp_path):
    img = _loaded_image(tmp_path, _exif_rotated_16bit, "png")
    top, bottom = img[:, :SIZE // 2 - 2].mean(), img[:, SIZE // 2 + 2:].mean()
    assert top == 0 and bottom == 255, f"EXIF rotation not applied: top {top}, bottom {bottom} (want 0, 255)"


@pytest.mark.parametrize("mode, fill, want", [
    ("HSV", (0, 255, 255), (255, 0, 0)),
    ("RGBa", (100, 50, 20, 128), (100, 50, 20)),  # premultiplied already: onto black it is itself
    ("La", (100, 128), (100, 100, 100)),
    ("RGBX", (1, 2, 3, 0), (1, 2, 3)),
])
def test_modes_pil_cannot_save_convert_too(mode, fill, want):
    # No file format holds these, so the conversion is checked on the image itself.
    rgb = _photos._rgb(Image.new(mode, (2, 2), fill), Path(f"x.{mode}"))
    got = tuple(int(v) for v in rgb[0, 0])
    assert np.abs(np.array(got) - want).max() <= 1, f"{mode} {fill} -> {got}, expected {want}"


# (writer, extension, words the message must hold)
REFUSED = {
    "I 32-bit tiff": (lambda p: Image.fromarray(np.full((8, 8), 70000, np.int32)).save(p), "tiff",
                      ["32-bit or signed", "8- or 16-bit"]),
    "I signed 16-bit tiff": (lambda p: _grey_tiff(p, 2, 1, 16, 2, np.array([-5, 100], "<i2").tobytes()),
                             "tiff", ["32-bit or signed"]),
    "F above 1": (lambda p: Image.new("F", (8, 8), 2.0).save(p), "tiff", ["from 2 to 2", "0 black, 1 white", "rescale"]),
    "F negative": (lambda p: Image.new("F", (8, 8), -0.5).save(p), "tiff", ["from -0.5", "rescale"]),
    "F 0..255": (lambda p: Image.new("F", (8, 8), 200.0).save(p), "pfm", ["200", "outside 0..1"]),
    "F NaN": (lambda p: Image.new("F", (8, 8), float("nan")).save(p), "tiff", ["NaN", "replace"]),
    "F infinity": (lambda p: Image.new("F", (8, 8), float("inf")).save(p), "tiff", ["infinite"]),
    "empty file": (lambda p: p.write_bytes(b""), "png", ["not an image PIL can read", "convert"]),
    "text named .jpg": (lambda p: p.write_text("not a photo"), "jpg", ["not an image PIL can read"]),
    "truncated png": (lambda p: p.write_bytes(_png_bytes()[:60]), "png", ["truncated", "replace"]),
}


def _png_bytes() -> bytes:
    import io
    buf = io.BytesIO()
    Image.fromarray(np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("case", REFUSED)
def test_images_without_a_clear_reading_are_refused(tmp_path, case):
    write, ext, words = REFUSED[case]
    _one_line_error(lambda: _loaded_image(tmp_path, write, ext), f"x.{ext}", *words)


# Masks ---------------------------------------------------------------------------------------------

def _right_half(value, dtype=np.uint8) -> np.ndarray:
    a = np.zeros((8, 8), dtype=dtype)
    a[:, 4:] = value
    return a


def _rgba_mask(path: Path) -> None:
    a = np.zeros((8, 8, 4), np.uint8)
    a[:, 4:] = 255  # opaque white on the right, transparent (white or not) elsewhere
    a[:, :4, :3] = 255
    Image.fromarray(a, "RGBA").save(path)


MASKS = {
    "L": (lambda p: Image.fromarray(_right_half(255)).save(p), "png"),
    "1": (lambda p: Image.fromarray(_right_half(255)).convert("1").save(p), "png"),
    "P grey palette": (lambda p: _with_palette(Image.fromarray(_right_half(1)).convert("P"),
                                               [(0, 0, 0), (255, 255, 255)]).save(p), "png"),
    "I;16": (lambda p: Image.fromarray(_right_half(40000, np.uint16)).save(p), "png"),
    "F": (lambda p: Image.fromarray(_right_half(1.0, np.float32)).save(p), "tiff"),
    "RGBA, transparent is not animal": (_rgba_mask, "png"),
    "grey JPEG": (lambda p: Image.fromarray(_right_half(255)).convert("RGB").save(p, quality=90), "jpg"),
}


def _load_with_mask(tmp_path: Path, write: Callable[[Path], None], ext: str) -> np.ndarray:
    root = _tree(tmp_path / "photos")
    Image.new("RGB", (8, 8), (90, 90, 90)).save(root / f"{NAME}.png")
    (tmp_path / "masks" / "train" / "positive").mkdir(parents=True)
    write(tmp_path / "masks" / f"{NAME}.{ext}")
    s = _load(root, tmp_path, mask_dir=str(tmp_path / "masks"))
    i = list(s.train.image_ids).index(f"photo:{NAME}.png")
    assert s.train.has_mask[i], f"{NAME}.{ext}: mask not found"
    return s.train.masks[i]


@pytest.mark.parametrize("case", MASKS)
def test_masks_of_every_mode_mark_the_white_half(tmp_path, case):
    m = _load_with_mask(tmp_path, *MASKS[case])
    assert m[:, SIZE // 2 + 1:].all() and not m[:, :SIZE // 2 - 1].any(), \
        f"{case} mask: right half {m[:, SIZE // 2 + 1:].mean():.2f} marked (want 1), left {m[:, :SIZE // 2 - 1].mean():.2f} (want 0)"


def test_16bit_mask_below_half_marks_nothing(tmp_path):
    m = _load_with_mask(tmp_path, lambda p: Image.fromarray(_right_half(30000, np.uint16)).save(p), "png")
    assert not m.any(), "a 16-bit mask at 30000 of 65535 is grey 117 < 127: it must mark nothing"


@pytest.mark.parametrize("write, ext, words", [
    (lambda p: Image.fromarray(_right_half(1)).save(p), "png", ["only 0 and 1", "mask * 255"]),
    (lambda p: Image.fromarray(_right_half(1, np.uint16)).save(p), "png", ["only 0 and 1"]),
    (lambda p: Image.fromarray(np.stack([_right_half(255)] + [_right_half(0)] * 2, -1)).save(p), "png",
     ["coloured", "greyscale"]),
    (lambda p: _with_palette(Image.fromarray(_right_half(1)).convert("P"), [(0, 0, 0), (128, 0, 0)]).save(p),
     "png", ["coloured"]),
    (lambda p: Image.new("F", (8, 8), 3.0).save(p), "tiff", ["outside 0..1"]),
], ids=["L 0/1", "I;16 0/1", "RGB red", "P class colours", "F above 1"])
def test_masks_that_would_mark_nothing_are_refused(tmp_path, write, ext, words):
    _one_line_error(lambda: _load_with_mask(tmp_path, write, ext), f"x.{ext}", *words)


# Broken entries --------------------------------------------------------------------------------------

def _broken_link(p: Path) -> None:
    p.symlink_to(p.parent / "gone.png")


def _self_link(p: Path) -> None:
    p.symlink_to(p.name)


def _folder_named_like_image(p: Path) -> None:
    p.mkdir()
    Image.new("RGB", (8, 8)).save(p / "inner.png")


def _fifo(p: Path) -> None:
    os.mkfifo(p)  # PIL would block forever opening it


@pytest.mark.timeout(30)
@pytest.mark.parametrize("make, words", [
    (_broken_link, ["broken symbolic link", "gone.png", "delete it"]),
    (_self_link, ["symbolic link loop"]),
    (_folder_named_like_image, ["a folder named like an image", "rename it"]),
    (_fifo, ["a FIFO", "not a regular file"]),
], ids=["broken link", "link to itself", "folder named x.png", "FIFO"])
def test_broken_entries_are_errors_naming_them(tmp_path, make, words):
    root = _tree(tmp_path / "photos")
    make(root / f"{NAME}.png")
    _one_line_error(lambda: _load(root, tmp_path), f"{NAME}.png", *words)


def test_folder_link_loop_is_an_error(tmp_path):
    root = _tree(tmp_path / "photos")
    (root / "train" / "positive" / "again").symlink_to("..")
    _one_line_error(lambda: _load(root, tmp_path), "again", "a second time", "remove the link")


def test_broken_class_folder_link_and_broken_root(tmp_path):
    root = _tree(tmp_path / "photos")
    for f in (root / "val" / "negative").iterdir():
        f.unlink()
    (root / "val" / "negative").rmdir()
    (root / "val" / "negative").symlink_to(tmp_path / "elsewhere")
    _one_line_error(lambda: _load(root, tmp_path), "val/negative", "broken symbolic link", "not a folder")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    _one_line_error(lambda: _load(tmp_path / "link", tmp_path), "link", "broken symbolic link", "not a folder")


def test_broken_mask_entry_is_an_error(tmp_path):
    root = _tree(tmp_path / "photos")
    (tmp_path / "masks" / "train" / "positive").mkdir(parents=True)
    Image.new("L", (8, 8)).save(tmp_path / "masks" / "train" / "positive" / "a.png")
    _broken_link(tmp_path / "masks" / "train" / "positive" / "b.png")
    _one_line_error(lambda: _load(root, tmp_path, mask_dir=str(tmp_path / "masks")), "b.png", "broken symbolic link")


def test_links_to_images_and_folders_are_followed(tmp_path):
    root = _tree(tmp_path / "photos")
    store = tmp_path / "store"
    store.mkdir()
    Image.new("RGB", (8, 8), (250, 0, 0)).save(store / "red.png")
    (root / "train" / "positive" / "linked.png").symlink_to(store / "red.png")
    (root / "train" / "positive" / "more").symlink_to(store)
    ids = set(_load(root, tmp_path).train.image_ids)
    for want in ("photo:train/positive/linked.png", "photo:train/positive/more/red.png"):
        assert want in ids, f"{want} not loaded through its link: ids {sorted(ids)}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions; "
                    "the FIFO and folder cases cover entries that cannot be read as images")
def test_unreadable_file_and_folder_are_errors(tmp_path):
    root = _tree(tmp_path / "photos")
    Image.new("RGB", (8, 8)).save(root / f"{NAME}.png")
    (root / f"{NAME}.png").chmod(0)
    _one_line_error(lambda: _load(root, tmp_path), f"{NAME}.png", "not readable", "chmod")
    (root / f"{NAME}.png").unlink()
    (root / "train" / "positive" / "locked").mkdir()
    (root / "train" / "positive" / "locked").chmod(0)
    try:
        _one_line_error(lambda: _load(root, tmp_path), "locked", "cannot list folder")
    finally:
        (root / "train" / "positive" / "locked").chmod(0o755)


def test_heic_is_refused_by_name_not_left_out(tmp_path):
    root = _tree(tmp_path / "photos")
    (root / "train" / "positive" / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic" + bytes(64))
    _one_line_error(lambda: _load(root, tmp_path), "IMG_0001.HEIC", "not an image PIL can read", "convert")
