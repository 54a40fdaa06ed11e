"""The ``scalectl`` console script: the CLI's imports (typer, rich, ...) run inside a Ctrl-C guard too, so an
interrupt that arrives before any command started is the same one line as one that arrives during a command."""

from __future__ import annotations

import sys

INTERRUPTED = "interrupted; nothing was left half-written"


def main() -> None:
    try:
        from .cli import app
    except KeyboardInterrupt:  # nothing had started: nothing to undo
        print(f"error: {INTERRUPTED}", file=sys.stderr)
        raise SystemExit(130) from None
    app(prog_name="scalectl")
