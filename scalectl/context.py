"""One run's working set: the registry, the backbone, the pool, and what is loaded once per run.

A :class:`RunContext` is made by the engine (``scalectl.evaluate``) for each run (on a Ray worker: for each
unit) and handed to the methods. It loads an adapter's factors once, verifying the weight file's sha256
the first time (later loads reuse the verified tensors), reads the pool's rows once, and holds the
in-process cache of weight searches. It stands in for the registry where adapters are read
(:func:`scalectl.compose.load_inputs` takes it), so a composition of already-verified candidates hashes
nothing again. Nothing in it outlives the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import EvalError


@dataclass
class RunContext:
    reg: Any  # scalectl.registry.Registry
    bb: Any  # scalectl.backbone.Backbone
    pool: str | None = None
    searches: dict[str, Any] = field(default_factory=dict)  # in-process weight searches (methods.plan)
    unbilled: dict[str, float] = field(default_factory=dict)  # searches run ahead whose seconds no plan holds yet
    warned: set[str] = field(default_factory=set)  # warnings already shown to the user in this run
    lowrank: Any = None  # scalectl.lowrank.LowRankSpec: composed updates are scored as this approximation
    _factors: dict[tuple[str, str | None, bool], Any] = field(default_factory=dict, repr=False)
    _rows: list[dict[str, Any]] | None = field(default=None, repr=False)

    # -- the pool

    def rows(self) -> list[dict[str, Any]]:
        """The pool's adapter rows (read once)."""
        if self._rows is None:
            self._rows = self.reg.list(pool=self.pool)
        return self._rows

    def names(self, required: bool = True) -> list[str]:
        names = [r["name"] for r in self.rows()]
        if required and not names:
            raise EvalError(f"pool {self.pool!r} has no adapters")
        return names

    def candidates(self) -> list[str]:
        """What a method draws from when it does not retrieve (LoRAHub's random 20, LoGo's whole pool, the
        random-views control): the pool less the compositions scalectl registered in it, as retrieval leaves
        them out."""
        from .compose import is_composed

        names = [r["name"] for r in self.rows() if not is_composed(r)]
        if not names:
            raise EvalError(f"pool {self.pool!r} has no adapters but compositions" if self.rows()
                            else f"pool {self.pool!r} has no adapters")
        return names

    def sha256(self) -> dict[str, str | None]:
        return {r["name"]: r.get("sha256") for r in self.rows()}

    # -- what compose.load_inputs reads: a registry whose factor loads are verified once

    def find(self, name: str, pool: str | None = None) -> dict[str, Any]:
        return self.reg.find(name, pool if pool is not None else self.pool)

    def load_factors(self, name: str, pool: str | None = None, allow_pickle: bool = False):
        key = (name, pool if pool is not None else self.pool, allow_pickle)
        if key not in self._factors:
            self._factors[key] = self.reg.load_factors(name, key[1], allow_pickle=allow_pickle)
        return self._factors[key]

    def factors(self, names: list[str]) -> list[Any]:
        return [self.load_factors(n) for n in names]
