"""The pure input check: bytes + operation -> (content type, billable units, details), or an
`InputValidationError` naming the problem. No I/O; the activity reads the bytes first.

Order of checks (the first failure wins, so the message names the most basic problem):
1. empty input;
2. content type sniffed from the bytes (`sniff.sniff_content_type`); a file name is never used;
3. a declared content type that disagrees with the bytes (aliases such as image/jpg,
   text/x-fasta, audio/x-wav agree; application/octet-stream says nothing; text/plain agrees with
   any text format);
4. the sniffed type must be one the operation accepts (services.yaml `content_types`);
5. the format's own validator (decode, structure, limits);
6. units from the operation's unit (see `limits` for the rules).

`check_box` then checks what only the decoded input can tell: that an `options.box` covers
part of the image (the activity calls it with the validator's details).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from activities.inputs import formats
from activities.inputs.errors import invalid
from activities.inputs.limits import audio_minutes, fasta_limits
from activities.inputs.parsers import FormatError
from activities.inputs.sniff import NON_SPECIFIC, normalize, same_format, sniff_content_type

GEO_MIN_BANDS = 6  # Prithvi-100M / Prithvi-EO-2.0 take the 6 HLS bands
GEO_MAX_SCENES = {"change": 2}  # other geospatial operations take one scene

# What a declared type says the bytes should start with, for a clear message when they do not.
_SIGNATURES = {
    "image/png": "PNG signature (89 50 4E 47 0D 0A 1A 0A)",
    "image/jpeg": "JPEG start-of-image marker (FF D8 FF)",
    "image/tiff": "TIFF header (II*\\0 or MM\\0*)",
    "image/geotiff": "TIFF header (II*\\0 or MM\\0*)",
    "audio/wav": "RIFF/WAVE header",
    "video/mp4": "'ftyp' box",
    "application/zip": "ZIP local-file header (PK\\3\\4)",
}


def _label(service: str, operation: str) -> str:
    return f"{service}/{operation.strip('/')}"


def _accepts(accepted: Sequence[str], sniffed: str) -> bool:
    acc = {normalize(c) for c in accepted}
    if sniffed in acc:
        return True
    # A GeoTIFF is a TIFF; a plain TIFF goes on to the GeoTIFF check (clear "no georeferencing").
    return sniffed in ("image/tiff", "image/geotiff") and bool(
        acc & {"image/tiff", "image/geotiff"}
    )


def _explain_unrecognised(data: bytes, declared: str, label: str, accepted: str) -> str:
    """Why bytes that match no format are refused; uses the declared type for a precise hint."""
    if declared == "application/dicom":
        try:
            from activities.inputs.parsers import parse_dicom

            parse_dicom(data)
        except FormatError as exc:
            return f"DICOM is invalid: {exc}"
    if declared == "application/nifti":
        try:
            from activities.inputs.parsers import parse_nifti_header

            parse_nifti_header(data)
        except FormatError as exc:
            return f"NIfTI header is invalid: {exc}"
        except Exception as exc:
            return f"NIfTI header is invalid: {exc}"
    if declared in _SIGNATURES:
        return (f"declared content type {declared}, but the bytes have no {_SIGNATURES[declared]}"
                f"; {label} accepts {accepted}")  # fmt: skip
    return f"unrecognised content: the bytes match none of the formats {label} accepts ({accepted})"


def check_input(
    data: bytes,
    *,
    service: str,
    operation: str,
    content_types: Sequence[str],
    unit: str,
    declared: str | None = None,
) -> tuple[str, Decimal, dict[str, Any]]:
    """(content type, units, details) of a valid input; raises InputValidationError otherwise."""
    label = _label(service, operation)
    accepted = ", ".join(content_types)
    if not data:
        raise invalid("input is empty (0 bytes)")
    decl = normalize(declared)
    sniffed = sniff_content_type(data)
    if sniffed is None:
        raise invalid(_explain_unrecognised(data, decl, label, accepted))
    if decl not in NON_SPECIFIC and not same_format(decl, sniffed):
        if decl == "image/geotiff" and sniffed == "image/tiff" and _accepts(content_types, sniffed):
            pass  # a TIFF declared as GeoTIFF: the GeoTIFF check below names the missing tags
        else:
            raise invalid(f"declared content type {decl}, but the bytes are {sniffed}; {label} "
                          f"accepts {accepted}")  # fmt: skip
    if not _accepts(content_types, sniffed):
        hint = ""
        if sniffed == "text/plain" and any("fasta" in c for c in content_types):
            hint = " (a FASTA record starts with a '>' header line)"
        raise invalid(f"{label} accepts {accepted}; got {sniffed}{hint}")
    details = _validator(sniffed, service, operation.strip("/"), content_types)(data)
    return sniffed, _units(unit, details), details


BOX_OPTION = "box"
BOX_MIN_PIXELS = 2  # a prompt box must cover at least this many pixels across and down


def plane_size(details: dict[str, Any]) -> tuple[int, int] | None:
    """(width, height) of an input that is one 2D plane (an image; a single-frame DICOM), from
    its validator's details; None for a volume or a format without one plane (a box does not
    apply there)."""
    if "width" in details and "height" in details:
        return int(details["width"]), int(details["height"])
    if "columns" in details and "rows" in details and int(details.get("frames", 1)) == 1:
        return int(details["columns"]), int(details["rows"])
    return None


def check_box(options: dict[str, Any], details: dict[str, Any]) -> None:
    """`options.box` must cover at least BOX_MIN_PIXELS x BOX_MIN_PIXELS pixels of the image
    once clipped to it (coordinates rounded to whole pixels, as the model server does): a box
    outside the image is refused here, before any model warms up, instead of by the model
    server after the cost. The plan has already checked its shape (`[x1, y1, x2, y2]`,
    0 <= x1 < x2, 0 <= y1 < y2); a box that is not four numbers is left to that check."""
    box = options.get(BOX_OPTION)
    size = plane_size(details)
    if box is None or size is None:
        return
    if not (isinstance(box, list) and len(box) == 4):
        return
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box):
        return
    if not all(math.isfinite(v) for v in box):
        return
    width, height = size
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
    if x2 - x1 < BOX_MIN_PIXELS or y2 - y1 < BOX_MIN_PIXELS:
        raise invalid(
            f"options.{BOX_OPTION} {box} does not cover at least {BOX_MIN_PIXELS} x "
            f"{BOX_MIN_PIXELS} pixels of the {width} x {height} image (it must overlap the "
            f"image: x within 0..{width}, y within 0..{height})"
        )


def _validator(ctype: str, service: str, op: str,
               accepted: Sequence[str]) -> Callable[[bytes], dict[str, Any]]:  # fmt: skip
    label = f"{service}/{op}"
    if ctype in ("image/png", "image/jpeg", "image/gif", "image/webp"):
        return lambda d: formats.validate_image(d, ctype)
    if ctype in ("image/tiff", "image/geotiff"):
        geo = service == "geospatial" or "image/geotiff" in {normalize(c) for c in accepted}
        return lambda d: formats.validate_tiff(
            d,
            require_geo=geo,
            min_bands=GEO_MIN_BANDS if service == "geospatial" else 1,
            max_scenes=GEO_MAX_SCENES.get(op, 1),
            what=label,
        )
    if ctype == "text/fasta":
        return lambda d: formats.validate_fasta(d, fasta_limits(service, op), label)
    if ctype == "audio/wav":
        return formats.validate_wav
    if ctype == "application/nifti":
        return lambda d: formats.validate_nifti(d, min_dims=3 if op.endswith("3d") else 2,
                                                what=label)  # fmt: skip
    if ctype == "application/dicom":
        return lambda d: formats.validate_dicom(d, need_volume=op.endswith("3d"), what=label)
    if ctype == "video/mp4":
        return formats.validate_mp4
    if ctype == "application/json":
        if label == "scientific/geometry/solve":
            return formats.validate_geometry_problem
        if label == "reconstruction/render":
            return formats.validate_render_request
        return lambda d: {"keys": sorted(formats.load_json_object(d))[:50]}
    return lambda d: {}


def _units(unit: str, details: dict[str, Any]) -> Decimal:
    if unit == "audio_minute":
        return audio_minutes(float(details.get("duration_s", 0.0)))
    if unit == "video_minute":
        return audio_minutes(float(details.get("duration_s", 0.0)))  # same 0.1-min rounding
    if unit == "image" and "scenes" in details:
        return Decimal(int(details["scenes"]))  # geospatial/change: a two-scene TIFF is 2
    return Decimal(1)
