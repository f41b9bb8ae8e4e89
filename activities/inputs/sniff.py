"""Content type from the bytes alone (magic numbers), never from a file name or a declared type.

`sniff_content_type(data)` returns a media type or None when nothing matches. Text formats are
recognised last and only when the whole input is valid UTF-8: FASTA (first line starts with `>`),
JSON (parses as JSON), else text/plain.

Stdlib only (shared with the model-server stand-ins).
"""

from __future__ import annotations

import json
import struct

from activities.inputs.parsers import (
    NIFTI_HEADER_SIZE,
    gunzip_prefix,
    nifti_byte_order,
    tiff_first_page_tags,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Declared types that name the same format as the canonical type `sniff_content_type` returns.
ALIASES: dict[str, str] = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/tif": "image/tiff",
    "image/x-tiff": "image/tiff",
    "audio/wave": "audio/wav",
    "audio/x-wav": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-flac": "audio/flac",
    "audio/mp3": "audio/mpeg",
    "audio/x-mpeg": "audio/mpeg",
    "text/x-fasta": "text/fasta",
    "application/x-fasta": "text/fasta",
    "application/x-nifti": "application/nifti",
    "application/x-nifti-1": "application/nifti",
    "application/dicom+octet-stream": "application/dicom",
    "application/x-zip-compressed": "application/zip",
    "text/json": "application/json",
    "application/x-gzip": "application/gzip",
}

# Declared types that say nothing about the format (clients send them by default).
NON_SPECIFIC = {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}
TEXT_TYPES = {"text/fasta", "application/json", "text/plain"}


def normalize(content_type: str | None) -> str:
    """Lower-case type without parameters, aliases resolved: 'Image/JPG; q=1' -> image/jpeg."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    return ALIASES.get(base, base)


def same_format(declared: str | None, sniffed: str) -> bool:
    """Does a declared type agree with the sniffed one? Non-specific declarations always do;
    text/plain agrees with any text format; image/tiff and image/geotiff name one container."""
    d = normalize(declared)
    if d in NON_SPECIFIC or d == sniffed:
        return True
    if d == "text/plain" and sniffed in TEXT_TYPES:
        return True
    return {d, sniffed} <= {"image/tiff", "image/geotiff"} and sniffed == "image/geotiff"


def _mp3_frame(data: bytes) -> bool:
    if len(data) < 4 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return False
    version, layer = (data[1] >> 3) & 3, (data[1] >> 1) & 3
    bitrate, rate = data[2] >> 4, (data[2] >> 2) & 3
    return version != 1 and layer != 0 and bitrate not in (0, 15) and rate != 3


def _nifti(head: bytes) -> bool:
    return (
        len(head) >= NIFTI_HEADER_SIZE
        and nifti_byte_order(head) is not None
        and head[344:348] in (b"n+1\0", b"ni1\0")
    )


def _ftyp(data: bytes) -> str | None:
    if len(data) < 12 or data[4:8] != b"ftyp":
        return None
    brand = data[8:12]
    compat = {data[i : i + 4] for i in range(16, min(len(data), struct.unpack(">I", data[:4])[0]),
                                                   4)}  # fmt: skip
    if brand == b"qt  ":
        return "video/quicktime"
    if brand in (b"M4A ", b"M4B ", b"M4P "):
        return "audio/mp4"
    if brand in (b"avif", b"avis"):
        return "image/avif"
    if brand in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis"):
        return "image/heic"
    if b"qt  " in compat and brand not in (b"isom", b"mp41", b"mp42"):
        return "video/quicktime"
    return "video/mp4"


def sniff_content_type(data: bytes) -> str | None:
    """The media type the bytes are, by magic number; None when no supported format matches."""
    if not data:
        return None
    head = data[:16]
    if head.startswith(PNG_MAGIC):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        page = tiff_first_page_tags(data)
        return "image/geotiff" if page is not None and page.georeferenced else "image/tiff"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "application/dicom"
    if _nifti(data[: NIFTI_HEADER_SIZE + 4]):
        return "application/nifti"
    if head[:2] == b"\x1f\x8b":
        return "application/nifti" if _nifti(gunzip_prefix(data, 352)) else "application/gzip"
    if head[:4] == b"fLaC":
        return "audio/flac"
    if head[:3] == b"ID3" or _mp3_frame(head):
        return "audio/mpeg"
    if head[:4] == b"OggS":
        return "audio/ogg"
    kind = _ftyp(data)
    if kind:
        return kind
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "application/zip"
    if head[:4] == b"%PDF":
        return "application/pdf"
    return _sniff_text(data)


def _sniff_text(data: bytes) -> str | None:
    if b"\0" in data[:8192]:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    stripped = text.lstrip()
    first = next((ln.strip() for ln in stripped.splitlines()
                  if ln.strip() and not ln.lstrip().startswith(";")), "")  # fmt: skip
    if first.startswith(">"):
        return "text/fasta"
    if stripped[:1] in ("{", "["):
        try:
            json.loads(stripped)
        except json.JSONDecodeError:
            return "text/plain"
        except (RecursionError, ValueError):  # too deep, or an integer too long to convert:
            return "application/json"  # JSON-shaped all the same; the validator says what is wrong
        return "application/json"
    return "text/plain"
