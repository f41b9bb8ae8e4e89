"""`radiant bench throughput` itself: a small run on its own dev server and embedded database
counts one usage row per invocation and per job, and reports both sides' figures."""

from __future__ import annotations

import pytest

from workers.bench_throughput import _batches, run_benchmark


@pytest.mark.parametrize(("n", "rounds"), [(10, 3), (2, 5), (200, 3), (1, 1)])
def test_batches_cover_every_workflow_once(n: int, rounds: int):
    batches = _batches(n, rounds)
    assert [i for b in batches for i in b] == list(range(n))
    assert len(batches) == min(n, rounds)
    assert max(map(len, batches)) - min(map(len, batches)) <= 1


async def test_small_run_reports_figures_and_exact_usage(tmp_path):
    out = await run_benchmark(6, 3, data_dir=tmp_path, rounds=2, memory_rounds=1)
    assert out["rounds"] == 2 and out["activities_per_workflow"] == 4
    assert out["usage_rows"] == {"model_invocation": 6, "service_charge": 6}
    for side in ("project", "bare"):
        figures = out[side]
        assert figures["workflows"] == 6 and figures["per_second"] > 0
        assert 0 < figures["latency_p50_s"] <= figures["latency_p99_s"]
    assert out["ratio"] == pytest.approx(
        out["project"]["per_second"] / out["bare"]["per_second"], abs=0.01
    )
    assert set(out["job_activity_ms"]) == {
        "jobs.plan",
        "inputs.validate",
        "jobs.invoke",
        "jobs.meter",
    }
    memory = out["memory"]
    for side in ("project", "bare"):
        figures = memory[side]
        assert (figures["batches"], figures["workflows_per_batch"]) == (1, 6)
        assert figures["python_peak_mib"] > 0 and figures["peak_rss_mib"] > 0
    assert memory["python_peak_ratio"] == pytest.approx(
        memory["project"]["python_peak_mib"] / memory["bare"]["python_peak_mib"], rel=0.05
    )
    # memory batches use their own request ids: the usage rows above are the timed jobs' only
