"""For tests that start a real server: a free port, waiting for it, an app served in a thread."""

import contextlib
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

# Linux hands out the ports of this range to every bind to port 0 and every outgoing connection.
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10_000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Drawn below the ephemeral range where there is one, so that between this call and the
    server binding the port (seconds, for `make dev`), no other process can get it by binding
    port 0 or connecting out, as the other xdist worker's servers and clients do all the time.
    """
    below = int(EPHEMERAL_RANGE.read_text().split()[0]) if EPHEMERAL_RANGE.exists() else 0
    draws = 100 if below > LOWEST_PORT + 1_000 else 0
    for port in (random.SystemRandom().randrange(LOWEST_PORT, below) for _ in range(draws)):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # taken: draw another
                continue
            return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(what: str, seconds: float, probe: Callable[[], Any]) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if found := probe():
                return found
        except OSError:
            pass
        time.sleep(2)
    pytest.fail(f"{what} not seen within {seconds} s")


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app on uvicorn in a thread on a free loopback port; yield its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
