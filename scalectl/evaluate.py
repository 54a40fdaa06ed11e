"""The evaluation engine: decode BIG-Bench Hard queries, score them, and record every query.

One call is one *run*: a row in the registry's ``runs`` table with its whole config
(:class:`scalectl.runrecords.RunConfig`: tasks, method and method config, adapters with sha256, weights,
backbone, support protocol, query cap, decoding settings, library versions), and one ``records`` row per
query (:class:`scalectl.runrecords.QueryRecord`).

A run is what a :class:`RunRequest` asks for: the base model alone, a fixed composition of named
adapters, or a method (:mod:`scalectl.methods`) that retrieves, searches and composes per task from a
pool. :class:`PreparedRun` validates the request, records the run as running, and splits it into
:class:`Unit` s (one per task; a method may split a task further, e.g. SCALE per view).
:func:`compute_unit` computes a unit (here, or on a Ray worker: :mod:`scalectl.fanout`); the results come
back to :meth:`PreparedRun.accept`, which combines a task's units and writes its records, and
:meth:`PreparedRun.finish` scores the run. The engine holds no method names: it asks the method.

Composed adapters are decoded with their update added into the backbone's weights
(:func:`scalectl.stacked.merged_weights`): base-model speed, weights restored after.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .batching import AUTO, fastest_batch_size, parse_batch_size
from .errors import EvalError, ParameterError
from .lowrank import LowRankSpec
from .methods import BASE_ONLY, Decoding, MethodConfig, TaskOutput, UnitOutput
from .methods import get as get_method
from .methods.plan import lockstep_on
from .progress import Progress, ensure
from .runrecords import SCHEMA, PathCost, PlanSummary, QueryRecord, RunConfig, RunSummary, ViewsPlanSummary
from .runrecords import TaskScoreRecord as TaskScore
from .tasks import bbh

INFERENCE_BATCH = 10  # method.md: batch 10 for inference


@dataclass
class EvalResult:
    run_id: str
    method: str
    label: str | None
    tasks: list[TaskScore]
    macro_accuracy: float
    macro_extracted: float
    n_queries: int
    decode_seconds: float
    compose_seconds: float
    limit: int | None
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunRequest:
    """What one eval run is asked to do (``scalectl eval``'s options, the library's keywords, a Ray job's spec).

    Exactly one of ``base_only``, ``method`` (a :class:`~scalectl.methods.MethodConfig` or a method name, with
    ``pool``) or ``adapters`` (composed with ``merger``, ``weights``, ``params``)."""

    tasks: Any  # bbh/TASK, a suite, a list of names, or loaded bbh.Task objects
    method: Any = None
    base_only: bool = False
    adapters: list[str] | None = None
    weights: list[float] | None = None
    merger: str = "linear"
    params: dict[str, Any] | None = None
    pool: str | None = None
    limit: int | None = None
    label: str | None = None
    base: str | None = None
    bbh_dir: str | None = None
    batch_size: int | str = INFERENCE_BATCH  # or "auto": the fastest on the device, probed first (batching.py)
    device: str | None = None
    allow_partial: bool = False
    rank: int | None = None  # score the best rank-R approximation of the composed update (compose --rank)
    max_error: float | None = None  # ... or per module the smallest rank within this relative error

    def normalized(self) -> "RunRequest":
        """The request with ``method`` as a checked MethodConfig (``zero-shot`` as a base-only run), validated."""
        method = MethodConfig(method=self.method) if isinstance(self.method, str) else self.method
        base_only = self.base_only
        if method is not None and get_method(method.method).base_only:
            base_only, method = True, None
        if sum([bool(base_only), bool(self.adapters), method is not None]) != 1:
            raise ParameterError("give exactly one of {0}, {1} M (with {3}), or {2} a,b,c", "base_only", "method",
                                 "adapters", "pool")
        if method is not None:
            method.check()
            if not self.pool:
                raise ParameterError("{0} " + method.method + " needs {1}: the pool to retrieve adapters from",
                                     "method", "pool")
        if self.limit is not None and self.limit < 1:
            raise ParameterError("{0} must be at least 1, got " + str(self.limit), "limit")
        try:
            batch_size = parse_batch_size(self.batch_size)
        except ValueError as e:
            raise ParameterError("{0} " + str(e).replace("{", "{{").replace("}", "}}"), "batch_size") from None
        lowrank = LowRankSpec(self.rank, self.max_error)
        if lowrank.active:
            lowrank.check()
            if base_only:
                raise ParameterError("{0} approximates a composed update; the base model alone has none", "rank")
            if method is not None:  # a method's setting: part of its config and of the run's identity
                method = dataclasses.replace(method, export_rank=self.rank, export_max_error=self.max_error)
                method.check()
        return dataclasses.replace(self, method=method, base_only=base_only, batch_size=batch_size)

    @property
    def lowrank(self) -> LowRankSpec:
        return self.method.lowrank if self.method is not None else LowRankSpec(self.rank, self.max_error)


def max_new_tokens(bb, task: bbh.Task) -> int:
    """Tokens of the task's longest target, plus room for the newline or EOS that ends it."""
    return len(bb.tokenizer(task.longest_target, add_special_tokens=False)["input_ids"]) + 2


def score(task: bbh.Task, queries: list[bbh.Example], outputs: list[str], extras=None) -> list[QueryRecord]:
    """One record per query: prediction (first line of the output), normalized EM, extractor metric apart."""
    opt = task.option_task
    extras = extras or [None] * len(queries)
    return [QueryRecord.scored(task.name, ex.id, ex.index, bbh.input_hash(ex.input), ex.target, out, opt, x)
            for ex, out, x in zip(queries, outputs, extras)]


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    from . import __version__

    return {"scalectl": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "python": platform.python_version()}


@dataclass
class PreparedComposition:
    """A composed update ready to add into the backbone: deltas per module plus what made them."""

    method: str
    deltas: dict[str, Any]
    config: dict[str, Any]
    seconds: float


def prepare_composition(ctx, adapters: list[str], weights: list[float] | None = None, merger: str = "linear",
                        params: dict[str, Any] | None = None, allow_partial: bool = False) -> PreparedComposition:
    """Load the adapters, check they are on the backbone's base model, and compose them (nothing is written);
    the run's ``ctx.lowrank`` decides whether the exact update or its low-rank approximation is scored."""

    from .backbone import same_base
    from .compose import compose_inputs, load_inputs, scored_deltas
    from .merge.table import resolve_merger

    bb = ctx.bb
    spec = resolve_merger(merger, params or {})
    t0 = time.perf_counter()
    inp = load_inputs(ctx, adapters, pool=ctx.pool, allow_partial=allow_partial)
    if not same_base(inp.base_model, bb.base.canonical):
        raise EvalError(f"the backbone is {bb.base.spec!r} but {inp.names[0]} (pool {inp.pool}) is on "
                        f"{inp.base_model!r}; pass --base {inp.base_model} or choose adapters of this backbone")
    for m in inp.modules:
        try:
            bb.model.get_submodule(m)
        except AttributeError:
            raise EvalError(f"the backbone {bb.base.spec!r} has no module {m} that {inp.names[0]} adapts") from None
    comp = compose_inputs(inp, weights, spec)
    deltas, low = scored_deltas(comp, ctx.lowrank)
    cfg = {
        "merger": spec.name, "params": spec.params, "sdp": spec.sdp,
        "adapters": [{"name": r["name"], "pool": r["pool"], "sha256": r.get("sha256")} for r in inp.rows],
        "weights": comp.weights, "exact": comp.exact and low is None,
    }
    if low is not None:
        cfg["low_rank"] = {**low.record(), "ranks": low.ranks, "note": low.note()}
    return PreparedComposition(method=spec.name, deltas=deltas, config=cfg, seconds=time.perf_counter() - t0)


def run_eval(tasks: str | list[str] | list[bbh.Task], *, reg=None, bb=None, progress: Progress | None = None,
             **request: Any) -> EvalResult:
    """Evaluate on BBH tasks and record every query. ``request``: the fields of :class:`RunRequest`
    (``base_only``; or ``method`` with ``pool``; or ``adapters`` with ``merger``, ``weights``, ``params``;
    and ``limit``, ``label``, ``base``, ``bbh_dir``, ``batch_size``, ``device``, ``allow_partial``).

    The run's units are computed here one after the other; :func:`scalectl.fanout.run_specs` computes the
    same units on Ray workers instead."""
    return run(RunRequest(tasks, **request), reg=reg, bb=bb, progress=progress)


def run(request: RunRequest, *, reg=None, bb=None, progress: Progress | None = None) -> EvalResult:
    """One run, its units computed here one after the other (what :func:`run_eval` and ``scalectl eval`` call)."""
    prog = ensure(progress)
    run = PreparedRun(request, reg=reg, bb=bb, progress=prog)
    try:
        prog.start("decode", f"{run.method}: decoding", run.total)
        prefetched = set()
        for u in run.units():
            prog.advance("decode", 0, description=f"{run.method}: {u.task}" + (f" ({u.view})" if u.view else ""))
            if u.task not in prefetched:
                prefetched.add(u.task)
                run.prefetch(u.task, prog)
            run.accept(u, compute_unit(run.spec(), u, ctx=run.ctx, comp=run.comp, progress=prog))
        prog.finish("decode")
    except BaseException as e:
        run.fail(e)
        raise
    return run.finish()


def run_base(reg, base: str | None, pool: str | None, adapters: list[str] | None = None, required: bool = False):
    """The base model a run uses, resolved and checked without loading it: ``base`` (``--base`` or
    ``SCALECTL_BASE``) when given, else the base the adapters are on (the pool's, else the first named
    adapter's), else the embedded default. A base other than the adapters' is refused here, and with
    ``required`` so is a missing pool."""
    from .backbone import choose_base, require_same_base, resolve_base

    row = reg.pool(pool)
    if pool and row is None and required:
        raise EvalError(f"no pool {pool!r}; `scalectl pool pools` lists them")
    pool_base = row["base_model"] if row is not None else None
    if not pool_base and adapters:
        pool_base = reg.find(adapters[0], pool).get("base_model")
    spec = resolve_base(choose_base(base, pool_base))
    require_same_base(spec, pool or "", pool_base)
    return spec


@dataclass(frozen=True)
class Unit:
    """One piece of a run computed on its own: a task's queries (or one view of them, for a method that splits)."""

    task: str
    view: str | None = None


@dataclass(frozen=True)
class UnitSpec:
    """What a unit needs to be computed anywhere (plain data: picklable, no model, no registry)."""

    base: str
    device: str
    pool: str | None
    bbh_dir: str
    limit: int | None
    batch_size: int
    method: MethodConfig | None
    composition: dict[str, Any] | None  # --adapters: adapters, weights, merger, params, allow_partial
    max_new_tokens: dict[str, int]

    @property
    def lowrank(self) -> LowRankSpec:
        """The run's low-rank setting: the method's, or the fixed composition's ``rank`` / ``max_error``."""
        if self.method is not None:
            return self.method.lowrank
        ca = self.composition or {}
        return LowRankSpec(ca.get("rank"), ca.get("max_error"))


def _run_config(req: RunRequest, bb, task_objs, plan, comp, probe=None) -> dict[str, Any]:
    """The stored config of a run (:class:`RunConfig`)."""
    mcfg = req.method
    method_config = None
    if mcfg is not None:
        method_config = {k: v for k, v in vars(mcfg).items() if k != "search"}
        method_config["search"], method_config["pool"] = vars(mcfg.search), req.pool
    other = {
        "bbh_dir": str(task_objs[0].path.parent), "support_offset": bbh.SUPPORT_OFFSET,
        "support_size": bbh.SUPPORT_SIZE, "device": bb.device,
        "dtype": str(next(bb.model.parameters()).dtype).replace("torch.", ""),
        "decode": "greedy", "batch_size": req.batch_size, "batch_order": "longest prompt first",
        "searches": "lockstep" if lockstep_on() else "one after another", "stop": "newline or EOS",
        "max_new_tokens": {t.name: max_new_tokens(bb, t) for t in task_objs},
        "prompt": "chat template" if not bb.is_seq2seq and getattr(bb.tokenizer, "chat_template", None) else "plain",
        "metric": "normalized exact match: str(x).strip().lower().replace('.', '')",
        "extractor": "first option letter on option tasks, else first line (separate metric)",
        "versions": _versions(),
    }
    if probe is not None:  # --batch-size auto: what was tried, and the size chosen (batch_size above)
        other["batch_size_probe"] = probe.to_dict()
    method = BASE_ONLY.name if req.base_only else (mcfg.method if mcfg is not None else comp.method)
    return RunConfig(tasks=[t.name for t in task_objs], method=method, schema=SCHEMA, method_config=method_config,
                     composition=comp.config if comp else None, limit=req.limit,
                     support_ids={t.name: [e.id for e in t.support] for t in task_objs},
                     queries={t.name: len(q) for t, q in plan}, base=bb.base.spec, base_model=bb.base.canonical,
                     other=other).to_dict()


class PreparedRun:
    """An eval run validated and recorded as running, split into :class:`Unit` s; the results of the units come
    back through :meth:`accept` (records are written to the registry there, by the caller's process) and
    :meth:`finish` scores the run. The compute itself is :func:`compute_unit`, the same wherever it runs."""

    def __init__(self, request: RunRequest, *, reg=None, bb=None, progress: Progress | None = None):
        from .backbone import load_backbone
        from .context import RunContext
        from .registry import Registry

        prog = ensure(progress)
        req = request.normalized()
        tasks = req.tasks
        task_objs = tasks if tasks and isinstance(tasks[0], bbh.Task) else bbh.load_tasks(tasks, req.bbh_dir)
        reg = reg or Registry()
        mcfg = req.method
        # Everything that can be refused without the model is refused before it loads: the pool, the
        # pool's base against --base, the indexes the method retrieves from.
        base_spec = run_base(reg, bb.base.spec if bb is not None else req.base, req.pool, req.adapters,
                             required=mcfg is not None)
        self.method_impl = get_method(mcfg.method) if mcfg is not None else None
        if self.method_impl is not None:
            from .index import load_index

            for v in self.method_impl.index_views(mcfg):
                load_index(reg, req.pool, v, mcfg.embedder)  # a missing index fails here, before any run is recorded
        if bb is None:
            prog.log("loading the base model")
            bb = load_backbone(base_spec.spec, device=req.device)
        self.ctx = RunContext(reg, bb, req.pool, lowrank=req.lowrank)
        comp = None
        if req.adapters:
            prog.log(f"composing {len(req.adapters)} adapter(s) with {req.merger}")
            comp = prepare_composition(self.ctx, req.adapters, req.weights, req.merger, req.params, req.allow_partial)
        self.plan = [(t, t.queries[:req.limit] if req.limit else t.queries) for t in task_objs]
        self.tasks = {t.name: (t, q) for t, q in self.plan}
        probe = None
        if req.batch_size == AUTO:
            prog.log("probing the fastest decoding batch size")
            probe = fastest_batch_size(bb, [e.input for _, q in self.plan for e in q],
                                       max(max_new_tokens(bb, t) for t in task_objs))
            prog.log(probe.note())
            req = dataclasses.replace(req, batch_size=probe.chosen)
        self.req, self.reg, self.bb, self.comp, self.mcfg = req, reg, bb, comp, mcfg
        self.config = _run_config(req, bb, task_objs, self.plan, comp, probe)
        self.method = self.config["method"]
        self.run_id = reg.create_run("eval", self.method, self.config, base_model=bb.base.canonical, label=req.label)
        self.total = sum(len(q) for _, q in self.plan)
        self.scores: list[TaskScore] = []
        self.plans: dict[str, PlanSummary | ViewsPlanSummary] = {}
        self._pending: dict[str, dict[str | None, UnitOutput]] = {}
        self._rss_mb = 0.0
        self._t0 = time.perf_counter()

    def _unit_views(self) -> list[str | None]:
        return self.method_impl.unit_views(self.mcfg) if self.method_impl is not None else [None]

    def units(self) -> list[Unit]:
        return [Unit(t.name, v) for t, _ in self.plan for v in self._unit_views()]

    def prefetch(self, task: str, progress: Progress) -> None:
        """The method's shared work for one task's units (:meth:`Method.prefetch`), in this process."""
        if self.method_impl is not None:
            t, queries = self.tasks[task]
            self.method_impl.prefetch(self.ctx, self.mcfg, t, queries, progress)

    def spec(self) -> UnitSpec:
        req = self.req
        composition = {"adapters": req.adapters, "weights": req.weights, "merger": req.merger, "params": req.params,
                       "allow_partial": req.allow_partial, "rank": req.rank,
                       "max_error": req.max_error} if req.adapters else None
        return UnitSpec(base=self.bb.base.spec, device=self.bb.device, pool=req.pool,
                        bbh_dir=self.config["bbh_dir"], limit=req.limit, batch_size=req.batch_size, method=self.mcfg,
                        composition=composition, max_new_tokens=self.config["max_new_tokens"])

    def accept(self, u: Unit, res: UnitOutput) -> None:
        """Take a unit's result; when a task's units are all in, combine them, score the task and write its
        records (this process)."""
        task, queries = self.tasks[u.task]
        self._rss_mb = max(self._rss_mb, float(res.peak_rss_mb or 0.0))
        done = self._pending.setdefault(u.task, {})
        done[u.view] = res
        views = self._unit_views()
        if len(done) < len(views):
            return
        del self._pending[u.task]
        if self.method_impl is not None:
            out = self.method_impl.combine(self.mcfg, task, queries, {v: done[v] for v in views})
        else:
            one = done[None]  # a run without a method (base model or fixed composition): one unit per task
            out = TaskOutput(one.outputs, one.extras, one.plan, one.seconds)
        if out.plan is not None:
            self.plans[task.name] = out.plan
        recs = score(task, queries, out.outputs, out.extras)
        self.reg.add_records(self.run_id, [r.to_dict() for r in recs])
        n = len(recs)
        c = sum(r.correct for r in recs)
        self.scores.append(TaskScore(task=task.name, n=n, correct=c, accuracy=c / n,
                                     extracted_accuracy=sum(bool(r.extracted_correct) for r in recs) / n,
                                     seconds=round(out.seconds, 3)))

    def fail(self, e: BaseException) -> None:
        """Close the run: ``interrupted`` on Ctrl-C or a terminating signal, else ``failed`` with the error."""
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            self.reg.finish_run(self.run_id, "interrupted", error=f"{type(e).__name__}: stopped before it finished")
        else:
            self.reg.finish_run(self.run_id, "failed", error=f"{type(e).__name__}: {e}"[:500])

    def finish(self, extra: dict[str, Any] | None = None) -> EvalResult:
        if len(self.scores) != len(self.plan):
            raise EvalError(f"run {self.run_id}: {len(self.plan) - len(self.scores)} task(s) have no results")
        order = {t.name: i for i, (t, _) in enumerate(self.plan)}
        self.scores.sort(key=lambda s: order[s.task])
        decode_s = time.perf_counter() - self._t0
        scores = self.scores
        plans = {t.name: self.plans[t.name] for t, _ in self.plan if t.name in self.plans}
        cost = _path_cost(self.bb, list(plans.values()), decode_s, self.comp, self._rss_mb)
        res = EvalResult(run_id=self.run_id, method=self.method, label=self.req.label, tasks=scores,
                         macro_accuracy=sum(s.accuracy for s in scores) / len(scores),
                         macro_extracted=sum(s.extracted_accuracy for s in scores) / len(scores), n_queries=self.total,
                         decode_seconds=round(decode_s, 3), compose_seconds=cost.compose_seconds, limit=self.req.limit,
                         config=self.config)
        summary = RunSummary(tasks=scores, macro_accuracy=res.macro_accuracy, macro_extracted=res.macro_extracted,
                             n_queries=self.total, path_cost=cost, run_id=self.run_id, method=self.method,
                             label=self.req.label, decode_seconds=res.decode_seconds,
                             compose_seconds=res.compose_seconds, limit=self.req.limit,
                             queries_per_second=round(self.total / decode_s, 3) if decode_s > 0 else None,
                             plans=plans or None, other=dict(extra or {}))
        self.reg.finish_run(self.run_id, "done", summary=summary.to_dict())
        derived = self.method_impl.derive(self.reg, self.run_id) if self.method_impl is not None else {}
        if derived:
            res.config["derived_runs"] = derived
        return res


_UNIT_COMPOSITIONS: dict[str, Any] = {}  # a worker's composed --adapters update, built once per run


def compute_unit(spec: UnitSpec, u: Unit, *, ctx=None, reg=None, bb=None, comp=None,
                 progress: Progress | None = None) -> UnitOutput:
    """Compute one unit and return its outputs (nothing is written): the method's :class:`UnitOutput`, or the
    base model's / fixed composition's outputs, with ``seconds`` and ``peak_rss_mb``."""
    import resource

    from .backbone import load_backbone
    from .context import RunContext
    from .registry import Registry

    prog = ensure(progress)
    if ctx is None:
        ctx = RunContext(reg or Registry(), bb or load_backbone(spec.base, device=spec.device), spec.pool,
                         lowrank=spec.lowrank)
    task = bbh.load_tasks([u.task], spec.bbh_dir)[0]
    queries = task.queries[:spec.limit] if spec.limit else task.queries
    decoding = Decoding(max_new_tokens=spec.max_new_tokens[task.name], batch_size=spec.batch_size)
    t0 = time.perf_counter()
    if spec.method is not None:
        out = get_method(spec.method.method).compute(ctx, spec.method, task, queries, u.view, decoding, prog)
    else:
        out = UnitOutput(_decode_fixed(ctx, spec, queries, decoding, comp, prog))
    out.seconds = time.perf_counter() - t0
    out.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return out


def _decode_fixed(ctx, spec: UnitSpec, queries, decoding: Decoding, comp, prog: Progress) -> list[str]:
    """The base model's outputs, or with ``--adapters`` the fixed composition's (composed once per worker)."""
    import contextlib
    import json

    from .backbone import generate_greedy
    from .stacked import merged_weights

    if spec.composition and comp is None:
        ca = spec.composition
        key = json.dumps(ca, sort_keys=True, default=str) + spec.base
        if key not in _UNIT_COMPOSITIONS:
            _UNIT_COMPOSITIONS.clear()
            _UNIT_COMPOSITIONS[key] = prepare_composition(ctx, ca["adapters"], ca["weights"], ca["merger"],
                                                          ca["params"], ca["allow_partial"])
        comp = _UNIT_COMPOSITIONS[key]
    with merged_weights(ctx.bb.model, comp.deltas) if comp else contextlib.nullcontext():
        return generate_greedy(ctx.bb, [e.input for e in queries], max_new_tokens=decoding.max_new_tokens,
                               batch_size=decoding.batch_size, stop_at_newline=True,
                               on_batch=lambda n: prog.advance("decode", n))


def _stage_seconds(plans: list[PlanSummary | ViewsPlanSummary], stage: str) -> float:
    """Seconds one stage (retrieval, search, compose, decode) took over every task plan (and view) of a run."""
    flat = [v for p in plans for v in (p.views.values() if isinstance(p, ViewsPlanSummary) else [p])]
    return sum(float(p.seconds.get(stage, 0) or 0) for p in flat)


def _path_cost(bb, plans: list[PlanSummary | ViewsPlanSummary], loop_seconds: float, comp,
               unit_rss_mb: float = 0.0) -> PathCost:
    """Decoded prediction paths per query relative to one view; retrieval, search, composition and decoding
    seconds, each measured where it was spent (decoding: the run's loop minus the other stages); peak memory."""
    import resource

    import torch

    paths = max((p.paths_per_query if isinstance(p, ViewsPlanSummary) else 1 for p in plans), default=1)
    plan_compose = _stage_seconds(plans, "compose")
    compose_s = plan_compose + (comp.seconds if comp else 0.0)
    search_s, retr_s = _stage_seconds(plans, "search"), _stage_seconds(plans, "retrieval")
    rss_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, unit_rss_mb)  # Linux reports KiB
    gpu = None
    if bb.device.startswith("cuda") and torch.cuda.is_available():
        gpu = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return PathCost(paths_per_query=float(paths), compose_seconds=round(compose_s, 3), search_seconds=round(search_s, 3),
                    retrieval_seconds=round(retr_s, 3),
                    decode_seconds=round(loop_seconds - plan_compose - search_s - retr_s, 3),
                    peak_rss_mb=round(rss_mb, 1),
                    note="decode_seconds: the run's decoding loop minus retrieval, search and composition",
                    gpu_max_allocated_mb=gpu)
