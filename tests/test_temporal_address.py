"""RADIANT_TEMPORAL_ADDRESS with an IPv6 host (`[::1]:7233`, which the settings accept): the dev
server listens on the bare literal, the port check speaks IPv6, and the client keeps the
bracketed form. The port check used an IPv4 socket and the host kept its brackets: `radiant up`
failed on resolving `[::1]`. No dev server is started here (a listening socket stands in)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import workers.temporal as temporal
from workers.settings import Settings


@pytest.fixture
def ipv6_listener() -> Iterator[socket.socket]:
    """A socket listening on ::1 (skipped where the machine has no IPv6 loopback)."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this Python")
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.bind(("::1", 0))
    except OSError as exc:
        sock.close()
        pytest.skip(f"cannot bind ::1: {exc}")
    sock.listen()
    with sock:
        yield sock


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("[::1]:7233", ("::1", 7233)),
        ("[fd00::5]:1", ("fd00::5", 1)),
        ("localhost:7233", ("localhost", 7233)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
    ],
)
def test_the_dev_server_listens_on_the_bare_host(address: str, expected: tuple[str, int]) -> None:
    assert temporal.dev_server_host_port(Settings(temporal_address=address).temporal_address) == (
        expected
    )


def test_the_port_check_speaks_ipv6(ipv6_listener: socket.socket) -> None:
    port = ipv6_listener.getsockname()[1]
    assert temporal._port_open("::1", port)
    ipv6_listener.close()
    assert not temporal._port_open("::1", port)


def test_the_port_check_tries_every_address_of_a_name() -> None:
    """`localhost` may resolve to ::1 first: a server on 127.0.0.1 is still found."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert temporal._port_open("localhost", sock.getsockname()[1])
    assert not temporal._port_open("no-such-host.invalid", 7233)  # no traceback either


def test_a_busy_ipv6_port_is_refused(ipv6_listener: socket.socket, tmp_path: Path) -> None:
    port = ipv6_listener.getsockname()[1]
    settings = Settings(temporal_address=f"[::1]:{port}", data_dir=tmp_path)
    with pytest.raises(temporal.TemporalUnavailableError, match=f"port {port} is already in use"):
        temporal.start_dev_server(settings, tmp_path / "temporal.log")


def test_the_dev_server_is_started_on_the_ipv6_literal(
    ipv6_listener: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--ip ::1` (not `[::1]`), and the start is seen on ::1 (the listener opens the port as
    the server would)."""
    port = ipv6_listener.getsockname()[1]
    ipv6_listener.close()  # free: the "server" takes it below
    started: list[list[str]] = []
    server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)

    class FakeServer:
        def poll(self) -> None:
            return None

    def fake_popen(cmd: list[str], **kwargs: Any) -> FakeServer:
        started.append(cmd)
        server.bind(("::1", port))
        server.listen()
        return FakeServer()

    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    settings = Settings(temporal_address=f"[::1]:{port}", data_dir=tmp_path)
    with server:
        temporal.start_dev_server(settings, tmp_path / "temporal.log")
    [cmd] = started
    assert cmd[cmd.index("--ip") + 1] == "::1" and cmd[cmd.index("--port") + 1] == str(port)
    assert settings.temporal_address == f"[::1]:{port}"  # what `connect` gives the client
