"""Broken files give a RecordError with a code and a readable reason; unusual valid images load as RGB."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from seva_plugin.errors import RecordError
from seva_plugin.pipeline.images import load_rgb


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size but holds almost nothing: a decompression bomb's signature."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


@pytest.fixture
def broken(tmp_path):
    good = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 99, 199)).save(good, "JPEG")
    files = {
        "empty.png": b"",
        "text.png": b"this is not an image at all",
        "truncated.jpg": good.getvalue()[: len(good.getvalue()) // 2],
        "bomb.png": png_header_only(40_000, 40_000),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize(
    "name, code, words",
    [
        ("missing.png", "missing_file", "not found"),
        ("empty.png", "empty_file", "empty (0 bytes)"),
        ("text.png", "not_an_image", "not an image"),
        ("truncated.jpg", "undecodable", "truncated or corrupt"),
        ("bomb.png", "too_large", "decompression bomb"),
    ],
)
def test_broken_images_are_reported(broken, name, code, words):
    with pytest.raises(RecordError) as err:
        load_rgb(str(broken / name))
    assert err.value.code == code
    assert words in str(err.value) and name in str(err.value)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(RecordError, match="directory"):
        load_rgb(str(tmp_path))


def save(tmp_path, name, img, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return str(path)


def test_unusual_valid_images_load_as_rgb(tmp_path):
    cmyk = save(tmp_path, "cmyk.jpg", Image.new("CMYK", (20, 10), (0, 255, 255, 0)))
    sixteen = save(tmp_path, "16bit.png", Image.fromarray(np.linspace(0, 65535, 200, dtype=np.uint16).reshape(10, 20)))
    palette = Image.new("P", (20, 10))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.info["transparency"] = 0
    pal = save(tmp_path, "palette.png", palette, transparency=0)
    grey = save(tmp_path, "grey.png", Image.new("L", (20, 10), 128))
    tiny = save(tmp_path, "one.png", Image.new("RGB", (1, 1), (1, 2, 3)))
    for path in (cmyk, sixteen, pal, grey, tiny):
        img = load_rgb(path)
        assert img.mode == "RGB", path
    assert load_rgb(sixteen).getpixel((19, 9)) == (255, 255, 255)  # rescaled, not clipped
    assert load_rgb(sixteen).getpixel((0, 0)) == (0, 0, 0)
    assert load_rgb(pal).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white background
    assert load_rgb(cmyk).getpixel((0, 0))[0] > 200  # CMYK (0,255,255,0) is red


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = save(tmp_path, "rotated.jpg", img, exif=exif.tobytes())
    assert load_rgb(path).size == (20, 40)
