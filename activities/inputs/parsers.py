"""Small, standard-library-only readers for the binary formats the services take.

TIFF/GeoTIFF (classic and BigTIFF; strips or tiles; none/deflate/LZW/PackBits; predictor 2),
NIfTI-1 (.nii and .nii.gz), DICOM Part 10 (implicit/explicit VR little endian), ISO BMFF
(MP4/MOV: boxes, tracks, Motion-JPEG frames) and RIFF/WAVE chunk layout.

They are shared by the input validators (which turn `FormatError` into an `InvalidInput` error
naming the problem) and by the local model server's reference stand-ins (which read the real
input). Nothing here imports pydantic or Temporal: a model-server process starts in ~0.1 s.
Every reader bounds its work by the input's length: offsets and counts pointing outside the data
are errors, never reads past the end or huge allocations. Counts a file can declare cheaply (TIFF
tag values, MP4 samples, a NIfTI data offset) are also capped by explicit limits, so a small
hostile file cannot make a reader materialize far more than its own size.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload


class FormatError(ValueError):
    """The bytes do not form a valid file of the expected format (message says where)."""


class FormatLimitError(FormatError):
    """The file declares more than a reader limit allows (values, samples, offsets)."""


# =============================================================================== TIFF / GeoTIFF

TAG_IMAGE_WIDTH, TAG_IMAGE_LENGTH, TAG_BITS_PER_SAMPLE, TAG_COMPRESSION = 256, 257, 258, 259
TAG_PHOTOMETRIC, TAG_STRIP_OFFSETS, TAG_SAMPLES_PER_PIXEL, TAG_ROWS_PER_STRIP = 262, 273, 277, 278
TAG_STRIP_BYTE_COUNTS, TAG_PLANAR, TAG_PREDICTOR = 279, 284, 317
TAG_TILE_WIDTH, TAG_TILE_LENGTH, TAG_TILE_OFFSETS, TAG_TILE_BYTE_COUNTS = 322, 323, 324, 325
TAG_SAMPLE_FORMAT = 339
TAG_MODEL_PIXEL_SCALE, TAG_MODEL_TIEPOINT, TAG_MODEL_TRANSFORMATION = 33550, 33922, 34264
TAG_GEO_KEY_DIRECTORY, TAG_GEO_DOUBLE_PARAMS, TAG_GEO_ASCII_PARAMS = 34735, 34736, 34737
TAG_GDAL_NODATA = 42113
GEO_TAGS = (TAG_GEO_KEY_DIRECTORY, TAG_MODEL_TIEPOINT, TAG_MODEL_PIXEL_SCALE,
            TAG_MODEL_TRANSFORMATION)  # fmt: skip

# TIFF field type -> (struct code, size in bytes)
_TIFF_TYPES: dict[int, tuple[str, int]] = {
    1: ("B", 1), 2: ("s", 1), 3: ("H", 2), 4: ("I", 4), 5: ("II", 8), 6: ("b", 1), 7: ("B", 1),
    8: ("h", 2), 9: ("i", 4), 10: ("ii", 8), 11: ("f", 4), 12: ("d", 8), 13: ("I", 4),
    16: ("Q", 8), 17: ("q", 8), 18: ("Q", 8),
}  # fmt: skip
_COMPRESSIONS = {1: "none", 5: "lzw", 8: "deflate", 32946: "deflate", 32773: "packbits"}

# The tags whose values the readers use; every other tag is only bounds-checked, never read (a
# file's private tags may all point at one large blob: reading them would cost tags x blob).
TAG_NEW_SUBFILE_TYPE = 254
TIFF_READ_TAGS = frozenset({
    TAG_NEW_SUBFILE_TYPE, TAG_IMAGE_WIDTH, TAG_IMAGE_LENGTH, TAG_BITS_PER_SAMPLE, TAG_COMPRESSION,
    TAG_PHOTOMETRIC, TAG_STRIP_OFFSETS, TAG_SAMPLES_PER_PIXEL, TAG_ROWS_PER_STRIP,
    TAG_STRIP_BYTE_COUNTS, TAG_PLANAR, TAG_PREDICTOR, TAG_TILE_WIDTH, TAG_TILE_LENGTH,
    TAG_TILE_OFFSETS, TAG_TILE_BYTE_COUNTS, TAG_SAMPLE_FORMAT, *GEO_TAGS, TAG_GEO_DOUBLE_PARAMS,
    TAG_GEO_ASCII_PARAMS, TAG_GDAL_NODATA,
})  # fmt: skip
# Limits of one parse (all pages): values of one tag (one strip per row of a 1M-row image, or
# ~250,000 tiles: far above any image within MAX_IMAGE_PIXELS), bytes of tag values read in all
# (offsets + byte counts of a million strips), and directory entries looked at (real pages have
# a few dozen).
TIFF_MAX_TAG_VALUES = 1 << 20
TIFF_MAX_VALUE_BYTES = 16 << 20
TIFF_MAX_ENTRIES = 1 << 20
# Bands `read_tiff_bands` decodes: it holds bands x sampled pixels values, so SamplesPerPixel (a
# SHORT: up to 65,535) is capped (the geospatial models take 6; hyperspectral scenes a few hundred).
TIFF_MAX_READ_BANDS = 512
# Field types of the tags read as whole numbers (sizes, offsets, codes, GeoKeyDirectory): BYTE,
# SHORT, LONG, SBYTE, SSHORT, SLONG, IFD, LONG8, SLONG8, IFD8. An ASCII, rational or floating
# value there (NaN, "abc") is refused as malformed instead of failing later in int().
_TIFF_INTEGER_TYPES = frozenset({1, 3, 4, 6, 8, 9, 13, 16, 17, 18})
_TIFF_NUMERIC_TAGS = frozenset({TAG_MODEL_PIXEL_SCALE, TAG_MODEL_TIEPOINT,
                                TAG_MODEL_TRANSFORMATION, TAG_GEO_DOUBLE_PARAMS})  # fmt: skip
_TIFF_TEXT_TAGS = frozenset({TAG_GEO_ASCII_PARAMS, TAG_GDAL_NODATA})
# struct code (standard size) -> array typecode of the same size.
_ARRAY_CODES = {c: c if array(c).itemsize == struct.calcsize("<" + c) else {"I": "L", "i": "l"}[c]
                for c in "bBhHiIfdqQ"}  # fmt: skip


@dataclass
class TiffPage:
    """One IFD (page) of a TIFF: the tags the readers need (`TIFF_READ_TAGS`), numeric values as
    compact arrays, ASCII values as a one-string tuple."""

    tags: dict[int, Sequence[Any]]
    index: int

    def one(self, tag: int, default: Any = None) -> Any:
        v = self.tags.get(tag)
        return v[0] if v else default

    @property
    def width(self) -> int:
        return int(self.one(TAG_IMAGE_WIDTH, 0))

    @property
    def height(self) -> int:
        return int(self.one(TAG_IMAGE_LENGTH, 0))

    @property
    def samples_per_pixel(self) -> int:
        return int(self.one(TAG_SAMPLES_PER_PIXEL, 1))

    @property
    def bits_per_sample(self) -> tuple[int, ...]:
        return tuple(int(b) for b in self.tags.get(TAG_BITS_PER_SAMPLE, (1,)))

    @property
    def sample_format(self) -> int:
        return int(self.one(TAG_SAMPLE_FORMAT, 1))  # 1 uint, 2 int, 3 float

    @property
    def compression(self) -> int:
        return int(self.one(TAG_COMPRESSION, 1))

    @property
    def planar(self) -> int:
        return int(self.one(TAG_PLANAR, 1))

    @property
    def predictor(self) -> int:
        return int(self.one(TAG_PREDICTOR, 1))

    @property
    def tiled(self) -> bool:
        return TAG_TILE_OFFSETS in self.tags

    @property
    def georeferenced(self) -> bool:
        return any(t in self.tags for t in GEO_TAGS)

    def geo(self) -> dict[str, Any]:
        """GeoTIFF facts: pixel scale, tie point, EPSG code (from the GeoKeyDirectory)."""
        out: dict[str, Any] = {}
        if TAG_MODEL_PIXEL_SCALE in self.tags:
            out["pixel_scale"] = [float(v) for v in self.tags[TAG_MODEL_PIXEL_SCALE][:3]]
        if TAG_MODEL_TIEPOINT in self.tags:
            out["tiepoint"] = [float(v) for v in self.tags[TAG_MODEL_TIEPOINT][:6]]
        if TAG_MODEL_TRANSFORMATION in self.tags:
            out["transformation"] = [float(v) for v in self.tags[TAG_MODEL_TRANSFORMATION][:16]]
        keys = self.tags.get(TAG_GEO_KEY_DIRECTORY)
        if keys and len(keys) >= 4:
            n = int(keys[3])
            for i in range(n):
                row = keys[4 + 4 * i : 8 + 4 * i]
                if len(row) < 4:
                    break
                key_id, location, _count, value = (int(x) for x in row)
                if location == 0 and key_id in (3072, 2048):  # Projected / Geographic CRS
                    out.setdefault("epsg", value)
                if location == 0 and key_id == 1024:  # GTModelTypeGeoKey
                    out["model_type"] = {1: "projected", 2: "geographic", 3: "geocentric"}.get(
                        value, str(value)
                    )
        return out


@dataclass
class TiffInfo:
    byte_order: str  # "<" or ">"
    bigtiff: bool
    pages: list[TiffPage]


def _tiff_header(data: bytes) -> tuple[str, bool, int]:
    if len(data) < 8:
        raise FormatError("TIFF header is truncated")
    if data[:2] == b"II":
        bo = "<"
    elif data[:2] == b"MM":
        bo = ">"
    else:
        raise FormatError("not a TIFF (no II/MM byte-order mark)")
    magic = struct.unpack(bo + "H", data[2:4])[0]
    if magic == 42:
        return bo, False, struct.unpack(bo + "I", data[4:8])[0]
    if magic == 43:
        if len(data) < 16:
            raise FormatError("BigTIFF header is truncated")
        return bo, True, struct.unpack(bo + "Q", data[8:16])[0]
    raise FormatError(f"not a TIFF (version {magic}, expected 42 or 43)")


class _TiffBudget:
    """What one parse may still read: directory entries and bytes of tag values."""

    def __init__(self) -> None:
        self.entries = TIFF_MAX_ENTRIES
        self.value_bytes = TIFF_MAX_VALUE_BYTES


def _tag_values(data: bytes, bo: str, typ: int, cnt: int, pos: int) -> Sequence[Any]:
    code, size = _TIFF_TYPES[typ]
    raw = data[pos : pos + cnt * size]
    if typ == 2:
        return (raw.split(b"\0", 1)[0].decode("latin-1"),)
    if typ in (5, 10):  # rationals: numerator / denominator pairs
        ints = _values(raw, _ARRAY_CODES[code[0]], bo)
        return array("d", (ints[i] / ints[i + 1] if ints[i + 1] else 0.0
                           for i in range(0, len(ints), 2)))  # fmt: skip
    return _values(raw, _ARRAY_CODES[code], bo)


def _read_ifd(data: bytes, bo: str, big: bool, offset: int, index: int,
              only: frozenset[int] | set[int] = TIFF_READ_TAGS,
              budget: _TiffBudget | None = None) -> tuple[TiffPage, int]:  # fmt: skip
    """One IFD. Only the values of the tags in `only` are read; every tag's value must lie in the
    file. Refuses a directory, a tag or a parse (`budget`) beyond the TIFF_MAX_* limits."""
    budget = budget or _TiffBudget()
    n = len(data)
    head, entry, tail = (8, 20, 8) if big else (2, 12, 4)
    if offset < 8 or offset + head > n:
        raise FormatError(f"TIFF IFD {index} offset {offset} is outside the file ({n} bytes)")
    count = struct.unpack_from(bo + ("Q" if big else "H"), data, offset)[0]
    end = offset + head + count * entry
    if count == 0 or end + tail > n:
        raise FormatError(f"TIFF IFD {index} has {count} entries that do not fit in the file")
    budget.entries -= count
    if budget.entries < 0:
        raise FormatLimitError(f"TIFF directories hold more than {TIFF_MAX_ENTRIES:,} entries "
                               f"(IFD {index} has {count:,})")  # fmt: skip
    tags: dict[int, Sequence[Any]] = {}
    for i in range(count):
        pos = offset + head + i * entry
        if big:
            tag, typ, cnt = struct.unpack_from(bo + "HHQ", data, pos)
            value_pos, inline = pos + 12, 8
        else:
            tag, typ, cnt = struct.unpack_from(bo + "HHI", data, pos)
            value_pos, inline = pos + 8, 4
        if typ not in _TIFF_TYPES:
            continue  # unknown field types are skipped, as the spec asks readers to
        total = cnt * _TIFF_TYPES[typ][1]
        if total > inline:
            value_pos = struct.unpack_from(bo + ("Q" if big else "I"), data, value_pos)[0]
        if value_pos + total > n:
            raise FormatError(f"TIFF tag {tag} in IFD {index} points outside the file")
        if tag not in only:
            continue  # bounds-checked above; its value is never read
        _check_field_type(tag, typ, index)
        if cnt > TIFF_MAX_TAG_VALUES:
            raise FormatLimitError(f"TIFF tag {tag} in IFD {index} has {cnt:,} values; at most "
                                   f"{TIFF_MAX_TAG_VALUES:,} are read per tag")  # fmt: skip
        budget.value_bytes -= total
        if budget.value_bytes < 0:
            raise FormatLimitError(f"TIFF tag values to read exceed {TIFF_MAX_VALUE_BYTES:,} "
                                   f"bytes (at tag {tag} in IFD {index})")  # fmt: skip
        tags[tag] = _tag_values(data, bo, typ, cnt, value_pos)
    nxt = struct.unpack_from(bo + ("Q" if big else "I"), data, end)[0]
    return TiffPage(tags, index), nxt


def _check_field_type(tag: int, typ: int, index: int) -> None:
    """A read tag's field type must suit how its value is used (see `_TIFF_INTEGER_TYPES`)."""
    if tag in _TIFF_TEXT_TAGS:
        return
    if tag in _TIFF_NUMERIC_TAGS:
        if typ == 2:
            raise FormatError(f"TIFF tag {tag} in IFD {index} is ASCII text; it must be numbers")
        return
    if typ not in _TIFF_INTEGER_TYPES:
        raise FormatError(f"TIFF tag {tag} in IFD {index} has field type {typ}; it must be an "
                          "integer type (BYTE, SHORT, LONG, ...)")  # fmt: skip


def parse_tiff(data: bytes, max_pages: int = 256) -> TiffInfo:
    """Every IFD's tags, with the layout checked: sizes, sample layout, data blocks in the file."""
    bo, big, offset = _tiff_header(data)
    pages: list[TiffPage] = []
    seen: set[int] = set()
    budget = _TiffBudget()
    while offset:
        if offset in seen:
            raise FormatError("TIFF IFD chain loops back on itself")
        if len(pages) >= max_pages:
            raise FormatError(f"TIFF has more than {max_pages} pages")
        seen.add(offset)
        page, offset = _read_ifd(data, bo, big, offset, len(pages), budget=budget)
        _check_page(data, page)
        pages.append(page)
    if not pages:
        raise FormatError("TIFF has no image directory")
    return TiffInfo(bo, big, pages)


def tiff_first_page_tags(data: bytes) -> TiffPage | None:
    """Just the first IFD's georeferencing tags (for sniffing); None if unreadable."""
    try:
        bo, big, offset = _tiff_header(data)
        return _read_ifd(data, bo, big, offset, 0, only=frozenset(GEO_TAGS))[0]
    except (FormatError, struct.error):
        return None


def _check_page(data: bytes, page: TiffPage) -> None:
    where = f"TIFF page {page.index + 1}"
    w, h, spp = page.width, page.height, page.samples_per_pixel
    if w <= 0 or h <= 0:
        raise FormatError(f"{where}: image size {w} x {h} is not positive")
    if spp <= 0:
        raise FormatError(f"{where}: SamplesPerPixel is {spp}")
    bps = page.bits_per_sample
    if len(bps) not in (1, spp):
        raise FormatError(f"{where}: {len(bps)} BitsPerSample values for {spp} samples")
    if page.tiled:
        offs, counts = page.tags.get(TAG_TILE_OFFSETS, ()), page.tags.get(TAG_TILE_BYTE_COUNTS, ())
        tw, tl = int(page.one(TAG_TILE_WIDTH, 0)), int(page.one(TAG_TILE_LENGTH, 0))
        if tw <= 0 or tl <= 0:
            raise FormatError(f"{where}: tile size {tw} x {tl} is not positive")
        expected = math.ceil(w / tw) * math.ceil(h / tl) * (spp if page.planar == 2 else 1)
    else:
        offs = page.tags.get(TAG_STRIP_OFFSETS, ())
        counts = page.tags.get(TAG_STRIP_BYTE_COUNTS, ())
        rps = int(page.one(TAG_ROWS_PER_STRIP, h) or h)
        expected = math.ceil(h / min(max(rps, 1), h)) * (spp if page.planar == 2 else 1)
    if not offs or len(offs) != len(counts):
        raise FormatError(f"{where}: image data offsets/byte counts are missing or mismatched")
    if len(offs) < expected:
        raise FormatError(f"{where}: {len(offs)} data blocks, the image needs {expected}")
    for o, c in zip(offs, counts, strict=True):
        if o < 0 or c < 0:
            raise FormatError(f"{where}: a data block has a negative offset or size ({c} bytes at "
                              f"offset {o})")  # fmt: skip
        if o + c > len(data):
            raise FormatError(
                f"{where}: a data block ({c} bytes at offset {o}) runs past the end of the file "
                f"({len(data)} bytes): truncated?"
            )


def _packbits(src: bytes, limit: int = sys.maxsize) -> bytes:
    out, i, n = bytearray(), 0, len(src)
    while i < n and len(out) < limit:
        b = src[i]
        i += 1
        if b < 128:
            out += src[i : i + b + 1]
            i += b + 1
        elif b > 128:
            if i < n:
                out += bytes([src[i]]) * (257 - b)
            i += 1
    return bytes(out)


def _lzw(src: bytes, limit: int = sys.maxsize) -> bytes:
    """TIFF LZW: MSB-first variable-width codes (9..12 bits) with "early change"; stops once
    `limit` bytes are out."""
    out = bytearray()
    table: list[bytes] = [bytes([i]) for i in range(256)] + [b"", b""]
    padded = src + b"\0\0\0"
    pos, nbits, prev, total = 0, 9, b"", len(src) * 8
    while pos + nbits <= total and len(out) < limit:
        i = pos >> 3
        chunk = (padded[i] << 16) | (padded[i + 1] << 8) | padded[i + 2]
        code = (chunk >> (24 - (pos & 7) - nbits)) & ((1 << nbits) - 1)
        pos += nbits
        if code == 257:  # end of information
            break
        if code == 256:  # clear
            del table[258:]
            nbits, prev = 9, b""
            continue
        if code < len(table):
            entry = table[code]
            if prev:
                table.append(prev + entry[:1])
        elif prev and code == len(table):
            entry = prev + prev[:1]
            table.append(entry)
        else:
            raise FormatError("LZW data is corrupt")
        out += entry
        prev = entry
        if len(table) + 1 >= (1 << nbits) and nbits < 12:
            nbits += 1
    return bytes(out)


def _decompress(block: bytes, compression: int, limit: int = sys.maxsize) -> bytes:
    """One data block, decompressed to at most `limit` bytes (the block's raster: a deflate,
    LZW or PackBits bomb is cut there, never expanded in memory)."""
    if compression == 1:
        return block
    if compression in (8, 32946):
        d = zlib.decompressobj()
        try:
            out = d.decompress(block, limit)
        except zlib.error as exc:
            raise FormatError(f"deflate data is corrupt: {exc}") from exc
        if not d.eof and len(out) < limit:
            raise FormatError("deflate data is corrupt: incomplete or truncated stream")
        return out
    if compression == 32773:
        return _packbits(block, limit)
    if compression == 5:
        return _lzw(block, limit)
    raise FormatError(f"TIFF compression {compression} is not supported (none, LZW, deflate, "
                      "PackBits are)")  # fmt: skip


def _typecode(bits: int, fmt: int) -> str:
    codes = {(8, 1): "B", (8, 2): "b", (16, 1): "H", (16, 2): "h", (32, 1): "I", (32, 2): "i",
             (32, 3): "f", (64, 3): "d", (64, 1): "Q", (64, 2): "q"}  # fmt: skip
    if (bits, fmt) not in codes:
        raise FormatError(f"TIFF samples of {bits} bits (format {fmt}) are not supported")
    code = codes[(bits, fmt)]
    if array(code).itemsize * 8 != bits:  # "I" is 32-bit on every platform CPython supports
        code = {"I": "L", "i": "l"}.get(code, code)
    return code


def _values(raw: bytes, code: str, byte_order: str) -> array[Any]:
    arr = array(code)
    usable = len(raw) - len(raw) % arr.itemsize
    arr.frombytes(raw[:usable])
    if (byte_order == "<") != (sys.byteorder == "little") and arr.itemsize > 1:
        arr.byteswap()
    return arr


def read_tiff_bands(data: bytes, page_index: int = 0,
                    max_pixels: int = 1 << 20) -> tuple[int, int, list[list[float]]]:  # fmt: skip
    """Decode one page into per-band row-major lists, keeping every `step`-th row and column so at
    most `max_pixels` pixels are returned. Returns (width, height, bands) of the sampled raster."""
    info = parse_tiff(data)
    if page_index >= len(info.pages):
        raise FormatError(f"TIFF has {len(info.pages)} page(s); page {page_index + 1} asked")
    page = info.pages[page_index]
    w, h, spp = page.width, page.height, page.samples_per_pixel
    bits = page.bits_per_sample[0]
    if any(b != bits for b in page.bits_per_sample):
        raise FormatError("TIFF bands of different bit depths are not supported")
    code = _typecode(bits, page.sample_format)
    if page.predictor not in (1, 2) or (page.predictor == 2 and page.sample_format == 3):
        raise FormatError(f"TIFF predictor {page.predictor} is not supported")
    if spp > TIFF_MAX_READ_BANDS:
        raise FormatLimitError(f"TIFF page {page_index + 1} has {spp:,} samples per pixel; at "
                               f"most {TIFF_MAX_READ_BANDS} bands are read")  # fmt: skip
    step = max(1, math.ceil(math.sqrt(w * h / max_pixels)))
    while math.ceil(w / step) * math.ceil(h / step) > max(max_pixels, 1):
        step *= 2  # a very wide or tall page: the square-root step keeps too many pixels
    ow, oh = math.ceil(w / step), math.ceil(h / step)
    bands = [[0.0] * (ow * oh) for _ in range(spp)]
    planes = spp if page.planar == 2 else 1
    per_px = 1 if page.planar == 2 else spp
    if page.tiled:
        bw, bh = int(page.one(TAG_TILE_WIDTH)), int(page.one(TAG_TILE_LENGTH))
        offs, counts = page.tags[TAG_TILE_OFFSETS], page.tags[TAG_TILE_BYTE_COUNTS]
        across, down = math.ceil(w / bw), math.ceil(h / bh)
        blocks = [(p, (i // across) * bh, (i % across) * bw)
                  for p in range(planes) for i in range(across * down)]  # fmt: skip
    else:
        rps = min(max(int(page.one(TAG_ROWS_PER_STRIP, h) or h), 1), h)
        bw, bh = w, rps
        offs, counts = page.tags[TAG_STRIP_OFFSETS], page.tags[TAG_STRIP_BYTE_COUNTS]
        per_plane = math.ceil(h / rps)
        blocks = [(p, i * rps, 0) for p in range(planes) for i in range(per_plane)]
    for k, (plane, y0, x0) in enumerate(blocks):
        block_bytes = max(1, (bw * bh * per_px * bits + 7) // 8)
        raw = _decompress(data[offs[k] : offs[k] + counts[k]], page.compression, block_bytes)
        vals = _values(raw, code, info.byte_order)
        row_len = bw * per_px
        if page.predictor == 2:
            mask = (1 << bits) - 1 if page.sample_format == 1 else None
            for r in range(len(vals) // row_len):
                base = r * row_len
                for i in range(base + per_px, base + row_len):
                    v = vals[i] + vals[i - per_px]
                    if mask is not None:
                        v &= mask
                    elif bits < 64:  # signed wrap-around
                        v = (v + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))
                    vals[i] = v
        for r in range((-y0) % step, min(bh, h - y0), step):  # the sampled rows only
            y = y0 + r
            oy = y // step
            base = r * row_len
            if base + row_len > len(vals):
                raise FormatError(f"TIFF page {page_index + 1}: a data block is short")
            first = (-x0) % step
            for c in range(first, bw, step):
                x = x0 + c
                if x >= w:
                    break
                ox = x // step
                if page.planar == 2:
                    bands[plane][oy * ow + ox] = vals[base + c]
                else:
                    px = base + c * spp
                    for b in range(spp):
                        bands[b][oy * ow + ox] = vals[px + b]
    return ow, oh, bands


# =============================================================================== NIfTI-1

NIFTI_HEADER_SIZE = 348
# Largest accepted vox_offset: the header plus extensions (real ones are kilobytes to a few MB,
# e.g. embedded DICOM headers); anything beyond is refused before decompressing a byte of it.
NIFTI_MAX_VOX_OFFSET = 256 << 20
# Deflate cannot expand data more than ~1032:1, so a gzip stream of n bytes holds at most this
# many times n: a header that needs more is refused as truncated without decompressing it.
GZIP_MAX_RATIO = 1032
_GUNZIP_CHUNK = 1 << 20
NIFTI_DATATYPES: dict[int, tuple[str, int, str]] = {  # code -> (name, bits, array typecode)
    2: ("uint8", 8, "B"), 4: ("int16", 16, "h"), 8: ("int32", 32, "i"), 16: ("float32", 32, "f"),
    64: ("float64", 64, "d"), 256: ("int8", 8, "b"), 512: ("uint16", 16, "H"),
    768: ("uint32", 32, "I"),
}  # fmt: skip


@dataclass
class NiftiHeader:
    byte_order: str
    dims: tuple[int, ...]  # dim[1..dim[0]]
    datatype: int
    bitpix: int
    pixdim: tuple[float, ...]  # voxel sizes matching dims
    vox_offset: int
    scl_slope: float
    scl_inter: float
    xyzt_units: int
    magic: bytes
    gzipped: bool = False

    @property
    def voxels(self) -> int:
        return math.prod(self.dims)

    @property
    def data_bytes(self) -> int:
        return self.voxels * self.bitpix // 8

    @property
    def datatype_name(self) -> str:
        return NIFTI_DATATYPES.get(self.datatype, (f"code {self.datatype}", 0, ""))[0]

    @property
    def spatial_unit(self) -> str:
        return {1: "m", 2: "mm", 3: "um"}.get(self.xyzt_units & 0x07, "unknown")


def is_gzip(data: bytes) -> bool:
    return data[:2] == b"\x1f\x8b"


def gunzip_prefix(data: bytes, n: int) -> bytes:
    """The first `n` decompressed bytes of a gzip stream, across members (a multi-member file's
    first member may hold fewer); fewer if the stream ends, is cut or is corrupt before them,
    empty if it is not gzip. Decompresses no more than `n` bytes."""
    out = bytearray()
    try:
        for piece in _gunzip_chunks(data, sys.maxsize, n):
            out += piece
    except FormatError:
        pass  # what came before the damage is still the stream's start (for sniffing)
    return bytes(out[:n])


def _gunzip_chunks(data: bytes, limit: int, keep: int) -> Iterator[bytes]:
    """Decompressed pieces (at most `_GUNZIP_CHUNK` bytes each) of a gzip stream: the whole
    stream, checked (corrupt, truncated, more than `limit` bytes: FormatError), or, when
    `keep` < `limit`, just its first `keep` bytes. Memory stays one piece, whatever the input.
    A stream of several gzip members (pigz, bgzip, `cat a.gz b.gz`) is read member after member,
    as `gzip` does; bytes after the last member that do not start another are ignored. Input is
    fed in slices that grow from 64 bytes within each member, so the bytes zlib copies out after
    a member ends stay proportional to that member (many tiny members cost linear time)."""
    if keep <= 0:
        return  # (zlib reads a max_length of 0 as "no limit")
    view, n = memoryview(data), len(data)
    pos, produced = 0, 0
    while True:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        feed = 64
        try:
            while not d.eof:
                src: bytes | memoryview = d.unconsumed_tail
                if not src:
                    if pos >= n:
                        break  # input used up before the end of the stream
                    src = view[pos : pos + feed]
                    pos += len(src)
                    feed = min(2 * feed, _GUNZIP_CHUNK)
                # Bounded output per call, and never past `keep` (a prefix costs its length).
                piece = d.decompress(src, min(_GUNZIP_CHUNK, keep - produced))
                if not piece:
                    continue
                produced += len(piece)
                if produced > limit:
                    raise FormatError(f"gzip data decompresses to more than {limit:,} bytes")
                yield piece
                if produced >= keep:
                    return
        except zlib.error as exc:
            raise FormatError(f"gzip data is corrupt: {exc}") from exc
        if not d.eof:
            raise FormatError("gzip data is truncated")
        pos -= len(d.unused_data)  # where the next member, if any, starts
        if data[pos : pos + 2] != b"\x1f\x8b":
            return


def gunzip_count(data: bytes, limit: int) -> int:
    """The decompressed size of a gzip stream, checked as `gunzip_limited` does, in bounded
    memory (nothing is kept): refuses more than `limit` bytes."""
    return sum(len(piece) for piece in _gunzip_chunks(data, limit, limit + 1))


def gunzip_limited(data: bytes, limit: int, keep: int | None = None) -> bytes:
    """Decompress a gzip stream, refusing to produce more than `limit` bytes (bomb guard); with
    `keep`, return only the first `keep` bytes (the rest is neither decompressed nor checked)."""
    keep = limit + 1 if keep is None else keep
    out = bytearray()
    for piece in _gunzip_chunks(data, limit, keep):
        out += piece
    return bytes(out[:keep])


def nifti_byte_order(header: bytes) -> str | None:
    """'<' or '>' if the first bytes are a NIfTI-1/ANALYZE header (sizeof_hdr = 348)."""
    if len(header) < 4:
        return None
    if struct.unpack("<i", header[:4])[0] == NIFTI_HEADER_SIZE:
        return "<"
    if struct.unpack(">i", header[:4])[0] == NIFTI_HEADER_SIZE:
        return ">"
    return None


def parse_nifti_header(data: bytes) -> NiftiHeader:
    """The NIfTI-1 header of a .nii (or .nii.gz) file, with every field the checks need sane."""
    gz = is_gzip(data)
    head = gunzip_prefix(data, NIFTI_HEADER_SIZE + 4) if gz else data[: NIFTI_HEADER_SIZE + 4]
    if len(head) < NIFTI_HEADER_SIZE:
        raise FormatError(f"NIfTI header is truncated ({len(head)} of 348 bytes)")
    bo = nifti_byte_order(head)
    if bo is None:
        raise FormatError("not a NIfTI-1 file: sizeof_hdr is not 348")
    magic = head[344:348]
    if magic == b"ni1\0":
        raise FormatError("two-file NIfTI (.hdr + .img, magic 'ni1') is not supported; "
                          "send a single .nii or .nii.gz")  # fmt: skip
    if magic != b"n+1\0":
        raise FormatError(f"NIfTI magic at byte 344 is {magic!r}, expected 'n+1\\0'")
    dim = struct.unpack_from(bo + "8h", head, 40)
    ndim = dim[0]
    if not 1 <= ndim <= 7:
        raise FormatError(f"NIfTI dim[0] is {ndim}; it must be 1..7")
    dims = tuple(int(d) for d in dim[1 : ndim + 1])
    if any(d <= 0 for d in dims):
        raise FormatError(f"NIfTI dimensions {list(dims)} must all be positive")
    datatype, bitpix = struct.unpack_from(bo + "hh", head, 70)
    if datatype not in NIFTI_DATATYPES:
        raise FormatError(f"NIfTI datatype {datatype} is not supported "
                          f"(supported: {sorted(NIFTI_DATATYPES)})")  # fmt: skip
    if bitpix != NIFTI_DATATYPES[datatype][1]:
        raise FormatError(f"NIfTI bitpix {bitpix} does not match datatype "
                          f"{NIFTI_DATATYPES[datatype][0]}")  # fmt: skip
    pixdim = struct.unpack_from(bo + "8f", head, 76)
    vox_offset = struct.unpack_from(bo + "f", head, 108)[0]
    if not math.isfinite(vox_offset) or vox_offset < NIFTI_HEADER_SIZE:
        raise FormatError(f"NIfTI vox_offset {vox_offset} is below the 348-byte header")
    if vox_offset > NIFTI_MAX_VOX_OFFSET:
        raise FormatLimitError(f"NIfTI vox_offset {vox_offset:.0f} is beyond the "
                               f"{NIFTI_MAX_VOX_OFFSET:,} bytes accepted for the header and "
                               "its extensions")  # fmt: skip
    slope, inter = struct.unpack_from(bo + "ff", head, 112)
    xyzt_units = head[123]
    sizes = tuple(abs(float(p)) for p in pixdim[1 : ndim + 1])
    if any(not math.isfinite(p) for p in sizes):
        raise FormatError("NIfTI voxel sizes (pixdim) are not finite numbers")
    return NiftiHeader(bo, dims, datatype, bitpix, sizes, int(vox_offset),
                       float(slope), float(inter), xyzt_units, magic, gz)  # fmt: skip


def read_nifti(data: bytes, max_bytes: int = 1 << 31) -> tuple[NiftiHeader, array[Any]]:
    """Header and voxel values (x fastest, as stored; slope/intercept not applied)."""
    hdr = parse_nifti_header(data)
    end = hdr.vox_offset + hdr.data_bytes
    if end > max_bytes:
        raise FormatLimitError(f"NIfTI voxel data ends at byte {end:,}; at most {max_bytes:,} "
                               "are read")  # fmt: skip
    if hdr.gzipped and end > len(data) * GZIP_MAX_RATIO:
        raise FormatError(f"NIfTI voxel data is truncated: {list(hdr.dims)} "
                          f"{hdr.datatype_name} needs {end:,} bytes, more than a "
                          f"{len(data):,}-byte gzip stream can hold")  # fmt: skip
    raw = gunzip_limited(data, max_bytes, keep=end) if hdr.gzipped else data
    if len(raw) < end:
        raise FormatError(
            f"NIfTI voxel data is truncated: {list(hdr.dims)} {hdr.datatype_name} needs "
            f"{end} bytes, the file has {len(raw)}"
        )
    code = NIFTI_DATATYPES[hdr.datatype][2]
    if array(code).itemsize * 8 != hdr.bitpix:
        code = {"I": "L", "i": "l"}.get(code, code)
    return hdr, _values(raw[hdr.vox_offset : end], code, hdr.byte_order)


# =============================================================================== DICOM

TS_IMPLICIT_LE = "1.2.840.10008.1.2"
TS_EXPLICIT_LE = "1.2.840.10008.1.2.1"
TS_EXPLICIT_BE = "1.2.840.10008.1.2.2"
TS_DEFLATED = "1.2.840.10008.1.2.1.99"
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT",
             b"SV", b"UV"}  # fmt: skip
_UNDEFINED = 0xFFFFFFFF
_WANTED = {
    (0x0002, 0x0010): "transfer_syntax", (0x0002, 0x0002): "media_storage_sop_class",
    (0x0008, 0x0016): "sop_class_uid", (0x0008, 0x0060): "modality",
    (0x0028, 0x0002): "samples_per_pixel", (0x0028, 0x0004): "photometric",
    (0x0028, 0x0008): "frames", (0x0028, 0x0010): "rows", (0x0028, 0x0011): "columns",
    (0x0028, 0x0030): "pixel_spacing", (0x0018, 0x0050): "slice_thickness",
    (0x0028, 0x0100): "bits_allocated", (0x0028, 0x0103): "pixel_representation",
    (0x0028, 0x1052): "rescale_intercept", (0x0028, 0x1053): "rescale_slope",
}  # fmt: skip
# Implicit-VR transfer syntax: the VR of the wanted tags (everything else is skipped by length).
_IMPLICIT_VR = {"transfer_syntax": "UI", "media_storage_sop_class": "UI", "sop_class_uid": "UI",
                "modality": "CS", "samples_per_pixel": "US", "photometric": "CS", "frames": "IS",
                "rows": "US", "columns": "US", "pixel_spacing": "DS", "slice_thickness": "DS",
                "bits_allocated": "US", "pixel_representation": "US",
                "rescale_intercept": "DS", "rescale_slope": "DS"}  # fmt: skip


@dataclass
class DicomInfo:
    transfer_syntax: str
    values: dict[str, Any] = field(default_factory=dict)
    pixel_offset: int | None = None
    pixel_length: int | None = None  # None: encapsulated (compressed) pixel data

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


def _dicom_value(raw: bytes, vr: str, bo: str) -> Any:
    if vr == "US":
        vals = struct.unpack(f"{bo}{len(raw) // 2}H", raw[: len(raw) // 2 * 2])
        return vals[0] if len(vals) == 1 else list(vals)
    text = raw.decode("latin-1").strip("\0 ")
    if vr in ("IS", "DS"):
        nums = []
        for part in text.split("\\"):
            try:
                nums.append(float(part) if vr == "DS" else int(float(part)))
            except (ValueError, OverflowError):  # not a number, or "1e999"
                continue
        return nums[0] if len(nums) == 1 else nums
    return text


def _skip_undefined(data: bytes, pos: int, bo: str) -> int:
    """Position after an undefined-length value (sequence or encapsulated data)."""
    depth, n = 1, len(data)
    while pos + 8 <= n:
        group, elem, length = struct.unpack_from(bo + "HHI", data, pos)
        pos += 8
        if (group, elem) == (0xFFFE, 0xE0DD):  # sequence delimitation
            depth -= 1
            if depth == 0:
                return pos
        elif (group, elem) == (0xFFFE, 0xE000):  # item
            if length != _UNDEFINED:
                pos += length
            else:
                depth += 1
        elif (group, elem) == (0xFFFE, 0xE00D):  # item delimitation
            depth -= 1
        else:  # an element inside an undefined-length item: skip by its length (explicit VR)
            vr = data[pos : pos + 2]
            if vr.isalpha() and vr.isupper():
                if pos + (8 if vr in _LONG_VRS else 4) > n:
                    break  # the file ends inside this element's header: not terminated
                if vr in _LONG_VRS:
                    length = struct.unpack_from(bo + "I", data, pos + 4)[0]
                    pos += 8
                else:
                    length = struct.unpack_from(bo + "H", data, pos + 2)[0]
                    pos += 4
            if length == _UNDEFINED:
                depth += 1
            else:
                pos += length
    raise FormatError("DICOM sequence or encapsulated data is not terminated")


def parse_dicom(data: bytes) -> DicomInfo:
    """A DICOM Part 10 file: 128-byte preamble, 'DICM', file meta group, then the data set."""
    if len(data) < 132:
        raise FormatError(f"file is too short for DICOM ({len(data)} bytes; the preamble and "
                          "'DICM' marker alone take 132)")  # fmt: skip
    if data[128:132] != b"DICM":
        raise FormatError("not a DICOM Part 10 file: no 'DICM' marker at offset 128")
    info = DicomInfo(transfer_syntax="")
    pos, n = 132, len(data)
    explicit, bo = True, "<"
    in_meta = True
    while pos + 8 <= n:
        group, elem = struct.unpack_from(bo + "HH", data, pos)
        if in_meta and group != 0x0002:
            in_meta = False
            ts = info.transfer_syntax
            if not ts:
                raise FormatError("DICOM file meta has no Transfer Syntax UID (0002,0010)")
            if ts == TS_IMPLICIT_LE:
                explicit = False
            elif ts == TS_EXPLICIT_BE:
                bo = "<"  # the data set is big endian; rare and retired: refuse plainly
                raise FormatError("DICOM explicit VR big endian (retired) is not supported")
            elif ts == TS_DEFLATED:
                raise FormatError("deflated DICOM transfer syntax is not supported")
            continue
        tag_pos = pos
        pos += 4
        if explicit:
            vr_b = data[pos : pos + 2]
            if len(vr_b) < 2 or not (vr_b.isalpha() and vr_b.isupper()):
                raise FormatError(f"DICOM element ({group:04X},{elem:04X}) at offset {tag_pos} "
                                  f"has no valid VR ({vr_b!r})")  # fmt: skip
            if vr_b in _LONG_VRS:
                if pos + 8 > n:
                    break
                length = struct.unpack_from(bo + "I", data, pos + 4)[0]
                pos += 8
            else:
                length = struct.unpack_from(bo + "H", data, pos + 2)[0]
                pos += 4
            vr = vr_b.decode()
        else:
            length = struct.unpack_from(bo + "I", data, pos)[0]
            pos += 4
            vr = ""
        if (group, elem) == (0x7FE0, 0x0010):
            info.pixel_offset = pos
            info.pixel_length = None if length == _UNDEFINED else length
            if length != _UNDEFINED and pos + length > n:
                raise FormatError(f"DICOM pixel data declares {length} bytes but only "
                                  f"{n - pos} remain: truncated?")  # fmt: skip
            break
        if length == _UNDEFINED:
            pos = _skip_undefined(data, pos, bo)
            continue
        if pos + length > n:
            raise FormatError(f"DICOM element ({group:04X},{elem:04X}) at offset {tag_pos} "
                              f"declares {length} bytes but only {n - pos} remain")  # fmt: skip
        name = _WANTED.get((group, elem))
        if name:
            vr = vr or _IMPLICIT_VR[name]
            value = _dicom_value(data[pos : pos + length], vr, bo)
            if name == "transfer_syntax":
                info.transfer_syntax = str(value)
            else:
                info.values[name] = value
        pos += length
    if not info.transfer_syntax:
        raise FormatError("DICOM file meta has no Transfer Syntax UID (0002,0010)")
    return info


TS_NATIVE = (TS_IMPLICIT_LE, TS_EXPLICIT_LE)  # uncompressed pixel data (big endian is refused)
_DICOM_TAGS = {"rows": "Rows (0028,0010)", "columns": "Columns (0028,0011)",
               "frames": "NumberOfFrames (0028,0008)",
               "samples_per_pixel": "SamplesPerPixel (0028,0002)",
               "bits_allocated": "BitsAllocated (0028,0100)"}  # fmt: skip


def dicom_count(info: DicomInfo, name: str, default: int) -> int:
    """A single positive whole number (Rows, Columns, NumberOfFrames, ...); `default` if the
    element is absent. Multi-valued, empty, non-numeric or non-positive values are refused."""
    label = _DICOM_TAGS.get(name, name)
    if name not in info.values:
        return default
    value = info.values[name]
    if isinstance(value, list):
        if not value:
            raise FormatError(f"DICOM {label} is empty or not a number")
        shown = "\\".join(str(v) for v in value[:4]) + ("\\..." if len(value) > 4 else "")
        raise FormatError(f"DICOM {label} has {len(value)} values ({shown}); it must be one "
                          "number")  # fmt: skip
    if isinstance(value, str) or isinstance(value, float) and not value.is_integer():
        raise FormatError(f"DICOM {label} is {value!r}; it must be a whole number")
    if int(value) <= 0:
        raise FormatError(f"DICOM {label} is {int(value)}; it must be positive")
    return int(value)


def dicom_pixel_bytes(info: DicomInfo) -> int:
    """Bytes of native pixel data the image needs: rows x columns x frames x samples x bits
    allocated / 8 (rounded up; BitsAllocated 16 when absent, as `read_dicom_pixels` reads)."""
    bits = (dicom_count(info, "rows", 0) * dicom_count(info, "columns", 0)
            * dicom_count(info, "frames", 1) * dicom_count(info, "samples_per_pixel", 1)
            * dicom_count(info, "bits_allocated", 16))  # fmt: skip
    return (bits + 7) // 8


def read_dicom_pixels(data: bytes) -> tuple[DicomInfo, int, int, int, array[Any]]:
    """(info, rows, columns, frames, values) of native (uncompressed) grayscale pixel data."""
    info = parse_dicom(data)
    rows, cols = dicom_count(info, "rows", 0), dicom_count(info, "columns", 0)
    frames = dicom_count(info, "frames", 1)
    if info.pixel_offset is None:
        raise FormatError("DICOM file has no pixel data (7FE0,0010)")
    if info.pixel_length is None:
        raise FormatError(f"DICOM pixel data is encapsulated (transfer syntax "
                          f"{info.transfer_syntax}); only native pixel data is read")  # fmt: skip
    if rows <= 0 or cols <= 0:
        raise FormatError(f"DICOM Rows/Columns are {rows} x {cols}")
    if dicom_count(info, "samples_per_pixel", 1) != 1:
        raise FormatError("only single-sample (grayscale) DICOM pixel data is read")
    bits = dicom_count(info, "bits_allocated", 16)
    representation = info.get("pixel_representation", 0)
    if representation in ([], ""):
        representation = 0  # present but empty: the default
    if isinstance(representation, list | str) or representation not in (0, 1):
        raise FormatError(f"DICOM PixelRepresentation (0028,0103) is {representation!r}; it must "
                          "be 0 (unsigned) or 1 (signed)")  # fmt: skip
    signed = representation == 1
    code = {(8, False): "B", (8, True): "b", (16, False): "H", (16, True): "h",
            (32, False): "I", (32, True): "i"}.get((bits, signed))  # fmt: skip
    if code is None:
        raise FormatError(f"DICOM BitsAllocated {bits} is not supported")
    need = rows * cols * frames * bits // 8
    if info.pixel_length < need:
        raise FormatError(f"DICOM pixel data has {info.pixel_length} bytes; "
                          f"{rows} x {cols} x {frames} at {bits} bits needs {need}")  # fmt: skip
    raw = data[info.pixel_offset : info.pixel_offset + need]
    return info, rows, cols, frames, _values(raw, code, "<")


# =============================================================================== ISO BMFF (MP4)

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex"}


def iter_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[
        tuple[bytes, int, int]]:  # fmt: skip
    """(type, payload start, box end) of each box between start and end."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, typ = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            if pos + 16 > end:
                raise FormatError(f"MP4 box {typ!r} at offset {pos} is truncated")
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            raise FormatError(f"MP4 box {typ.decode('latin-1')!r} at offset {pos} declares "
                              f"{size} bytes; only {end - pos} remain: truncated?")  # fmt: skip
        yield typ, pos + head, pos + size
        pos += size


# Entries read from one sample table (stsz samples, stco/co64 chunks, stsc runs): 4,194,304
# frames are 39 hours of 30 fps video, far beyond a 1 GiB upload.
MP4_MAX_SAMPLES = 1 << 22


class RepeatedSize(Sequence[int]):
    """`length` samples of one size (stsz with a fixed sample size), without a per-sample list."""

    def __init__(self, size: int, length: int) -> None:
        self.size, self.length = size, length

    def __len__(self) -> int:
        return self.length

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> RepeatedSize: ...
    def __getitem__(self, index: int | slice) -> int | RepeatedSize:
        if isinstance(index, slice):
            return RepeatedSize(self.size, len(range(*index.indices(self.length))))
        if not -self.length <= index < self.length:
            raise IndexError("sample index out of range")
        return self.size


@dataclass
class Mp4Track:
    handler: str = ""
    codec: str = ""  # sample entry fourcc ("avc1", "hvc1", "mp4v", "jpeg", ...)
    object_type: int | None = None  # esds objectTypeIndication (0x6C = JPEG)
    width: int = 0
    height: int = 0
    timescale: int = 0
    duration: int = 0
    sample_sizes: Sequence[int] = field(default_factory=list)  # array, or RepeatedSize
    chunk_offsets: Sequence[int] = field(default_factory=list)
    # stsc as stored: (first_chunk, samples_per_chunk, sample_description_index) per run, flat
    stsc: Sequence[int] = field(default_factory=list)

    @property
    def is_mjpeg(self) -> bool:
        return self.codec in ("jpeg", "mjpa", "mjpb", "MJPG") or (
            self.codec == "mp4v" and self.object_type == 0x6C
        )

    def _runs(self) -> Iterator[tuple[int, int, int]]:
        """(first chunk, chunks, samples per chunk) of each stsc run, within the chunk table;
        chunks are numbered from 1, as in the file."""
        nchunks, runs = len(self.chunk_offsets), len(self.stsc) // 3
        for r in range(runs):
            first, per = self.stsc[3 * r], self.stsc[3 * r + 1]
            nxt = self.stsc[3 * r + 3] if r + 1 < runs else nchunks + 1
            yield first, max(0, min(nxt, nchunks + 1) - first), per

    def placed_samples(self) -> int:
        """How many samples (from the first) the chunk tables place in the file."""
        total, count = 0, len(self.sample_sizes)
        for _first, chunks, per in self._runs():
            total += chunks * per
            if total >= count:
                return count
        return total

    def _size_sum(self, start: int, stop: int) -> int:
        sizes = self.sample_sizes
        if isinstance(sizes, RepeatedSize):
            return (stop - start) * sizes.size
        return sum(sizes[start:stop])

    def sample_range(self, index: int) -> tuple[int, int] | None:
        """(offset, size) of sample `index` (from 0); None if the chunk tables do not place it.
        Work is bounded by the stsc runs and one chunk's samples, never the whole track."""
        if not 0 <= index < len(self.sample_sizes):
            return None
        before = 0  # samples in the runs before this one
        for first, chunks, per in self._runs():
            in_run = chunks * per
            if index < before + in_run:
                chunk, within = divmod(index - before, per)
                start = index - within  # the chunk's first sample
                offset = self.chunk_offsets[first + chunk - 1] + self._size_sum(start, index)
                return offset, self.sample_sizes[index]
            before += in_run
        return None

    def iter_sample_ranges(self) -> Iterator[tuple[int, int]]:
        """(offset, size) of every placed sample, from stsc/stco/stsz, one at a time."""
        index, count = 0, len(self.sample_sizes)
        for first, chunks, per in self._runs():
            for chunk in range(first, first + chunks):
                pos = self.chunk_offsets[chunk - 1]
                for _ in range(per):
                    if index >= count:
                        return
                    size = self.sample_sizes[index]
                    yield pos, size
                    pos += size
                    index += 1


@dataclass
class Mp4Info:
    major_brand: str
    compatible: list[str]
    timescale: int = 0
    duration: int = 0
    has_mdat: bool = False
    tracks: list[Mp4Track] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.duration / self.timescale if self.timescale else 0.0

    @property
    def video(self) -> Mp4Track | None:
        return next((t for t in self.tracks if t.handler == "vide"), None)


def _full_box(data: bytes, pos: int) -> tuple[int, int]:
    v = data[pos]
    return v, pos + 4


def parse_mp4(data: bytes) -> Mp4Info:
    """ftyp, movie header, and every track's handler, codec, size and sample table."""
    if len(data) < 12 or data[4:8] != b"ftyp":
        raise FormatError("not an MP4/MOV file: no 'ftyp' box at the start")
    info: Mp4Info | None = None
    moov: tuple[int, int] | None = None
    for typ, start, end in iter_boxes(data):
        if typ == b"ftyp":
            brand = data[start : start + 4].decode("latin-1")
            compat = [data[i : i + 4].decode("latin-1") for i in range(start + 8, end - 3, 4)]
            info = Mp4Info(brand, compat)
        elif typ == b"moov":
            moov = (start, end)
        elif typ == b"mdat" and info is not None:
            info.has_mdat = True
    if info is None:
        raise FormatError("not an MP4/MOV file: no 'ftyp' box")
    if moov is None:
        raise FormatError("MP4 has no 'moov' box (movie header): truncated upload, or a "
                          "fragmented stream without an initial movie box")  # fmt: skip
    for typ, start, end in iter_boxes(data, *moov):
        if typ == b"mvhd":
            v, p = _full_box(data, start)
            if v == 1:
                info.timescale, info.duration = struct.unpack_from(">IQ", data, p + 16)
            else:
                info.timescale, info.duration = struct.unpack_from(">II", data, p + 8)
        elif typ == b"trak":
            info.tracks.append(_parse_trak(data, start, end))
    return info


# Container boxes one track may nest (real files: trak > mdia > minf > stbl, a few levels): deeper
# nesting is refused as malformed rather than recursed into until the interpreter's limit.
MP4_MAX_DEPTH = 32


def _parse_trak(data: bytes, start: int, end: int) -> Mp4Track:
    t = Mp4Track()

    def walk(s: int, e: int, depth: int = 0) -> None:
        if depth > MP4_MAX_DEPTH:
            raise FormatError(f"MP4 boxes nest more than {MP4_MAX_DEPTH} levels deep in a track")
        for typ, ps, pe in iter_boxes(data, s, e):
            if typ in _CONTAINERS:
                walk(ps, pe, depth + 1)
            elif typ == b"tkhd":
                v, p = _full_box(data, ps)
                off = p + (84 if v == 1 else 72)
                if off + 8 <= pe:
                    w, h = struct.unpack_from(">II", data, off)
                    t.width, t.height = w >> 16, h >> 16
            elif typ == b"mdhd":
                v, p = _full_box(data, ps)
                if v == 1:
                    t.timescale, t.duration = struct.unpack_from(">IQ", data, p + 16)
                else:
                    t.timescale, t.duration = struct.unpack_from(">II", data, p + 8)
            elif typ == b"hdlr":
                t.handler = data[ps + 8 : ps + 12].decode("latin-1")
            elif typ == b"stsd":
                _, p = _full_box(data, ps)
                for etyp, es, ee in iter_boxes(data, p + 4, pe):
                    t.codec = etyp.decode("latin-1")
                    if t.handler == "vide" and es + 78 <= ee:
                        t.width = t.width or struct.unpack_from(">H", data, es + 24)[0]
                        t.height = t.height or struct.unpack_from(">H", data, es + 26)[0]
                        for ctyp, cs, _ce in iter_boxes(data, es + 78, ee):
                            if ctyp == b"esds":
                                t.object_type = _esds_object_type(data, cs + 4, _ce)
                    break
            elif typ == b"stsz":
                _, p = _full_box(data, ps)
                size, count = struct.unpack_from(">II", data, p)
                if size:
                    if count * size > len(data):
                        raise FormatError(
                            f"MP4 sample size table declares {count:,} samples of {size:,} "
                            f"bytes, more than the whole file ({len(data):,} bytes): malformed "
                            "or truncated"
                        )
                    _check_table_count("sample size", count)
                    t.sample_sizes = RepeatedSize(size, count)
                else:
                    t.sample_sizes = _table(data, "sample size", "I", count, p + 8, pe)
            elif typ in (b"stco", b"co64"):
                _, p = _full_box(data, ps)
                count = struct.unpack_from(">I", data, p)[0]
                code = "I" if typ == b"stco" else "Q"
                t.chunk_offsets = _table(data, "chunk offset", code, count, p + 4, pe)
            elif typ == b"stsc":
                _, p = _full_box(data, ps)
                count = struct.unpack_from(">I", data, p)[0]
                stsc = _table(data, "sample-to-chunk", "I", count, p + 4, pe, width=3)
                if 0 in stsc[::3]:
                    raise FormatError("MP4 sample-to-chunk table is malformed: a run starts at "
                                      "chunk 0 (chunks are numbered from 1)")  # fmt: skip
                t.stsc = stsc

    walk(start, end)
    return t


def _check_table_count(name: str, count: int) -> None:
    if count > MP4_MAX_SAMPLES:
        raise FormatLimitError(f"MP4 {name} table has {count:,} entries; at most "
                               f"{MP4_MAX_SAMPLES:,} are read per track")  # fmt: skip


def _table(data: bytes, name: str, code: str, count: int, pos: int, end: int,
           width: int = 1) -> array[int]:  # fmt: skip
    """`count` big-endian entries of `width` values each, which must lie inside the box."""
    nbytes = count * width * struct.calcsize(">" + code)
    if pos + nbytes > end:
        raise FormatError(f"MP4 {name} table is truncated: {count:,} entries need {nbytes:,} "
                          f"bytes, the box holds {max(0, end - pos):,}")  # fmt: skip
    _check_table_count(name, count)
    return _values(data[pos : pos + nbytes], _ARRAY_CODES[code], ">")


def _esds_object_type(data: bytes, pos: int, end: int) -> int | None:
    """objectTypeIndication of the DecoderConfigDescriptor (tag 4) in an esds payload."""
    while pos < end:
        tag = data[pos]
        pos += 1
        length = 0
        for _ in range(4):
            if pos >= end:
                return None
            b = data[pos]
            pos += 1
            length = (length << 7) | (b & 0x7F)
            if not b & 0x80:
                break
        if tag == 3:  # ES_Descriptor: ES_ID(2) flags(1) [+ optional fields], then children
            if pos + 3 > end:
                return None
            flags = data[pos + 2]
            pos += 3 + (2 if flags & 0x80 else 0)
            if flags & 0x40:
                if pos >= end:
                    return None
                pos += 1 + data[pos]
            if flags & 0x20:
                pos += 2
            continue
        if tag == 4:
            return data[pos] if pos < end else None
        pos += length
    return None


def mp4_jpeg_frames(data: bytes, info: Mp4Info, max_frames: int = 64) -> list[bytes]:
    """Up to `max_frames` evenly spaced JPEG frames of a Motion-JPEG video track."""
    video = info.video
    if video is None:
        raise FormatError("MP4 has no video track")
    if not video.is_mjpeg:
        raise FormatError(f"video codec {video.codec!r} is not Motion-JPEG")
    placed = video.placed_samples()
    if not placed:
        raise FormatError("MP4 video track has no samples")
    step = max(1, math.ceil(placed / max_frames))
    frames = []
    for i, (off, size) in enumerate(video.iter_sample_ranges()):
        if i % step:
            continue
        if off + size > len(data):
            raise FormatError("MP4 sample points past the end of the file: truncated?")
        frames.append(data[off : off + size])
    return frames


# =============================================================================== RIFF / WAVE


@dataclass
class WavLayout:
    format_tag: int  # 1 PCM, 3 IEEE float, ...; the sub-format's tag for WAVE_FORMAT_EXTENSIBLE
    channels: int
    sample_rate: int
    bits: int
    data_offset: int
    data_declared: int
    data_present: int
    extensible: bool = False  # WAVE_FORMAT_EXTENSIBLE (0xFFFE): `format_tag` is the sub-format's


def parse_wav_layout(data: bytes) -> WavLayout:
    """The fmt and data chunks of a RIFF/WAVE file, with the data length checked."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise FormatError("not a WAV file: no RIFF/WAVE header")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise FormatError(f"WAV 'fmt ' chunk is {size} bytes; at least 16 are needed")
            tag, ch, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", data, body)
            extensible = tag == 0xFFFE and size >= 40 and body + 26 <= len(data)
            if extensible:  # WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the tag
                tag = struct.unpack_from("<H", data, body + 24)[0]
            fmt = (tag, ch, rate, bits, extensible)
        elif cid == b"data":
            if fmt is None:
                raise FormatError("WAV 'data' chunk comes before the 'fmt ' chunk")
            tag, ch, rate, bits, extensible = fmt
            return WavLayout(tag, ch, rate, bits, body, size, min(size, len(data) - body),
                             extensible)  # fmt: skip
        pos = body + size + (size & 1)
    if fmt is None:
        raise FormatError("WAV file has no 'fmt ' chunk")
    raise FormatError("WAV file has no 'data' chunk")
