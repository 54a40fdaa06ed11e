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

Lockstep (:func:`search_many`): a task's searches (each ``ilc`` cluster, each SCALE view's clusters) advance
together, one batched forward pass per step scoring every search's point, each search's rows through its own
branch (:class:`scalectl.stacked.JobStack`). Each search's optimizer is its own, and its slice of the batch is
computed with the operations and shapes of a pass of its own, so trajectories, weights and losses are bit for
bit those of the searches run one after another (``tests/test_search.py`` checks it; ``SCALECTL_LOCKSTEP=0``
runs them one after another).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import EvalError
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
    lockstep: int = 1  # searches advanced together in one batched forward pass (search_many)

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

    return both_losses(batch_token_losses(bb, model, encoded, batch_size), len(encoded))


def both_losses(per: list[tuple[float, int]], n: int) -> tuple[float, float]:
    """(token mean, LoRAHub's loss) from each batch's (summed cross-entropy, target count) over ``n`` examples."""
    mean = sum(s for s, _ in per) / max(sum(c for _, c in per), 1)
    return mean, sum(s / max(c, 1) for s, c in per) / max(n, 1)


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


def new_optimizer(init, steps: int, cfg: SearchConfig):
    """One stage's optimizer: NGOpt over ``lorahub_parametrization`` with a budget of ``steps``."""
    import warnings

    import nevergrad as ng

    # NGOpt's COBYLA runs scipy in a worker thread, which warns about its own settings for tiny budgets (MAXFUN,
    # RHOEND) outside any catch_warnings block here: those are scipy's notes to nevergrad, not the user's concern.
    warnings.filterwarnings("ignore", message=r"COBYLA: Invalid", category=UserWarning)
    return ng.optimizers.NGOpt(parametrization=lorahub_parametrization(init, cfg.lower, cfg.upper, cfg.seed),
                               budget=steps)


def minimize(objective, init, steps: int, cfg: SearchConfig, on_step=None):
    """One stage of LoRAHub's search: NGOpt over ``lorahub_parametrization`` with ``steps`` evaluations of
    ``objective(w) -> float`` (ask/tell, as ``optimizer.minimize`` does with one worker); returns the
    recommendation."""
    import warnings

    import numpy as np

    opt = new_optimizer(init, steps, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            x = opt.ask()
            value = objective(np.asarray(x.value, dtype=float))
            opt.tell(x, value)
            if on_step is not None:
                on_step()
        return np.asarray(opt.provide_recommendation().value, dtype=float)


@dataclass
class SearchJob:
    """One weight search: candidates (their factors), config, composition rule and schedule (steps per stage;
    default one stage of ``cfg.steps``)."""

    factors: list[Any]
    cfg: SearchConfig = field(default_factory=SearchConfig)
    rule: str = "linear"
    stages: list[int] | None = None

    def schedule(self) -> list[int]:
        return list(self.stages or [self.cfg.steps])


class Trajectory:
    """One search's optimizer, advanced one evaluation at a time: exactly the asks and tells of :func:`minimize`
    stage after stage (each later stage a new optimizer from the previous recommendation), then one evaluation
    of the final recommendation. The optimizer's random state is its own, so trajectories do not depend on what
    else is searched beside them."""

    def __init__(self, job: SearchJob):
        import numpy as np

        job.cfg.check()
        self.cfg, self.stages, self.k = job.cfg, job.schedule(), len(job.factors)
        self.rec = np.full(self.k, self.cfg.init, dtype=float)
        self.stage, self.left, self.opt, self.asked = -1, 0, None, None
        self.history: list[dict[str, Any]] = []
        self.final: tuple[float, float, float] | None = None
        self.forward_seconds = 0.0

    def point(self):
        """The next point to evaluate (the final recommendation last), or None when the search is done."""
        import numpy as np

        if self.final is not None:
            return None
        while self.left == 0:
            if self.opt is not None:
                self.rec = np.asarray(self.opt.provide_recommendation().value, dtype=float)
                self.opt = None
            self.stage += 1
            if self.stage == len(self.stages):
                return self.rec
            self.opt, self.left = new_optimizer(self.rec, self.stages[self.stage], self.cfg), self.stages[self.stage]
        self.asked = self.opt.ask()
        return np.asarray(self.asked.value, dtype=float)

    def objective(self, w, mean: float, lorahub: float) -> tuple[float, float]:
        import numpy as np

        loss = lorahub if self.cfg.loss == "lorahub" else mean
        return loss + self.cfg.l1 * float(np.sum(np.abs(w))) / max(self.k, 1), loss

    def tell(self, w, mean: float, lorahub: float) -> None:
        """The losses at the point :meth:`point` gave."""
        import numpy as np

        obj, loss = self.objective(w, mean, lorahub)
        if self.opt is None:  # the final recommendation
            self.final = (obj, loss, mean)
            return
        step = len(self.history) + 1
        if not math.isfinite(obj):
            raise EvalError(f"weight search: the support loss is {mean} at step {step} (weights "
                            f"{np.round(w, 3).tolist()}); check the adapters (pool verify) and the support set")
        self.history.append({"step": step, "objective": round(obj, 6), "loss": round(loss, 6), "ce": round(mean, 6),
                             "weights": [round(float(v), 6) for v in w]})
        self.opt.tell(self.asked, obj)
        self.left -= 1

    def result(self, names: list[str], rule: str, seconds: float, lockstep: int) -> SearchResult:
        obj, _, mean = self.final  # type: ignore[misc]
        return SearchResult(names=names, weights=[float(v) for v in self.rec], objective=float(obj),
                            support_loss=float(mean), steps=sum(self.stages), history=self.history, seconds=seconds,
                            forward_seconds=self.forward_seconds, rule=rule, stages=self.stages, k=self.k,
                            loss=self.cfg.loss, warning=budget_warning(self.k, self.stages), lockstep=lockstep)


LOGITS_BYTES = {"cpu": 1 << 30, "cuda": 8 << 30}  # logits one lockstep forward pass may hold, by device type


def copies_per_pass(bb, items, device) -> int:
    """How many searches' copies of a support batch one forward pass takes within :data:`LOGITS_BYTES`."""
    vocab = int(getattr(bb.model.config, "vocab_size", 0) or 32000)
    length = max(len(i.get("src", [])) + len(i.get("tgt", [])) for i in items)
    per_copy = 8 * len(items) * length * vocab  # fp32 logits, and the slice's float copy
    return max(1, LOGITS_BYTES.get(device.type, 1 << 30) // max(per_copy, 1))


def lockstep_losses(bb, stack, live: list[int], encoded, batch_size: int) -> dict[int, tuple[float, float]]:
    """(token mean, LoRAHub's loss) of each live search at its current point: each support batch is replicated
    once per search and scored in as few forward passes as :func:`copies_per_pass` allows."""
    from .train import replicated_token_losses

    per: dict[int, list[tuple[float, int]]] = {j: [] for j in live}
    for i in range(0, len(encoded), batch_size):
        items = encoded[i:i + batch_size]
        n = copies_per_pass(bb, items, stack.device)
        for c in range(0, len(live), n):
            chunk = live[c:c + n]
            stack.activate(chunk, len(items))
            for j, sc in zip(chunk, replicated_token_losses(bb, bb.model, items, len(chunk))):
                per[j].append(sc)
    stack.activate([], 0)
    return {j: both_losses(per[j], len(encoded)) for j in live}


def search_many(bb, jobs: list[SearchJob], support: list[Any], progress: Progress | None = None,
                key: str = "search") -> list[SearchResult]:
    """Several weight searches on one support set, advanced in lockstep: at each step every search still running
    proposes its point and one batched forward pass scores them all (:class:`scalectl.stacked.JobStack`).
    Each search's trajectory, weights and history are those it has run alone (bit for bit: every search's slice
    of the batch is computed with the operations and shapes of its own pass). ``seconds`` is each search's share
    of the wall time; ``lockstep`` says how many searched together."""
    import warnings

    from .stacked import JobStack

    if not jobs:
        return []
    sizes = list(dict.fromkeys(j.cfg.batch_size for j in jobs))
    if len(sizes) > 1:  # searches that batch their support set differently cannot share forward passes
        done = {id(j): r for b in sizes for j, r in zip([j for j in jobs if j.cfg.batch_size == b],
                search_many(bb, [j for j in jobs if j.cfg.batch_size == b], support, progress, key))}
        return [done[id(j)] for j in jobs]
    prog = ensure(progress)
    enc = encode_support(bb, support)
    trajs = [Trajectory(j) for j in jobs]
    t0 = time.perf_counter()
    total = max(sum(t.stages) for t in trajs)
    what = (f"weight search over {len(jobs[0].factors)} adapters" if len(jobs) == 1 else
            f"{len(jobs)} weight searches in lockstep")
    prog.start(key, what, total)
    best = math.inf
    with JobStack(bb.model, [(j.factors, j.rule) for j in jobs]) as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while True:
            points = {j: p for j, t in enumerate(trajs) if (p := t.point()) is not None}
            if not points:
                break
            for j, w in points.items():
                stack.set(j, w)
            tf = time.perf_counter()
            losses = lockstep_losses(bb, stack, list(points), enc, sizes[0])
            share = (time.perf_counter() - tf) / len(points)
            stepped = any(trajs[j].opt is not None for j in points)  # not only final evaluations
            for j, w in points.items():
                trajs[j].forward_seconds += share
                trajs[j].tell(w, *losses[j])
            best = min([best] + [t.history[-1]["objective"] for t in trajs if t.history])
            if stepped:
                prog.advance(key, 1, description=f"{what}: best {best:.4f}")
    prog.finish(key)
    seconds = (time.perf_counter() - t0) / len(jobs)
    return [t.result([f.name for f in j.factors], j.rule, seconds, len(jobs)) for j, t in zip(jobs, trajs)]


def search_weights(bb, factors, support, cfg: SearchConfig | None = None, rule: str = "linear",
                   progress: Progress | None = None, key: str = "search", stages: list[int] | None = None) -> SearchResult:
    """Find one weight per candidate minimizing LoRAHub's objective on the support set (module docstring).

    ``stages``: steps per stage (default one stage of ``cfg.steps``); each later stage starts from the previous
    stage's recommendation, with a new optimizer seeded as the first."""
    return search_many(bb, [SearchJob(factors, cfg or SearchConfig(), rule, stages)], support, progress, key)[0]
