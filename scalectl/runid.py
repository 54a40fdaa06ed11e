"""A run's identity: its method and the settings where it departs from that method's defaults.

``scale`` names the SCALE run with every default; ``scale[random_views=true]`` the random-views control,
``scale[sdp_seed=52]`` one seed of the sweep, ``lasrc[merger_params.no_guard=true]`` an ablation,
``lasrc[adapters=a,b,c]`` an ``eval --merger lasrc --adapters a,b,c`` run. A bare method name never picks a
variant: where a method has runs but none with the defaults, resolving it is refused with the candidates and
how each differs (docs: README, "SCALE and the audit").

The defaults are :class:`scalectl.methods.MethodConfig`'s and :class:`scalectl.search.SearchConfig`'s, read
from the dataclasses, so a new option is part of the identity as soon as it is stored.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import asdict
from types import MappingProxyType
from typing import Any, Mapping, Union

from .methods import METHODS, OPTIONS
from .runrecords import RunConfig, RunRecord

SEARCH_SEED = "search.seed"  # the seed a method's sweep varies unless the method declares another (Method.seed_key)

Run = Union[RunRecord, dict[str, Any]]  # a typed run, or a ``runs`` row as the registry returns it

# Stored with a method run but not what the run *is*: where it ran (the pool is its own filter) and
# the method name itself.
NOT_IDENTITY = ("method", "pool")

# Settings that make a run a control, an ablation or another mode of its method rather than the method with
# other budgets or seeds: a bare method name never names a run that sets one of these.
# The method options declared ``control`` (scalectl.methods.config.OPTIONS), and a fixed composition's adapters
# and parameters.
CONTROL_KEYS = tuple(o.name for o in OPTIONS if o.control) + ("adapters", "params")

_SELECTOR = re.compile(r"^(?P<method>[^\[\]]+)\[(?P<body>.*)\]$")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


@functools.lru_cache(maxsize=1)
def _defaults() -> Mapping[str, Any]:
    """The flattened MethodConfig defaults, built once (read-only)."""
    from .methods import MethodConfig

    return MappingProxyType(_flatten(asdict(MethodConfig(method="-"))))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def config_of(run: Run) -> RunConfig:
    """The typed config of a run (a :class:`~scalectl.runrecords.RunRecord`, or a ``runs`` row)."""
    if isinstance(run, RunRecord):
        return run.config
    return RunConfig.from_dict(run.get("config") or {})


def _method_of(run: Run) -> str | None:
    return run.method if isinstance(run, RunRecord) else run.get("method")


def base_method(run: Run) -> str:
    """The method whose defaults a run is compared with (a derived ``scale-uniform`` run: SCALE's)."""
    mc = config_of(run).method_config or {}
    return mc.get("method") or _method_of(run) or ""


def variant(run: Run) -> dict[str, Any]:
    """The settings of ``run`` that differ from its method's defaults, flattened (``search.steps``,
    ``merger_params.no_guard``); ``adapters`` (and the merger's ``params``) for a run over named adapters."""
    cfg = config_of(run)
    out: dict[str, Any] = {}
    mc = cfg.method_config
    if mc:
        defaults = _defaults()
        for k, v in _flatten(mc).items():
            if k.split(".", 1)[0] in NOT_IDENTITY:
                continue
            if k not in defaults or not _same(defaults[k], v):
                out[k] = v
    comp = cfg.composition
    if comp:
        out["adapters"] = ",".join(a.get("name", "?") for a in comp.get("adapters") or [])
        for k, v in _flatten(comp.get("params") or {}).items():
            out[f"params.{k}"] = v
    return out


def describe(run: Run) -> str:
    """``method`` or ``method[key=value,...]``: the selector that names exactly this run's configuration."""
    v = variant(run)
    method = run.method if isinstance(run, RunRecord) else run["method"]
    if not v:
        return method
    return method + "[" + ",".join(f"{k}={_show(x)}" for k, x in sorted(v.items())) + "]"


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "+".join(map(str, v))
    return str(v)


def _parse_value(text: str) -> Any:
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def parse_selector(spec: str) -> tuple[str, dict[str, Any]] | None:
    """``method[k=v,k2=v2]`` -> (method, {k: v}); a plain word -> (word, {}); None for anything else."""
    spec = spec.strip()
    m = _SELECTOR.match(spec)
    if m is None:
        return (spec, {}) if "[" not in spec and "]" not in spec else None
    want: dict[str, Any] = {}
    body = m.group("body").strip()
    if body:
        # values may hold commas (adapters=a,b,c): a new pair starts only at ",key="
        for part in re.split(r",(?=\s*[\w.+-]+\s*=)", body):
            if "=" not in part:
                return None
            k, v = part.split("=", 1)
            want[k.strip()] = _parse_value(v)
    return m.group("method").strip(), want


def matches(run: Run, want: dict[str, Any]) -> bool:
    """True when ``run`` is the configuration ``want`` names: the default one for ``{}``; otherwise its
    differences from the defaults include every key=value of ``want`` (a key at its default also matches)."""
    return variant_matches(variant(run), want)


def variant_matches(v: dict[str, Any], want: dict[str, Any]) -> bool:
    """:func:`matches` on a variant dict (e.g. a :func:`sweep_variant`)."""
    if not want:
        return not v
    defaults = _defaults()
    for k, x in want.items():
        have = v.get(k, defaults.get(k))
        if not (_same(have, x) or _show(have) == _show(x)):  # lists are written a+b (or a,b for adapters)
            return False
    return True


def controls(v: dict[str, Any]) -> dict[str, Any]:
    """The control / ablation / mode settings of a variant dict (:data:`CONTROL_KEYS`)."""
    return {k: x for k, x in v.items() if k.split(".", 1)[0] in CONTROL_KEYS}


def eligible(v: dict[str, Any], want: dict[str, Any]) -> bool:
    """Whether a variant dict is what ``want`` names: for a bare name ({}), any run without a control setting
    (other budgets and seeds are the method still); for a selector, runs with every key=value it names."""
    return not controls(v) if not want else variant_matches(v, want)


def seed_key(run: Run) -> str:
    """The setting a seed sweep of this run's method varies."""
    m = base_method(run)
    return METHODS[m].seed_key if m in METHODS else SEARCH_SEED


def seed_of(run: Run) -> Any:
    """The value of :func:`seed_key` for this run (its default when the run left it unset)."""
    key = seed_key(run)
    return variant(run).get(key, _defaults().get(key))


def sweep_variant(run: Run) -> dict[str, Any]:
    """The run's configuration less its sweep seed: runs with equal sweep variants differ only in that seed."""
    v = dict(variant(run))
    v.pop(seed_key(run), None)
    return v
