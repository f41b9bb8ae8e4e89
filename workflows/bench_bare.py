"""The baseline of `radiant bench throughput`: a bare workflow running N no-op activities in
sequence (the same count a perception/detect job runs), on the same server and worker."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench.noop")
async def noop(step: int) -> int:
    return step


@workflow.defn
class BareWorkflow:
    @workflow.run
    async def run(self, activities: int) -> int:
        done = 0
        for step in range(activities):
            done += await workflow.execute_activity(
                noop, step, start_to_close_timeout=timedelta(seconds=30)
            )
        return done
