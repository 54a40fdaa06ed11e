"""Support-set weight search: gradient-free (nevergrad ``NGOpt``) over one weight per candidate adapter.

method.md's defaults: 40 steps, bounds [-1.5, 1.5], init 0, seed 42, objective = mean support
cross-entropy + 0.05 * mean(|w|), batch 5. The candidates are attached once
(:class:`scalectl.stacked.StackedLora`, one rank-sum(r) branch per module); each step sets a
new coefficient vector and runs one forward pass over the support batch. Nothing is rebuilt
between steps. For LoRAHub's factor-space rule (``A = sum w A_n``, ``B = sum w B_n``) the
mixed factors of one rank-r branch are recomputed per step instead (a few small matrix sums).

Every step's objective, cross-entropy and weights are returned, to be stored with the run.
A NaN or infinite loss stops the search and reports the step.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from .errors import EvalError
from .progress import Progress, ensure


@dataclass
class SearchConfig:
    steps: int = 40
    lower: float = -1.5
    upper: float = 1.5
    init: float = 0.0
    seed: int = 42
    l1: float = 0.05
    batch_size: int = 5

    def check(self) -> None:
        if self.steps < 1:
            raise EvalError(f"search steps must be at least 1, got {self.steps}")
        if not self.lower < self.upper or not self.lower <= self.init <= self.upper:
            raise EvalError(f"search bounds [{self.lower}, {self.upper}] must contain init {self.init}")


@dataclass
class SearchResult:
    names: list[str]
    weights: list[float]
    objective: float
    support_loss: float
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    forward_seconds: float = 0.0
    rule: str = "linear"
    cached: bool = False  # read back from the search cache (``seconds`` is the original search's)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchResult":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def encode_support(bb, support: list[Any], max_len: int = 512) -> list[dict[str, list[int]]]:
    """Token ids of each support example (prompt through the chat template, target + EOS)."""
    from .train import encode_examples

    ex = []
    for s in support:
        inp = s["input"] if isinstance(s, dict) else s.input
        tgt = s["target"] if isinstance(s, dict) else s.target
        if not str(tgt).strip():
            raise EvalError(f"a support example has an empty target ({str(inp)[:40]!r}...): nothing to score")
        ex.append({"input": inp, "target": str(tgt)})
    return encode_examples(bb, ex, max_len)


def support_loss(bb, model, encoded, batch_size: int = 5) -> float:
    """Mean cross-entropy of the support targets (token-weighted over the whole support set)."""
    from .train import heldout_loss

    return heldout_loss(bb, model, encoded, batch_size=batch_size)


@contextlib.contextmanager
def factor_mix(model, factors) -> Iterator[Any]:
    """LoRAHub's rule as a live branch: ``set(w)`` recomputes ``A = sum w A_n``, ``B = sum w s_n B_n``."""
    import torch

    from .stacked import StackedLora

    ranks = {f.A[m].shape[0] for f in factors for m in f.modules}
    if len(ranks) != 1:
        raise EvalError(f"lorahub's rule needs equal ranks, the candidates have ranks {sorted(ranks)}; use linear")
    mods = [m for m in factors[0].modules if all(m in f.A for f in factors)]
    p = next(model.parameters())
    As = {m: torch.stack([f.A[m] for f in factors]).to(p.device, torch.float32) for m in mods}  # (K, r, d_in)
    Bs = {m: torch.stack([f.scaling[m] * f.B[m] for f in factors]).to(p.device, torch.float32) for m in mods}  # (K, d_out, r)
    st = StackedLora(model, [factors[0]], modules=mods)
    layers = {m: model.get_submodule(m) for m in mods}

    class Mix:
        def set(self, w) -> None:
            wt = torch.as_tensor(w, dtype=torch.float32, device=p.device)
            for m, layer in layers.items():
                layer.A.copy_(torch.einsum("k,krd->rd", wt, As[m]).to(layer.A.dtype))
                layer.B.copy_(torch.einsum("k,kor->or", wt, Bs[m]).to(layer.B.dtype))
            st.set_weights([1.0])

    try:
        yield Mix()
    finally:
        st.remove()


def search_weights(bb, factors, support, cfg: SearchConfig | None = None, rule: str = "linear",
                   progress: Progress | None = None, key: str = "search") -> SearchResult:
    """Find one weight per candidate minimizing support CE + l1 * mean|w| with nevergrad NGOpt."""
    import warnings

    import nevergrad as ng
    import numpy as np

    from .stacked import StackedLora

    cfg = cfg or SearchConfig()
    cfg.check()
    prog = ensure(progress)
    k = len(factors)
    enc = encode_support(bb, support)
    hist: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    fwd = 0.0
    ctx = factor_mix(bb.model, factors) if rule == "lorahub" else StackedLora(bb.model, factors)
    with ctx as branch:
        setter = branch.set if rule == "lorahub" else branch.set_weights

        def evaluate(w: np.ndarray) -> tuple[float, float]:
            nonlocal fwd
            setter(w)
            t = time.perf_counter()
            ce = support_loss(bb, bb.model, enc, cfg.batch_size)
            fwd += time.perf_counter() - t
            return ce + cfg.l1 * float(np.mean(np.abs(w))), ce

        param = ng.p.Array(init=np.full(k, cfg.init, dtype=float)).set_bounds(cfg.lower, cfg.upper)
        param.random_state = np.random.RandomState(cfg.seed)
        opt = ng.optimizers.NGOpt(parametrization=param, budget=cfg.steps)
        prog.start(key, f"weight search over {k} adapters", cfg.steps)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for step in range(1, cfg.steps + 1):
                x = opt.ask()
                w = np.asarray(x.value, dtype=float)
                obj, ce = evaluate(w)
                if not math.isfinite(obj):
                    raise EvalError(f"weight search: the support loss is {ce} at step {step} (weights "
                                    f"{np.round(w, 3).tolist()}); check the adapters (pool verify) and the support set")
                opt.tell(x, obj)
                hist.append({"step": step, "objective": round(obj, 6), "loss": round(ce, 6),
                             "weights": [round(float(v), 6) for v in w]})
                prog.advance(key, 1, description=f"weight search over {k} adapters: best {min(h['objective'] for h in hist):.4f}")
            rec = np.asarray(opt.provide_recommendation().value, dtype=float)
        obj, ce = evaluate(rec)
    prog.finish(key)
    best = min(hist, key=lambda h: h["objective"])
    if best["objective"] < obj:  # the recommendation is a model-based guess; keep what was measured best
        rec, obj, ce = np.asarray(best["weights"]), best["objective"], best["loss"]
    return SearchResult(names=[f.name for f in factors], weights=[float(v) for v in rec], objective=float(obj),
                        support_loss=float(ce), steps=cfg.steps, history=hist, seconds=time.perf_counter() - t0,
                        forward_seconds=fwd, rule=rule)
