"""A tiny progress protocol the library reports through; the CLI hands in a rich implementation.

Library code never imports rich: long loops call ``progress.start(key, description, total)``,
``progress.advance(key, n)`` and ``progress.finish(key)`` on whatever object they are given
(``NullProgress`` when none), and ``progress.log(message)`` for one-line notes.
"""

from __future__ import annotations


class Progress:
    def start(self, key: str, description: str, total: int | None) -> None:  # noqa: B027 - no-op default
        pass

    def advance(self, key: str, n: int = 1, description: str | None = None) -> None:  # noqa: B027
        pass

    def finish(self, key: str) -> None:  # noqa: B027
        pass

    def log(self, message: str) -> None:  # noqa: B027
        pass


NullProgress = Progress


def ensure(p: Progress | None) -> Progress:
    return p if p is not None else Progress()
