"""The memory probe of `radiant bench throughput`: it sees a batch's transient peak and what the
batch left alive, each batch measured from its own start."""

from __future__ import annotations

import asyncio
import sys
import tracemalloc

import pytest

from workers.bench_memory import MIB, MemoryFigures, measure_batch, memory_report


async def test_a_batch_peak_and_what_it_keeps_are_measured_from_its_start():
    figures = MemoryFigures("probe", batch_size=1, in_flight=1)
    kept: list[bytes] = []

    async def transient() -> None:
        buf = b"x" * (8 * MIB)
        await asyncio.sleep(0)
        del buf

    async def keeping() -> None:
        kept.append(b"y" * (2 * MIB))

    tracemalloc.start()
    try:
        await measure_batch(figures, transient)
        await measure_batch(figures, keeping)
        await measure_batch(figures, transient)  # the kept 2 MiB is not counted again
    finally:
        tracemalloc.stop()
    assert figures.peaks[0] >= 8 * MIB and figures.retained[0] < MIB
    assert 2 * MIB <= figures.retained[1] < 3 * MIB
    assert 8 * MIB <= figures.peaks[2] < 9 * MIB and figures.retained[2] < MIB
    if sys.platform == "linux":
        assert len(figures.peak_rss_kib) == 3


def test_report_ratio_is_of_the_median_peaks():
    project = MemoryFigures("jobs", 10, 5, peaks=[4 * MIB, 6 * MIB, 5 * MIB], retained=[0, 0, 0])
    bare = MemoryFigures("bare", 10, 5, peaks=[MIB, MIB, 3 * MIB], retained=[0, 0, 0])
    out = memory_report(project, bare)
    assert out["python_peak_ratio"] == 5.0
    assert out["project"]["python_peak_kib_per_in_flight"] == pytest.approx(1024.0)
    assert out["project"]["peak_rss_mib"] is None  # none measured
