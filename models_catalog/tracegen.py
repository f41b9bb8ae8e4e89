"""Seeded synthetic request traces for the thermal benchmark, and the trace CSV format.

CSV: header ``model_id,arrival_ts,duration_s``; ``arrival_ts`` is seconds since the trace epoch
(midnight of day 0, so ``arrival_ts % 86400`` is the time of day), ``duration_s`` the service
time of the request on a ready instance. Rows are sorted by arrival time, then model id.

Families follow the invocation patterns of the Azure Functions characterization (Shahrad et al.,
"Serverless in the Wild", USENIX ATC 2020: timer-triggered functions fire periodically, HTTP
traffic follows the day, queue/event triggers arrive in bursts, and most applications are invoked
rarely, about half of them at most once an hour):

- ``periodic``: a timer every 5, 10, 30 or 60 minutes (drawn per model) at a random phase, each
  firing delayed by a uniform jitter of up to 2 % of the period.
- ``diurnal``: non-homogeneous Poisson arrivals (thinning) whose rate follows the day: peak
  (6-120 requests/h, log-uniform per model, capped at 30 % of one instance's capacity) in the
  afternoon, 5 % of the peak around 04:00, weekends (days 5 and 6) at 60 %.
- ``bursty``: on/off. Silences are log-normal (median 2 h, sigma 1, so heavy-tailed), bursts last
  2-15 minutes and carry a log-normal number of requests (median 40, sigma 0.8, 5-400, capped so
  the burst's work is at most 50 % of one instance over the burst) arriving as a Poisson process
  inside the burst.
- ``rare``: 1-8 sessions a day; the gaps between sessions are Pareto (alpha 1.2, heavy-tailed,
  mean 1 day / sessions-per-day); a session is 1 request plus a geometric number of follow-ups
  (p = 0.5, at most 4) spaced by exponential gaps of mean 90 s.
- ``mixed``: the models are sorted, shuffled with the seed and dealt round-robin to the four
  families above (so each family gets a quarter of the models), then each is generated as its
  family. The deal depends on the whole model set: adding or removing a model can move others
  to another family.

Durations: log-normal (sigma 0.5) around a per-category median service time on the model's GPU
(``CATEGORY_SERVICE_S``), clipped to [0.01 s, 1 h]. "One instance's capacity" is ``concurrency``
(default 4, the simulator's per-instance concurrency) requests of median duration at once.

Every model's stream comes from its own ``random.Random`` seeded with a string built from the
seed, family and model id (string seeds hash deterministically, independent of PYTHONHASHSEED),
so with a single family a model's trace does not change when other models are added or removed;
with ``mixed`` it does not change as long as the model keeps its family (see above).

Reading (``read_trace_csv``) refuses what no generated trace contains and what would only cost
time, memory or nonsense bills: arrivals after ``MAX_TRACE_DAYS`` days, durations over
``MAX_DURATION_S``, more than ``MAX_TRACE_ROWS`` requests. Errors are one line, with the line
number and field values cut to ``MAX_ECHO_CHARS``.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _csv import Reader

DAY_S = 86400.0
FAMILIES = ("periodic", "diurnal", "bursty", "rare")
ALL_FAMILIES = (*FAMILIES, "mixed")
HEADER = ("model_id", "arrival_ts", "duration_s")

#: Median service time (s) per catalog category; unknown categories use DEFAULT_SERVICE_S.
CATEGORY_SERVICE_S: dict[str, float] = {
    "vision_classification": 0.15,
    "vision_detection": 0.3,
    "vision_segmentation": 1.5,
    "audio_stt": 20.0,
    "audio_speaker": 8.0,
    "scientific_protein": 300.0,
    "scientific_math": 60.0,
    "medical_imaging": 30.0,
    "geospatial": 20.0,
    "generative_3d": 900.0,
    "llm_text": 10.0,
}
DEFAULT_SERVICE_S = 5.0
#: Offered load caps, relative to one instance serving ``concurrency`` requests at once, so that
#: heavy models (3D reconstruction, protein folding) get plausibly few requests.
PEAK_UTILIZATION = 0.3
BURST_UTILIZATION = 0.5

#: Longest trace (`make-trace --days` and the last arrival a trace may have): a season of
#: traffic; later arrivals only cost replay time and bill idle instances for months.
MAX_TRACE_DAYS = 90
MAX_ARRIVAL_S = MAX_TRACE_DAYS * DAY_S
#: Longest request (the generator clips at 1 h); beyond that the bill is nonsense.
MAX_DURATION_S = DAY_S
#: Most requests a trace may hold (a generated 90-day mixed trace has about 0.6 million), so a
#: runaway file fails fast instead of exhausting memory and hours of replay.
MAX_TRACE_ROWS = 2_000_000
#: Field values echoed in an error are cut to this many characters (errors stay one short line).
MAX_ECHO_CHARS = 80


class TraceFormatError(ValueError):
    """A trace file that cannot be replayed (message is one line, with the line number)."""


@dataclass(frozen=True, slots=True)
class TraceRow:
    model_id: str
    arrival_ts: float
    duration_s: float
    #: first source line of the row in the CSV read (0 if not read from a file); not compared,
    #: so a trace read back equals the trace written
    line: int = field(default=0, compare=False, repr=False)


def quote_field(value: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``repr`` of a field value for an error message, cut to ``limit`` characters."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value):,} chars)"


@dataclass(frozen=True)
class TraceModel:
    """A model to generate traffic for: id and catalog category (for service times)."""

    model_id: str
    category: str | None = None


# --------------------------------------------------------------------------------------------
# Arrival processes (each returns sorted arrival times in [0, horizon))
# --------------------------------------------------------------------------------------------


def _periodic(rng: random.Random, horizon: float, service_s: float, conc: int) -> list[float]:
    period = rng.choice((5, 10, 30, 60)) * 60.0
    jitter = 0.02 * period
    t = rng.uniform(0.0, period)
    out = []
    while t < horizon:
        a = t + rng.uniform(0.0, jitter)
        if a < horizon:
            out.append(a)
        t += period
    return out


def _diurnal_shape(t: float) -> float:
    day = int(t // DAY_S)
    hour = (t % DAY_S) / 3600.0
    # 0 at 04:00, 1 at 16:00, smooth; nights kept low by the square.
    wave = (0.5 - 0.5 * math.cos(2.0 * math.pi * (hour - 4.0) / 24.0)) ** 2
    level = 0.05 + 0.95 * wave
    return level * (0.6 if day % 7 in (5, 6) else 1.0)


def _diurnal(rng: random.Random, horizon: float, service_s: float, conc: int) -> list[float]:
    peak_per_h = math.exp(rng.uniform(math.log(6.0), math.log(120.0)))
    # at most PEAK_UTILIZATION of one instance at the peak (heavy models get fewer requests)
    lam_max = min(peak_per_h / 3600.0, PEAK_UTILIZATION * conc / service_s)
    out: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(lam_max)
        if t >= horizon:
            return out
        if rng.random() <= _diurnal_shape(t):
            out.append(t)


def _bursty(rng: random.Random, horizon: float, service_s: float, conc: int) -> list[float]:
    out: list[float] = []
    t = rng.uniform(0.0, 4.0 * 3600.0)
    while t < horizon:
        length = rng.uniform(120.0, 900.0)
        n = int(min(400, max(5, round(rng.lognormvariate(math.log(40.0), 0.8)))))
        # the burst's work fits BURST_UTILIZATION of one instance over the burst
        n = max(1, min(n, int(BURST_UTILIZATION * conc * length / service_s)))
        rate = n / length
        a = t
        for _ in range(n):
            a += rng.expovariate(rate)
            if a >= horizon:
                break
            out.append(a)
        t = a + rng.lognormvariate(math.log(2.0 * 3600.0), 1.0)
    return out


def _rare(rng: random.Random, horizon: float, service_s: float, conc: int) -> list[float]:
    sessions_per_day = rng.randint(1, 8)
    alpha = 1.2
    mean_gap = DAY_S / sessions_per_day
    xm = mean_gap * (alpha - 1.0) / alpha
    out: list[float] = []
    t = rng.uniform(0.0, mean_gap)
    while t < horizon:
        out.append(t)
        a = t
        follow = 0
        while follow < 4 and rng.random() < 0.5:
            follow += 1
            a += rng.expovariate(1.0 / 90.0)
            if a < horizon:
                out.append(a)
        t = a + xm * rng.paretovariate(alpha)
    return out


_GENERATORS = {"periodic": _periodic, "diurnal": _diurnal, "bursty": _bursty, "rare": _rare}


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _as_trace_models(
    models: Iterable[TraceModel | str | tuple[str, str | None]],
) -> list[TraceModel]:
    out = []
    for m in models:
        if isinstance(m, TraceModel):
            out.append(m)
        elif isinstance(m, str):
            out.append(TraceModel(m))
        else:
            out.append(TraceModel(m[0], m[1]))
    return out


def assign_families(model_ids: Sequence[str], family: str, seed: int) -> dict[str, str]:
    """Family per model; for ``mixed`` a seeded shuffle dealt round-robin over FAMILIES."""
    if family not in ALL_FAMILIES:
        raise ValueError(f"unknown family {family!r} (expected one of {', '.join(ALL_FAMILIES)})")
    ids = sorted(model_ids)
    if family != "mixed":
        return {m: family for m in ids}
    rng = random.Random(seed)
    rng.shuffle(ids)
    return {m: FAMILIES[i % len(FAMILIES)] for i, m in enumerate(ids)}


def generate_trace(
    models: Iterable[TraceModel | str | tuple[str, str | None]],
    family: str = "mixed",
    *,
    days: float = 7,
    seed: int = 42,
    concurrency: int = 4,
) -> list[TraceRow]:
    """Deterministic trace for ``models`` over ``days`` days (rows sorted by time, model id)."""
    if days <= 0:
        raise ValueError("days must be positive")
    tms = _as_trace_models(models)
    families = assign_families([m.model_id for m in tms], family, seed)
    horizon = days * DAY_S
    rows: list[TraceRow] = []
    for tm in sorted(tms, key=lambda m: m.model_id):
        fam = families[tm.model_id]
        rng = random.Random(f"{seed}/{fam}/{tm.model_id}")
        median = CATEGORY_SERVICE_S.get(tm.category or "", DEFAULT_SERVICE_S)
        for t in _GENERATORS[fam](rng, horizon, median, concurrency):
            dur = min(3600.0, max(0.01, median * rng.lognormvariate(0.0, 0.5)))
            rows.append(TraceRow(tm.model_id, round(t, 3), round(dur, 3)))
    rows.sort(key=lambda r: (r.arrival_ts, r.model_id))
    return rows


def trace_models_from_catalog(
    catalog: Any = None, only: Sequence[str] | None = None
) -> list[TraceModel]:
    """TraceModel per deployable catalog model (optionally only the given canonical ids)."""
    if catalog is None:
        from models_catalog.catalog import load_catalog

        catalog = load_catalog()
    out = []
    for m in catalog.deployable_models():
        if only is not None and m.id not in only:
            continue
        cat = getattr(m, "category", None)
        out.append(TraceModel(m.id, str(getattr(cat, "value", cat)) if cat is not None else None))
    return out


def write_trace_csv(rows: Iterable[TraceRow], out: IO[str] | str | Path) -> int:
    """Write rows as CSV; returns the number of rows written."""
    if isinstance(out, (str, Path)):
        with open(out, "w", newline="", encoding="utf-8") as fh:
            return write_trace_csv(rows, fh)
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    n = 0
    for r in rows:
        w.writerow((r.model_id, f"{r.arrival_ts:.3f}", f"{r.duration_s:.3f}"))
        n += 1
    return n


def trace_to_csv(rows: Iterable[TraceRow]) -> str:
    buf = io.StringIO()
    write_trace_csv(rows, buf)
    return buf.getvalue()


def read_trace_csv(source: IO[str] | str | Path) -> list[TraceRow]:
    """Parse and validate a trace; raises TraceFormatError with a one-line message."""
    if isinstance(source, (str, Path)):
        try:
            with open(source, newline="", encoding="utf-8-sig") as fh:
                return read_trace_csv(fh)
        except OSError as exc:
            # the caller names the file (`{path}: {message}`)
            raise TraceFormatError(f"cannot read the trace file: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise TraceFormatError("the trace file is not UTF-8 text") from exc
    reader = csv.reader(source)
    try:
        return _read_rows(reader)
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit(), a NUL byte
        raise TraceFormatError(f"line {reader.line_num}: {exc}") from None


def _read_rows(reader: Reader) -> list[TraceRow]:
    try:
        header = next(reader)
    except StopIteration:
        raise TraceFormatError(
            "empty trace: expected header model_id,arrival_ts,duration_s"
        ) from None
    if tuple(h.strip().lstrip("\ufeff") for h in header) != HEADER:
        raise TraceFormatError(
            f"bad header {quote_field(','.join(header))}: expected model_id,arrival_ts,duration_s"
        )
    rows: list[TraceRow] = []
    end = reader.line_num
    for rec in reader:
        # the record's first line (a quoted field may span lines; blank lines count)
        lineno, end = end + 1, reader.line_num
        if not rec or all(not c.strip() for c in rec):
            continue
        if len(rec) != 3:
            raise TraceFormatError(f"line {lineno}: expected 3 fields, got {len(rec)}")
        mid = rec[0].strip()
        if not mid:
            raise TraceFormatError(f"line {lineno}: empty model_id")
        try:
            ts = float(rec[1])
            dur = float(rec[2])
        except ValueError:
            raise TraceFormatError(
                f"line {lineno}: arrival_ts and duration_s must be numbers, got "
                f"{quote_field(rec[1].strip())}, {quote_field(rec[2].strip())}"
            ) from None
        if not (math.isfinite(ts) and math.isfinite(dur)) or ts < 0 or dur < 0:
            raise TraceFormatError(
                f"line {lineno}: arrival_ts and duration_s must be finite and >= 0"
            )
        if ts > MAX_ARRIVAL_S:
            raise TraceFormatError(
                f"line {lineno}: arrival_ts {ts:g} is after the longest trace "
                f"({MAX_TRACE_DAYS} days = {MAX_ARRIVAL_S:.0f} s)"
            )
        if dur > MAX_DURATION_S:
            raise TraceFormatError(
                f"line {lineno}: duration_s {dur:g} is over the limit of {MAX_DURATION_S:.0f} s"
                " (1 day)"
            )
        if len(rows) >= MAX_TRACE_ROWS:
            raise TraceFormatError(
                f"line {lineno}: more than {MAX_TRACE_ROWS:,} requests; replay a shorter trace"
            )
        rows.append(TraceRow(mid, ts, dur, lineno))
    return rows
