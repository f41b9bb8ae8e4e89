"""Connecting right after starting a dev server: its port opens before its frontend is healthy."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client

import workers.temporal as temporal
from workers.settings import Settings


async def test_a_starting_frontend_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[Any] = [
        RuntimeError("get_system_info call error: Unavailable, Frontend is not healthy yet"),
        RuntimeError("get_system_info call error: Unavailable, Frontend is not healthy yet"),
        "client",
    ]

    async def fake_connect(*args: Any, **kwargs: Any) -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(Client, "connect", fake_connect)
    assert await temporal.connect(Settings()) == "client"
    assert answers == []


async def test_no_server_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    async def refused(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        raise RuntimeError("Failed client connect: tcp connect error: Connection refused")

    monkeypatch.setattr(Client, "connect", refused)
    with pytest.raises(temporal.TemporalUnavailableError, match="cannot reach Temporal"):
        await temporal.connect(Settings(temporal_address="127.0.0.1:1"))
    assert calls == 1
