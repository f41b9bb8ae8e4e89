"""Reference stand-ins of the self-hosted models: cheap, real computations on the actual input.

The local model server (`local_model_server.py`) serves one of these per model process, picked by
the model's specialty or category. Each reads the real input and computes an honest, simple answer
with Pillow and the standard library (no ML libraries, no weights); each response has the shape of
the real model container's response, plus `"stand_in": true` and `"model": <model id>`. Values are
deterministic: the same input gives the same output.

Invocation body (POST /invocations, or the file an async invocation's InputLocation names):

1. A JSON envelope (what the job workflows send):

       {"input_location": "/abs/path" | "file:///abs/path",   # or "input_base64": "..."
        "content_type": "image/png",      # optional: the stand-in sniffs the bytes anyway
        "task": "detect/floods",          # optional: the operation, for multi-task models
        "options": {...}}                 # e.g. {"box": [x1, y1, x2, y2]} for segmentation

   `input_location` is a local path (the local backend's spool or the caller's file). An `s3://`
   location is refused with 400: the stand-in does not read S3.
2. The raw input bytes (what SageMaker's HF/PyTorch containers take), with its Content-Type.
   Headerless audio is read as 16 kHz 16-bit mono PCM (the `audio/L16;rate=16000` convention).
3. For JSON-native operations, the request itself: a render request (`{"scene", "camera", ...}`),
   a geometry problem (`{"problem": ...}`), or `{"sequence": ...}` / `{"inputs": ...}` for proteins.

An input the model cannot read (not an image, bad FASTA, ...) is the container's 400 (`BadInput`).

Response schemas (every one also has "model" and "stand_in": true):

- object detection -> {"detections": [{"label": "object", "score", "box": [x1, y1, x2, y2],
  "attributes": {"color", "area_px", "fill"}}], "image_size": [w, h], "method"}.
  Regions: colour-quantised (median cut, 12 colours) connected components at <= 256 px; a region
  is an object when it covers 0.1-35 % of the image and spans < 95 % of its width and height;
  score = 0.3 + 0.45 x contrast with its surroundings + 0.25 x fill ratio (capped at 0.99).
  Labels are "object": colour regions carry no class; the real detector returns COCO labels.
- segmentation -> {"masks": [{"box", "area", "score", "rle": {"size": [h, w], "counts"}}],
  "image_size", "method"}; COCO uncompressed RLE (column-major) at the input's resolution.
  With `options.box` (the perception/analyze pipeline calls this per detection): the foreground
  inside the box (colour distance from the median colour of a ring just outside the box, split
  into same-colour components; the largest one not touching the box edges); without: one mask
  per detected region.
- classification -> {"predictions": [{"label", "score"}] (all labels, scores sum to 1),
  "features"}. Labels: vegetation, sky, water, built_up, bare_ground, snow_ice, night, from colour
  and texture statistics (hue fractions, brightness, edge density) through a softmax.
- speech_to_text -> {"text", "segments": [{"id", "start", "end", "text", "avg_dbfs"}],
  "duration_s", "language": null}; segments are energy-based voice activity (20 ms frames,
  threshold 12 dB over the 10th-percentile noise floor, gaps < 0.2 s merged, < 0.1 s dropped);
  the text is a placeholder clearly labelled "[stand-in transcript: ...]".
- speaker_identification -> {"segments": [{"speaker", "start", "end"}], "num_speakers",
  "embedding"}: the voice-activity segments, one speaker, and a 64-bin long-term average spectrum
  (50 Hz-4 kHz, Goertzel) as the embedding.
- protein_embeddings -> {"embedding" (first record), "length", "id", "embeddings": [{"id",
  "length", "embedding"}], "dim": 420, "features": "aac20+dpc400"}: amino-acid composition (20)
  and dipeptide composition (400), a real if simple sequence embedding.
- protein_folding -> {"pdb", "plddt", "mean_plddt", "length", "method"}: an ideal alpha-helix
  backbone (N, CA, C, O built from ideal bond geometry with phi -57, psi -47, omega 180) with a
  per-residue pLDDT from the TOP-IDP disorder-propensity scale (Campen et al. 2008, 9-residue
  window), in the B-factor column as AlphaFold writes it. Not a structure prediction: the PDB says
  so in a REMARK.
- geometry_reasoning -> {"name", "points", "constructions", "goal", "solved": false,
  "proof": null, "status": "not_attempted"}: the problem parsed (AlphaGeometry syntax); no proof
  search is run.
- medical segmentation -> {"segments": [{"label", "voxels" | "pixels", "volume_ml" | "area_mm2",
  "bbox", "centroid"}], "threshold", "input": {"format", "dims", "voxel_size_mm"}, and
  "mask_nifti_gz_base64" (volumes: a uint8 NIfTI mask, as nnU-Net returns) or "mask_rle" (2D)}.
  Two-level Otsu threshold: background vs body, then the bright structure within the body
  (`options.threshold` overrides; `options.box` restricts a 2D image).
- satellite analysis (task from `task`/`options.task`; default classify, or change for a
  two-scene TIFF): spectral indices over the HLS bands (Blue, Green, Red, NIR, SWIR1, SWIR2;
  `options.band_order` overrides): water = MNDWI > 0 (NDWI without SWIR), vegetation = NDVI > 0.3,
  else bare_soil (red/blue > 1.4) or built_up.
  classify -> {"predictions": [{"label", "score" = area fraction}], "dominant", "indices"};
  detect/floods -> {"flood_fraction", "water_pixels", "water_area_km2", "bbox", "mask_rle",
  "index"}; change (page 1 = before, page 2 = after, or `options.before_location`) ->
  {"changed_fraction", "changed_pixels", "changed_area_km2", "transitions", "new_water_fraction",
  "mean_abs_ndvi_change", "bbox"}.
- 3D reconstruction (nerf) -> {"format": "model/obj", "obj", "num_points", "num_vertices",
  "num_faces", "bbox", "frames_used"}; gaussian -> {"format": "model/ply", "ply_base64" (binary
  3DGS layout, degree-0 colour), "num_gaussians", "bbox", "frames_used"}. A shape-from-silhouette
  visual hull on a 20^3 grid from the video's Motion-JPEG frames (or one JPEG/PNG), assuming a
  turntable orbit with evenly spaced views (the real pipeline estimates poses with COLMAP);
  coordinates are normalised to [-1, 1].
- render -> {"images": [{"view", "format": "image/png", "width", "height", "png_base64"}],
  "views_requested", "views_rendered"}: a ray caster over the inline scene's spheres, boxes and
  planes (Lambert shading, hard shadows), up to 8 views of a camera path. `scene_ref` (a trained
  scene) cannot be resolved by the stand-in: 400.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import math
import os
import random
import struct
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activities.inputs import parsers
from activities.inputs.parsers import FormatError
from activities.inputs.sniff import normalize, sniff_content_type


class BadInput(ValueError):
    """The request cannot be served: the container's 4xx (the same input fails again)."""


@dataclass
class Request:
    body: bytes
    content_type: str
    model_id: str
    # The directories an `input_location` may be read from (resolved); None: anywhere, for
    # in-process callers. The model server always sets them: its port is open to every local user.
    read_roots: tuple[Path, ...] | None = None

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.model_id.encode() + b"\0" + self.body).digest()

    def rng(self) -> random.Random:
        """Same input -> same output (a reference stand-in is deterministic)."""
        return random.Random(int.from_bytes(self.digest[:8], "big"))

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    def text(self, *keys: str) -> str:
        """The text payload: a JSON field among `keys`, else the body as UTF-8."""
        data = self.json()
        if isinstance(data, dict):
            for key in keys:
                if isinstance(data.get(key), str):
                    return data[key]
        return self.body.decode("utf-8", "replace")


Handler = Callable[[Request], Any]
STAND_INS: dict[str, Handler] = {}


def stand_in(*keys: str) -> Callable[[Handler], Handler]:
    """Register a reference stand-in under specialties and/or categories."""

    def register(fn: Handler) -> Handler:
        for key in keys:
            STAND_INS[key] = fn
        return fn

    return register


# =============================================================================== the input


@dataclass
class Invocation:
    data: bytes  # the input itself
    content_type: str  # sniffed from the bytes (else the declared type)
    options: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    request: dict[str, Any] | None = None  # the JSON request when the body is one


def readable_path(location: str, roots: tuple[Path, ...] | None) -> Path:
    """The local file `location` names, if it lies under one of `roots` once resolved
    (symlinks and '..' followed, so neither leads outside); BadInput otherwise."""
    if location.startswith("s3://"):
        raise BadInput(f"the local stand-in reads local paths only; got {location}")
    path = Path(location.removeprefix("file://"))
    if roots is None:
        return path
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise BadInput(f"input_location {location} cannot be resolved: {exc}") from exc
    if not any(real.is_relative_to(root) for root in roots):
        raise BadInput(
            f"input_location {location} is outside the directories this model server may read "
            f"(its --read-root: the worker's data_dir and input_roots)"
        )
    return real


def _opened_path(fd: int) -> Path | None:
    """The path of the file `fd` is open on (Linux: the kernel's name for it, no symlinks in
    it); None where /proc is unavailable."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


def read_under_roots(location: str, roots: tuple[Path, ...] | None) -> bytes:
    """The bytes of the local file `location`, if it lies under one of `roots` (None: anywhere).

    `readable_path` checks the resolved name, then the open follows the name again: a directory
    or symlink swapped in between would lead out. So the check is repeated on what was opened.
    """
    real = readable_path(location, roots)  # early, clear refusals; the same messages
    try:
        # The name as given: what the open follows is what the fd check judges. Blocking, so a
        # FIFO input waits for its writer as a plain read would.
        fd = os.open(location.removeprefix("file://"), os.O_RDONLY)
    except FileNotFoundError as exc:
        raise BadInput(f"input_location {location} does not exist") from exc
    except OSError as exc:
        raise BadInput(f"input_location {location} cannot be read: {exc}") from exc
    with os.fdopen(fd, "rb") as fh:
        if roots is not None:
            opened = _opened_path(fd)
            if opened is None:  # no /proc (not Linux): resolve again, it must name this file
                again = Path(os.path.realpath(real))
                st, named = os.fstat(fd), os.stat(again)
                inside = (st.st_dev, st.st_ino) == (named.st_dev, named.st_ino) and any(
                    again.is_relative_to(root) for root in roots
                )
            else:
                inside = any(opened.is_relative_to(root) for root in roots)
            if not inside:
                raise BadInput(
                    f"input_location {location} is outside the directories this model server "
                    f"may read (its --read-root: the worker's data_dir and input_roots)"
                )
        try:
            return fh.read()
        except IsADirectoryError as exc:
            raise BadInput(f"input_location {location} is a directory") from exc
        except OSError as exc:
            raise BadInput(f"input_location {location} cannot be read: {exc}") from exc


def resolve(req: Request) -> Invocation:
    """The input a request carries: envelope (location or base64), JSON request, or raw bytes."""
    obj = req.json() if req.body[:64].lstrip()[:1] == b"{" else None
    options: dict[str, Any] = {}
    task = None
    if isinstance(obj, dict):
        raw_opts = obj.get("options") or {}
        if not isinstance(raw_opts, dict):
            raise BadInput('"options" must be a JSON object')
        options = raw_opts
        task = obj.get("task") or options.get("task")
        if isinstance(obj.get("input_location"), str):
            data = read_under_roots(obj["input_location"], req.read_roots)
        elif isinstance(obj.get("input_base64"), str):
            try:
                data = base64.b64decode(obj["input_base64"], validate=True)
            except ValueError as exc:
                raise BadInput(f"input_base64 is not valid base64: {exc}") from exc
        else:
            return Invocation(req.body, "application/json", options, task, obj)
        declared = normalize(obj.get("content_type"))
        ctype = sniff_content_type(data) or declared
        inner = None
        if ctype == "application/json":
            try:
                inner = json.loads(data)
            except ValueError:
                inner = None
        return Invocation(data, ctype, options, task, inner if isinstance(inner, dict) else None)
    ctype = sniff_content_type(req.body) or normalize(req.content_type)
    return Invocation(req.body, ctype, options, task, None)


def _base(req: Request, **fields: Any) -> dict[str, Any]:
    return {**fields, "model": req.model_id, "stand_in": True}


# =============================================================================== images


def _open_image(data: bytes) -> Any:
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:  # Pillow raises many types for undecodable data
        raise BadInput(f"input is not a decodable image: {exc}") from exc
    return img.convert("RGB")


def _analysis_copy(img: Any, max_side: int = 256) -> tuple[Any, float, float]:
    """A copy at most `max_side` px on its long side, and the scale factors back to the input."""
    w, h = img.size
    factor = max(w, h) / max_side
    if factor <= 1:
        return img, 1.0, 1.0
    small = img.resize((max(1, round(w / factor)), max(1, round(h / factor))), reducing_gap=2.0)
    return small, w / small.size[0], h / small.size[1]


_COLOR_NAMES = ((15, "red"), (40, "orange"), (68, "yellow"), (160, "green"), (195, "cyan"),
                (255, "blue"), (290, "purple"), (335, "pink"), (360, "red"))  # fmt: skip


def color_name(rgb: Sequence[float]) -> str:
    r, g, b = (c / 255 for c in rgb[:3])
    mx, mn = max(r, g, b), min(r, g, b)
    if mx < 0.2:
        return "black"
    if mx - mn < 0.12:
        return "white" if mx > 0.85 else "gray"
    d = mx - mn
    if mx == r:
        hue = 60 * (((g - b) / d) % 6)
    elif mx == g:
        hue = 60 * ((b - r) / d + 2)
    else:
        hue = 60 * ((r - g) / d + 4)
    if 15 <= hue < 45 and mx < 0.55:
        return "brown"
    return next(name for limit, name in _COLOR_NAMES if hue < limit)


@dataclass
class Region:
    index: int
    pixels: list[int]
    x0: int
    y0: int
    x1: int  # exclusive
    y1: int
    mean: tuple[float, float, float]

    @property
    def area(self) -> int:
        return len(self.pixels)


def _components(labels_src: bytes | list[int], rgb: bytes, w: int, h: int) -> list[Region]:
    """4-connected components of equal values of `labels_src` (one value per pixel)."""
    seen = bytearray(w * h)
    regions: list[Region] = []
    for start in range(w * h):
        if seen[start]:
            continue
        value = labels_src[start]
        seen[start] = 1
        stack, pixels = [start], []
        x0, y0, x1, y1 = w, h, 0, 0
        sr = sg = sb = 0
        while stack:
            p = stack.pop()
            pixels.append(p)
            y, x = divmod(p, w)
            x0, x1, y0, y1 = min(x0, x), max(x1, x), min(y0, y), max(y1, y)
            sr, sg, sb = sr + rgb[3 * p], sg + rgb[3 * p + 1], sb + rgb[3 * p + 2]
            if x > 0 and not seen[p - 1] and labels_src[p - 1] == value:
                seen[p - 1] = 1
                stack.append(p - 1)
            if x < w - 1 and not seen[p + 1] and labels_src[p + 1] == value:
                seen[p + 1] = 1
                stack.append(p + 1)
            if y > 0 and not seen[p - w] and labels_src[p - w] == value:
                seen[p - w] = 1
                stack.append(p - w)
            if y < h - 1 and not seen[p + w] and labels_src[p + w] == value:
                seen[p + w] = 1
                stack.append(p + w)
        n = len(pixels)
        regions.append(Region(len(regions), pixels, x0, y0, x1 + 1, y1 + 1,
                              (sr / n, sg / n, sb / n)))  # fmt: skip
    return regions


def _ring_mean(region: Region, rgb: bytes, w: int, h: int,
               pad: int = 2) -> tuple[float, float, float]:  # fmt: skip
    """Mean colour of the `pad`-wide ring just outside the region's bounding box."""
    x0, y0 = max(0, region.x0 - pad), max(0, region.y0 - pad)
    x1, y1 = min(w, region.x1 + pad), min(h, region.y1 + pad)
    total, n = [0, 0, 0], 0
    for y in range(y0, y1):
        inside_rows = region.y0 <= y < region.y1
        for x in range(x0, x1):
            if inside_rows and region.x0 <= x < region.x1:
                continue
            p = 3 * (y * w + x)
            total[0] += rgb[p]
            total[1] += rgb[p + 1]
            total[2] += rgb[p + 2]
            n += 1
    if not n:  # the box fills the image: compare with black
        return (0.0, 0.0, 0.0)
    return (total[0] / n, total[1] / n, total[2] / n)


def _dist(a: Sequence[float], b: Sequence[float]) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=False)))


@dataclass
class Proposal:
    region: Region
    score: float
    contrast: float
    fill: float


def _object_regions(img: Any) -> tuple[list[Proposal], int, int, float, float]:
    """Candidate objects (see the module docstring) at analysis resolution."""
    from PIL import Image

    small, sx, sy = _analysis_copy(img)
    w, h = small.size
    quant = small.quantize(colors=12, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    idx, rgb = quant.tobytes(), small.tobytes()
    total = w * h
    min_area = max(12, round(total * 0.001))
    out: list[Proposal] = []
    for region in _components(idx, rgb, w, h):
        bw, bh = region.x1 - region.x0, region.y1 - region.y0
        if not min_area <= region.area <= total * 0.35:
            continue
        if bw >= 0.95 * w or bh >= 0.95 * h:
            continue
        touches = region.x0 == 0 or region.y0 == 0 or region.x1 == w or region.y1 == h
        if touches and region.area > total * 0.02:  # large and cut by the frame: background
            continue
        ring = _ring_mean(region, rgb, w, h)
        contrast = min(1.0, _dist(region.mean, ring) / 200)
        fill = region.area / (bw * bh)
        score = min(0.99, 0.3 + 0.45 * contrast + 0.25 * fill)
        out.append(Proposal(region, round(score, 4), round(contrast, 4), round(fill, 4)))
    out.sort(key=lambda p: (-p.score, p.region.y0, p.region.x0))
    return out, w, h, sx, sy


def _scaled_box(r: Region, sx: float, sy: float, w: int, h: int) -> list[int]:
    return [
        max(0, math.floor(r.x0 * sx)),
        max(0, math.floor(r.y0 * sy)),
        min(w, math.ceil(r.x1 * sx)),
        min(h, math.ceil(r.y1 * sy)),
    ]


@stand_in("object_detection", "vision_detection")
def detection(req: Request) -> dict[str, Any]:
    inv = resolve(req)
    img = _open_image(inv.data)
    props, _, _, sx, sy = _object_regions(img)
    min_score = float(inv.options.get("min_score", 0.25))
    limit = int(inv.options.get("max_detections", 20))
    dets: list[dict[str, Any]] = []
    for p in props:
        if p.score < min_score or len(dets) >= limit:
            continue
        dets.append({
            "label": "object",
            "score": p.score,
            "box": _scaled_box(p.region, sx, sy, *img.size),
            "attributes": {"color": color_name(p.region.mean),
                           "area_px": round(p.region.area * sx * sy), "fill": p.fill},
        })  # fmt: skip
    return _base(req, detections=dets, image_size=list(img.size),
                 method="colour-region proposals (stand-in; no object classes)")  # fmt: skip


def rle_encode(columns: Sequence[Sequence[tuple[int, int]]], aw: int, ah: int, width: int,
               height: int) -> dict[str, Any]:  # fmt: skip
    """COCO uncompressed RLE (column-major) of a mask given as row runs [a0, a1) per analysis
    column, scaled (nearest neighbour) from an aw x ah grid to width x height."""
    counts: list[int] = []
    value, run = 0, 0

    def emit(v: int, n: int) -> None:
        nonlocal value, run
        if n <= 0:
            return
        if v == value:
            run += n
        else:
            counts.append(run)
            value, run = v, n

    for x in range(width):
        ax = min(aw - 1, x * aw // width)
        y = 0
        for a0, a1 in columns[ax]:
            s, e = -(-a0 * height // ah), -(-a1 * height // ah)
            emit(0, s - y)
            emit(1, e - s)
            y = e
        emit(0, height - y)
    counts.append(run)
    return {"size": [height, width], "counts": counts}


def _mask_columns(pixels: Sequence[int], aw: int, ah: int) -> list[list[tuple[int, int]]]:
    cols: list[list[int]] = [[] for _ in range(aw)]
    for p in pixels:
        y, x = divmod(p, aw)
        cols[x].append(y)
    runs: list[list[tuple[int, int]]] = []
    for ys in cols:
        ys.sort()
        col: list[tuple[int, int]] = []
        for y in ys:
            if col and col[-1][1] == y:
                col[-1] = (col[-1][0], y + 1)
            else:
                col.append((y, y + 1))
        runs.append(col)
    return runs


def _box_option(options: dict[str, Any], w: int, h: int) -> list[int] | None:
    box = options.get("box")
    if box is None:
        return None
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float)
                                                             for v in box)):  # fmt: skip
        raise BadInput("options.box must be [x1, y1, x2, y2] in pixels")
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise BadInput(f"options.box {box} does not cover at least 2 x 2 pixels of the "
                       f"{w} x {h} image")  # fmt: skip
    return [x1, y1, x2, y2]


def _segment_in_box(img: Any, box: list[int]) -> dict[str, Any] | None:
    small, sx, sy = _analysis_copy(img)
    aw, ah = small.size
    rgb = small.tobytes()
    bx0, by0 = int(box[0] / sx), int(box[1] / sy)
    bx1, by1 = max(bx0 + 1, math.ceil(box[2] / sx)), max(by0 + 1, math.ceil(box[3] / sy))
    bx1, by1 = min(aw, bx1), min(ah, by1)

    def px(x: int, y: int) -> tuple[int, int, int]:
        p = 3 * (y * aw + x)
        return rgb[p], rgb[p + 1], rgb[p + 2]

    # Background: the ring just outside the prompt box (a tight box's own border would be the
    # object); the box's border when the box fills the image.
    pad = max(2, round(0.05 * max(bx1 - bx0, by1 - by0)))
    rx0, ry0 = max(0, bx0 - pad), max(0, by0 - pad)
    rx1, ry1 = min(aw, bx1 + pad), min(ah, by1 + pad)
    border = [px(x, y) for y in range(ry0, ry1) for x in range(rx0, rx1)
              if not (bx0 <= x < bx1 and by0 <= y < by1)]  # fmt: skip
    if not border:
        border = [px(x, y) for x in range(bx0, bx1) for y in (by0, by1 - 1)]
        border += [px(x, y) for y in range(by0, by1) for x in (bx0, bx1 - 1)]
    bg = tuple(sorted(c[i] for c in border)[len(border) // 2] for i in range(3))
    dists = {(x, y): _dist(px(x, y), bg) for y in range(by0, by1) for x in range(bx0, bx1)}
    ordered = sorted(dists.values())
    threshold = max(24.0, 0.35 * ordered[int(0.95 * (len(ordered) - 1))])
    # Foreground pixels keep a coarse colour code, so touching regions of different colours
    # (a pedestrian standing on the road) stay separate components; background is -1.
    fg = [-1] * (aw * ah)
    for (x, y), d in dists.items():
        if d > threshold:
            r, g, b = px(x, y)
            fg[y * aw + x] = (r // 48) * 36 + (g // 48) * 6 + b // 48
    regions = [r for r in _components(fg, rgb, aw, ah) if fg[r.pixels[0]] >= 0]
    if not regions:
        return None
    # The prompted object lies inside the box: prefer components that do not touch its edges
    # (background that runs through the box does), then the largest.
    inner = [r for r in regions if r.x0 > bx0 and r.y0 > by0 and r.x1 < bx1 and r.y1 < by1]
    best = max(inner or regions, key=lambda r: r.area)
    contrast = min(1.0, _dist(best.mean, bg) / 200)
    w, h = img.size
    return {
        "box": _scaled_box(best, sx, sy, w, h),
        "area": round(best.area * sx * sy),
        "score": round(min(0.99, 0.4 + 0.59 * contrast), 4),
        "rle": rle_encode(_mask_columns(best.pixels, aw, ah), aw, ah, w, h),
        "prompt_box": box,
    }


@stand_in("instance_segmentation", "vision_segmentation")
def segmentation(req: Request) -> dict[str, Any]:
    inv = resolve(req)
    img = _open_image(inv.data)
    w, h = img.size
    box = _box_option(inv.options, w, h)
    if box is not None:
        mask = _segment_in_box(img, box)
        masks = [mask] if mask else []
        method = "foreground of the prompt box (colour distance from its border; stand-in)"
    else:
        props, aw, ah, sx, sy = _object_regions(img)
        masks = [{
            "box": _scaled_box(p.region, sx, sy, w, h),
            "area": round(p.region.area * sx * sy),
            "score": p.score,
            "rle": rle_encode(_mask_columns(p.region.pixels, aw, ah), aw, ah, w, h),
        } for p in props[: int(inv.options.get("max_masks", 20))]]  # fmt: skip
        method = "colour-region masks (stand-in)"
    return _base(req, masks=masks, image_size=[w, h], method=method)


def ranked(scores: dict[str, float]) -> list[dict[str, Any]]:
    """[{"label", "score"}] best first, scores rounded to 4 places and summing to exactly 1."""
    rounded = {k: round(v, 4) for k, v in scores.items()}
    order = sorted(rounded, key=lambda k: (-rounded[k], k))
    if order:
        rounded[order[0]] = round(rounded[order[0]] + 1 - sum(rounded.values()), 4)
    return [{"label": k, "score": rounded[k]} for k in order]


CLASS_LABELS = ("vegetation", "sky", "water", "built_up", "bare_ground", "snow_ice", "night")


@stand_in("image_classification", "vision_classification")
def classification(req: Request) -> dict[str, Any]:
    from PIL import ImageFilter, ImageStat

    inv = resolve(req)
    img, _, _ = _analysis_copy(_open_image(inv.data), 128)
    w, h = img.size
    hsv = img.convert("HSV").tobytes()
    n = w * h
    counts = dict.fromkeys(("green", "blue_top", "blue_bottom", "gray", "brown", "white", "dark"),
                           0)  # fmt: skip
    for p in range(n):
        hue, sat, val = hsv[3 * p] * 360 / 255, hsv[3 * p + 1], hsv[3 * p + 2]
        top = p // w < h / 2
        if val < 50:
            counts["dark"] += 1
        elif sat < 40:
            counts["white" if val > 200 else "gray"] += 1
        elif 70 <= hue < 170:
            counts["green"] += 1
        elif 180 <= hue < 255:
            counts["blue_top" if top else "blue_bottom"] += 1
        elif 15 <= hue < 50:
            counts["brown"] += 1
    f = {k: v / n for k, v in counts.items()}
    edges = ImageStat.Stat(img.convert("L").filter(ImageFilter.FIND_EDGES)).mean[0] / 255
    brightness = ImageStat.Stat(img.convert("L")).mean[0] / 255
    logits = {
        "vegetation": 6 * f["green"],
        "sky": 6 * f["blue_top"] * (0.5 + brightness),
        "water": 6 * f["blue_bottom"],
        "built_up": 4 * f["gray"] + 6 * edges,
        "bare_ground": 5 * f["brown"],
        "snow_ice": 6 * f["white"],
        "night": 6 * f["dark"] * (1.5 - brightness),
    }
    scale = 2.0  # softmax temperature 0.5: the dominant statistic wins clearly
    exps = {k: math.exp(scale * v) for k, v in logits.items()}
    total = sum(exps.values())
    preds = ranked({k: v / total for k, v in exps.items()})
    features = {k: round(v, 4) for k, v in f.items()}
    features.update(edge_density=round(edges, 4), brightness=round(brightness, 4))
    return _base(req, predictions=preds, features=features,
                 method="colour/texture statistics (stand-in label set)")  # fmt: skip


# =============================================================================== audio


def decode_audio(data: bytes, max_samples: int = 4_000_000) -> tuple[list[float], float, float]:
    """(mono samples in [-1, 1] (first channel; decimated to <= max_samples), effective sample
    rate, duration in seconds). Headerless input is 16 kHz 16-bit mono PCM."""
    if data[:4] == b"RIFF":
        try:
            lay = parsers.parse_wav_layout(data)
        except FormatError as exc:
            raise BadInput(f"audio is not a readable WAV: {exc}") from exc
        rate, channels, bits, tag = lay.sample_rate, max(1, lay.channels), lay.bits, lay.format_tag
        raw = data[lay.data_offset : lay.data_offset + lay.data_present]
    else:
        rate, channels, bits, tag, raw = 16000, 1, 16, 1, data
    width = bits // 8
    if width == 0 or not rate:
        raise BadInput("audio format is not readable")
    frames = len(raw) // (width * channels)
    duration = frames / rate
    step = max(1, math.ceil(frames / max_samples))
    stride = width * channels * step
    if tag == 3 and bits in (32, 64):
        code = "f" if bits == 32 else "d"
        arr = array(code)
        arr.frombytes(raw[: frames * width * channels])
        samples = [float(v) for v in arr[:: channels * step]]
    elif tag == 1 and bits == 16:
        arr = array("h")
        arr.frombytes(raw[: frames * 2 * channels])
        samples = [v / 32768 for v in arr[:: channels * step]]
    elif tag == 1 and bits == 8:
        samples = [(b - 128) / 128 for b in raw[: frames * channels : channels * step]]
    elif tag == 1 and bits in (24, 32):
        scale = float(1 << (bits - 1))
        samples = [int.from_bytes(raw[i : i + width], "little", signed=True) / scale
                   for i in range(0, frames * width * channels, stride)]  # fmt: skip
    else:
        raise BadInput(f"audio encoding {tag} with {bits} bits is not supported")
    return samples, rate / step, duration


def voice_activity(samples: list[float], rate: float, frame_s: float = 0.02
                   ) -> tuple[list[tuple[float, float, float]], float]:  # fmt: skip
    """Speech segments (start s, end s, mean dBFS) and the noise floor (dBFS)."""
    n = max(1, int(rate * frame_s))
    levels = []
    for i in range(0, len(samples) - n + 1, n):
        chunk = samples[i : i + n]
        rms = math.sqrt(sum(v * v for v in chunk) / n)
        levels.append(20 * math.log10(rms) if rms > 1e-9 else -180.0)
    if not levels:
        return [], -180.0
    floor = sorted(levels)[len(levels) // 10]
    threshold = max(floor + 12.0, -50.0)
    active = [lv > threshold for lv in levels]
    segs: list[list[int]] = []
    for i, on in enumerate(active):
        if on:
            if segs and i - segs[-1][1] <= round(0.2 / frame_s):
                segs[-1][1] = i + 1
            else:
                segs.append([i, i + 1])
    out = []
    for a, b in segs:
        if (b - a) * frame_s < 0.1:
            continue
        mean_db = 10 * math.log10(sum(10 ** (lv / 10) for lv in levels[a:b]) / (b - a))
        out.append((round(a * frame_s, 2), round(b * frame_s, 2), round(mean_db, 1)))
    return out, round(floor, 1)


@stand_in("speech_to_text", "audio_stt")
def speech_to_text(req: Request) -> dict[str, Any]:
    inv = resolve(req)
    samples, rate, duration = decode_audio(inv.data)
    voiced, floor = voice_activity(samples, rate)
    segments = [{"id": i, "start": s, "end": e, "avg_dbfs": db,
                 "text": f"[stand-in transcript: speech {s:.2f}-{e:.2f} s]"}
                for i, (s, e, db) in enumerate(voiced)]  # fmt: skip
    speech = sum(e - s for s, e, _ in voiced)
    text = (f"[stand-in transcript: {len(voiced)} speech segment(s), {speech:.2f} s of speech; "
            "no words are recognised by the stand-in]") if voiced else (
            "[stand-in transcript: no speech detected]")  # fmt: skip
    return _base(req, text=text, segments=segments, duration_s=round(duration, 2), language=None,
                 noise_floor_dbfs=floor)  # fmt: skip


def _goertzel_power(chunk: Sequence[float], freq: float, rate: float) -> float:
    k = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for v in chunk:
        s1, s2 = v + k * s1 - s2, s1
    return s1 * s1 + s2 * s2 - k * s1 * s2


@stand_in("speaker_identification", "audio_speaker")
def speakers(req: Request) -> dict[str, Any]:
    inv = resolve(req)
    samples, rate, duration = decode_audio(inv.data)
    voiced, _ = voice_activity(samples, rate)
    frames = []
    for s, e, _ in voiced:
        a, b = int(s * rate), int(e * rate)
        frames += [samples[i : i + 256] for i in range(a, max(a, b - 256), 512)]
    frames = frames[:: max(1, len(frames) // 16)][:16]
    top = min(4000.0, rate / 2 * 0.95)
    freqs = [50 * (top / 50) ** (i / 63) for i in range(64)]
    ltas = [0.0] * 64
    for fr in frames:
        for i, fq in enumerate(freqs):
            ltas[i] += _goertzel_power(fr, fq, rate)
    logs = [10 * math.log10(v / max(1, len(frames)) + 1e-12) for v in ltas]
    mean = sum(logs) / len(logs)
    norm = math.sqrt(sum((v - mean) ** 2 for v in logs)) or 1.0
    emb = [round((v - mean) / norm, 5) for v in logs] if frames else [0.0] * 64
    segments = [{"speaker": "SPEAKER_00", "start": s, "end": e} for s, e, _ in voiced]
    return _base(req, segments=segments, num_speakers=1 if voiced else 0, embedding=emb,
                 duration_s=round(duration, 2),
                 method="voice activity + long-term average spectrum (stand-in)")  # fmt: skip


# =============================================================================== proteins

AMINO = "ACDEFGHIKLMNPQRSTVWY"
_PROTEIN_CODES = set(AMINO) | set("XBZUO")
_THREE = dict(zip(AMINO, "ALA CYS ASP GLU PHE GLY HIS ILE LYS LEU MET ASN PRO GLN ARG SER THR "
                         "VAL TRP TYR".split(), strict=True))  # fmt: skip
_THREE.update({"U": "SEC", "O": "PYL", "X": "UNK", "B": "ASX", "Z": "GLX"})


def protein_records(req: Request) -> list[tuple[str, str]]:
    """(id, sequence) records from FASTA, a bare sequence, or {"sequence"|"inputs": ...}."""
    inv = resolve(req)
    if inv.request is not None:
        raw = next((inv.request[k] for k in ("sequence", "inputs", "text")
                    if isinstance(inv.request.get(k), str)), "")  # fmt: skip
    else:
        raw = inv.data.decode("utf-8", "replace")
    records: list[tuple[str, list[str]]] = []
    for line in raw.splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            records.append((line[1:].split()[0] if line[1:].split() else "", []))
        else:
            if not records:
                records.append(("", []))
            records[-1][1].append(line)
    out = []
    for ident, parts in records:
        seq = "".join("".join(parts).split()).upper().rstrip("*")
        if not seq or any(c not in _PROTEIN_CODES for c in seq):
            raise BadInput("input is not an amino-acid sequence (one-letter codes)")
        out.append((ident, seq))
    if not out:
        raise BadInput("input is not an amino-acid sequence (one-letter codes)")
    return out


def composition_embedding(seq: str) -> list[float]:
    """Amino-acid composition (20) + dipeptide composition (400) over the standard residues."""
    std = [c for c in seq if c in AMINO]
    aac = [std.count(a) / max(1, len(std)) for a in AMINO]
    pairs = [0] * 400
    for a, b in zip(seq, seq[1:], strict=False):
        if a in AMINO and b in AMINO:
            pairs[AMINO.index(a) * 20 + AMINO.index(b)] += 1
    total = max(1, len(seq) - 1)
    return [round(v, 5) for v in aac] + [round(v / total, 5) for v in pairs]


@stand_in("protein_embeddings")
def protein_embeddings(req: Request) -> dict[str, Any]:
    records = protein_records(req)
    embs = [{"id": ident, "length": len(seq), "embedding": composition_embedding(seq)}
            for ident, seq in records]  # fmt: skip
    first = embs[0]
    return _base(req, embedding=first["embedding"], length=first["length"], id=first["id"],
                 embeddings=embs, dim=420, features="aac20+dpc400")  # fmt: skip


# TOP-IDP disorder propensity (Campen et al., Protein Pept Lett 2008): low = order-promoting.
TOP_IDP = {"W": -0.884, "F": -0.697, "Y": -0.510, "I": -0.486, "M": -0.397, "L": -0.326,
           "V": -0.121, "N": 0.007, "C": 0.02, "T": 0.059, "A": 0.06, "G": 0.166, "R": 0.180,
           "D": 0.192, "H": 0.303, "Q": 0.318, "K": 0.586, "S": 0.341, "E": 0.736,
           "P": 0.987}  # fmt: skip


def plddt_from_propensity(seq: str, window: int = 9) -> list[float]:
    vals = [TOP_IDP.get(c, 0.2) for c in seq]
    half = window // 2
    out = []
    for i in range(len(seq)):
        win = vals[max(0, i - half) : i + half + 1]
        score = min(95.0, 85.0 - 45.0 * (sum(win) / len(win)))
        ends = min(i, len(seq) - 1 - i)
        if ends < 3:  # termini are floppier
            score -= (3 - ends) * 5
        out.append(round(max(30.0, score), 2))
    return out


Vec = tuple[float, float, float]


def _sub(a: Vec, b: Vec) -> Vec:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _cross(a: Vec, b: Vec) -> Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _unit(a: Vec) -> Vec:
    n = math.sqrt(a[0] ** 2 + a[1] ** 2 + a[2] ** 2)
    return (a[0] / n, a[1] / n, a[2] / n)


def place_atom(a: Vec, b: Vec, c: Vec, bond: float, angle_deg: float,
               torsion_deg: float) -> Vec:  # fmt: skip
    """Atom d with |cd| = bond, angle bcd, torsion abcd (NeRF, Parsons et al. 2005)."""
    ang, tor = math.radians(angle_deg), math.radians(torsion_deg)
    bc = _unit(_sub(c, b))
    n = _unit(_cross(_sub(b, a), bc))
    m = _cross(n, bc)
    d2 = (-bond * math.cos(ang), bond * math.sin(ang) * math.cos(tor),
          bond * math.sin(ang) * math.sin(tor))  # fmt: skip
    return tuple(c[i] + d2[0] * bc[i] + d2[1] * m[i] + d2[2] * n[i] for i in range(3))  # type: ignore[return-value]


def helix_backbone(n: int, phi: float = -57.0, psi: float = -47.0,
                   omega: float = 180.0) -> list[dict[str, Vec]]:  # fmt: skip
    """N, CA, C, O of `n` residues with ideal bond lengths/angles and the given torsions."""
    res: list[dict[str, Vec]] = []
    N: Vec = (0.0, 0.0, 0.0)  # noqa: N806 - atom names
    CA: Vec = (1.458, 0.0, 0.0)  # noqa: N806
    ang = math.radians(111.2)
    C: Vec = (CA[0] - 1.525 * math.cos(ang), 1.525 * math.sin(ang), 0.0)  # noqa: N806
    for i in range(n):
        if i:
            prev = res[-1]
            N = place_atom(prev["N"], prev["CA"], prev["C"], 1.329, 116.2, psi)  # noqa: N806
            CA = place_atom(prev["CA"], prev["C"], N, 1.458, 121.7, omega)  # noqa: N806
            C = place_atom(prev["C"], N, CA, 1.525, 111.2, phi)  # noqa: N806
        res.append({"N": N, "CA": CA, "C": C})
    for r in res:
        r["O"] = place_atom(r["N"], r["CA"], r["C"], 1.231, 120.5, psi + 180.0)
    return res


def pdb_text(seq: str, backbone: list[dict[str, Vec]], bfactors: list[float]) -> str:
    lines = [
        "HEADER    RADIANT REFERENCE STAND-IN",
        "REMARK   1 NOT A STRUCTURE PREDICTION: IDEAL ALPHA-HELIX BACKBONE (PHI -57, PSI -47)",
        "REMARK   1 B-FACTOR COLUMN: STAND-IN PLDDT FROM TOP-IDP DISORDER PROPENSITY",
    ]
    serial = 0
    for i, (aa, atoms) in enumerate(zip(seq, backbone, strict=True), start=1):
        for name in ("N", "CA", "C", "O"):
            serial += 1
            x, y, z = atoms[name]
            lines.append(
                f"ATOM  {serial:5d} {name if len(name) == 4 else ' ' + name:<4s} "
                f"{_THREE.get(aa, 'UNK')} A{i:4d}    {x:8.3f}{y:8.3f}{z:8.3f}"
                f"{1.0:6.2f}{bfactors[i - 1]:6.2f}           {name[0]:>1s}"
            )
    serial += 1
    lines.append(f"TER   {serial:5d}      {_THREE.get(seq[-1], 'UNK')} A{len(seq):4d}")
    lines.append("END")
    return "\n".join(lines) + "\n"


@stand_in("protein_folding")
def protein_folding(req: Request) -> dict[str, Any]:
    ident, seq = protein_records(req)[0]
    plddt = plddt_from_propensity(seq)
    pdb = pdb_text(seq, helix_backbone(len(seq)), plddt)
    return _base(req, pdb=pdb, plddt=plddt, mean_plddt=round(sum(plddt) / len(plddt), 2),
                 length=len(seq), id=ident,
                 method="ideal alpha-helix backbone; pLDDT from TOP-IDP propensity "
                        "(stand-in)")  # fmt: skip


# =============================================================================== geometry


@stand_in("geometry_reasoning", "scientific_math")
def geometry(req: Request) -> dict[str, Any]:
    inv = resolve(req)
    text = inv.data.decode("utf-8", "replace")
    obj = inv.request if inv.request is not None else {"problem": text}
    problem = obj.get("problem")
    if not isinstance(problem, str) or "?" not in problem:
        raise BadInput('geometry needs {"problem": "<premises> ? <goal>"} in AlphaGeometry syntax')
    premises, goal = problem.split("?", 1)
    points: list[str] = []
    constructions = []
    for clause in premises.split(";"):
        if "=" not in clause:
            continue
        lhs, rhs = clause.split("=", 1)
        new = lhs.split()
        points += [p for p in new if p not in points]
        predicates = [p.strip() for p in rhs.split(",") if p.strip()]
        constructions.append({"points": new, "predicates": predicates})
    return _base(req, name=obj.get("name"), points=points, constructions=constructions,
                 goal=goal.strip(), solved=False, proof=None, status="not_attempted",
                 note="stand-in: the problem is parsed; no proof search is run")  # fmt: skip


# =============================================================================== medical


def otsu(values: Sequence[float], bins: int = 256) -> float:
    lo, hi = min(values), max(values)
    if hi <= lo:
        return lo
    hist = [0] * bins
    scale = (bins - 1) / (hi - lo)
    for v in values:
        hist[int((v - lo) * scale)] += 1
    total = len(values)
    sum_all = sum(i * c for i, c in enumerate(hist))
    between: list[float] = []
    w0, sum0 = 0, 0.0
    for t in range(bins):
        w0 += hist[t]
        sum0 += t * hist[t]
        w1 = total - w0
        if w0 == 0 or w1 == 0:
            between.append(-1.0)
            continue
        m0, m1 = sum0 / w0, (sum_all - sum0) / w1
        between.append(w0 * w1 * (m0 - m1) ** 2)
    best = max(between)
    # Empty bins between two modes give a plateau of equal scores: take its middle, so the
    # threshold sits between the modes rather than on the edge of the lower one.
    ties = [t for t, b in enumerate(between) if b >= best * (1 - 1e-9)]
    best_t = (ties[0] + ties[-1]) / 2
    return lo + (best_t + 1) / scale


def _bright_threshold(values: Sequence[float], options: dict[str, Any]) -> float:
    if "threshold" in options:
        return float(options["threshold"])
    body_t = otsu(values)
    body = [v for v in values if v > body_t]
    return otsu(body) if len(body) > 10 and max(body) > min(body) else body_t


def _nifti_mask(hdr: parsers.NiftiHeader, dims: tuple[int, ...], sizes: tuple[float, ...],
                mask: bytearray) -> str:  # fmt: skip
    h = bytearray(348)
    struct.pack_into("<i", h, 0, 348)
    dim = [len(dims), *dims] + [1] * (7 - len(dims))
    struct.pack_into("<8h", h, 40, *dim)
    struct.pack_into("<hh", h, 70, 2, 8)  # uint8
    struct.pack_into("<8f", h, 76, 1.0, *sizes, *([1.0] * (7 - len(sizes))))
    struct.pack_into("<f", h, 108, 352.0)
    struct.pack_into("<ff", h, 112, 1.0, 0.0)
    h[123] = hdr.xyzt_units if hdr is not None else 2
    h[148:176] = b"RADIANT stand-in mask".ljust(28, b"\0")
    h[344:348] = b"n+1\0"
    raw = bytes(h) + b"\0\0\0\0" + bytes(mask)
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode()


def _segment_volume(req: Request, values: Sequence[float], dims: tuple[int, int, int],
                    sizes: tuple[float, float, float], options: dict[str, Any],
                    fmt: str, hdr: Any) -> dict[str, Any]:  # fmt: skip
    nx, ny, nz = dims
    t = _bright_threshold(values, options)
    mask = bytearray(len(values))
    count, sx, sy, sz = 0, 0, 0, 0
    x0 = y0 = z0 = 1 << 30
    x1 = y1 = z1 = -1
    for i, v in enumerate(values):
        if v > t:
            mask[i] = 1
            count += 1
            z, rem = divmod(i, nx * ny)
            y, x = divmod(rem, nx)
            sx, sy, sz = sx + x, sy + y, sz + z
            x0, y0, z0 = min(x0, x), min(y0, y), min(z0, z)
            x1, y1, z1 = max(x1, x), max(y1, y), max(z1, z)
    voxel_ml = sizes[0] * sizes[1] * sizes[2] / 1000.0
    segments = []
    if count:
        segments.append({
            "label": "bright_structure", "voxels": count,
            "volume_ml": round(count * voxel_ml, 3),
            "bbox": [x0, y0, z0, x1 + 1, y1 + 1, z1 + 1],
            "centroid": [round(sx / count, 2), round(sy / count, 2), round(sz / count, 2)],
        })  # fmt: skip
    return _base(req, segments=segments, threshold=round(t, 3),
                 input={"format": fmt, "dims": list(dims), "voxel_size_mm": list(sizes)},
                 mask_nifti_gz_base64=_nifti_mask(hdr, dims, sizes, mask),
                 method="two-level Otsu intensity threshold (stand-in)")  # fmt: skip


def _segment_plane(req: Request, values: Sequence[float], w: int, h: int,
                   spacing: tuple[float, float], options: dict[str, Any],
                   fmt: str) -> dict[str, Any]:  # fmt: skip
    box = _box_option(options, w, h)
    if box is not None:
        x0b, y0b, x1b, y1b = box
        sub = [values[y * w + x] for y in range(y0b, y1b) for x in range(x0b, x1b)]
        t = float(options["threshold"]) if "threshold" in options else otsu(sub)
        inside = lambda x, y: x0b <= x < x1b and y0b <= y < y1b  # noqa: E731
    else:
        t = _bright_threshold(values, options)
        inside = lambda x, y: True  # noqa: E731
    pixels = [i for i, v in enumerate(values) if v > t and inside(i % w, i // w)]
    segments = []
    rle = rle_encode(_mask_columns(pixels, w, h), w, h, w, h)
    if pixels:
        xs, ys = [p % w for p in pixels], [p // w for p in pixels]
        segments.append({
            "label": "bright_structure", "pixels": len(pixels),
            "area_mm2": round(len(pixels) * spacing[0] * spacing[1], 2),
            "bbox": [min(xs), min(ys), max(xs) + 1, max(ys) + 1],
            "centroid": [round(sum(xs) / len(xs), 2), round(sum(ys) / len(ys), 2)],
        })  # fmt: skip
    return _base(req, segments=segments, threshold=round(t, 3),
                 input={"format": fmt, "dims": [w, h], "voxel_size_mm": list(spacing)},
                 mask_rle=rle, method="two-level Otsu intensity threshold (stand-in)")  # fmt: skip


MAX_STANDIN_VOXELS = 16_000_000  # larger volumes are read at a coarser in-plane step


@stand_in("medical_segmentation", "medical_imaging")
def medical_segmentation(req: Request) -> dict[str, Any]:
    inv = resolve(req)
    try:
        if inv.content_type == "application/nifti":
            hdr, raw = parsers.read_nifti(inv.data)
            dims = (list(hdr.dims) + [1, 1])[:3]
            nx, ny, nz = dims
            slope = hdr.scl_slope if hdr.scl_slope not in (0.0,) and math.isfinite(
                hdr.scl_slope) else 1.0  # fmt: skip
            inter = hdr.scl_inter if math.isfinite(hdr.scl_inter) else 0.0
            sizes = (list(hdr.pixdim) + [1.0, 1.0])[:3]
            step = max(1, math.ceil(math.sqrt(nx * ny * nz / MAX_STANDIN_VOXELS)))
            if step > 1:  # large volume: every step-th voxel in-plane (coarser, same extent)
                vals = [raw[(z * ny + y) * nx + x] * slope + inter for z in range(nz)
                        for y in range(0, ny, step) for x in range(0, nx, step)]  # fmt: skip
                nx, ny = len(range(0, nx, step)), len(range(0, ny, step))
                sizes = [sizes[0] * step, sizes[1] * step, sizes[2]]
            else:
                vals = [v * slope + inter for v in raw[: nx * ny * nz]]
            return _segment_volume(req, vals, (nx, ny, nz), (sizes[0], sizes[1], sizes[2]),
                                   inv.options, "nifti", hdr)  # fmt: skip
        if inv.content_type == "application/dicom":
            info, rows, cols, frames, raw = parsers.read_dicom_pixels(inv.data)
            slope = float(info.get("rescale_slope", 1) or 1)
            inter = float(info.get("rescale_intercept", 0) or 0)
            vals = [v * slope + inter for v in raw]
            sp = info.get("pixel_spacing", [1.0, 1.0])
            spacing = (float(sp[1]), float(sp[0])) if isinstance(sp, list) else (float(sp),) * 2
            if frames > 1:
                thick = float(info.get("slice_thickness", 1.0) or 1.0)
                return _segment_volume(req, vals, (cols, rows, frames), (*spacing, thick),
                                       inv.options, "dicom", None)  # fmt: skip
            return _segment_plane(req, vals, cols, rows, spacing, inv.options, "dicom")
    except FormatError as exc:
        raise BadInput(str(exc)) from exc
    img = _open_image(inv.data).convert("L")  # a 2D image (MedSAM also takes PNG/JPEG)
    w, h = img.size
    return _segment_plane(req, list(img.tobytes()), w, h, (1.0, 1.0), inv.options, "image")


# =============================================================================== geospatial

HLS_BANDS = ("blue", "green", "red", "nir", "swir1", "swir2")
LAND_LABELS = ("water", "vegetation", "bare_soil", "built_up")


@dataclass
class Scene:
    w: int
    h: int
    bands: dict[str, list[float]]
    pixel_area_m2: float | None  # of one sampled pixel


def _scene(data: bytes, page: int, options: dict[str, Any]) -> Scene:
    try:
        info = parsers.parse_tiff(data)
        full = [p for p in info.pages if not int(p.one(254, 0) or 0) & 1]
        if page >= len(full):
            raise BadInput(f"the TIFF has {len(full)} scene(s); scene {page + 1} is needed")
        target = full[page]
        w, h, bands = parsers.read_tiff_bands(data, target.index, max_pixels=512 * 512)
    except FormatError as exc:
        raise BadInput(f"input is not a readable GeoTIFF: {exc}") from exc
    order = options.get("band_order")
    if order is None:
        order = HLS_BANDS[: len(bands)] if len(bands) >= 4 else None
    if not order or "red" not in order or "nir" not in order or "green" not in order:
        raise BadInput(f"the raster has {len(bands)} band(s); the stand-in needs green, red and "
                       "NIR (HLS order Blue, Green, Red, NIR, SWIR1, SWIR2, or "
                       "options.band_order)")  # fmt: skip
    named = {name: bands[i] for i, name in enumerate(order) if i < len(bands)}
    area = None
    scale = target.geo().get("pixel_scale")
    if scale and target.geo().get("model_type", "projected") == "projected":
        step = target.width / w
        area = abs(scale[0] * scale[1]) * step * step
    return Scene(w, h, named, area)


def _indices(s: Scene, i: int) -> tuple[float, float, float]:
    def nd(a: float, b: float) -> float:
        return (a - b) / (a + b) if a + b else 0.0

    b = s.bands
    ndvi = nd(b["nir"][i], b["red"][i])
    water = nd(b["green"][i], b["swir1"][i]) if "swir1" in b else nd(b["green"][i], b["nir"][i])
    return ndvi, water, (b["red"][i] / b["blue"][i]) if "blue" in b and b["blue"][i] else 1.0


def land_class(s: Scene, i: int) -> str:
    ndvi, water, red_blue = _indices(s, i)
    if water > 0:
        return "water"
    if ndvi > 0.3:
        return "vegetation"
    return "bare_soil" if red_blue > 1.4 else "built_up"


def _bbox(pixels: Sequence[int], w: int) -> list[int] | None:
    if not pixels:
        return None
    xs, ys = [p % w for p in pixels], [p // w for p in pixels]
    return [min(xs), min(ys), max(xs) + 1, max(ys) + 1]


def _km2(pixels: int, s: Scene) -> float | None:
    return None if s.pixel_area_m2 is None else round(pixels * s.pixel_area_m2 / 1e6, 4)


@stand_in("satellite_analysis", "geospatial")
def geospatial(req: Request) -> dict[str, Any]:
    inv = resolve(req)
    if inv.content_type not in ("image/geotiff", "image/tiff"):
        raise BadInput(f"geospatial stand-in reads GeoTIFF; got {inv.content_type}")
    task = str(inv.task or "").strip("/").lower()
    try:
        scenes = [p for p in parsers.parse_tiff(inv.data).pages if not int(p.one(254, 0) or 0) & 1]
    except FormatError as exc:
        raise BadInput(f"input is not a readable GeoTIFF: {exc}") from exc
    if not task:
        task = "change" if len(scenes) >= 2 or "before_location" in inv.options else "classify"
    method = "spectral indices NDVI/MNDWI over HLS bands (stand-in)"
    if "change" in task:
        if "before_location" in inv.options:
            before_data = read_under_roots(str(inv.options["before_location"]), req.read_roots)
            before = _scene(before_data, 0, inv.options)
            after = _scene(inv.data, 0, inv.options)
        else:
            before, after = _scene(inv.data, 0, inv.options), _scene(inv.data, 1, inv.options)
        if (before.w, before.h) != (after.w, after.h):
            raise BadInput(f"before and after scenes differ in size ({before.w} x {before.h} vs "
                           f"{after.w} x {after.h})")  # fmt: skip
        n = after.w * after.h
        transitions: dict[str, int] = {}
        changed, new_water, dndvi = [], 0, 0.0
        for i in range(n):
            a, b = land_class(before, i), land_class(after, i)
            dndvi += abs(_indices(after, i)[0] - _indices(before, i)[0])
            if a != b:
                changed.append(i)
                transitions[f"{a}->{b}"] = transitions.get(f"{a}->{b}", 0) + 1
                new_water += b == "water"
        return _base(req, task="change", changed_fraction=round(len(changed) / n, 4),
                     changed_pixels=len(changed), changed_area_km2=_km2(len(changed), after),
                     transitions=dict(sorted(transitions.items(), key=lambda kv: -kv[1])),
                     new_water_fraction=round(new_water / n, 4),
                     mean_abs_ndvi_change=round(dndvi / n, 4), bbox=_bbox(changed, after.w),
                     size=[after.w, after.h], method=method)  # fmt: skip
    scene = _scene(inv.data, 0, inv.options)
    n = scene.w * scene.h
    classes = [land_class(scene, i) for i in range(n)]
    if "flood" in task or "detect" in task:
        water = [i for i, c in enumerate(classes) if c == "water"]
        return _base(req, task="detect/floods", flood_fraction=round(len(water) / n, 4),
                     water_pixels=len(water), water_area_km2=_km2(len(water), scene),
                     bbox=_bbox(water, scene.w),
                     mask_rle=rle_encode(_mask_columns(water, scene.w, scene.h), scene.w,
                                         scene.h, scene.w, scene.h),
                     index="MNDWI > 0" if "swir1" in scene.bands else "NDWI > 0",
                     size=[scene.w, scene.h], method=method)  # fmt: skip
    preds = ranked({label: classes.count(label) / n for label in LAND_LABELS})
    ndvi = [_indices(scene, i)[0] for i in range(n)]
    wat = [_indices(scene, i)[1] for i in range(n)]
    return _base(req, task="classify", predictions=preds, dominant=preds[0]["label"],
                 indices={"ndvi_mean": round(sum(ndvi) / n, 4),
                          "water_index_mean": round(sum(wat) / n, 4)},
                 size=[scene.w, scene.h], method=method)  # fmt: skip


# =============================================================================== 3D


def _frames(inv: Invocation) -> list[Any]:
    if inv.content_type in ("video/mp4", "video/quicktime"):
        try:
            info = parsers.parse_mp4(inv.data)
            jpegs = parsers.mp4_jpeg_frames(inv.data, info, max_frames=24)
        except FormatError as exc:
            raise BadInput(f"video frames cannot be read by the stand-in (it decodes Motion-JPEG "
                           f"MP4 only): {exc}") from exc  # fmt: skip
        return [_open_image(j) for j in jpegs]
    return [_open_image(inv.data)]


def _silhouette(img: Any, width: int = 64) -> tuple[bytearray, int, int, bytes]:
    """Foreground mask: pixels far from the border's median colour, minus regions touching the
    border (floor, table); falls back to every foreground pixel when nothing else is left."""
    h = max(1, round(img.size[1] * width / img.size[0]))
    small = img.resize((width, h))
    rgb = small.tobytes()
    border = [p for p in range(width * h)
              if p < width or p >= width * (h - 1) or p % width in (0, width - 1)]  # fmt: skip
    bg = tuple(sorted(rgb[3 * p + c] for p in border)[len(border) // 2] for c in range(3))
    fg = [1 if _dist(rgb[3 * p : 3 * p + 3], bg) > 40 else 0 for p in range(width * h)]
    mask = bytearray(width * h)
    for region in _components(fg, rgb, width, h):
        if not fg[region.pixels[0]]:
            continue
        if region.x0 == 0 or region.y0 == 0 or region.x1 == width or region.y1 == h:
            continue
        for p in region.pixels:
            mask[p] = 1
    if not any(mask):
        mask = bytearray(fg)
    return mask, width, h, rgb


def visual_hull(frames: list[Any], grid: int = 20
                ) -> tuple[list[tuple[int, int, int]], dict[tuple[int, int, int],
                                                          tuple[int, int, int]]]:  # fmt: skip
    """Occupied voxels of a turntable visual hull and their colours."""
    sils = [_silhouette(f) for f in frames]
    n = len(sils)
    boxes = []
    for mask, w, h, _ in sils:
        pix = [p for p in range(w * h) if mask[p]]
        if not pix:
            raise BadInput("no foreground object found in the frames")
        xs, ys = [p % w for p in pix], [p // w for p in pix]
        boxes.append((min(xs), min(ys), max(xs) + 1, max(ys) + 1))
    half = max(max((b[2] - b[0]) / 2, (b[3] - b[1]) / 2) for b in boxes)
    cxs = [(b[0] + b[2]) / 2 for b in boxes]
    cys = [(b[1] + b[3]) / 2 for b in boxes]
    cx, cy = sum(cxs) / n, sum(cys) / n
    occupied: list[tuple[int, int, int]] = []
    colors: dict[tuple[int, int, int], tuple[int, int, int]] = {}
    angles = [2 * math.pi * i / n for i in range(n)]
    for iz in range(grid):
        for iy in range(grid):
            for ix in range(grid):
                x, y, z = ((ix + 0.5) / grid * 2 - 1, (iy + 0.5) / grid * 2 - 1,
                           (iz + 0.5) / grid * 2 - 1)  # fmt: skip
                if n > 1 and x * x + z * z > 2.0:
                    continue
                keep, acc = True, [0, 0, 0]
                for (mask, w, h, rgb), a in zip(sils, angles, strict=True):
                    u = x * math.cos(a) + z * math.sin(a) if n > 1 else x
                    col, row = int(cx + u * half), int(cy - y * half)
                    if not (0 <= col < w and 0 <= row < h) or not mask[row * w + col]:
                        keep = False
                        break
                    p = 3 * (row * w + col)
                    acc = [acc[0] + rgb[p], acc[1] + rgb[p + 1], acc[2] + rgb[p + 2]]
                if keep:
                    occupied.append((ix, iy, iz))
                    colors[(ix, iy, iz)] = (acc[0] // n, acc[1] // n, acc[2] // n)
    if not occupied:
        raise BadInput("the silhouettes do not intersect: no consistent object")
    return occupied, colors


_FACES = (((1, 0, 0), ((1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1))),
          ((-1, 0, 0), ((0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0))),
          ((0, 1, 0), ((0, 1, 0), (0, 1, 1), (1, 1, 1), (1, 1, 0))),
          ((0, -1, 0), ((0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1))),
          ((0, 0, 1), ((0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1))),
          ((0, 0, -1), ((0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0))))  # fmt: skip


Voxel = tuple[int, int, int]


def _surface(occupied: list[Voxel]) -> list[tuple[Voxel, Voxel]]:
    occ = set(occupied)
    out = []
    for v in occupied:
        for normal, _ in _FACES:
            if (v[0] + normal[0], v[1] + normal[1], v[2] + normal[2]) not in occ:
                out.append((v, normal))
    return out


def _obj_mesh(occupied: list[tuple[int, int, int]], grid: int) -> tuple[str, int, int, int]:
    verts: dict[tuple[int, int, int], int] = {}
    faces = []
    occ = set(occupied)
    for v in occupied:
        for normal, corners in _FACES:
            if (v[0] + normal[0], v[1] + normal[1], v[2] + normal[2]) in occ:
                continue
            ids = []
            for c in corners:
                key = (v[0] + c[0], v[1] + c[1], v[2] + c[2])
                ids.append(verts.setdefault(key, len(verts) + 1))
            faces.append(ids)
    lines = ["# RADIANT reference stand-in: visual hull from silhouettes (not a NeRF)",
             f"# grid {grid}^3, coordinates normalised to [-1, 1]"]  # fmt: skip
    for (x, y, z), _ in sorted(verts.items(), key=lambda kv: kv[1]):
        lines.append(f"v {x / grid * 2 - 1:.4f} {y / grid * 2 - 1:.4f} {z / grid * 2 - 1:.4f}")
    lines += [f"f {a} {b} {c} {d}" for a, b, c, d in faces]
    surface_voxels = len({v for v in occupied
                          if any((v[0] + n[0], v[1] + n[1], v[2] + n[2]) not in occ
                                 for n, _ in _FACES)})  # fmt: skip
    return "\n".join(lines) + "\n", len(verts), len(faces), surface_voxels


def _ply_splats(points: list[tuple[int, int, int]], colors: dict[tuple[int, int, int],
                tuple[int, int, int]], grid: int) -> bytes:  # fmt: skip
    props = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]  # fmt: skip
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(points)}"]
    header += [f"property float {p}" for p in props] + ["end_header"]
    c0 = 0.28209479177387814  # SH degree-0 constant
    scale = math.log(1.0 / grid)
    body = bytearray()
    for v in points:
        r, g, b = colors[v]
        body += struct.pack("<17f", *(c / grid * 2 - 1 + 1 / grid for c in v), 0.0, 0.0, 0.0,
                            (r / 255 - 0.5) / c0, (g / 255 - 0.5) / c0, (b / 255 - 0.5) / c0,
                            2.1972, scale, scale, scale, 1.0, 0.0, 0.0, 0.0)  # fmt: skip
    return ("\n".join(header) + "\n").encode() + bytes(body)


def _bbox3(occupied: list[tuple[int, int, int]], grid: int) -> dict[str, list[float]]:
    lo = [min(v[i] for v in occupied) / grid * 2 - 1 for i in range(3)]
    hi = [(max(v[i] for v in occupied) + 1) / grid * 2 - 1 for i in range(3)]
    return {"min": [round(x, 4) for x in lo], "max": [round(x, 4) for x in hi]}


@stand_in("3d_reconstruction", "generative_3d")
def reconstruction(req: Request) -> dict[str, Any]:
    inv = resolve(req)
    request = inv.request
    if request is not None and ("camera" in request or "camera_path" in request):
        return render(req, request)
    if request is not None:
        raise BadInput("reconstruction takes a video/image, or a render request with a camera")
    task = str(inv.task or "").lower()
    splats = "gaussian" in task or (not task and ("gaussian" in req.model_id
                                                  or "3dgs" in req.model_id))  # fmt: skip
    frames = _frames(inv)
    grid = 20
    occupied, colors = visual_hull(frames, grid)
    common = {"bbox": _bbox3(occupied, grid), "frames_used": len(frames),
              "camera_model": "turntable assumption: evenly spaced views around the vertical axis",
              "method": "silhouette visual hull (stand-in)"}  # fmt: skip
    if splats:
        surf = sorted({v for v, _ in _surface(occupied)})
        ply = _ply_splats(surf, colors, grid)
        return _base(req, format="model/ply", ply_base64=base64.b64encode(ply).decode(),
                     num_gaussians=len(surf), **common)  # fmt: skip
    obj, nv, nf, npts = _obj_mesh(occupied, grid)
    return _base(req, format="model/obj", obj=obj, num_points=npts, num_vertices=nv,
                 num_faces=nf, **common)  # fmt: skip


# -- render


def _vec(v: Any, what: str) -> Vec:
    if not (isinstance(v, list) and len(v) == 3 and all(isinstance(x, int | float) for x in v)):
        raise BadInput(f"{what} must be [x, y, z]")
    return (float(v[0]), float(v[1]), float(v[2]))


def _hit(obj: dict[str, Any], o: Vec, d: Vec) -> tuple[float, Vec] | None:
    kind = obj.get("type")
    if kind == "sphere":
        c, r = _vec(obj.get("center"), "sphere center"), float(obj.get("radius", 1.0))
        oc = _sub(o, c)
        b = sum(oc[i] * d[i] for i in range(3))
        disc = b * b - (sum(x * x for x in oc) - r * r)
        if disc < 0:
            return None
        t = -b - math.sqrt(disc)
        if t <= 1e-4:
            t = -b + math.sqrt(disc)
            if t <= 1e-4:
                return None
        p = tuple(o[i] + t * d[i] for i in range(3))
        return t, _unit(_sub(p, c))  # type: ignore[arg-type]
    if kind == "box":
        lo, hi = _vec(obj.get("min"), "box min"), _vec(obj.get("max"), "box max")
        tmin, tmax, axis = -math.inf, math.inf, 0
        for i in range(3):
            if abs(d[i]) < 1e-12:
                if not lo[i] <= o[i] <= hi[i]:
                    return None
                continue
            t1, t2 = (lo[i] - o[i]) / d[i], (hi[i] - o[i]) / d[i]
            if t1 > t2:
                t1, t2 = t2, t1
            if t1 > tmin:
                tmin, axis = t1, i
            tmax = min(tmax, t2)
        if tmax < max(tmin, 1e-4):
            return None
        normal = [0.0, 0.0, 0.0]
        normal[axis] = -1.0 if d[axis] > 0 else 1.0
        return tmin, (normal[0], normal[1], normal[2])
    if kind == "plane":
        y = float(obj.get("y", 0.0))
        if abs(d[1]) < 1e-9:
            return None
        t = (y - o[1]) / d[1]
        return (t, (0.0, 1.0 if o[1] > y else -1.0, 0.0)) if t > 1e-4 else None
    raise BadInput(f"scene object type {kind!r} is not supported (sphere, box, plane)")


def _render_view(scene: dict[str, Any], cam: dict[str, Any], width: int, height: int) -> bytes:
    from PIL import Image

    objects = scene.get("objects")
    if not isinstance(objects, list) or not objects:
        raise BadInput('scene needs a non-empty "objects" list')
    pos = _vec(cam.get("position", [0, 0, 5]), "camera position")
    look = _vec(cam.get("look_at", [0, 0, 0]), "camera look_at")
    fov = math.radians(float(cam.get("fov_deg", 45)))
    fwd = _unit(_sub(look, pos))
    right = _unit(_cross(fwd, (0.0, 1.0, 0.0)))
    up = _cross(right, fwd)
    light = _unit(_vec((scene.get("light") or {}).get("direction", [-0.5, 1, 0.8]), "light"))
    bg = tuple(int(c) for c in scene.get("background", [200, 220, 240]))[:3]
    tan = math.tan(fov / 2)
    aspect = width / height
    pixels = bytearray()
    for j in range(height):
        for i in range(width):
            u = (2 * (i + 0.5) / width - 1) * tan * aspect
            v = (1 - 2 * (j + 0.5) / height) * tan
            d = _unit(tuple(fwd[k] + u * right[k] + v * up[k] for k in range(3)))  # type: ignore[arg-type]
            best, hit_obj, normal = math.inf, None, (0.0, 1.0, 0.0)
            for obj in objects:
                h = _hit(obj, pos, d)
                if h and h[0] < best:
                    best, hit_obj, normal = h[0], obj, h[1]
            if hit_obj is None:
                pixels += bytes(bg)
                continue
            p = tuple(pos[k] + best * d[k] for k in range(3))
            lambert = max(0.0, sum(normal[k] * light[k] for k in range(3)))
            if lambert > 0 and any(_hit(o, p, light) for o in objects if o is not hit_obj):  # type: ignore[arg-type]
                lambert *= 0.35
            shade = 0.25 + 0.75 * lambert
            color = hit_obj.get("color", [200, 200, 200])
            pixels += bytes(max(0, min(255, int(c * shade))) for c in color[:3])
    img = Image.frombytes("RGB", (width, height), bytes(pixels))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def render(req: Request, request: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(request.get("scene"), dict):
        ref = request.get("scene_ref")
        raise BadInput(f"the stand-in renders inline scenes only; scene_ref {ref!r} cannot be "
                       "resolved (no trained scenes are stored)")  # fmt: skip
    width, height = int(request.get("width", 256)), int(request.get("height", 256))
    if not (1 <= width <= 1024 and 1 <= height <= 1024):
        raise BadInput(f"render size {width} x {height} is outside 1..1024 for the stand-in")
    cams = request.get("camera_path") or [request.get("camera")]
    if not all(isinstance(c, dict) for c in cams):
        raise BadInput("camera / camera_path entries must be objects")
    images = []
    for k, cam in enumerate(cams[:8]):
        png = _render_view(request["scene"], cam, width, height)
        images.append({"view": k, "format": "image/png", "width": width, "height": height,
                       "png_base64": base64.b64encode(png).decode()})  # fmt: skip
    return _base(req, images=images, views_requested=len(cams), views_rendered=len(images),
                 method="ray caster over the inline scene (stand-in)")  # fmt: skip
