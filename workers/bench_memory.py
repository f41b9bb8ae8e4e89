"""Memory figures for `radiant bench throughput`: what a batch of workflows costs the worker
process, service jobs against bare workflows, in the same process.

Two measures, each with its blind spot:
- Python allocations alive at the batch's peak (`tracemalloc`, reset per batch), minus those
  alive before: order-independent and exact for Python objects (workflow instances, the
  sandbox's module copies, payloads, activity state), blind to the Rust core's memory.
- The process's resident high-water mark during the batch (`VmHWM`, reset through
  `/proc/self/clear_refs`), which sees everything but also allocator reuse: a side running
  after a bigger one reuses freed arenas. Linux only; None elsewhere.
"""

from __future__ import annotations

import gc
import re
import statistics
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
MIB = 1024 * 1024


def _status_kib(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def reset_peak_rss() -> bool:
    """Start a new resident high-water mark (Linux 4.0+: writing 5 to clear_refs)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


@dataclass
class MemoryFigures:
    """One side's batches: per batch, the peak of live Python allocations above the start
    (bytes), those still alive after the batch and a collection (bytes), the peak RSS (KiB)."""

    name: str
    batch_size: int
    in_flight: int  # the concurrency: workflows alive at once
    peaks: list[int] = field(default_factory=list)
    retained: list[int] = field(default_factory=list)
    peak_rss_kib: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        peak = statistics.median(self.peaks)
        return {
            "batches": len(self.peaks),
            "workflows_per_batch": self.batch_size,
            "python_peak_mib": round(peak / MIB, 2),
            "python_peak_kib_per_in_flight": round(peak / 1024 / self.in_flight, 1),
            "python_retained_mib": round(statistics.median(self.retained) / MIB, 2),
            "peak_rss_mib": (
                round(statistics.median(self.peak_rss_kib) / 1024, 1) if self.peak_rss_kib else None
            ),
        }


async def measure_batch(figures: MemoryFigures, run: Callable[[], Awaitable[None]]) -> None:
    """Run one batch under tracemalloc (already started by the caller) and record it."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    rss_reset = reset_peak_rss()
    await run()
    peak = tracemalloc.get_traced_memory()[1]
    hwm = _status_kib("VmHWM") if rss_reset else None
    gc.collect()
    figures.peaks.append(max(0, peak - before))
    figures.retained.append(max(0, tracemalloc.get_traced_memory()[0] - before))
    if hwm is not None:
        figures.peak_rss_kib.append(hwm)


def memory_report(project: MemoryFigures, baseline: MemoryFigures) -> dict[str, Any]:
    out: dict[str, Any] = {"project": project.as_dict(), "bare": baseline.as_dict()}
    bare_peak = statistics.median(baseline.peaks)
    out["python_peak_ratio"] = (
        round(statistics.median(project.peaks) / bare_peak, 2) if bare_peak else None
    )
    return out
