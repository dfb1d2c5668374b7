"""Untrusted images: verify, fix orientation, re-encode, strip metadata, thumbnail, redact; and their files.

General on purpose (tips today, officers' photos later): nothing here knows what the image is for. Every image is
checked before anything is written; a refusal is an `ImageRejected` with a message a citizen can act on.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from server.services import ServiceError

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # decoded at once, at most (memory)
# A JPEG from a 48/50/108/200 MP phone camera is decoded DCT-scaled (1/2, 1/4, 1/8) to within MAX_PIXELS: the
# original keeps every pixel, the copies people see are far smaller anyway.
MAX_JPEG_PIXELS = 200_000_000
PUBLIC_MAX_SIDE = 2560  # the copy people look at; the original keeps every pixel for evidence
THUMB_SIDE = 360
JPEG_QUALITY = 85
ALLOWED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}

# Pillow's own bomb guard fires at our limit too (a warning above it, an error above twice it), before decoding.
Image.MAX_IMAGE_PIXELS = MAX_JPEG_PIXELS

TOO_BIG = f"照片不能超过 {MAX_BYTES // (1024 * 1024)} MB，请压缩后重新上传"
TOO_MANY_PIXELS = f"照片尺寸过大（超过 {MAX_PIXELS // 1_000_000} 百万像素），请缩小后重新上传"
NOT_AN_IMAGE = "文件不是有效的图片（支持 JPG、PNG、WEBP、GIF），或图片已损坏，请重新拍摄或选择"
EMPTY = "照片文件是空的，请重新选择"


class ImageRejected(ServiceError):
    """The bytes are not an image we accept; the message says why, in Chinese."""


@dataclass(frozen=True)
class ProcessedImage:
    original: bytes  # exactly as received: evidence
    sha256: str
    mime: str
    width: int  # after orientation is fixed
    height: int
    public_jpeg: bytes  # re-encoded, no EXIF (so no GPS), orientation applied
    thumb_jpeg: bytes


def _open_checked(data: bytes) -> Image.Image:
    """Open and fully decode `data`, or raise ImageRejected; never more than MAX_PIXELS are decoded (a larger JPEG
    is decoded DCT-scaled, so the picture returned may be smaller than the file's)."""
    if not data:
        raise ImageRejected(EMPTY)
    if len(data) > MAX_BYTES:
        raise ImageRejected(TOO_BIG)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit at all: refuse
            with Image.open(io.BytesIO(data)) as probe:
                if probe.format not in ALLOWED_FORMATS:
                    raise ImageRejected(NOT_AN_IMAGE)
                pixels = probe.width * probe.height
                if pixels > (MAX_JPEG_PIXELS if probe.format == "JPEG" else MAX_PIXELS):
                    raise ImageRejected(TOO_MANY_PIXELS)
                probe.verify()  # structure and checksums (PNG CRCs); the object is unusable afterwards
            image = Image.open(io.BytesIO(data))  # verify() consumed the first one: reopen to decode
            if pixels > MAX_PIXELS:  # a JPEG: the whole stream is still read, so a truncated body still fails
                image.draft("RGB", fit_draft(image.size))
            image.load()  # a truncated or corrupt body fails here, not later in a worker
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(TOO_MANY_PIXELS) from None
    except ImageRejected:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise ImageRejected(NOT_AN_IMAGE) from exc
    return image


def draft_scale(size: tuple[int, int], want: float = 1.0) -> float:
    """The JPEG DCT scale (1, 1/2, 1/4, 1/8) at or above `want` whose decode stays within MAX_PIXELS (the largest
    that does, when `want` would not)."""
    scale = 1.0
    while scale > 1 / 8 and (size[0] * scale) * (size[1] * scale) > MAX_PIXELS:
        scale /= 2
    return min(scale, max(want, 1 / 8))


def fit_draft(size: tuple[int, int], want: float = 1.0) -> tuple[int, int]:
    """The size to ask Image.draft() for: it picks the smallest DCT scale that is at least this big."""
    scale = draft_scale(size, want)
    return math.ceil(size[0] * scale), math.ceil(size[1] * scale)


def verify_image(data: bytes) -> str:
    """Check that `data` is a whole, acceptable image; returns its MIME type."""
    with _open_checked(data) as image:
        return ALLOWED_FORMATS[image.format or ""]


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))  # JPEG has no alpha: transparent becomes white
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def _jpeg(image: Image.Image, *, quality: int = JPEG_QUALITY) -> bytes:
    out = io.BytesIO()
    # No exif= argument: Pillow writes no EXIF block, so GPS, camera serials and times stay out of the copy.
    image.save(out, "JPEG", quality=quality, optimize=True, progressive=True)
    return out.getvalue()


def _upright_rgb(data: bytes) -> tuple[str, Image.Image]:
    """Verify `data`; its MIME type and its picture, upright and in RGB."""
    with _open_checked(data) as opened:
        mime = ALLOWED_FORMATS[opened.format or ""]
        if getattr(opened, "n_frames", 1) > 1:
            opened.seek(0)  # animations: the first frame is the picture
        return mime, _to_rgb(ImageOps.exif_transpose(opened))


def upright_jpeg(data: bytes, max_side: int) -> bytes:
    """Verify `data`; a JPEG of it, upright, without metadata, at most `max_side` pixels on its long edge."""
    _, rgb = _upright_rgb(data)
    rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return _jpeg(rgb)


def process_image(data: bytes) -> ProcessedImage:
    """Verify `data`, then derive the public copy and thumbnail (upright, JPEG, without metadata)."""
    mime, rgb = _upright_rgb(data)
    with Image.open(io.BytesIO(data)) as probe:  # the file's own size (a large JPEG was decoded DCT-scaled)
        width, height = probe.size if (probe.width > probe.height) == (rgb.width > rgb.height) else probe.size[::-1]
    public = rgb.copy()
    public.thumbnail((PUBLIC_MAX_SIDE, PUBLIC_MAX_SIDE), Image.Resampling.LANCZOS)
    thumb = rgb.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    return ProcessedImage(
        original=data,
        sha256=hashlib.sha256(data).hexdigest(),
        mime=mime,
        width=width,
        height=height,
        public_jpeg=_jpeg(public),
        thumb_jpeg=_jpeg(thumb, quality=75),
    )


def redact(jpeg: bytes, box: tuple[float, float, float, float]) -> bytes:
    """Blur a rectangle (x, y, width, height as fractions 0–1 of the picture) beyond recognition; a new JPEG."""
    x, y, w, h = box
    if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1):
        raise ServiceError("遮挡区域超出图片范围")
    with _open_checked(jpeg) as opened:
        image = _to_rgb(opened)
    left, top = int(x * image.width), int(y * image.height)
    right, bottom = min(image.width, int((x + w) * image.width) + 1), min(image.height, int((y + h) * image.height) + 1)
    if right - left < 2 or bottom - top < 2:
        raise ServiceError("遮挡区域太小")
    region = image.crop((left, top, right, bottom))
    # Pixelate, then blur: a plain blur of a small face or plate can sometimes be reversed; blocks cannot.
    small = region.resize((max(1, region.width // 24), max(1, region.height // 24)), Image.Resampling.BILINEAR)
    region = small.resize(region.size, Image.Resampling.NEAREST).filter(ImageFilter.GaussianBlur(8))
    image.paste(region, (left, top))
    return _jpeg(image)


# -- files under MEDIA_ROOT ----------------------------------------------------------------------------------------


def media_root() -> Path:
    return Path(current_app.config["MEDIA_ROOT"]).resolve()


def media_path(relative: str, under: str = "") -> Path:
    """The absolute path of a stored file; refuses anything that would leave MEDIA_ROOT (or its folder `under`)."""
    root = (media_root() / under).resolve()
    path = (media_root() / relative).resolve()
    if root not in path.parents:
        raise ValueError("path outside MEDIA_ROOT")
    return path


def write_media(relative: str, data: bytes) -> Path:
    """Write atomically (temp file + rename): a reader never sees half a file, a crash leaves no torn one."""
    path = media_path(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def delete_media(*relatives: str | None) -> None:
    for relative in relatives:
        if relative:
            try:
                media_path(relative).unlink(missing_ok=True)
            except ValueError:
                pass


def original_path_for(sha256: str, mime: str) -> str:
    """Originals are stored by content hash: the same evidence uploaded twice is one file."""
    extension = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}[mime]
    return f"originals/{sha256[:2]}/{sha256}.{extension}"
