"""The ``scalectl`` console script: the CLI's imports (typer, rich, ...) run inside a Ctrl-C guard too, so an
interrupt that arrives before any command started is the same one line as one that arrives during a command."""

from __future__ import annotations

import sys

INTERRUPTED = "interrupted; nothing was left half-written"


def from_interrupt(e: BaseException | None) -> bool:
    """Whether ``e`` was raised because of a KeyboardInterrupt, anywhere down its cause / context chain (Python
    3.11 wraps a Ctrl-C that lands in a class body's ``__set_name__`` into a RuntimeError, for one)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def main() -> None:
    try:
        from .cli import app
    except (KeyboardInterrupt, Exception) as e:  # nothing had started: nothing to undo
        if not from_interrupt(e):
            raise
        print(f"error: {INTERRUPTED}", file=sys.stderr)
        raise SystemExit(130) from None
    app(prog_name="scalectl")
