"""Heartbeat while awaiting slow work, so a dead worker is noticed within the heartbeat timeout
(and its activity retried elsewhere) instead of after the whole start-to-close timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import activity

T = TypeVar("T")


async def with_heartbeat(work: Awaitable[T], every: float = 2.0) -> T:
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            activity.heartbeat()
    finally:
        if not task.done():  # the activity was cancelled: cancel the work with it
            task.cancel()
