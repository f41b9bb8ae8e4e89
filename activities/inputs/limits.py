"""Size limits, sequence limits and billable-unit rules of the input checks.

Every number here is a project decision (the seeds give none); each is a parameter, not a constant
buried in a validator, so an operator can change it in one place.

Size limits (bytes, checked before any download: local `stat`, S3 `HeadObject`):

| operation(s)                         | limit   | why                                          |
|--------------------------------------|---------|----------------------------------------------|
| perception/* (JPEG, PNG)             | 20 MiB  | a 50 MP photo as JPEG is ~15-20 MB           |
| geospatial/* (GeoTIFF)               | 200 MiB | one HLS tile (3660^2 x 6 bands int16) ~160 MB |
| medical/segment, segment/3d          | 500 MiB | a thin-slice CT series as one NIfTI/DICOM    |
| medical/transcribe (WAV)             | 200 MiB | ~109 min of 16 kHz 16-bit mono dictation     |
| scientific/protein/* (FASTA)         | 1 MiB   | ~1M residues: far above any per-call cap     |
| scientific/geometry/solve (JSON)     | 64 KiB  | an AlphaGeometry problem is one line of text |
| reconstruction/nerf, gaussian        | 1 GiB   | a capture video / image set for one scene    |
| reconstruction/render (JSON)         | 1 MiB   | a camera path and a scene reference          |

Any other operation falls back to its unit (`UNIT_SIZE_LIMITS`): image 20 MiB, audio_minute
200 MiB, video_minute 1 GiB, request 1 MiB, 3d_model 1 GiB.

Inline (base64) inputs are also capped by `workflows.service_types.INLINE_LIMIT_BYTES` (256 KiB
decoded), because they travel in workflow history; the smaller of the two limits applies.

Decoded-size limits: an image may not exceed `MAX_IMAGE_PIXELS` (100 MP; Pillow's own
decompression-bomb guard is ~89 MP), so a 20 MB PNG that inflates to gigabytes is refused.

Protein sequence limits (`FastaLimits`, per operation):
- protein/fold: 1 record (the catalog's `alphafold2_ptm` is the monomer model), 1..2,700 residues.
  2,700 is AlphaFold2's practical ceiling on one 24-96 GB GPU (ColabFold/AF2 reports: ~2,500-3,000
  residues fit an 80 GB A100 with unified memory; the catalog's ml.g5.12xlarge has 4 x 24 GB, and
  AF2 runs a single model on one GPU). Longer chains need splitting or a bigger instance.
- protein/embed: up to 64 records, 1..1,022 residues each: ESM-2 was trained on crops of 1,022
  residues (1,024 positions with BOS/EOS); longer sequences are refused rather than silently cut.

Billable units (`ValidatedInput.units`, in the operation's catalog unit):
- image: 1 per image. A DICOM or NIfTI volume is 1 (services.yaml: "one volume = one image unit"),
  whatever its slice count. geospatial/change bills each scene: a two-page GeoTIFF (page 1 =
  before, page 2 = after) is 2 units; a single-page GeoTIFF is 1 unit, and the before scene then
  comes as a second input (`options.before`, validated on its own: 1 more unit).
- audio_minute: the WAV's duration in minutes, rounded *up* to the next 0.1 minute (6 s), at least
  0.1. Whole-minute rounding would bill a 5 s dictation as 12 times its length; per-second billing
  would make the unit price's decimals meaningless. 0.1 min is the finest step that keeps the
  ledger's per-minute price readable and never undercharges.
- request: 1 per call (a FASTA with several records for protein/embed is still one request).
- 3d_model: 1 per call (one reconstructed or rendered scene).

JSON inputs may nest at most `MAX_JSON_DEPTH` arrays/objects deep: the problems and camera
paths the JSON operations take need a handful of levels, and Python's parser would exhaust its
recursion limit near 1,000 (a RecursionError, not a clear refusal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from workflows.service_types import INLINE_LIMIT_BYTES

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# "service/operation" -> maximum input size in bytes.
SIZE_LIMITS: dict[str, int] = {
    "perception/detect": 20 * MiB,
    "perception/segment": 20 * MiB,
    "perception/classify": 20 * MiB,
    "perception/analyze": 20 * MiB,
    "geospatial/classify": 200 * MiB,
    "geospatial/detect/floods": 200 * MiB,
    "geospatial/change": 200 * MiB,
    "medical/segment": 500 * MiB,
    "medical/segment/3d": 500 * MiB,
    "medical/transcribe": 200 * MiB,
    "scientific/protein/embed": 1 * MiB,
    "scientific/protein/fold": 1 * MiB,
    "scientific/geometry/solve": 64 * KiB,
    "reconstruction/nerf": 1 * GiB,
    "reconstruction/gaussian": 1 * GiB,
    "reconstruction/render": 1 * MiB,
}

# Fallback by billing unit, for an operation not in SIZE_LIMITS.
UNIT_SIZE_LIMITS: dict[str, int] = {
    "image": 20 * MiB,
    "audio_minute": 200 * MiB,
    "video_minute": 1 * GiB,
    "request": 1 * MiB,
    "3d_model": 1 * GiB,
}

MAX_IMAGE_PIXELS = 100_000_000  # decoded pixels per image (decompression-bomb guard)
MAX_VOLUME_VOXELS = 1_000_000_000  # NIfTI/DICOM voxels (a 1024^3 int16 volume is 2 GB)

MAX_JSON_DEPTH = 64  # nested arrays/objects in a JSON input

# Operations that compare two scenes and take the first as `options[BEFORE_OPTION]` when the
# main input holds only one.
BEFORE_OPTION = "before_location"
BEFORE_SCENE_OPERATIONS = frozenset({"geospatial/change"})

AUDIO_MINUTE_STEP = Decimal("0.1")  # audio is billed in tenths of a minute, rounded up


def size_limit(service: str, operation: str, unit: str | None = None) -> int:
    """The maximum input size of `service/operation` in bytes (see the table above)."""
    key = f"{service}/{operation.strip('/')}"
    if key in SIZE_LIMITS:
        return SIZE_LIMITS[key]
    if unit in UNIT_SIZE_LIMITS:
        return UNIT_SIZE_LIMITS[unit]  # type: ignore[index]
    return 20 * MiB


def inline_limit(max_bytes: int) -> int:
    return min(max_bytes, INLINE_LIMIT_BYTES)


@dataclass(frozen=True)
class FastaLimits:
    """Per-operation limits of a protein FASTA input."""

    min_length: int = 1
    max_length: int = 2_700
    max_records: int = 1
    limit_source: str = "AlphaFold2's practical limit on one 24-96 GB GPU"


FOLD_LIMITS = FastaLimits(
    min_length=1,
    max_length=2_700,
    max_records=1,
    limit_source="AlphaFold2's practical limit on one 24-96 GB GPU",
)
EMBED_LIMITS = FastaLimits(
    min_length=1,
    max_length=1_022,
    max_records=64,
    limit_source="ESM-2's 1,022-residue training crop",
)

FASTA_LIMITS: dict[str, FastaLimits] = {
    "scientific/protein/fold": FOLD_LIMITS,
    "scientific/protein/embed": EMBED_LIMITS,
}


def fasta_limits(service: str, operation: str) -> FastaLimits:
    return FASTA_LIMITS.get(f"{service}/{operation.strip('/')}", FOLD_LIMITS)


def audio_minutes(duration_s: float) -> Decimal:
    """Billable audio minutes: duration rounded up to the next 0.1 minute, at least 0.1."""
    if duration_s <= 0 or not math.isfinite(duration_s):
        return AUDIO_MINUTE_STEP
    # Round the seconds to microseconds first so float noise (59.99999999) cannot add a step.
    minutes = Decimal(str(round(duration_s, 6))) / Decimal(60)
    steps = (minutes / AUDIO_MINUTE_STEP).to_integral_value(rounding=ROUND_CEILING)
    return max(AUDIO_MINUTE_STEP, steps * AUDIO_MINUTE_STEP)
