"""Small hostile files that used to make the validators exhaust memory or escape with a raw
Python error: each is now refused with a clear `InputValidationError`, quickly, in bounded
memory (peak measured with tracemalloc around the check)."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from activities.inputs import formats, parsers
from activities.inputs.errors import InputValidationError
from activities.inputs.parsers import FormatError
from models_catalog.catalog import load_catalog
from tests.inputs.conftest import check
from workflows.service_types import ERR_INPUT_TOO_LARGE, ERR_INVALID_INPUT

MiB = 1 << 20


@pytest.fixture(autouse=True)
def _catalog_loaded() -> None:
    """Load (and cache) the catalog before any measurement, so its parse is not counted."""
    load_catalog()


@contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Peak bytes allocated by Python inside the block (in `box[0]` once it exits)."""
    box = [0]
    tracemalloc.start()
    try:
        yield box
    finally:
        box[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def refused(data: bytes, key: str, type_: str = ERR_INVALID_INPUT) -> str:
    with pytest.raises(InputValidationError) as exc:
        check(data, key)
    assert exc.value.type == type_, exc.value.message
    return exc.value.message


# ----------------------------------------------------------------------------- TIFF

_BASIC = [(256, 3, 1, 4), (257, 3, 1, 4), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
          (277, 3, 1, 1), (278, 3, 1, 4)]  # fmt: skip


def tiff(extra: list[tuple[int, int, int]], blob: int) -> bytes:
    """A valid 4 x 4 8-bit TIFF plus `extra` (tag, type, count) entries whose values all point
    at one shared zero blob of `blob` bytes."""
    n = len(_BASIC) + 2 + len(extra)
    blob_at = 8 + 2 + 12 * n + 4
    entries = [struct.pack("<HHIHH", t, typ, c, v, 0) for t, typ, c, v in _BASIC]
    entries += [
        struct.pack("<HHII", 273, 4, 1, blob_at + blob),
        struct.pack("<HHII", 279, 4, 1, 16),
    ]
    entries += [struct.pack("<HHII", t, typ, c, blob_at) for t, typ, c in extra]
    entries.sort(key=lambda e: struct.unpack_from("<H", e)[0])
    return (b"II*\0" + struct.pack("<IH", 8, n) + b"".join(entries) + b"\0\0\0\0"
            + bytes(blob) + bytes(16))  # fmt: skip


def test_tiff_private_tags_sharing_one_blob_are_not_materialized() -> None:
    """200 private tags x one 100 KB blob (a 102 KB file): 160 MB of tuples before."""
    data = tiff([(40000 + i, 1, 100_000) for i in range(200)], 100_000)
    assert len(data) < 110_000
    with peak_memory() as peak:
        details = formats.validate_tiff(data, require_geo=False)
    assert (details["width"], details["height"]) == (4, 4)
    assert peak[0] < 16 * MiB, peak[0]
    assert not any(t >= 40000 for t in parsers.parse_tiff(data).pages[0].tags)


def test_tiff_values_read_in_all_are_capped() -> None:
    """A tag that is read (GDAL_NODATA), repeated 200 times over one 100 KB blob: 20 MB to read."""
    data = tiff([(parsers.TAG_GDAL_NODATA, 2, 100_000)] * 200, 100_000)
    with peak_memory() as peak, pytest.raises(InputValidationError) as exc:
        formats.validate_tiff(data, require_geo=False)
    assert exc.value.type == ERR_INPUT_TOO_LARGE
    assert "TIFF tag values to read exceed 16,777,216 bytes (at tag 42113" in exc.value.message
    assert peak[0] < 64 * MiB, peak[0]


def test_tiff_values_of_one_tag_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsers, "TIFF_MAX_TAG_VALUES", 4096)
    data = tiff([(parsers.TAG_GDAL_NODATA, 2, 5000)], 5000)
    with pytest.raises(InputValidationError) as exc:
        formats.validate_tiff(data, require_geo=False)
    assert exc.value.type == ERR_INPUT_TOO_LARGE
    assert "tag 42113 in IFD 0 has 5,000 values; at most 4,096 are read per tag" in str(exc.value)


# ----------------------------------------------------------------------------- MP4


def _box(typ: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), typ) + payload


def mp4(count: int, size: int, mdat: bytes) -> bytes:
    """One video track of `count` samples of `size` bytes, all in one chunk at mdat's start."""

    def build(chunk_at: int) -> bytes:
        stsz = _box(b"stsz", b"\0\0\0\0" + struct.pack(">II", size, count))
        stco = _box(b"stco", b"\0\0\0\0" + struct.pack(">II", 1, chunk_at))
        stsc = _box(b"stsc", b"\0\0\0\0" + struct.pack(">IIII", 1, 1, count, 1))
        hdlr = _box(b"hdlr", b"\0" * 8 + b"vide" + b"\0" * 12)
        trak = _box(b"trak", _box(b"mdia", hdlr + _box(b"minf", _box(b"stbl", stsz + stco + stsc))))
        mvhd = _box(b"mvhd", b"\0" * 12 + struct.pack(">II", 1000, 1000) + b"\0" * 80)
        return _box(b"ftyp", b"isom\0\0\0\0isom") + _box(b"moov", mvhd + trak)

    head = build(0)
    return build(len(head) + 8) + _box(b"mdat", mdat)


def test_mp4_sample_count_beyond_the_file_is_refused() -> None:
    """2M fixed-size samples declared in a 277-byte file: a 2M list and 2M tuples before."""
    data = mp4(2_000_000, 1, b"x")
    assert len(data) < 300
    with peak_memory() as peak:
        msg = refused(data, "reconstruction/nerf")
    assert msg == (
        "MP4 is malformed: MP4 sample size table declares 2,000,000 samples of 1 bytes, more "
        "than the whole file (277 bytes): malformed or truncated"
    )
    assert peak[0] < 64 * MiB, peak[0]


def test_mp4_many_real_samples_need_no_per_sample_list() -> None:
    """200,000 one-byte frames that are really there: counted, last one located, no list."""
    data = mp4(200_000, 1, bytes(200_000))
    with peak_memory() as peak:
        details = check(data, "reconstruction/nerf")[2]
    assert details["frames"] == 200_000
    assert peak[0] < 4 * MiB, peak[0]
    assert "truncated" in refused(mp4(200_000, 1, bytes(199_999)), "reconstruction/nerf")


def test_mp4_sample_table_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsers, "MP4_MAX_SAMPLES", 1000)
    msg = refused(mp4(2000, 1, bytes(2000)), "reconstruction/nerf", ERR_INPUT_TOO_LARGE)
    assert msg.endswith("sample size table has 2,000 entries; at most 1,000 are read per track")


# ----------------------------------------------------------------------------- NIfTI


def nifti_gz(vox_offset: float, dims: tuple[int, ...] = (2, 2, 2), zeros: int = 0) -> bytes:
    """A uint8 .nii.gz: 352-byte header, then `zeros` zero bytes (compressed)."""
    h = bytearray(352)
    struct.pack_into("<i", h, 0, 348)
    struct.pack_into("<8h", h, 40, len(dims), *dims, *([1] * (7 - len(dims))))
    struct.pack_into("<hh", h, 70, 2, 8)
    struct.pack_into("<8f", h, 76, *([1.0] * 8))
    struct.pack_into("<f", h, 108, vox_offset)
    h[344:348] = b"n+1\0"
    co = zlib.compressobj(6, zlib.DEFLATED, 31)
    out = [co.compress(bytes(h))]
    chunk = bytes(MiB)
    for start in range(0, zeros, MiB):
        out.append(co.compress(chunk[: min(MiB, zeros - start)]))
    return b"".join([*out, co.flush()])


def test_nifti_vox_offset_too_large_for_a_c_integer_is_refused() -> None:
    msg = refused(nifti_gz(1e30), "medical/segment")  # was a raw OverflowError
    assert msg.startswith(
        "NIfTI header is invalid: NIfTI vox_offset 1000000015047466219876688855040 is beyond "
        "the 268,435,456 bytes accepted for the header and its extensions"
    )


def test_nifti_huge_vox_offset_is_refused_without_decompressing() -> None:
    """vox_offset 1e18 over 48 MiB of compressed zeros (~50 KB): all of it inflated before."""
    data = nifti_gz(1e18, zeros=48 * MiB)
    assert len(data) < 100_000
    with peak_memory() as peak:
        msg = refused(data, "medical/segment")
    assert "vox_offset 999999984306749440 is beyond" in msg
    assert peak[0] < 16 * MiB, peak[0]


def test_nifti_gz_volume_is_counted_not_held() -> None:
    """A valid 48 MiB volume in ~50 KB of gzip: checked in one-piece memory, not 2 x 48 MiB."""
    dims = (256, 256, 768)
    data = nifti_gz(352.0, dims, zeros=256 * 256 * 768)
    with peak_memory() as peak:
        details = check(data, "medical/segment/3d")[2]
    assert details["dims"] == list(dims)
    assert peak[0] < 16 * MiB, peak[0]


def test_nifti_gz_that_cannot_hold_its_volume_is_refused_at_once() -> None:
    msg = refused(nifti_gz(352.0, (1000, 1000, 500)), "medical/segment/3d")
    assert msg.startswith("NIfTI voxel data is truncated: [1000, 1000, 500] uint8 needs "
                          "500,000,352 bytes from offset 352, more than a")  # fmt: skip


# ----------------------------------------------------------------------------- DICOM


def _el(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW"):
        return (
            struct.pack("<HH", group, elem) + vr + b"\0\0" + struct.pack("<I", len(value)) + value
        )
    return struct.pack("<HH", group, elem) + vr + struct.pack("<H", len(value)) + value


def dicom(rows: bytes = b"\x04\x00", frames: bytes | None = b"1 ", pixels: int = 32,
          bits: bytes | None = None) -> bytes:  # fmt: skip
    """Explicit VR little endian; 4 columns; `pixels` bytes of native pixel data."""
    body = _el(2, 0x10, b"UI", b"1.2.840.10008.1.2.1\0")
    if frames is not None:
        body += _el(0x28, 0x8, b"IS", frames)
    body += _el(0x28, 0x10, b"US", rows) + _el(0x28, 0x11, b"US", b"\x04\x00")
    if bits is not None:
        body += _el(0x28, 0x100, b"US", bits)
    return b"\0" * 128 + b"DICM" + body + _el(0x7FE0, 0x10, b"OW", bytes(pixels))


def test_dicom_valid_native_images_pass() -> None:
    assert check(dicom(), "medical/segment")[2]["frames"] == 1  # 4 x 4 at 16 bits (assumed)
    assert check(dicom(frames=None, pixels=16, bits=b"\x08\x00"), "medical/segment")[2]["rows"] == 4
    assert check(dicom(frames=b"3 ", pixels=96), "medical/segment/3d")[2]["frames"] == 3


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            dicom(rows=b"\x04\x00\x04\x00"),
            "Rows (0028,0010) has 2 values (4\\4); it must be one number",
        ),
        (
            dicom(frames=b"1\\2 "),
            "NumberOfFrames (0028,0008) has 2 values (1\\2); it must be one number",
        ),
        (dicom(frames=b"-5"), "NumberOfFrames (0028,0008) is -5; it must be positive"),
        (dicom(frames=b"0 "), "NumberOfFrames (0028,0008) is 0; it must be positive"),
        (dicom(frames=b"1e999 "), "NumberOfFrames (0028,0008) is empty or not a number"),
        (dicom(bits=b"\x00\x00"), "BitsAllocated (0028,0100) is 0; it must be positive"),
    ],
)
def test_dicom_multi_valued_or_non_positive_dimensions_are_refused(
    data: bytes, expected: str
) -> None:
    assert refused(data, "medical/segment") == f"DICOM is invalid: DICOM {expected}"
    with pytest.raises(FormatError, match="DICOM "):  # the stand-ins' reader too
        parsers.read_dicom_pixels(data)


def test_dicom_native_pixel_data_shorter_than_the_image_is_refused() -> None:
    msg = refused(dicom(frames=b"1000"), "medical/segment/3d")
    assert msg == ("DICOM pixel data is too short: 32 bytes, but 4 x 4 x 1000 frame(s) x 1 "
                   "sample(s) at 16 bits allocated need 32,000")  # fmt: skip
    msg = refused(dicom(frames=None, pixels=15, bits=b"\x08\x00"), "medical/segment")
    assert msg.endswith("15 bytes, but 4 x 4 x 1 frame(s) x 1 sample(s) at 8 bits allocated "
                        "need 16")  # fmt: skip
