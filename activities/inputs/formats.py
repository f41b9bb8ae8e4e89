"""Per-format validators: each takes the input bytes (already sniffed as its format), checks that
the content is usable by the operation and returns `details` (what billing, invocation and the
result need: sizes, durations, record counts). Every failure raises `InputValidationError` with a
message that names the problem, and the position or limit where there is one.
"""

from __future__ import annotations

import io
import json
import math
import re
import warnings
import wave
from typing import Any

from activities.inputs import parsers
from activities.inputs.errors import invalid, too_large
from activities.inputs.limits import (
    MAX_IMAGE_PIXELS,
    MAX_JSON_DEPTH,
    MAX_VOLUME_VOXELS,
    FastaLimits,
)
from activities.inputs.parsers import FormatError, FormatLimitError

# ----------------------------------------------------------------------------- images


def validate_image(data: bytes, content_type: str) -> dict[str, Any]:
    """Decode the whole image with Pillow (header *and* pixels: a truncated file fails here)."""
    from PIL import Image, UnidentifiedImageError

    kind = content_type.split("/")[-1].upper()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise too_large(f"image is too large to decode: {exc}") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise invalid(f"image could not be decoded ({kind}): {exc}") from exc
        width, height = img.size
        if width <= 0 or height <= 0:
            raise invalid(f"image could not be decoded ({kind}): size {width} x {height}")
        if width * height > MAX_IMAGE_PIXELS:
            raise too_large(
                f"image is {width} x {height} = {width * height:,} pixels; at most "
                f"{MAX_IMAGE_PIXELS:,} pixels are accepted"
            )
        try:
            img.load()
        except Exception as exc:  # Pillow raises OSError, SyntaxError, struct.error, ...
            raise invalid(f"image could not be decoded ({kind}): {exc}") from exc
    return {"width": width, "height": height, "mode": img.mode, "format": img.format}


# ----------------------------------------------------------------------------- FASTA

AMINO_ACIDS = frozenset("ACDEFGHIKLMNPQRSTVWY")
AMBIGUOUS = frozenset("XBZUO")  # unknown, Asx, Glx, selenocysteine, pyrrolysine
PROTEIN_ALPHABET = AMINO_ACIDS | AMBIGUOUS
ALPHABET_TEXT = "the 20 standard amino acids plus X, B, Z, U, O ('*' only at the end)"


def parse_fasta(text: str) -> list[tuple[str, str]]:
    """(header, sequence) records; checks structure and alphabet, not lengths."""
    records: list[tuple[str, list[tuple[int, str]]]] = []  # header, (line number, raw line)
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(";"):  # blank lines and old-style comments
            continue
        if line.startswith(">"):
            records.append((line[1:].strip(), []))
            continue
        if not records:
            raise invalid(f"FASTA sequence data on line {lineno} comes before the first '>' "
                          "header line")  # fmt: skip
        records[-1][1].append((lineno, raw))
    if not records:
        raise invalid("FASTA has no records (a record starts with a '>' header line)")
    out: list[tuple[str, str]] = []
    for index, (header, lines) in enumerate(records, start=1):
        name = _record_name(index, header)
        seq: list[str] = []
        for lineno, raw in lines:
            for column, ch in enumerate(raw, start=1):
                if ch in " \t\r":
                    continue
                up = ch.upper()
                if up in PROTEIN_ALPHABET or ch == "*":
                    seq.append(up)
                else:
                    raise invalid(
                        f"{name}: {ch!r} at residue {len(seq) + 1} (line {lineno}, column "
                        f"{column}) is not an amino-acid code; allowed are {ALPHABET_TEXT}"
                    )
        residues = "".join(seq)
        stop = residues.find("*")
        if stop != -1 and stop != len(residues) - 1:
            raise invalid(f"{name}: '*' (stop) at residue {stop + 1} is allowed only at the end "
                          f"of the sequence ({len(residues)} residues)")  # fmt: skip
        residues = residues.rstrip("*")
        if not residues:
            raise invalid(f"{name} has no residues (empty record)")
        out.append((header, residues))
    return out


def _record_name(index: int, header: str) -> str:
    ident = header.split()[0] if header.split() else ""
    return f"record {index} ({ident!r})" if ident else f"record {index}"


def validate_fasta(data: bytes, limits: FastaLimits, operation: str = "") -> dict[str, Any]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = data[exc.start]
        raise invalid(f"FASTA is not UTF-8 text: byte {exc.start} is {bad:#04x}") from exc
    records = parse_fasta(text)
    what = operation or "this operation"
    if len(records) > limits.max_records:
        raise invalid(f"FASTA has {len(records)} records; {what} takes at most "
                      f"{limits.max_records} per request")  # fmt: skip
    for index, (header, seq) in enumerate(records, start=1):
        name = _record_name(index, header)
        if len(seq) < limits.min_length:
            raise invalid(f"{name} has {len(seq)} residues; {what} needs at least "
                          f"{limits.min_length}")  # fmt: skip
        if len(seq) > limits.max_length:
            raise invalid(f"{name} has {len(seq):,} residues; {what} accepts at most "
                          f"{limits.max_length:,} ({limits.limit_source})")  # fmt: skip
    return {
        "records": len(records),
        "ids": [h.split()[0] if h.split() else "" for h, _ in records],
        "lengths": [len(s) for _, s in records],
        "total_residues": sum(len(s) for _, s in records),
    }


# ----------------------------------------------------------------------------- WAV

WAV_FORMATS = {1: "pcm", 3: "float"}


def validate_wav(data: bytes) -> dict[str, Any]:
    """RIFF layout by hand (truncation, encoding), PCM frames cross-checked with stdlib `wave`."""
    try:
        layout = parsers.parse_wav_layout(data)
    except FormatError as exc:
        raise invalid(f"WAV header is malformed: {exc}") from exc
    except Exception as exc:  # struct.error on a cut header
        raise invalid(f"WAV header is malformed: {exc}") from exc
    if layout.format_tag not in WAV_FORMATS:
        raise invalid(f"WAV encoding {layout.format_tag:#06x} is not supported (PCM and IEEE "
                      "float are)")  # fmt: skip
    if not 1 <= layout.channels <= 32:
        raise invalid(f"WAV header is malformed: {layout.channels} channels")
    if not 1000 <= layout.sample_rate <= 768_000:
        raise invalid(f"WAV header is malformed: sample rate {layout.sample_rate} Hz")
    allowed_bits = (8, 16, 24, 32) if layout.format_tag == 1 else (32, 64)
    if layout.bits not in allowed_bits:
        raise invalid(f"WAV header is malformed: {layout.bits} bits per sample for "
                      f"{WAV_FORMATS[layout.format_tag]}")  # fmt: skip
    declared = layout.data_declared
    if declared != 0xFFFFFFFF and declared > layout.data_present:
        raise invalid(f"WAV is truncated: the data chunk declares {declared:,} bytes but only "
                      f"{layout.data_present:,} are present")  # fmt: skip
    frame_bytes = layout.channels * layout.bits // 8
    frames = layout.data_present // frame_bytes
    if layout.format_tag == 1 and not layout.extensible:  # stdlib `wave` < 3.12: no 0xFFFE
        try:
            with wave.open(io.BytesIO(data), "rb") as w:
                frames = min(frames, w.getnframes()) if declared != 0xFFFFFFFF else frames
                rate, channels = w.getframerate(), w.getnchannels()
        except (wave.Error, EOFError) as exc:
            raise invalid(f"WAV header is malformed: {exc}") from exc
        if (rate, channels) != (layout.sample_rate, layout.channels):
            raise invalid("WAV header is malformed: inconsistent format chunk")
    if frames <= 0:
        raise invalid("WAV has no audio samples (the data chunk is empty)")
    duration = frames / layout.sample_rate
    return {
        "duration_s": round(duration, 3),
        "sample_rate": layout.sample_rate,
        "channels": layout.channels,
        "bits_per_sample": layout.bits,
        "encoding": WAV_FORMATS[layout.format_tag],
        "frames": frames,
    }


# ----------------------------------------------------------------------------- TIFF / GeoTIFF

GEO_TAG_NAMES = ("GeoKeyDirectory (34735), ModelTiepoint (33922), ModelPixelScale (33550) or "
                 "ModelTransformation (34264)")  # fmt: skip
# The georeferencing numbers: a NaN or infinity in any of them places the raster nowhere.
_GEO_NUMBER_TAGS = {
    parsers.TAG_MODEL_PIXEL_SCALE: "ModelPixelScale (33550)",
    parsers.TAG_MODEL_TIEPOINT: "ModelTiepoint (33922)",
    parsers.TAG_MODEL_TRANSFORMATION: "ModelTransformation (34264)",
    parsers.TAG_GEO_DOUBLE_PARAMS: "GeoDoubleParams (34736)",
}


def _check_geo_numbers(page: parsers.TiffPage, where: str) -> None:
    """Refuses a non-finite georeferencing number: the scene cannot be placed, and the value
    would reach `details` (strict JSON has no NaN). GDAL_NODATA "nan" is a valid nodata value
    and is not checked (nor reported)."""
    for tag, name in _GEO_NUMBER_TAGS.items():
        values = page.tags.get(tag, ())
        if all(map(math.isfinite, values)):
            continue
        i = next(i for i, v in enumerate(values) if not math.isfinite(v))
        raise invalid(f"GeoTIFF {name}{where} value {i + 1} of {len(values)} is {values[i]}; "
                      "georeferencing needs finite numbers")  # fmt: skip


def validate_tiff(data: bytes, *, require_geo: bool, min_bands: int = 1,
                  max_scenes: int = 1, what: str = "") -> dict[str, Any]:  # fmt: skip
    """TIFF structure (every page's data blocks inside the file), georeferencing, bands, scenes.
    Reduced-resolution pages (overviews, NewSubfileType bit 0) are not scenes."""
    try:
        info = parsers.parse_tiff(data)
    except FormatLimitError as exc:
        raise too_large(f"TIFF is too large to read: {exc}") from exc
    except FormatError as exc:
        raise invalid(f"TIFF is malformed: {exc}") from exc
    except Exception as exc:  # struct.error deep in a damaged directory
        raise invalid(f"TIFF is malformed: {exc}") from exc
    scenes = [p for p in info.pages if not int(p.one(254, 0) or 0) & 1]
    if not scenes:
        raise invalid("TIFF has only reduced-resolution pages (overviews), no full image")
    first = scenes[0]
    if require_geo:
        for p in scenes:
            if not p.georeferenced:
                where = f" (page {p.index + 1})" if len(scenes) > 1 else ""
                raise invalid(f"TIFF without georeferencing{where}: none of the GeoTIFF tags "
                              f"{GEO_TAG_NAMES} is present")  # fmt: skip
    what = what or "this operation"
    if len(scenes) > max_scenes:
        raise invalid(f"TIFF has {len(scenes)} full-resolution pages; {what} takes at most "
                      f"{max_scenes} scene(s) per request")  # fmt: skip
    for p in scenes[1:]:
        if (p.width, p.height, p.samples_per_pixel) != (
            first.width,
            first.height,
            first.samples_per_pixel,
        ):
            raise invalid(
                f"TIFF scenes differ in size: page 1 is {first.width} x {first.height} x "
                f"{first.samples_per_pixel} bands, page {p.index + 1} is {p.width} x "
                f"{p.height} x {p.samples_per_pixel}"
            )
    if first.samples_per_pixel > parsers.TIFF_MAX_READ_BANDS:  # what the model servers read
        raise too_large(f"TIFF has {first.samples_per_pixel:,} bands (SamplesPerPixel); at most "
                        f"{parsers.TIFF_MAX_READ_BANDS} are accepted")  # fmt: skip
    if first.samples_per_pixel < min_bands:
        raise invalid(
            f"GeoTIFF has {first.samples_per_pixel} band(s); {what} needs at least {min_bands} "
            "(Prithvi takes the 6 HLS bands: Blue, Green, Red, NIR, SWIR1, SWIR2)"
        )
    if first.width * first.height > MAX_IMAGE_PIXELS:
        raise too_large(f"TIFF is {first.width} x {first.height} pixels; at most "
                        f"{MAX_IMAGE_PIXELS:,} pixels are accepted")  # fmt: skip
    if first.compression not in (1, 5, 8, 32946, 32773):
        raise invalid(f"TIFF compression {first.compression} is not supported (none, LZW, "
                      "deflate, PackBits are)")  # fmt: skip
    details: dict[str, Any] = {
        "width": first.width,
        "height": first.height,
        "bands": first.samples_per_pixel,
        "bits_per_sample": first.bits_per_sample[0],
        "sample_format": {1: "uint", 2: "int", 3: "float"}.get(first.sample_format, "other"),
        "scenes": len(scenes),
        "pages": len(info.pages),
        "georeferenced": first.georeferenced,
    }
    for p in scenes:
        if p.georeferenced:
            _check_geo_numbers(p, f" (page {p.index + 1})" if len(scenes) > 1 else "")
    if first.georeferenced:
        details["geo"] = first.geo()
    return details


# ----------------------------------------------------------------------------- NIfTI / DICOM

NIFTI_GZIP_SLACK = 1 << 20  # bytes a .nii.gz may hold after its voxel data


def validate_nifti(data: bytes, *, min_dims: int = 2, what: str = "") -> dict[str, Any]:
    try:
        hdr = parsers.parse_nifti_header(data)
    except FormatError as exc:
        raise invalid(f"NIfTI header is invalid: {exc}") from exc
    what = what or "this operation"
    spatial = [d for d in hdr.dims[:3]]
    if len(hdr.dims) > 4 or (len(hdr.dims) == 4 and hdr.dims[3] > 1 and min_dims >= 3):
        raise invalid(f"NIfTI has dimensions {list(hdr.dims)}; {what} takes one 2D or 3D volume "
                      "(a 4D series must be split)")  # fmt: skip
    real_dims = sum(1 for d in spatial if d > 1)
    if real_dims < min_dims:
        raise invalid(f"NIfTI volume is {'x'.join(map(str, hdr.dims))}; {what} needs a "
                      f"{min_dims}D volume")  # fmt: skip
    if hdr.voxels > MAX_VOLUME_VOXELS:
        raise too_large(f"NIfTI volume has {hdr.voxels:,} voxels; at most "
                        f"{MAX_VOLUME_VOXELS:,} are accepted")  # fmt: skip
    need = hdr.vox_offset + hdr.data_bytes
    if hdr.gzipped and need > len(data) * parsers.GZIP_MAX_RATIO:
        raise invalid(f"NIfTI voxel data is truncated: {list(hdr.dims)} {hdr.datatype_name} "
                      f"needs {need:,} bytes from offset {hdr.vox_offset}, more than a "
                      f"{len(data):,}-byte gzip stream can hold")  # fmt: skip
    if hdr.gzipped:
        try:  # counted while streaming: memory stays one 1 MiB piece, never the volume
            have = parsers.gunzip_count(data, need + NIFTI_GZIP_SLACK)
        except FormatError as exc:
            raise invalid(f"NIfTI (.nii.gz) could not be decompressed: {exc}") from exc
    else:
        have = len(data)
    if have < need:
        raise invalid(f"NIfTI voxel data is truncated: {list(hdr.dims)} {hdr.datatype_name} "
                      f"needs {need:,} bytes from offset {hdr.vox_offset}, the file has "
                      f"{have:,}")  # fmt: skip
    return {
        "dims": list(hdr.dims),
        "voxel_size": [round(p, 6) for p in hdr.pixdim[:3]],
        "spatial_unit": hdr.spatial_unit,
        "datatype": hdr.datatype_name,
        "gzipped": hdr.gzipped,
    }


def validate_dicom(data: bytes, *, need_volume: bool = False, what: str = "") -> dict[str, Any]:
    try:
        info = parsers.parse_dicom(data)
    except FormatError as exc:
        raise invalid(f"DICOM is invalid: {exc}") from exc
    except Exception as exc:
        raise invalid(f"DICOM is invalid: {exc}") from exc
    if info.pixel_offset is None:
        raise invalid("DICOM has no pixel data (7FE0,0010): not an image object")
    try:
        rows, cols = parsers.dicom_count(info, "rows", 0), parsers.dicom_count(info, "columns", 0)
        if rows <= 0 or cols <= 0:
            raise invalid(f"DICOM image size (Rows x Columns) is {rows} x {cols}")
        frames = parsers.dicom_count(info, "frames", 1)
        samples = parsers.dicom_count(info, "samples_per_pixel", 1)
        bits = parsers.dicom_count(info, "bits_allocated", 16)
    except FormatError as exc:
        raise invalid(f"DICOM is invalid: {exc}") from exc
    if need_volume and frames < 2:
        raise invalid(f"DICOM is a single {rows} x {cols} slice; {what or 'this operation'} "
                      "needs a volume (a multi-frame DICOM or a NIfTI volume)")  # fmt: skip
    if rows * cols * frames > MAX_VOLUME_VOXELS:
        raise too_large(f"DICOM has {rows * cols * frames:,} voxels; at most "
                        f"{MAX_VOLUME_VOXELS:,} are accepted")  # fmt: skip
    if info.pixel_length is not None and info.transfer_syntax in parsers.TS_NATIVE:
        need = parsers.dicom_pixel_bytes(info)
        if info.pixel_length < need:
            raise invalid(
                f"DICOM pixel data is too short: {info.pixel_length:,} bytes, but {rows} x "
                f"{cols} x {frames} frame(s) x {samples} sample(s) at {bits} bits allocated "
                f"need {need:,}"
            )
    return {
        "rows": rows,
        "columns": cols,
        "frames": frames,
        "modality": info.get("modality"),
        "transfer_syntax": info.transfer_syntax,
        "bits_allocated": info.get("bits_allocated"),
        "compressed": info.pixel_length is None,
    }


# ----------------------------------------------------------------------------- MP4


def validate_mp4(data: bytes) -> dict[str, Any]:
    try:
        info = parsers.parse_mp4(data)
    except FormatLimitError as exc:
        raise too_large(f"MP4 is too large to read: {exc}") from exc
    except FormatError as exc:
        raise invalid(f"MP4 is malformed: {exc}") from exc
    except Exception as exc:
        raise invalid(f"MP4 is malformed: {exc}") from exc
    video = info.video
    if video is None:
        raise invalid("MP4 has no video track")
    if not video.sample_sizes:
        raise invalid("MP4 video track has no frames")
    last = video.sample_range(video.placed_samples() - 1)  # no per-frame list
    if last is not None and last[0] + last[1] > len(data):
        raise invalid("MP4 is truncated: the last video frame lies past the end of the file")
    return {
        "brand": info.major_brand.strip(),
        "duration_s": round(info.duration_s, 3),
        "width": video.width,
        "height": video.height,
        "codec": "mjpeg" if video.is_mjpeg else video.codec,
        "frames": len(video.sample_sizes),
    }


# ----------------------------------------------------------------------------- JSON


_JSON_SPECIAL = re.compile(r'[\[\]{}"\\]')


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays/objects nest deeper than `limit` (brackets inside strings do not count);
    checked before parsing, since the parser recurses once per level. One pass over the
    special characters, so hostile input (unclosed strings, runs of escapes) stays linear."""
    depth, in_string, skip_to = 0, False, -1
    for match in _JSON_SPECIAL.finditer(text):
        at, char = match.start(), match.group()
        if at < skip_to:  # the character escaped by the backslash before it
            continue
        if in_string:
            if char == "\\":
                skip_to = at + 2
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def load_json_object(data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise invalid(f"JSON is not UTF-8 text: byte {exc.start}") from exc
    too_deep = f"JSON nests arrays/objects more than {MAX_JSON_DEPTH} levels deep"
    if json_too_deep(text):
        raise invalid(too_deep)
    try:
        obj = json.loads(text)
    except RecursionError as exc:  # pragma: no cover - json_too_deep refuses these first
        raise invalid(too_deep) from exc
    except json.JSONDecodeError as exc:
        raise invalid(f"JSON could not be parsed: {exc.msg} at line {exc.lineno}, column "
                      f"{exc.colno}") from exc  # fmt: skip
    except ValueError as exc:  # an integer longer than sys.get_int_max_str_digits()
        raise invalid(f"JSON could not be parsed: a number is too long "
                      f"({str(exc).split(':')[0]})") from exc  # fmt: skip
    if not isinstance(obj, dict):
        raise invalid(f"JSON input must be an object, not {type(obj).__name__}")
    return obj


def validate_geometry_problem(data: bytes) -> dict[str, Any]:
    """AlphaGeometry input: {"problem": "<points> = <construction>; ... ? <goal>", "name"?}."""
    obj = load_json_object(data)
    problem = obj.get("problem")
    if not isinstance(problem, str) or not problem.strip():
        raise invalid('geometry problem needs a non-empty "problem" string in AlphaGeometry '
                      'syntax, e.g. "a b c = triangle a b c; ... ? perp a d b c"')  # fmt: skip
    if "?" not in problem:
        raise invalid("geometry problem has no goal: AlphaGeometry syntax puts it after '?'")
    return {"name": obj.get("name"), "problem_chars": len(problem),
            "clauses": len([c for c in problem.split("?")[0].split(";") if c.strip()])}  # fmt: skip


def validate_render_request(data: bytes) -> dict[str, Any]:
    """{"scene": {...} | "scene_ref": "...", "camera": {...} | "camera_path": [...], ...}."""
    obj = load_json_object(data)
    if not isinstance(obj.get("scene"), dict) and not isinstance(obj.get("scene_ref"), str):
        raise invalid('render request needs a "scene" object or a "scene_ref" string')
    cams = obj.get("camera_path")
    if not isinstance(obj.get("camera"), dict) and not (isinstance(cams, list) and cams):
        raise invalid('render request needs a "camera" object or a non-empty "camera_path"')
    views = len(cams) if isinstance(cams, list) else 1
    width, height = obj.get("width", 256), obj.get("height", 256)
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096
               for v in (width, height)):  # fmt: skip
        raise invalid(f"render size {str(width)[:40]} x {str(height)[:40]} must be integers in "
                      "1..4096")  # fmt: skip
    scene = "inline" if isinstance(obj.get("scene"), dict) else obj["scene_ref"]
    return {"views": views, "width": width, "height": height, "scene": scene}
