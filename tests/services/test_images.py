"""Image verification and processing: what is refused, what is stripped, what is kept. Builders used by tip tests."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import pytest
from PIL import Image, ImageDraw

from server.services import images

GPS = {1: "N", 2: (31.0, 13.0, 49.0), 3: "E", 4: (121.0, 28.0, 25.0)}


def jpeg_bytes(
    size: tuple[int, int] = (64, 32), colour: str = "red", *, gps: bool = False, orientation: int | None = None
) -> bytes:
    """A small JPEG, optionally with GPS EXIF and an orientation tag, as phones write them."""
    image = Image.new("RGB", size, colour)
    for x in range(0, size[0], 4):  # some detail, so blurring is measurable
        for y in range(size[1]):
            image.putpixel((x, y), (0, 0, 0))
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    if orientation:
        exif[0x0112] = orientation
    if gps:
        exif.get_ifd(0x8825).update(GPS)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=90)
    return out.getvalue()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 1-bit PNG of width × height: ~100 KB on disk, ~100 MB once decoded (the classic bomb)."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row * 256) for _ in range(height // 256)) + compressor.compress(
        row * (height % 256)
    )
    body += compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def truncated_jpeg() -> bytes:
    data = jpeg_bytes((400, 300))
    return data[: len(data) // 2]


HTML_AS_JPG = b"<!doctype html><html><body><script>alert(1)</script></body></html>"


def exif_of(data: bytes) -> Image.Exif:
    with Image.open(io.BytesIO(data)) as image:
        return image.getexif()


def test_gps_and_every_exif_tag_are_gone_from_the_copies_and_kept_in_the_original():
    original = jpeg_bytes(gps=True)
    assert exif_of(original).get_ifd(0x8825)  # the fixture really carries GPS
    out = images.process_image(original)
    for copy in (out.public_jpeg, out.thumb_jpeg):
        exif = exif_of(copy)
        assert not exif.get_ifd(0x8825) and 0x010F not in exif and len(exif) == 0
        assert b"Exif" not in copy[:200]
    assert out.original == original and out.sha256 == hashlib.sha256(original).hexdigest()
    assert out.mime == "image/jpeg"


def test_orientation_is_applied_before_the_tag_is_dropped():
    out = images.process_image(jpeg_bytes((64, 32), orientation=6))  # "rotate 90° CW to display"
    with Image.open(io.BytesIO(out.public_jpeg)) as public:
        assert public.size == (32, 64)
    assert (out.width, out.height) == (32, 64)


def test_png_with_alpha_becomes_a_jpeg_on_white():
    image = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    out = images.process_image(buf.getvalue())
    with Image.open(io.BytesIO(out.public_jpeg)) as public:
        assert public.format == "JPEG" and public.getpixel((10, 10))[0] > 240
    assert out.mime == "image/png"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (png_bomb(), images.TOO_MANY_PIXELS),  # far beyond: Pillow's DecompressionBombError
        (png_bomb(7000, 7000), images.TOO_MANY_PIXELS),  # 49 MP: just beyond, Pillow only warns
        (truncated_jpeg(), images.NOT_AN_IMAGE),
        (HTML_AS_JPG, images.NOT_AN_IMAGE),
        (b"%PDF-1.4 not an image", images.NOT_AN_IMAGE),
        (b"", images.EMPTY),
        (b"\xff\xd8\xff" + b"\x00" * (images.MAX_BYTES + 1), images.TOO_BIG),
    ],
    ids=["png-bomb", "over-40mp", "truncated-jpeg", "html-as-jpg", "pdf", "empty", "over-20mb"],
)
def test_refused_with_a_clear_message(data, message):
    with pytest.raises(images.ImageRejected) as exc:
        images.process_image(data)
    assert str(exc.value) == message


def test_pillow_guard_is_set_to_our_limit():
    assert Image.MAX_IMAGE_PIXELS == images.MAX_JPEG_PIXELS


def phone_jpeg(size=(8000, 6000), *, orientation: int | None = None) -> bytes:
    """A 48 MP phone photo (sent as 原图): a dark left edge to tell its orientation by."""
    image = Image.new("RGB", size, (200, 180, 160))
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 10, size[1]), fill=(10, 10, 10))
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80, exif=exif)
    return out.getvalue()


def test_a_48_mp_phone_jpeg_is_decoded_scaled_and_keeps_its_size():
    data = phone_jpeg(orientation=6)  # stored landscape, upright portrait
    out = images.process_image(data)
    assert (out.width, out.height) == (6000, 8000)  # the file's size, upright, not the scaled decode's
    assert out.original == data
    with Image.open(io.BytesIO(out.public_jpeg)) as public:
        assert public.size == (1920, 2560)
        assert public.getpixel((960, 50))[0] < 40  # the dark stored left edge is now on top
    assert images.verify_image(data) == "image/jpeg"


def test_a_huge_jpeg_cut_short_or_a_huge_png_is_still_refused():
    data = phone_jpeg()
    for bad, message in ((data[: len(data) // 2], images.NOT_AN_IMAGE), (png_bomb(7000, 7000), images.TOO_MANY_PIXELS)):
        with pytest.raises(images.ImageRejected) as exc:
            images.process_image(bad)
        assert str(exc.value) == message


def _stripes() -> bytes:
    image = Image.new("RGB", (200, 100), "white")
    for x in range(0, 200, 20):
        image.paste((0, 0, 0), (x, 0, x + 10, 100))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_redact_blurs_the_box_only():
    public = images.process_image(_stripes()).public_jpeg
    out = images.redact(public, (0.0, 0.0, 0.5, 1.0))
    with Image.open(io.BytesIO(public)) as before, Image.open(io.BytesIO(out)) as after:
        left_before = [before.getpixel((x, 50)) for x in range(0, 90)]
        left_after = [after.getpixel((x, 50)) for x in range(0, 90)]
        # the stripes are gone on the left, still there on the right
        assert max(p[0] for p in left_before) - min(p[0] for p in left_before) > 150
        assert max(p[0] for p in left_after) - min(p[0] for p in left_after) < 80
        right = [after.getpixel((x, 50))[0] for x in range(120, 200)]
        assert max(right) - min(right) > 150


def test_redact_refuses_a_box_outside_the_picture():
    public = images.process_image(jpeg_bytes()).public_jpeg
    with pytest.raises(images.ServiceError):
        images.redact(public, (1.2, 0, 0.5, 0.5))


def test_files_stay_inside_media_root(app):
    with app.app_context():
        with pytest.raises(ValueError):
            images.media_path("../outside.jpg")
        path = images.write_media("tests/x/y.bin", b"abc")
        assert path.read_bytes() == b"abc" and images.media_root() in path.parents
        images.delete_media("tests/x/y.bin")
        assert not path.exists()
