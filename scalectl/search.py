"""Support-set weight search: LoRAHub's gradient-free search (nevergrad ``NGOpt``), one weight per candidate.

Reference code: sail-sg/lorahub ``lorahub/algorithm.py`` (``default_get_loss``, ``default_l1_regularization``,
``get_score``, ``lorahub_learning``) and noname822/iLoraComp ``code/algorithm.py``, ``code/iLoraCamp_main.py``;
method.md, "Weight search". Defaults are theirs:

- parametrization ``ng.p.Array(init=[w0]*K, lower=[-1.5]*K, upper=[1.5]*K)`` (nevergrad's sigma 0.5), NGOpt with
  budget = the stage's steps, numpy seeded with 42 before the optimizer is built (each stage again); the result is
  the optimizer's recommendation;
- objective ``loss(w) + 0.05 * sum(|w|) / K`` with LoRAHub's loss: the support set in batches of 5, each batch's
  mean target-token cross-entropy, summed over batches and divided by the number of examples (``loss="mean"``:
  the plain token mean instead, an option);
- schedule: one stage (LoRAHub) or iLoRAComp's two (30 steps from 0, then 10 from stage 1's recommendation).

Composition inside the search: the factor rule (``A = sum w A_n``, ``B = sum w s_n B_n``; ``rule="lorahub"``,
recomputed per step) or the linear rule (every candidate attached once as one rank-sum(r) branch,
:class:`scalectl.stacked.StackedLora`; ``rule="linear"``). Every evaluated point (objective, loss, weights) is
returned, with K, the budget and the stages. NGOpt runs COBYLA here, whose first pass spends K + 1 evaluations:
a budget below 2(K + 1) is reported (``SearchResult.warning``). A NaN or infinite loss stops the search.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from .errors import EvalError, ParameterError
from .progress import Progress, ensure

LOSSES = ("lorahub", "mean")


@dataclass
class SearchConfig:
    steps: int = 40  # the whole budget (a two-stage schedule splits it)
    lower: float = -1.5
    upper: float = 1.5
    init: float = 0.0
    seed: int = 42
    l1: float = 0.05
    batch_size: int = 5
    loss: str = "lorahub"  # "lorahub": sum of batch means / n examples (LoRAHub's); "mean": token mean

    def check(self) -> None:
        if self.steps < 1:
            raise EvalError(f"search steps must be at least 1, got {self.steps}")
        if not self.lower < self.upper or not self.lower <= self.init <= self.upper:
            raise EvalError(f"search bounds [{self.lower}, {self.upper}] must contain init {self.init}")
        if self.loss not in LOSSES:
            raise EvalError(f"search loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")


def one_stage(steps: int) -> list[int]:
    """LoRAHub's schedule: one stage of every step."""
    return [steps]


def two_stage(steps: int) -> list[int]:
    """iLoRAComp's schedule (``iLoraCamp_main.py``: step1 = 30, step2 = 10 of 40): three quarters of the budget from
    the init, the rest from stage 1's recommendation."""
    second = steps // 4
    return [steps - second, second] if second else [steps]


SCHEDULES = {"one-stage": one_stage, "two-stage": two_stage}


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
    stages: list[int] = field(default_factory=list)  # steps per stage (each stage starts from the previous result)
    k: int = 0  # candidates searched
    loss: str = "lorahub"  # the loss inside the objective (SearchConfig.loss)
    warning: str | None = None  # e.g. a budget below 2(K + 1)

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
    return support_losses(bb, model, encoded, batch_size)[0]


def support_losses(bb, model, encoded, batch_size: int = 5) -> tuple[float, float]:
    """One forward pass over the support set: (token-mean cross-entropy, LoRAHub's loss). LoRAHub's loss
    (``default_get_loss``) is each batch's mean target-token cross-entropy, summed over batches, divided by the
    number of examples."""
    from .train import batch_token_losses

    per = batch_token_losses(bb, model, encoded, batch_size)
    mean = sum(s for s, _ in per) / max(sum(c for _, c in per), 1)
    return mean, sum(s / max(c, 1) for s, c in per) / max(len(encoded), 1)


def budget_warning(k: int, stages: list[int]) -> str | None:
    """NGOpt runs COBYLA over K weights: its first pass spends K + 1 evaluations, so a stage below 2(K + 1) steps
    hardly moves past a yes/no probe of each weight."""
    if min(stages) < 2 * (k + 1):
        return (f"search budget {'+'.join(map(str, stages))} over {k} candidates: below 2(K + 1) = {2 * (k + 1)} "
                "per stage, COBYLA spends its first K + 1 steps probing one weight at a time")
    return None


def lorahub_parametrization(init, lower: float, upper: float, seed: int):
    """``ng.p.Array(init=init, lower=..., upper=...)`` with the random state LoRAHub's ``numpy.random.seed(seed)``
    gives it (nevergrad draws the parametrization's seed from numpy's global generator), without touching numpy's
    global state."""
    import nevergrad as ng
    import numpy as np

    k = len(init)
    param = ng.p.Array(init=np.asarray(init, dtype=float), lower=np.full(k, lower), upper=np.full(k, upper))
    param.random_state = np.random.RandomState(np.random.RandomState(seed).randint(2**32, dtype=np.uint32))
    return param


def minimize(objective, init, steps: int, cfg: SearchConfig, on_step=None):
    """One stage of LoRAHub's search: NGOpt over ``lorahub_parametrization`` with ``steps`` evaluations of
    ``objective(w) -> float`` (ask/tell, as ``optimizer.minimize`` does with one worker); returns the
    recommendation."""
    import warnings

    import nevergrad as ng
    import numpy as np

    # NGOpt's COBYLA runs scipy in a worker thread, which warns about its own settings for tiny budgets (MAXFUN,
    # RHOEND) outside any catch_warnings block here: those are scipy's notes to nevergrad, not the user's concern.
    warnings.filterwarnings("ignore", message=r"COBYLA: Invalid", category=UserWarning)
    opt = ng.optimizers.NGOpt(parametrization=lorahub_parametrization(init, cfg.lower, cfg.upper, cfg.seed),
                              budget=steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            x = opt.ask()
            value = objective(np.asarray(x.value, dtype=float))
            opt.tell(x, value)
            if on_step is not None:
                on_step()
        return np.asarray(opt.provide_recommendation().value, dtype=float)


@contextlib.contextmanager
def factor_mix(model, factors) -> Iterator[Any]:
    """LoRAHub's rule as a live branch: ``set(w)`` recomputes ``A = sum w A_n``, ``B = sum w s_n B_n``."""
    import torch

    from .stacked import StackedLora

    ranks = {f.A[m].shape[0] for f in factors for m in f.modules}
    if len(ranks) != 1:
        raise ParameterError("the factor rule ({0} lorahub, LoRAHub's and iLoRAComp's) needs equal ranks; the "
                             f"candidates have ranks {sorted(ranks)}: search with {{0}} linear", "search_rule")
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
                   progress: Progress | None = None, key: str = "search", stages: list[int] | None = None) -> SearchResult:
    """Find one weight per candidate minimizing LoRAHub's objective on the support set (module docstring).

    ``stages``: steps per stage (default one stage of ``cfg.steps``); each later stage starts from the previous
    stage's recommendation, with a new optimizer seeded as the first."""
    import numpy as np

    from .stacked import StackedLora

    cfg = cfg or SearchConfig()
    cfg.check()
    stages = list(stages or [cfg.steps])
    prog = ensure(progress)
    k = len(factors)
    enc = encode_support(bb, support)
    hist: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    fwd = 0.0
    ctx = factor_mix(bb.model, factors) if rule == "lorahub" else StackedLora(bb.model, factors)
    with ctx as branch:
        setter = branch.set if rule == "lorahub" else branch.set_weights

        def measure(w: np.ndarray) -> tuple[float, float, float]:
            """(objective, the objective's loss, token-mean cross-entropy) at ``w``."""
            nonlocal fwd
            setter(w)
            t = time.perf_counter()
            mean, lorahub = support_losses(bb, bb.model, enc, cfg.batch_size)
            fwd += time.perf_counter() - t
            loss = lorahub if cfg.loss == "lorahub" else mean
            return loss + cfg.l1 * float(np.sum(np.abs(w))) / max(k, 1), loss, mean

        def objective(w: np.ndarray) -> float:
            obj, loss, mean = measure(w)
            step = len(hist) + 1
            if not math.isfinite(obj):
                raise EvalError(f"weight search: the support loss is {mean} at step {step} (weights "
                                f"{np.round(w, 3).tolist()}); check the adapters (pool verify) and the support set")
            hist.append({"step": step, "objective": round(obj, 6), "loss": round(loss, 6), "ce": round(mean, 6),
                         "weights": [round(float(v), 6) for v in w]})
            return obj

        prog.start(key, f"weight search over {k} adapters", sum(stages))
        rec = np.full(k, cfg.init, dtype=float)
        for n in stages:
            rec = minimize(objective, rec, n, cfg, on_step=lambda: prog.advance(
                key, 1, description=f"weight search over {k} adapters: best {min(h['objective'] for h in hist):.4f}"))
        obj, loss, mean = measure(rec)
    prog.finish(key)
    return SearchResult(names=[f.name for f in factors], weights=[float(v) for v in rec], objective=float(obj),
                        support_loss=float(mean), steps=sum(stages), history=hist, seconds=time.perf_counter() - t0,
                        forward_seconds=fwd, rule=rule, stages=stages, k=k, loss=cfg.loss,
                        warning=budget_warning(k, stages))
