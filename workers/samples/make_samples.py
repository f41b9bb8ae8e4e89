"""Generate the bundled sample inputs (one per service operation), deterministically.

    python -m workers.samples.make_samples            # (re)write the samples beside this file
    python -m workers.samples.make_samples --check    # exit 1 if a stdlib-written file differs

Every file is synthetic (no patient, no real capture) and small (each well under 100 KB). The
struct-written formats (WAV, NIfTI, DICOM, GeoTIFF, MP4 container, FASTA, JSON) are byte-for-byte
reproducible; PNG and JPEG pixels come from Pillow, whose encoder output may differ by a few bytes
between Pillow/zlib/libjpeg versions (the MP4 embeds JPEG frames, so `--check` skips it too).

The writers (`tiff_bytes`, `nifti_bytes`, `dicom_bytes`, `wav_bytes`, `mp4_mjpeg_bytes`) are also
used by the tests to build broken variants of each format.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import struct
import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# ----------------------------------------------------------------------------- tiny helpers


class Lcg:
    """A fixed linear congruential generator: same numbers on every Python version."""

    def __init__(self, seed: int) -> None:
        self.state = seed & 0xFFFFFFFF

    def next(self) -> float:
        self.state = (1664525 * self.state + 1013904223) & 0xFFFFFFFF
        return self.state / 2**32

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.next()


# ----------------------------------------------------------------------------- PNG / JPEG


def street_scene(width: int = 160, height: int = 120) -> Any:
    """A street-like scene of solid shapes: sky, sun, tree, pedestrian, two cars on a road."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (135, 190, 235))  # sky
    d = ImageDraw.Draw(img)
    d.rectangle([0, 50, width, 80], fill=(150, 150, 150))  # sidewalk / buildings band
    d.rectangle([0, 80, width, height], fill=(70, 70, 75))  # road
    d.ellipse([10, 8, 25, 23], fill=(250, 220, 60))  # sun
    d.rectangle([131, 48, 138, 80], fill=(110, 70, 30))  # tree trunk
    d.ellipse([118, 18, 152, 52], fill=(40, 140, 50))  # tree crown
    d.ellipse([68, 58, 80, 96], fill=(230, 200, 40))  # pedestrian
    d.rectangle([18, 88, 60, 108], fill=(200, 30, 30))  # red car
    d.rectangle([94, 92, 142, 112], fill=(30, 60, 200))  # blue car
    return img


def park_scene(width: int = 160, height: int = 120) -> Any:
    """Mostly vegetation: sky, grass, bushes, a pond."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (150, 200, 240))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 40, width, height], fill=(70, 150, 60))  # grass
    rng = Lcg(7)
    for _ in range(40):  # texture: darker and lighter tufts
        x, y = int(rng.uniform(0, width)), int(rng.uniform(42, height))
        shade = int(rng.uniform(-25, 25))
        d.ellipse([x, y, x + 6, y + 3], fill=(60 + shade, 140 + shade, 50 + shade))
    d.ellipse([20, 20, 70, 60], fill=(30, 110, 40))  # bush
    d.ellipse([100, 75, 150, 105], fill=(60, 110, 170))  # pond
    return img


def png_bytes(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def jpeg_bytes(img: Any, quality: int = 80) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


# ----------------------------------------------------------------------------- FASTA / JSON

# Human ubiquitin (PDB 1UBQ chain A; UniProt P0CG48 residues 1-76), a real public sequence.
UBIQUITIN = "MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG"


def fasta_bytes(header: str, sequence: str, width: int = 60) -> bytes:
    lines = [f">{header}"] + [sequence[i : i + width] for i in range(0, len(sequence), width)]
    return ("\n".join(lines) + "\n").encode()


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


# AlphaGeometry's own example (its README): the altitudes of a triangle meet (orthocenter).
GEOMETRY_PROBLEM = {
    "name": "orthocenter",
    "problem": "a b c = triangle a b c; d = on_tline d b a c, on_tline d c a b ? perp a d b c",
}

RENDER_REQUEST = {
    "scene": {
        "objects": [
            {"type": "plane", "y": -1.0, "color": [170, 170, 160]},
            {"type": "sphere", "center": [0.0, 0.0, 0.0], "radius": 1.0, "color": [210, 60, 50]},
            {"type": "sphere", "center": [1.7, -0.4, 0.8], "radius": 0.6, "color": [50, 110, 220]},
            {"type": "box", "min": [-2.6, -1.0, -0.6], "max": [-1.5, 0.2, 0.5],
             "color": [60, 170, 80]},
        ],
        "light": {"direction": [-0.5, 1.0, 0.8]},
        "background": [200, 220, 240],
    },
    "camera": {"position": [0.0, 1.2, 6.0], "look_at": [0.0, 0.0, 0.0], "fov_deg": 45},
    "width": 128,
    "height": 96,
}  # fmt: skip


# ----------------------------------------------------------------------------- WAV


def wav_bytes(samples: Sequence[int], rate: int = 16000) -> bytes:
    """16-bit mono PCM WAV."""
    data = struct.pack(f"<{len(samples)}h", *samples)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    head = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    return (
        head
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + (data)
    )


def dictation_samples(rate: int = 16000, seconds: float = 2.0,
                      voiced: Sequence[tuple[float, float]] = ((0.20, 0.80), (1.10, 1.80)),
                      ) -> list[int]:  # fmt: skip
    """Two vowel-like bursts (140 Hz with harmonics, smooth envelope) in faint noise."""
    rng = Lcg(42)
    out = []
    for n in range(int(rate * seconds)):
        t = n / rate
        v = rng.uniform(-30, 30)  # ~ -60 dBFS background noise
        for start, end in voiced:
            if start <= t < end:
                env = math.sin(math.pi * (t - start) / (end - start)) ** 2
                f0 = 140 * (1 + 0.05 * math.sin(2 * math.pi * 3 * t))  # a little intonation
                tone = sum(a * math.sin(2 * math.pi * f0 * k * t)
                           for k, a in ((1, 1.0), (2, 0.5), (3, 0.35), (4, 0.2)))  # fmt: skip
                v += 9000 * env * tone / 2.05
        out.append(max(-32768, min(32767, round(v))))
    return out


# ----------------------------------------------------------------------------- NIfTI-1


def nifti_bytes(volume: Sequence[int], dims: tuple[int, ...], pixdim: tuple[float, ...],
                datatype: int = 4, description: str = "") -> bytes:  # fmt: skip
    """A single-file NIfTI-1 (.nii), little endian; int16 by default (datatype 4)."""
    codes = {2: ("B", 8), 4: ("h", 16), 16: ("f", 32)}
    code, bitpix = codes[datatype]
    dim = [len(dims), *dims] + [1] * (7 - len(dims))
    pd = [1.0, *pixdim] + [1.0] * (7 - len(pixdim))
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    struct.pack_into("<8h", hdr, 40, *dim)
    struct.pack_into("<hh", hdr, 70, datatype, bitpix)
    struct.pack_into("<8f", hdr, 76, *pd)
    struct.pack_into("<f", hdr, 108, 352.0)  # vox_offset
    struct.pack_into("<ff", hdr, 112, 1.0, 0.0)  # scl_slope, scl_inter
    hdr[123] = 2 | 8  # xyzt_units: mm, s
    hdr[148 : 148 + 80] = description.encode()[:80].ljust(80, b"\0")
    struct.pack_into("<hh", hdr, 252, 0, 1)  # qform_code 0, sform_code 1 (scanner)
    struct.pack_into("<4f", hdr, 280, pixdim[0], 0, 0, 0)  # srow_x
    struct.pack_into("<4f", hdr, 296, 0, pixdim[1], 0, 0)  # srow_y
    struct.pack_into("<4f", hdr, 312, 0, 0, pixdim[2] if len(pixdim) > 2 else 1.0, 0)  # srow_z
    hdr[344:348] = b"n+1\0"
    return bytes(hdr) + b"\0\0\0\0" + struct.pack(f"<{len(volume)}{code}", *volume)


def ct_like_volume(nx: int, ny: int, nz: int, blob: tuple[float, float, float, float],
                   ) -> list[int]:  # fmt: skip
    """Air (-1000 HU) around an elliptical body (40 HU) holding one bright blob (300 HU)."""
    bx, by, bz, br = blob
    rng = Lcg(3)
    vol = []
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                u, v = (x - nx / 2 + 0.5) / (nx * 0.42), (y - ny / 2 + 0.5) / (ny * 0.36)
                value = -1000.0
                if u * u + v * v <= 1.0:
                    value = 40.0 + rng.uniform(-15, 15)
                    if (x - bx) ** 2 + (y - by) ** 2 + ((z - bz) * 2) ** 2 <= br * br:
                        value = 300.0 + rng.uniform(-20, 20)
                vol.append(round(value))
    return vol


# ----------------------------------------------------------------------------- DICOM


def _dcm_el(group: int, elem: int, vr: str, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in ("UI", "OB", "OW") else b" "
    if vr in ("OB", "OW", "OF", "SQ", "UT", "UN"):
        return struct.pack("<HH2sHI", group, elem, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr.encode(), len(value)) + value


def dicom_bytes(pixels: Sequence[int], rows: int, cols: int, *, spacing: float = 0.8,
                modality: str = "CT", preamble_marker: bytes = b"DICM") -> bytes:  # fmt: skip
    """A minimal single-frame DICOM Part 10 CT image, explicit VR little endian, int16 pixels."""
    ct_storage = b"1.2.840.10008.5.1.4.1.1.2"
    sop_uid = b"2.25.302458216104993836418296233912178311227"  # fixed: synthetic sample
    meta_body = (
        _dcm_el(0x0002, 0x0001, "OB", b"\0\1")
        + _dcm_el(0x0002, 0x0002, "UI", ct_storage)
        + _dcm_el(0x0002, 0x0003, "UI", sop_uid)
        + _dcm_el(0x0002, 0x0010, "UI", b"1.2.840.10008.1.2.1")
        + _dcm_el(0x0002, 0x0012, "UI", b"2.25.1")
    )
    meta = _dcm_el(0x0002, 0x0000, "UL", struct.pack("<I", len(meta_body))) + meta_body
    ds = (
        _dcm_el(0x0008, 0x0016, "UI", ct_storage)
        + _dcm_el(0x0008, 0x0018, "UI", sop_uid)
        + _dcm_el(0x0008, 0x0060, "CS", modality.encode())
        + _dcm_el(0x0010, 0x0010, "PN", b"Synthetic^Sample")
        + _dcm_el(0x0010, 0x0020, "LO", b"RADIANT-SAMPLE")
        + _dcm_el(0x0020, 0x000D, "UI", b"2.25.2")
        + _dcm_el(0x0020, 0x000E, "UI", b"2.25.3")
        + _dcm_el(0x0028, 0x0002, "US", struct.pack("<H", 1))
        + _dcm_el(0x0028, 0x0004, "CS", b"MONOCHROME2")
        + _dcm_el(0x0028, 0x0010, "US", struct.pack("<H", rows))
        + _dcm_el(0x0028, 0x0011, "US", struct.pack("<H", cols))
        + _dcm_el(0x0028, 0x0030, "DS", f"{spacing}\\{spacing}".encode())
        + _dcm_el(0x0028, 0x0100, "US", struct.pack("<H", 16))
        + _dcm_el(0x0028, 0x0101, "US", struct.pack("<H", 16))
        + _dcm_el(0x0028, 0x0102, "US", struct.pack("<H", 15))
        + _dcm_el(0x0028, 0x0103, "US", struct.pack("<H", 1))
        + _dcm_el(0x0028, 0x1052, "DS", b"0")
        + _dcm_el(0x0028, 0x1053, "DS", b"1")
        + _dcm_el(0x7FE0, 0x0010, "OW", struct.pack(f"<{len(pixels)}h", *pixels))
    )
    return b"\0" * 128 + preamble_marker + meta + ds


# ----------------------------------------------------------------------------- GeoTIFF

# HLS band order Prithvi takes: Blue, Green, Red, NIR (narrow), SWIR1, SWIR2 (reflectance x 10^4).
LAND_COVER = {
    "water": (900, 800, 500, 250, 120, 80),
    "vegetation": (400, 700, 450, 3600, 1900, 900),
    "soil": (1300, 1700, 2300, 2900, 3400, 2800),
    "urban": (1600, 1700, 1800, 2100, 2500, 2300),
}
GEO_KEYS = (1, 1, 0, 4,  1024, 0, 1, 1,  1025, 0, 1, 1,  3072, 0, 1, 32615,
            3076, 0, 1, 9001)  # fmt: skip  # projected, pixel-is-area, UTM 15N, metres


def land_cover_map(size: int, flood: float) -> list[str]:
    """Class per pixel: a meandering river widened by `flood` pixels, fields, a small town."""
    out = []
    for y in range(size):
        center = size * 0.45 + size * 0.12 * math.sin(y / size * 2 * math.pi)
        for x in range(size):
            if abs(x - center) < 3 + flood:
                out.append("water")
            elif x > size * 0.75 and y < size * 0.35:
                out.append("urban")
            elif (x // 8 + y // 8) % 3 == 0:
                out.append("soil")
            else:
                out.append("vegetation")
    return out


def scene_bands(size: int, flood: float, seed: int) -> list[list[int]]:
    rng = Lcg(seed)
    classes = land_cover_map(size, flood)
    bands: list[list[int]] = [[] for _ in range(6)]
    for cls in classes:
        for b, base in enumerate(LAND_COVER[cls]):
            bands[b].append(max(0, int(round(base * (1 + rng.uniform(-0.03, 0.03)), -1))))
    return bands


def _tiff_entry(tag: int, typ: int, values: Sequence[Any]) -> tuple[int, int, int, bytes]:
    code = {2: "s", 3: "H", 4: "I", 12: "d"}[typ]
    if typ == 2:
        raw = values[0].encode() + b"\0"
        return tag, typ, len(raw), raw
    return tag, typ, len(values), struct.pack(f"<{len(values)}{code}", *values)


def tiff_bytes(pages: Sequence[dict[str, Any]], *, compress: bool = True,
               rows_per_strip: int = 16) -> bytes:  # fmt: skip
    """Little-endian classic TIFF; every page: {"width", "height", "bands": [[...] per band],
    "tags": {tag: (type, values)}}. uint16 chunky samples; deflate + horizontal predictor."""
    out = bytearray(b"II*\0\0\0\0\0")
    prev_next_ptr = 4
    for page in pages:
        w, h, bands = page["width"], page["height"], page["bands"]
        spp = len(bands)
        offsets, counts = [], []
        for y0 in range(0, h, rows_per_strip):
            rows = []
            for y in range(y0, min(h, y0 + rows_per_strip)):
                row = [bands[b][y * w + x] for x in range(w) for b in range(spp)]
                if compress:  # predictor 2: difference to the previous pixel's same sample
                    row = [row[i] if i < spp else (row[i] - row[i - spp]) & 0xFFFF
                           for i in range(len(row))]  # fmt: skip
                rows.append(struct.pack(f"<{len(row)}H", *row))
            strip = b"".join(rows)
            if compress:
                strip = zlib.compress(strip, 9)
            offsets.append(len(out))
            counts.append(len(strip))
            out += strip
            if len(out) % 2:
                out += b"\0"
        tags: dict[int, tuple[int, Sequence[Any]]] = {
            256: (3, [w]), 257: (3, [h]), 258: (3, [16] * spp), 259: (3, [8 if compress else 1]),
            262: (3, [1]), 273: (4, offsets), 277: (3, [spp]), 278: (3, [rows_per_strip]),
            279: (4, counts), 284: (3, [1]), 339: (3, [1] * spp),
        }  # fmt: skip
        if compress:
            tags[317] = (3, [2])
        if spp > 1:
            tags[338] = (3, [0] * (spp - 1))  # extra samples: unspecified data
        tags.update(page.get("tags", {}))
        entries = [_tiff_entry(t, typ, vals) for t, (typ, vals) in sorted(tags.items())]
        ifd_at = len(out)
        struct.pack_into("<I", out, prev_next_ptr, ifd_at)
        extra_at = ifd_at + 2 + 12 * len(entries) + 4
        ifd, extra = bytearray(struct.pack("<H", len(entries))), bytearray()
        for tag, typ, count, raw in entries:
            if len(raw) <= 4:
                ifd += struct.pack("<HHI", tag, typ, count) + raw.ljust(4, b"\0")
            else:
                ifd += struct.pack("<HHII", tag, typ, count, extra_at + len(extra))
                extra += raw + (b"\0" if len(raw) % 2 else b"")
        prev_next_ptr = len(out) + len(ifd)
        out += ifd + b"\0\0\0\0" + extra
    return bytes(out)


def geo_tags(pixel_m: float = 30.0, easting: float = 500000.0,
             northing: float = 4100000.0) -> dict[int, tuple[int, Sequence[Any]]]:  # fmt: skip
    return {
        33550: (12, [pixel_m, pixel_m, 0.0]),  # ModelPixelScale
        33922: (12, [0.0, 0.0, 0.0, easting, northing, 0.0]),  # ModelTiepoint
        34735: (3, list(GEO_KEYS)),  # GeoKeyDirectory
        305: (2, ["RADIANT make_samples (synthetic HLS-like scene)"]),  # Software
    }


def geotiff_scene(size: int = 64, flood: float = 0.0, seed: int = 1, geo: bool = True) -> dict[
        str, Any]:  # fmt: skip
    return {"width": size, "height": size, "bands": scene_bands(size, flood, seed),
            "tags": geo_tags() if geo else {}}  # fmt: skip


# ----------------------------------------------------------------------------- MP4 (MJPEG)


def _box(typ: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I4s", 8 + len(payload), typ) + payload


def _full(typ: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(typ, struct.pack(">I", (version << 24) | flags), *parts)


def _descriptor(tag: int, payload: bytes) -> bytes:
    return bytes([tag, len(payload)]) + payload  # lengths < 128 here


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def mp4_mjpeg_bytes(frames: Sequence[bytes], width: int, height: int, fps: int = 6) -> bytes:
    """ISO BMFF (ftyp, mdat, moov) with one Motion-JPEG video track ('mp4v', object type 0x6C)."""
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isom", b"iso2", b"mp41")
    mdat_payload = b"".join(frames)
    mdat = _box(b"mdat", mdat_payload)
    first_offset = len(ftyp) + 8
    n, duration_ms = len(frames), round(len(frames) * 1000 / fps)
    mvhd = _full(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, 1000, duration_ms),
                 struct.pack(">IH", 0x10000, 0x100), b"\0" * 10, _MATRIX, b"\0" * 24,
                 struct.pack(">I", 2))  # fmt: skip
    tkhd = _full(b"tkhd", 0, 3, struct.pack(">IIII", 0, 0, 1, 0), struct.pack(">I", duration_ms),
                 b"\0" * 8, struct.pack(">hhhH", 0, 0, 0, 0), _MATRIX,
                 struct.pack(">II", width << 16, height << 16))  # fmt: skip
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, fps, n), struct.pack(">HH", 0x55C4, 0))
    hdlr = _full(b"hdlr", 0, 0, b"\0\0\0\0", b"vide", b"\0" * 12, b"VideoHandler\0")
    esds = _full(b"esds", 0, 0, _descriptor(3, struct.pack(">HB", 1, 0) + _descriptor(
        4, bytes([0x6C, 0x11]) + struct.pack(">I", max(len(f) for f in frames))[1:]
        + struct.pack(">II", 0, 0)) + _descriptor(6, b"\x02")))  # fmt: skip
    mp4v = _box(b"mp4v", b"\0" * 6, struct.pack(">H", 1), b"\0" * 16,
                struct.pack(">HHIIIH", width, height, 0x480000, 0x480000, 0, 1),
                b"\x05MJPEG".ljust(32, b"\0"), struct.pack(">Hh", 0x18, -1), esds)  # fmt: skip
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1), mp4v),
        _full(b"stts", 0, 0, struct.pack(">III", 1, n, 1)),
        _full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, n, 1)),
        _full(b"stsz", 0, 0, struct.pack(">II", 0, n), struct.pack(f">{n}I", *map(len, frames))),
        _full(b"stco", 0, 0, struct.pack(">II", 1, first_offset)),
    )
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    minf = _box(b"minf", _full(b"vmhd", 0, 1, b"\0" * 8), dinf, stbl)
    moov = _box(b"moov", mvhd, _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf)))
    return ftyp + mdat + moov


def orbit_frames(n: int = 12, width: int = 96, height: int = 72) -> list[bytes]:
    """A coloured cube on a plain backdrop, seen from `n` camera positions around it."""
    from PIL import Image, ImageDraw

    verts = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    faces = [((0, 1, 3, 2), (200, 60, 50)), ((4, 5, 7, 6), (50, 110, 220)),
             ((0, 1, 5, 4), (60, 170, 80)), ((2, 3, 7, 6), (230, 200, 60)),
             ((0, 2, 6, 4), (160, 80, 180)), ((1, 3, 7, 5), (240, 140, 40))]  # fmt: skip
    frames = []
    for i in range(n):
        a = 2 * math.pi * i / n
        img = Image.new("RGB", (width, height), (225, 225, 220))
        d = ImageDraw.Draw(img)
        d.rectangle([0, height * 0.7, width, height], fill=(150, 140, 130))  # floor
        proj = []
        tilt = -0.45  # the camera looks slightly down on the cube
        for x, y, z in verts:
            rx, rz = x * math.cos(a) - z * math.sin(a), x * math.sin(a) + z * math.cos(a)
            ry = y * math.cos(tilt) - rz * math.sin(tilt)
            depth = y * math.sin(tilt) + rz * math.cos(tilt) + 5.0
            proj.append((width / 2 + 88 * rx / depth, height / 2 - 88 * ry / depth, depth))
        for idx, color in sorted(faces, key=lambda f: -sum(proj[k][2] for k in f[0])):
            d.polygon([(proj[k][0], proj[k][1]) for k in idx], fill=color)
        frames.append(jpeg_bytes(img, quality=75))
    return frames


# ----------------------------------------------------------------------------- the sample set


def build() -> dict[str, Callable[[], bytes]]:
    """File name -> producer of its bytes."""
    size = 64
    return {
        "street.png": lambda: png_bytes(street_scene()),
        "park.jpg": lambda: jpeg_bytes(park_scene()),
        "ubiquitin.fasta": lambda: fasta_bytes(
            "1UBQ_A Ubiquitin [Homo sapiens] (UniProt P0CG48 residues 1-76)", UBIQUITIN
        ),
        "orthocenter.json": lambda: json_bytes(GEOMETRY_PROBLEM),
        "dictation.wav": lambda: wav_bytes(dictation_samples()),
        "ct_slice.dcm": lambda: dicom_bytes(
            ct_like_volume(size, size, 1, (40, 26, 0, 7)), size, size
        ),
        "ct_volume.nii.gz": lambda: gzip.compress(
            nifti_bytes(
                ct_like_volume(32, 32, 16, (20, 14, 8, 5)),
                (32, 32, 16),
                (1.0, 1.0, 2.0),
                description="RADIANT synthetic CT-like volume",
            ),
            compresslevel=9,
            mtime=0,
        ),  # fmt: skip
        "flood_scene.tif": lambda: tiff_bytes([geotiff_scene(size, flood=5.0, seed=11)]),
        "change_pair.tif": lambda: tiff_bytes(
            [geotiff_scene(size, flood=0.0, seed=21), geotiff_scene(size, flood=6.0, seed=22)]
        ),
        "orbit.mp4": lambda: mp4_mjpeg_bytes(orbit_frames(), 96, 72),
        "render_scene.json": lambda: json_bytes(RENDER_REQUEST),
    }


PILLOW_ENCODED = {"street.png", "park.jpg", "orbit.mp4"}  # encoder output may vary by version


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    args = p.parse_args(argv)
    bad = 0
    for name, make in build().items():
        data = make()
        path = args.out / name
        if args.check:
            if name in PILLOW_ENCODED:
                continue
            if not path.exists() or path.read_bytes() != data:
                print(f"differs: {name}", file=sys.stderr)
                bad += 1
        else:
            path.write_bytes(data)
            print(f"{name}: {len(data):,} bytes")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
