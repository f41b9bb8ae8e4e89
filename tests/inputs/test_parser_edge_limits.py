"""Edge limits of the input parsers: parser exceptions outside ValueError fail the job at once,
non-finite GeoTIFF numbers are refused, SamplesPerPixel is capped, and a multi-member .nii.gz
is sniffed from its first bytes across members."""

from __future__ import annotations

import asyncio
import gzip
import json
import struct
import tracemalloc
import zlib
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.inputs import formats, parsers
from activities.inputs.activity import InputActivities
from activities.inputs.errors import InputValidationError
from tests.fixtures.validation import request
from tests.inputs.conftest import check
from workers.samples import SAMPLES
from workflows.service_types import ERR_INPUT_TOO_LARGE, ERR_INVALID_INPUT, InputRef

NAN, INF = float("nan"), float("inf")
_CODES = {2: "s", 3: "H", 4: "I", 12: "d"}  # the TIFF field types these tests write

# ----------------------------------------------------------------------------- activity


@pytest.mark.parametrize(
    "error",
    [
        struct.error("unpack requires a buffer of 4 bytes"),
        zlib.error("invalid distance"),
        EOFError("ran out of input"),
    ],  # fmt: skip
    ids=["struct.error", "zlib.error", "EOFError"],
)
def test_parser_errors_outside_value_error_fail_the_job_at_once(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """Every validator wraps its parser today (a mutation fuzz of the samples found no raw
    escape), so a parser is patched to raise: the bytes would raise it on every retry, so the
    job must fail with a non-retryable InvalidInput, not be retried as "unexpected"."""

    def broken(data: bytes) -> parsers.NiftiHeader:
        raise error

    monkeypatch.setattr(parsers, "parse_nifti_header", broken)
    req = request("medical/segment/3d", InputRef(uri=str(SAMPLES["medical/segment/3d"])))
    with pytest.raises(ApplicationError) as exc:  # attempt 1 of UNEXPECTED_ATTEMPTS
        asyncio.run(ActivityEnvironment().run(InputActivities().validate, req))
    assert (exc.value.type, exc.value.non_retryable) == (ERR_INVALID_INPUT, True)
    assert f"input could not be checked: {type(error).__name__}" in exc.value.message


# ----------------------------------------------------------------------------- GeoTIFF


def tiff(tags: dict[int, tuple[int, tuple]], strip: bytes) -> bytes:
    """A little-endian one-page TIFF: `tags` maps tag -> (field type, values); values that do
    not fit the entry's 4 bytes follow the IFD, then the strip (offset/size added here)."""
    tags = {**tags, 273: (4, (0,)), 279: (4, (len(strip),))}
    n = len(tags)
    extra_at = 8 + 2 + 12 * n + 4
    entries, extra = b"", b""
    packed = {}
    for tag, (typ, values) in sorted(tags.items()):
        raw = (values[0].encode() + b"\0" if typ == 2
               else struct.pack(f"<{len(values)}{_CODES[typ]}", *values))  # fmt: skip
        packed[tag] = (typ, len(raw) if typ == 2 else len(values), raw)
    strip_at = extra_at + sum(len(r) for _, _, r in packed.values() if len(r) > 4)
    packed[273] = (4, 1, struct.pack("<I", strip_at))
    for tag, (typ, count, raw) in sorted(packed.items()):
        if len(raw) > 4:
            entries += struct.pack("<HHII", tag, typ, count, extra_at + len(extra))
            extra += raw
        else:
            entries += struct.pack("<HHI", tag, typ, count) + raw.ljust(4, b"\0")
    return b"II*\0" + struct.pack("<IH", 8, n) + entries + b"\0\0\0\0" + extra + strip


def geotiff(bands: int = 6, **geo: tuple[int, tuple]) -> bytes:
    """A 4 x 4 uint8 GeoTIFF of `bands` bands; `geo` overrides its georeferencing tags."""
    tags = {256: (4, (4,)), 257: (4, (4,)), 258: (3, (8,)), 259: (3, (1,)), 262: (3, (1,)),
            277: (3, (bands,)), 278: (4, (4,)),
            33550: (12, (30.0, 30.0, 0.0)), 33922: (12, (0.0, 0.0, 0.0, 5e5, 4e6, 0.0)),
            34735: (3, (1, 1, 0, 2, 1024, 0, 1, 1, 3072, 0, 1, 32633))}  # fmt: skip
    tags.update({int(k[1:]): v for k, v in geo.items()})
    return tiff(tags, bytes(16 * bands))


def test_geotiff_details_are_strict_json_with_a_nan_nodata() -> None:
    """GDAL_NODATA "nan" is the usual nodata of a float raster: accepted, and left out of
    details, which stay strict JSON."""
    _, _, details = check(geotiff(t42113=(2, ("nan",))), "geospatial/classify")
    assert details["geo"]["pixel_scale"] == [30.0, 30.0, 0.0] and details["geo"]["epsg"] == 32633
    json.dumps(details, allow_nan=False)


@pytest.mark.parametrize(
    ("tag", "typ", "values", "name"),
    [
        ("t33550", 12, (NAN, 30.0, 0.0), "ModelPixelScale (33550) value 1 of 3 is nan"),
        ("t33922", 12, (0.0, 0.0, 0.0, 5e5, INF, 0.0), "ModelTiepoint (33922) value 5 of 6 is inf"),
        ("t34264", 12, (1.0,) * 15 + (-INF,), "ModelTransformation (34264) value 16 of 16 is -inf"),
        ("t34736", 12, (6378137.0, NAN), "GeoDoubleParams (34736) value 2 of 2 is nan"),
    ],
    ids=["pixel_scale", "tiepoint", "transformation", "double_params"],
)
def test_geotiff_non_finite_georeferencing_is_refused(
    tag: str, typ: int, values: tuple, name: str
) -> None:
    """A NaN or infinite scale, tie point, transformation or CRS parameter places the scene
    nowhere (and reached details as NaN, which strict JSON refuses)."""
    with pytest.raises(InputValidationError) as exc:
        check(geotiff(**{tag: (typ, values)}), "geospatial/classify")
    assert exc.value.type == ERR_INVALID_INPUT
    assert f"GeoTIFF {name}; georeferencing needs finite numbers" in exc.value.message


# ----------------------------------------------------------------------------- SamplesPerPixel


def test_tiff_huge_samples_per_pixel_is_refused_in_bounded_memory() -> None:
    """SamplesPerPixel 65,535 (with as many BitsPerSample values) passed validation as a
    65,535-band scene: the model server's reader refuses more than TIFF_MAX_READ_BANDS, after
    the model was warmed and billed."""
    spp = 65_535
    data = geotiff(bands=1, t277=(3, (spp,)), t258=(3, (8,) * spp))
    tracemalloc.start()
    try:
        with pytest.raises(InputValidationError) as exc:
            check(data, "geospatial/classify")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak
    assert exc.value.type == ERR_INPUT_TOO_LARGE
    assert "65,535 bands (SamplesPerPixel); at most 512 are accepted" in exc.value.message
    ok = formats.validate_tiff(geotiff(bands=parsers.TIFF_MAX_READ_BANDS), require_geo=True)
    assert ok["bands"] == parsers.TIFF_MAX_READ_BANDS  # the cap itself is accepted


# ----------------------------------------------------------------------------- gzip prefix


def _nii() -> bytes:
    return gzip.decompress(Path(SAMPLES["medical/segment/3d"]).read_bytes())


def test_nii_gz_whose_first_member_holds_part_of_the_header() -> None:
    """A .nii.gz of two gzip members, the first holding only 100 of the header's 348 bytes:
    gunzip_prefix read the first member only, so it was sniffed as plain application/gzip."""
    nii = _nii()
    two = gzip.compress(nii[:100], mtime=0) + gzip.compress(nii[100:], mtime=0)
    ctype, _, details = check(two, "medical/segment/3d")
    assert (ctype, details["dims"], details["gzipped"]) == ("application/nifti", [32, 32, 16], True)
    assert parsers.parse_nifti_header(two).dims == (32, 32, 16)


def test_gunzip_prefix_across_many_members_and_bounded() -> None:
    """One-byte members are joined; a bomb yields just `n` bytes (nothing more decompressed);
    a cut or corrupt stream yields what came before the damage; non-gzip yields nothing."""
    nii = _nii()
    many = b"".join(gzip.compress(nii[i : i + 1], mtime=0) for i in range(400))
    assert parsers.gunzip_prefix(many, 352) == nii[:352]
    bomb = gzip.compress(bytes(64 << 20), mtime=0)
    tracemalloc.start()
    try:
        assert parsers.gunzip_prefix(bomb, 352) == bytes(352)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 << 10, peak
    first = gzip.compress(nii[:100], mtime=0)
    assert parsers.gunzip_prefix(first + b"\x1f\x8b\x08garbage", 352) == nii[:100]
    assert parsers.gunzip_prefix(b"not gzip at all", 352) == b""
    assert parsers.gunzip_prefix(first, 0) == b""
    assert parsers.gunzip_prefix(first[:-8], 352) == nii[:100]  # cut in the trailer


def test_dicom_cut_inside_an_element_header_in_a_sequence_is_a_format_error() -> None:
    """The one raw struct.error a parser let out (found while checking item 1): a file ending
    inside an explicit-VR element header within an undefined-length sequence item. The
    validator's catch-all turned it into "DICOM is invalid: unpack_from requires a buffer...";
    the stand-ins' `read_dicom_pixels` raised it as it was."""
    ts = b"1.2.840.10008.1.2.1\0"  # explicit VR little endian
    meta = struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", len(ts)) + ts
    sequence = struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    data = bytes(128) + b"DICM" + meta + sequence + item + b"\x08\x00\x10\x00OB\0\0OB"
    with pytest.raises(parsers.FormatError, match="not terminated"):
        parsers.read_dicom_pixels(data)
    with pytest.raises(InputValidationError, match="DICOM is invalid: DICOM sequence or"):
        check(data, "medical/segment")
