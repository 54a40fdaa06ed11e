"""``zero-shot``: the base model alone (the results table's first row)."""

from __future__ import annotations

from typing import ClassVar

from .base import Method


class ZeroShot(Method):
    """Run as a base-only run (``eval --base-only``): no pool, no method config, nothing composed."""

    base_only: ClassVar[bool] = True


METHODS = [ZeroShot("zero-shot", "the base model alone", "method.md, Methods: zero-shot")]
