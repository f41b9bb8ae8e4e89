"""Regression tests for inputs a seeded mutation fuzzer found: each one made a validator (or a
stand-in reader) raise something other than its documented error, do unbounded work, or refuse a
valid file. Every reproducer is built here, minimal."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import zlib

import pytest

from activities.inputs import formats, parsers
from activities.inputs.errors import InputValidationError
from activities.inputs.parsers import FormatError, FormatLimitError
from tests.inputs.conftest import check
from workers.samples import SAMPLES
from workflows.service_types import ERR_INVALID_INPUT

MiB = 1 << 20

# ----------------------------------------------------------------------------- TIFF


def tiff(entries: list[tuple[int, int, int, bytes]], data: bytes = bytes(16)) -> bytes:
    """A little-endian TIFF with one IFD of (tag, type, count, 4-byte value field) entries plus
    a strip (`data`) at the end; StripOffsets/StripByteCounts are added unless given."""
    tags = {e[0] for e in entries}
    n = len(entries) + (273 not in tags) + (279 not in tags)
    data_at = 8 + 2 + 12 * n + 4
    rows = list(entries)
    if 273 not in tags:
        rows.append((273, 4, 1, struct.pack("<I", data_at)))
    if 279 not in tags:
        rows.append((279, 4, 1, struct.pack("<I", len(data))))
    rows.sort()
    ifd = b"".join(struct.pack("<HHI", t, typ, c) + v.ljust(4, b"\0") for t, typ, c, v in rows)
    return b"II*\0" + struct.pack("<IH", 8, n) + ifd + b"\0\0\0\0" + data


def short(v: int) -> bytes:
    return struct.pack("<H", v)


def long(v: int) -> bytes:
    return struct.pack("<I", v)


def basic(width: int = 4, height: int = 4, **over: tuple[int, int, bytes]) -> list:
    """Entries of a valid 8-bit grayscale image; `over` replaces tags: {"t259": (type, count,
    value)}."""
    entries = {256: (4, 1, long(width)), 257: (4, 1, long(height)), 258: (3, 1, short(8)),
               259: (3, 1, short(1)), 262: (3, 1, short(1)), 277: (3, 1, short(1)),
               278: (4, 1, long(height))}  # fmt: skip
    for key, value in over.items():
        entries[int(key[1:])] = value
    return [(t, typ, c, v) for t, (typ, c, v) in entries.items()]


def tiff_refused(data: bytes, *, require_geo: bool = False) -> str:
    with pytest.raises(InputValidationError) as exc:
        formats.validate_tiff(data, require_geo=require_geo)
    assert exc.value.type == ERR_INVALID_INPUT, exc.value.message
    return exc.value.message


def test_tiff_sample_is_still_valid() -> None:
    assert formats.validate_tiff(tiff(basic()), require_geo=False)["width"] == 4


def test_tiff_compression_as_ascii_text_is_malformed_not_a_value_error() -> None:
    """Compression (259) typed ASCII: `int('x')` in validate_tiff raised ValueError."""
    msg = tiff_refused(tiff(basic(t259=(2, 2, b"x\0"))))
    assert "TIFF tag 259 in IFD 0 has field type 2" in msg


def test_tiff_new_subfile_type_nan_is_malformed() -> None:
    """NewSubfileType (254) as FLOAT NaN: `int(nan)` raised ValueError after the parse."""
    entries = basic() + [(254, 11, 1, struct.pack("<f", float("nan")))]
    assert "TIFF tag 254 in IFD 0 has field type 11" in tiff_refused(tiff(entries))


def test_tiff_sample_format_inf_is_malformed() -> None:
    """SampleFormat (339) as DOUBLE inf (value outside the entry): OverflowError before."""
    entries = basic() + [(339, 12, 1, long(200))]
    data = bytearray(tiff(entries, bytes(16) + bytes(200)))
    struct.pack_into("<d", data, 200, float("inf"))
    assert "TIFF tag 339 in IFD 0 has field type 12" in tiff_refused(bytes(data))


def test_tiff_width_as_text_is_malformed() -> None:
    """ImageWidth (256) typed ASCII: parse_tiff itself raised ValueError, not FormatError."""
    data = tiff(basic(t256=(2, 2, b"@\0")))
    with pytest.raises(FormatError, match="tag 256 in IFD 0 has field type 2"):
        parsers.parse_tiff(data)


def test_geotiff_pixel_scale_as_text_is_malformed() -> None:
    """ModelPixelScale (33550) typed ASCII: `float('.U')` in TiffPage.geo() raised ValueError."""
    data = tiff(basic() + [(33550, 2, 3, b".U\0")])
    msg = tiff_refused(data, require_geo=True)
    assert "TIFF tag 33550 in IFD 0 is ASCII text" in msg


def test_tiff_negative_strip_offset_is_malformed() -> None:
    """StripOffsets as SLONG -100: passed the 'inside the file' check (-100 + 16 <= size)."""
    msg = tiff_refused(tiff(basic(t273=(9, 1, struct.pack("<i", -100)))))
    assert "negative offset" in msg


def test_read_tiff_bands_refuses_a_huge_band_count() -> None:
    """600 samples per pixel: 600 band lists of max_pixels floats were allocated before any
    data was read (65,535 bands: gigabytes)."""
    data = tiff(basic(t277=(3, 1, short(600))))
    with pytest.raises(FormatLimitError, match="600 samples per pixel"):
        parsers.read_tiff_bands(data, max_pixels=4096)


def test_read_tiff_bands_keeps_at_most_max_pixels_of_a_tall_page() -> None:
    """1 x 4,000,000 pixels: the square-root step kept 125,000 pixels for max_pixels=4096."""
    strip = zlib.compress(bytes(4_000_000), 9)
    data = tiff(basic(1, 4_000_000, t259=(3, 1, short(8))), strip)
    w, h, bands = parsers.read_tiff_bands(data, max_pixels=4096)
    assert w * h <= 4096
    assert len(bands) == 1 and len(bands[0]) == w * h


def test_read_tiff_bands_does_not_inflate_a_deflate_bomb() -> None:
    """A 4 x 4 image whose strip inflates to 64 MB: zlib.decompress held it all before."""
    strip = zlib.compress(bytes(64 * MiB), 9)
    data = tiff(basic(t259=(3, 1, short(8))), strip)
    tracemalloc.start()
    try:
        w, h, bands = parsers.read_tiff_bands(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (w, h) == (4, 4) and bands == [[0.0] * 16]
    assert peak < 8 * MiB, peak


# ----------------------------------------------------------------------------- DICOM


def test_read_dicom_pixels_pixel_representation_as_text() -> None:
    """(0028,0103) as CS 'x': `int('x')` in read_dicom_pixels raised ValueError."""
    dcm = SAMPLES["medical/segment"].read_bytes()
    element = b"\x28\x00\x03\x01US\x02\x00"
    at = dcm.index(element)
    broken = dcm[:at] + b"\x28\x00\x03\x01CS\x02\x00x " + dcm[at + len(element) + 2 :]
    with pytest.raises(FormatError, match="PixelRepresentation"):
        parsers.read_dicom_pixels(broken)
    assert formats.validate_dicom(broken)["rows"] == 64  # the validator does not need it


# ----------------------------------------------------------------------------- JSON


def test_json_integer_too_long_to_convert() -> None:
    """An integer of 5,000 digits: json.loads raised a plain ValueError (not JSONDecodeError);
    sniffing called the input text/plain and load_json_object let the ValueError out."""
    data = b'{"problem": 1' + b"1" * 5000 + b"}"
    with pytest.raises(InputValidationError, match="a number is too long"):
        formats.load_json_object(data)
    with pytest.raises(InputValidationError, match="a number is too long"):
        check(data, "scientific/geometry/solve")


def test_render_size_true_is_not_an_integer() -> None:
    data = b'{"scene_ref": "s", "camera": {}, "width": true}'
    with pytest.raises(InputValidationError, match="must be integers in 1..4096"):
        formats.validate_render_request(data)


# ----------------------------------------------------------------------------- WAV


def test_wav_format_extensible_pcm_is_accepted() -> None:
    """WAVE_FORMAT_EXTENSIBLE PCM: the layout reads its sub-format, but the stdlib `wave`
    cross-check (Python < 3.12) refused it as 'unknown format: 65534'."""
    guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = (struct.pack("<HHIIHH", 0xFFFE, 1, 16000, 32000, 2, 16)
           + struct.pack("<HHI", 22, 16, 4) + struct.pack("<H", 1) + guid_tail)  # fmt: skip
    pcm = bytes(32000)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data"
            + struct.pack("<I", len(pcm)) + pcm)  # fmt: skip
    wav = b"RIFF" + struct.pack("<I", len(body)) + body
    details = formats.validate_wav(wav)
    assert (details["encoding"], details["frames"], details["duration_s"]) == ("pcm", 16000, 1.0)


# ----------------------------------------------------------------------------- MP4


def _box(typ: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), typ) + payload


def test_mp4_deeply_nested_boxes_are_refused_by_a_depth_limit() -> None:
    """3,000 nested 'mdia' boxes (24 KB): the walk recursed until RecursionError."""
    inner = b""
    for _ in range(3000):
        inner = _box(b"mdia", inner)
    data = _box(b"ftyp", b"isom\0\0\0\0isom") + _box(b"moov", _box(b"trak", inner))
    with pytest.raises(InputValidationError, match="nest more than 32 levels"):
        formats.validate_mp4(data)


def test_mp4_esds_cut_at_the_end_of_the_file() -> None:
    """An 'esds' whose ES_Descriptor ends the file: its flags byte was read past the end
    (IndexError, reported as 'MP4 is malformed: index out of range')."""
    esds = _box(b"esds", b"\0\0\0\0" + b"\x03\x05")
    entry = _box(b"mp4v", bytes(78) + esds)
    stsd = _box(b"stsd", b"\0\0\0\0" + struct.pack(">I", 1) + entry)
    hdlr = _box(b"hdlr", b"\0" * 8 + b"vide" + b"\0" * 12)
    trak = _box(b"trak", _box(b"mdia", hdlr + _box(b"minf", _box(b"stbl", stsd))))
    data = _box(b"ftyp", b"isom\0\0\0\0isom") + _box(b"moov", trak)
    track = parsers.parse_mp4(data).tracks[0]
    assert (track.codec, track.object_type) == ("mp4v", None)
    with pytest.raises(InputValidationError) as exc:
        formats.validate_mp4(data)
    assert exc.value.message == "MP4 video track has no frames"


# ----------------------------------------------------------------------------- NIfTI


def test_nifti_gz_of_two_gzip_members_is_read_whole() -> None:
    """A .nii.gz written as two gzip members (valid gzip: pigz, bgzip, concatenation): only the
    first member was counted, so the volume was refused as truncated."""
    nii = gzip.decompress(SAMPLES["medical/segment/3d"].read_bytes())
    two = gzip.compress(nii[:352], mtime=0) + gzip.compress(nii[352:], mtime=0)
    assert formats.validate_nifti(two, min_dims=3)["dims"] == [32, 32, 16]
    hdr, voxels = parsers.read_nifti(two)
    assert len(voxels) == 32 * 32 * 16
    with pytest.raises(InputValidationError, match="truncated"):  # a cut second member
        formats.validate_nifti(two[:-30], min_dims=3)
