"""`python -m workers.main`: a worker process against the configured services (`radiant worker`)."""

from __future__ import annotations

import asyncio
import logging
import signal

from workers.deps import build_deps
from workers.process_exit import run_then_exit
from workers.schedules import ensure_schedules
from workers.settings import Settings, get_settings
from workers.temporal import connect
from workers.worker import run_worker


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        loop.add_signal_handler(sig, stop.set)
    try:
        client = await connect(settings)
        deps = await build_deps(settings)
        try:
            await ensure_schedules(client, settings)  # idempotent: every worker may do it
            await run_worker(client, deps, stop)
        finally:
            await deps.aclose()
    finally:
        # Put back what was there (e.g. process_exit's SIGTERM-as-Ctrl-C): left to the loop,
        # closing it would reset SIGTERM to SIG_DFL, which ends the process without cleanup.
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(get_settings()))


if __name__ == "__main__":
    run_then_exit(main)
