"""For tests that start a real server in its own process: a free port, and waiting for it."""

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
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
