"""Content type by magic bytes, never by name."""

from __future__ import annotations

import gzip
import struct

import pytest

from activities.inputs.sniff import normalize, same_format, sniff_content_type
from workers.samples import SAMPLE_CONTENT_TYPES, SAMPLES_DIR
from workers.samples import make_samples as mk


@pytest.mark.parametrize("name", sorted(SAMPLE_CONTENT_TYPES))
def test_every_sample_sniffs_as_its_type(name: str) -> None:
    assert sniff_content_type((SAMPLES_DIR / name).read_bytes()) == SAMPLE_CONTENT_TYPES[name]


def _nifti_header(byte_order: str = "<", magic: bytes = b"n+1\0") -> bytes:
    hdr = bytearray(352)
    struct.pack_into(byte_order + "i", hdr, 0, 348)
    hdr[344:348] = magic
    return bytes(hdr)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "image/png"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 20, "image/jpeg"),
        (b"GIF89a" + b"\0" * 20, "image/gif"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
        (b"RIFF\0\0\0\0WAVEfmt ", "audio/wav"),
        (b"fLaC\0\0\0\x22", "audio/flac"),
        (b"ID3\x04\0\0\0\0\0\0", "audio/mpeg"),
        (b"\xff\xfb\x90\x64" + b"\0" * 10, "audio/mpeg"),  # MPEG-1 layer III frame sync
        (b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom", "video/mp4"),
        (b"\0\0\0\x14ftypqt  \0\0\0\0qt  ", "video/quicktime"),
        (b"\0" * 128 + b"DICM" + b"\0" * 8, "application/dicom"),
        (_nifti_header("<"), "application/nifti"),
        (_nifti_header(">"), "application/nifti"),
        (gzip.compress(_nifti_header("<"), mtime=0), "application/nifti"),
        (gzip.compress(b"just some text", mtime=0), "application/gzip"),
        (b"PK\x03\x04" + b"\0" * 26, "application/zip"),
        (b">sp|P0CG48\nMQIFVKTLTG\n", "text/fasta"),
        (b'  {"problem": "a b c = triangle a b c ? cong a b a b"}', "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b"{not json", "text/plain"),
        (b"MQIFVKTLTGKTITLEV", "text/plain"),
        (b"\x00\x01\x02\x03 binary", None),
        (b"", None),
    ],
)
def test_magic_bytes(data: bytes, expected: str | None) -> None:
    assert sniff_content_type(data) == expected


def test_tiff_with_and_without_geo_tags() -> None:
    plain = mk.tiff_bytes([mk.geotiff_scene(8, geo=False)])
    geo = mk.tiff_bytes([mk.geotiff_scene(8)])
    assert sniff_content_type(plain) == "image/tiff"
    assert sniff_content_type(geo) == "image/geotiff"
    # Any one of the tags is enough: a tie point alone georeferences the raster.
    page = mk.geotiff_scene(8, geo=False)
    page["tags"] = {33922: (12, [0.0, 0.0, 0.0, 1.0, 2.0, 0.0])}
    assert sniff_content_type(mk.tiff_bytes([page])) == "image/geotiff"


def test_a_wav_is_recognised_by_its_bytes() -> None:
    # Sniffing sees only bytes (it has no name parameter, so a WAV named like an image is a
    # WAV); a declared type that disagrees is refused in test_validate.
    wav = mk.wav_bytes([0] * 100)
    assert sniff_content_type(wav) == "audio/wav"


def test_normalize_and_same_format() -> None:
    assert normalize("Image/JPG; charset=binary") == "image/jpeg"
    assert normalize("text/x-fasta") == "text/fasta"
    assert normalize("audio/x-wav") == "audio/wav"
    assert same_format("application/octet-stream", "image/png")
    assert same_format(None, "image/png")
    assert same_format("text/plain", "text/fasta")
    assert same_format("image/tiff", "image/geotiff")
    assert not same_format("image/geotiff", "image/tiff")  # georeferencing was promised
    assert not same_format("image/png", "audio/wav")
