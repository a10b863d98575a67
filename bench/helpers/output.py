"""Where the benchmarks write: progress to stderr, so stdout is the report and its JSON line."""

import contextlib
import sys
from collections.abc import Iterator


def progress(message: str, end: bool = True) -> None:
    """One progress line on stderr; ``end`` marks a step that starts (`` ...``)."""
    print(message + (" ..." if end else ""), file=sys.stderr, flush=True)


@contextlib.contextmanager
def feast_output() -> Iterator[None]:
    """Send what Feast prints (materialization progress) to stderr, keeping stdout the report."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
