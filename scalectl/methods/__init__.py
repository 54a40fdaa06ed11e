"""The methods ``scalectl eval --method`` runs: one module per family, one registry of names.

=============  ==============================================  ==========================
family         rows                                            module
=============  ==============================================  ==========================
base model     ``zero-shot``                                   :mod:`.zero_shot`
LoRAHub        ``lorahub``                                     :mod:`.lorahub`
iLoRAComp      ``ilc``, ``lasrc``, ``ties``, ``dare-linear``,  :mod:`.matched`
               ``dare-ties``, ``sdp+lasrc``
routing        ``lmix-fr``, ``lmix-sr``                        :mod:`.routing`
LoGo           ``logo``                                        :mod:`.logo`
SCALE          ``scale`` (and its derived aggregations)        :mod:`.scale`
=============  ==============================================  ==========================

Each family module declares its methods in a ``METHODS`` list (name, summary, reference, the options it
reads, and how it plans, splits into units and combines; :mod:`.base`). Adding a method is one module
(or one row in a family's list) and one line in :data:`FAMILIES`. The engine (:mod:`scalectl.evaluate`)
asks :func:`get` for a method and calls it; it holds no method names.
"""

from __future__ import annotations

import difflib

from ..errors import EvalError
from . import logo, lorahub, matched, routing, scale, zero_shot
from .base import Decoding, Method, TaskOutput, UnitOutput
from .config import DEFAULT_VIEWS, OPTION, OPTIONS, MethodConfig, Option, OptionError

FAMILIES = (zero_shot, lorahub, matched, routing, logo, scale)
METHODS: dict[str, Method] = {m.name: m for fam in FAMILIES for m in fam.METHODS}
BASE_ONLY = next(m for m in METHODS.values() if m.base_only)  # the method a base-only run is recorded as

__all__ = ["BASE_ONLY", "DEFAULT_VIEWS", "FAMILIES", "METHODS", "OPTION", "OPTIONS", "Decoding", "Method", "MethodConfig",
           "Option", "OptionError", "TaskOutput", "UnitOutput", "get", "merger_of", "names"]


def names() -> list[str]:
    return list(METHODS)


def get(name: str) -> Method:
    """The method called ``name``; an unknown name is refused with the closest names and the full list."""
    if name in METHODS:
        return METHODS[name]
    close = difflib.get_close_matches(name, list(METHODS), n=2)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise EvalError(f"unknown method {name!r}; {hint}methods: {', '.join(METHODS)}")


def merger_of(method_config: dict | None) -> str | None:
    """The merger a stored method config's composed paths use (None: an unknown method, or no single merger)."""
    m = (method_config or {}).get("method") if isinstance(method_config, dict) else None
    return METHODS[m].merger(method_config) if m in METHODS else None
