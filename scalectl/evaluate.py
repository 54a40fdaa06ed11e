"""Decode BIG-Bench Hard queries with the base model or a composed adapter, score, and record every query.

One call is one *run*: a row in the registry's ``runs`` table with its whole config
(tasks, method, adapters with sha256, weights, backbone, support protocol, query cap,
decoding settings, library versions), and one ``records`` row per query: task, query id,
input hash, raw output, normalized output, reference, correct (normalized exact match),
and the answer extractor's output and correctness as a separate metric.

Composed adapters are decoded with their update added into the backbone's weights
(:func:`scalectl.stacked.merged_weights`): base-model speed, weights restored after.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import EvalError
from .progress import Progress, ensure
from .tasks import bbh

INFERENCE_BATCH = 10  # method.md: batch 10 for inference


@dataclass
class TaskScore:
    task: str
    n: int
    correct: int
    accuracy: float
    extracted_accuracy: float
    seconds: float


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


def max_new_tokens(bb, task: bbh.Task) -> int:
    """Tokens of the task's longest target, plus room for the newline or EOS that ends it."""
    return len(bb.tokenizer(task.longest_target, add_special_tokens=False)["input_ids"]) + 2


def score(task: bbh.Task, queries: list[bbh.Example], outputs: list[str]) -> list[dict[str, Any]]:
    """One record per query: prediction (first line of the output), normalized EM, extractor metric apart."""
    recs = []
    opt = task.option_task
    for ex, out in zip(queries, outputs):
        pred = out.split("\n", 1)[0].strip()
        extracted = bbh.extract_answer(out, opt)
        recs.append({
            "task": task.name, "query_id": ex.id, "idx": ex.index, "input_hash": bbh.input_hash(ex.input),
            "raw_output": out, "prediction": pred, "normalized": bbh.normalize(pred), "reference": ex.target,
            "correct": bbh.exact_match(pred, ex.target), "extracted": extracted,
            "extracted_correct": bbh.exact_match(extracted, ex.target),
        })
    return recs


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


def prepare_composition(reg, bb, adapters: list[str], weights: list[float] | None = None, merger: str = "linear",
                        params: dict[str, Any] | None = None, pool: str | None = None,
                        allow_partial: bool = False) -> PreparedComposition:
    """Load the adapters, check they are on the backbone's base model, and compose them (nothing is written)."""
    import torch

    from .backbone import same_base
    from .compose import compose_inputs, load_inputs
    from .merge.table import resolve_merger

    spec = resolve_merger(merger, params or {})
    t0 = time.perf_counter()
    inp = load_inputs(reg, adapters, pool=pool, allow_partial=allow_partial)
    if not same_base(inp.base_model, bb.base.canonical):
        raise EvalError(f"the backbone is {bb.base.spec!r} but {inp.names[0]} (pool {inp.pool}) is on "
                        f"{inp.base_model!r}; pass --base {inp.base_model} or choose adapters of this backbone")
    for m in inp.modules:
        try:
            bb.model.get_submodule(m)
        except AttributeError:
            raise EvalError(f"the backbone {bb.base.spec!r} has no module {m} that {inp.names[0]} adapts") from None
    comp = compose_inputs(inp, weights, spec)
    deltas = {m: comp.delta(m).to(torch.float32) for m in inp.modules}
    cfg = {
        "merger": spec.name, "params": spec.params, "sdp": spec.sdp,
        "adapters": [{"name": r["name"], "pool": r["pool"], "sha256": r.get("sha256")} for r in inp.rows],
        "weights": comp.weights, "exact": comp.exact,
    }
    return PreparedComposition(method=spec.name, deltas=deltas, config=cfg, seconds=time.perf_counter() - t0)


def run_eval(tasks: str | list[str] | list[bbh.Task], *, reg=None, bb=None, base: str | None = None,
             adapters: list[str] | None = None, weights: list[float] | None = None, merger: str = "linear",
             params: dict[str, Any] | None = None, pool: str | None = None, base_only: bool = False,
             bbh_dir: str | None = None, limit: int | None = None, batch_size: int = INFERENCE_BATCH,
             device: str | None = None, label: str | None = None, allow_partial: bool = False,
             method: Any = None, progress: Progress | None = None) -> EvalResult:
    """Evaluate on BBH tasks and record every query: the base model (``base_only``), a fixed
    composition of ``adapters``, or a method (``method``: a :class:`scalectl.methods.MethodConfig`
    or a method name) that retrieves, searches and composes per task from ``pool``.

    The run is split into units (one per task; SCALE: one per task and view), computed here one after
    the other; :func:`scalectl.fanout.run_specs` computes the same units on Ray workers instead."""
    prog = ensure(progress)
    run = PreparedRun(tasks, reg=reg, bb=bb, base=base, adapters=adapters, weights=weights, merger=merger, params=params,
                      pool=pool, base_only=base_only, bbh_dir=bbh_dir, limit=limit, batch_size=batch_size, device=device,
                      label=label, allow_partial=allow_partial, method=method, progress=prog)
    try:
        prog.start("decode", f"{run.method}: decoding", run.total)
        for u in run.units():
            prog.advance("decode", 0, description=f"{run.method}: {u.task}" + (f" ({u.view})" if u.view else ""))
            run.accept(u, compute_unit(run.spec(), u, reg=run.reg, bb=run.bb, comp=run.comp, progress=prog))
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
    """One piece of a run computed on its own: a task's queries (SCALE: one view of a task's queries)."""

    task: str
    view: str | None = None


class PreparedRun:
    """An eval run validated and recorded as running, split into :class:`Unit` s; the results of the units come
    back through :meth:`accept` (records are written to the registry there, by the caller's process) and
    :meth:`finish` scores the run. The compute itself is :func:`compute_unit`, the same wherever it runs."""

    def __init__(self, tasks, *, reg=None, bb=None, base=None, adapters=None, weights=None, merger="linear", params=None,
                 pool=None, base_only=False, bbh_dir=None, limit=None, batch_size=INFERENCE_BATCH, device=None, label=None,
                 allow_partial=False, method=None, progress=None):
        from .backbone import load_backbone
        from .methods import MethodConfig
        from .registry import Registry

        prog = ensure(progress)
        if isinstance(method, str):
            method = MethodConfig(method=method)
        if method is not None and method.method == "zero-shot":
            base_only, method = True, None
        if sum([bool(base_only), bool(adapters), method is not None]) != 1:
            raise EvalError("give exactly one of --base-only, --method M (with --pool), or --adapters a,b,c (with --merger)")
        if method is not None:
            method.check()
            if not pool:
                raise EvalError(f"--method {method.method} needs --pool: the pool to retrieve adapters from")
        if limit is not None and limit < 1:
            raise EvalError(f"--limit must be at least 1, got {limit}")
        if batch_size < 1:
            raise EvalError(f"--batch-size must be at least 1, got {batch_size}")
        task_objs = tasks if tasks and isinstance(tasks[0], bbh.Task) else bbh.load_tasks(tasks, bbh_dir)  # type: ignore[index]
        reg = reg or Registry()
        mcfg = method
        # Everything that can be refused without the model is refused before it loads: the pool, the
        # pool's base against --base, the indexes the method retrieves from.
        base_spec = run_base(reg, bb.base.spec if bb is not None else base, pool, adapters, required=mcfg is not None)
        if mcfg is not None and (mcfg.method != "lorahub" or mcfg.retrieved):
            from .index import load_index

            for v in (mcfg.views if mcfg.method == "scale" else [mcfg.view]):
                load_index(reg, pool, v, mcfg.embedder)  # a missing index fails here, before any run is recorded
        if bb is None:
            prog.log("loading the base model")
            bb = load_backbone(base_spec.spec, device=device)
        comp = None
        if adapters:
            prog.log(f"composing {len(adapters)} adapter(s) with {merger}")
            comp = prepare_composition(reg, bb, adapters, weights, merger, params, pool, allow_partial)
        self.reg, self.bb, self.comp, self.mcfg, self.pool, self.label, self.limit = reg, bb, comp, mcfg, pool, label, limit
        self.batch_size, self.bbh_dir = batch_size, str(task_objs[0].path.parent)
        self.composition_args = {"adapters": adapters, "weights": weights, "merger": merger, "params": params,
                                 "allow_partial": allow_partial} if adapters else None
        self.method = "zero-shot" if base_only else (mcfg.method if mcfg is not None else comp.method)  # type: ignore[union-attr]
        self.plan = [(t, t.queries[:limit] if limit else t.queries) for t in task_objs]
        self.tasks = {t.name: (t, q) for t, q in self.plan}
        self.config = {
            "tasks": [t.name for t in task_objs], "method": self.method, "bbh_dir": self.bbh_dir,
            "support_offset": bbh.SUPPORT_OFFSET, "support_size": bbh.SUPPORT_SIZE,
            "support_ids": {t.name: [e.id for e in t.support] for t in task_objs},
            "limit": limit, "queries": {t.name: len(q) for t, q in self.plan},
            "base": bb.base.spec, "base_model": bb.base.canonical, "device": bb.device,
            "dtype": str(next(bb.model.parameters()).dtype).replace("torch.", ""),
            "decode": "greedy", "batch_size": batch_size, "stop": "newline or EOS",
            "max_new_tokens": {t.name: max_new_tokens(bb, t) for t in task_objs},
            "prompt": "chat template" if not bb.is_seq2seq and getattr(bb.tokenizer, "chat_template", None) else "plain",
            "metric": "normalized exact match: str(x).strip().lower().replace('.', '')",
            "extractor": "first option letter on option tasks, else first line (separate metric)",
            "composition": comp.config if comp else None, "versions": _versions(),
            "method_config": _method_config(mcfg, pool),
        }
        self.run_id = reg.create_run("eval", self.method, self.config, base_model=bb.base.canonical, label=label)
        self.total = sum(len(q) for _, q in self.plan)
        self.scores: list[TaskScore] = []
        self.plans: dict[str, Any] = {}
        self._views: dict[str, dict[str, Any]] = {}
        self._rss_mb = 0.0
        self._t0 = time.perf_counter()

    def units(self) -> list[Unit]:
        if self.mcfg is not None and self.mcfg.method == "scale":
            return [Unit(t.name, v) for t, _ in self.plan for v in self.mcfg.views]
        return [Unit(t.name) for t, _ in self.plan]

    def spec(self) -> dict[str, Any]:
        """What a unit needs to be computed anywhere (plain data: picklable, no model, no registry)."""
        return {"base": self.bb.base.spec, "device": self.bb.device, "pool": self.pool, "bbh_dir": self.bbh_dir,
                "limit": self.limit, "batch_size": self.batch_size, "method": self.mcfg,
                "composition": self.composition_args, "max_new_tokens": self.config["max_new_tokens"]}

    def accept(self, u: Unit, res: dict[str, Any]) -> None:
        """Take a unit's result; when a task is complete, score it and write its records (this process)."""
        task, queries = self.tasks[u.task]
        self._rss_mb = max(self._rss_mb, float(res.get("peak_rss_mb") or 0.0))
        if u.view is not None:
            done = self._views.setdefault(u.task, {})
            done[u.view] = res
            if len(done) < len(self.mcfg.views):
                return
            outs, extras, tplan = _aggregate_scale(task, queries, [(v, done[v]) for v in self.mcfg.views], self.mcfg)
            seconds = sum(r["seconds"] for r in done.values())
            del self._views[u.task]
        else:
            outs, extras, tplan, seconds = res["outputs"], res["extras"], res["plan"], res["seconds"]
        if tplan is not None:
            self.plans[task.name] = tplan
        recs = score(task, queries, outs)
        if extras is not None:
            for r, x in zip(recs, extras):
                r["extra"] = x
        self.reg.add_records(self.run_id, recs)
        n = len(recs)
        c = sum(r["correct"] for r in recs)
        self.scores.append(TaskScore(task=task.name, n=n, correct=c, accuracy=c / n,
                                     extracted_accuracy=sum(r["extracted_correct"] for r in recs) / n,
                                     seconds=round(seconds, 3)))

    def fail(self, e: BaseException) -> None:
        self.reg.finish_run(self.run_id, "failed", error=f"{type(e).__name__}: {e}"[:500])

    def finish(self, extra: dict[str, Any] | None = None) -> EvalResult:
        if len(self.scores) != len(self.plan):
            raise EvalError(f"run {self.run_id}: {len(self.plan) - len(self.scores)} task(s) have no results")
        order = {t.name: i for i, (t, _) in enumerate(self.plan)}
        self.scores.sort(key=lambda s: order[s.task])
        decode_s = time.perf_counter() - self._t0
        scores = self.scores
        macro = sum(s.accuracy for s in scores) / len(scores)
        macro_x = sum(s.extracted_accuracy for s in scores) / len(scores)
        res = EvalResult(run_id=self.run_id, method=self.method, label=self.label, tasks=scores, macro_accuracy=macro,
                         macro_extracted=macro_x, n_queries=self.total, decode_seconds=round(decode_s, 3),
                         compose_seconds=round(_stage_seconds(self.plans, "compose")
                                               + (self.comp.seconds if self.comp else 0.0), 3), limit=self.limit,
                         config=self.config)
        summary = {k: v for k, v in res.to_dict().items() if k != "config"}
        summary["queries_per_second"] = round(self.total / decode_s, 3) if decode_s > 0 else None
        if self.plans:
            summary["plans"] = {t.name: self.plans[t.name] for t, _ in self.plan if t.name in self.plans}
        summary["path_cost"] = _path_cost(self.bb, self.plans, res, self.comp, self._rss_mb)
        if extra:
            summary.update(extra)
        self.reg.finish_run(self.run_id, "done", summary=summary)
        if self.method == "scale":
            res.config["derived_runs"] = derive_scale_runs(self.reg, self.run_id)
        return res


_UNIT_COMPOSITIONS: dict[str, Any] = {}  # a worker's composed --adapters update, built once per run


def compute_unit(spec: dict[str, Any], u: Unit, *, reg=None, bb=None, comp=None, progress: Progress | None = None
                 ) -> dict[str, Any]:
    """Decode one unit and return its outputs (nothing is written): ``outputs``, ``extras`` and ``plan`` for a
    task, or one SCALE view's ``outputs``, ``loss`` and ``summary``; with ``seconds`` and ``peak_rss_mb``."""
    import contextlib
    import json
    import resource

    from .backbone import generate_greedy, load_backbone
    from .registry import Registry
    from .stacked import merged_weights

    prog = ensure(progress)
    reg = reg or Registry()
    bb = bb or load_backbone(spec["base"], device=spec["device"])
    task = bbh.load_tasks([u.task], spec["bbh_dir"])[0]
    queries = task.queries[:spec["limit"]] if spec["limit"] else task.queries
    mx = spec["max_new_tokens"][task.name]
    t0 = time.perf_counter()
    mcfg = spec["method"]
    out: dict[str, Any]
    if spec["composition"] and comp is None:
        ca = spec["composition"]
        key = json.dumps(ca, sort_keys=True, default=str) + spec["base"]
        if key not in _UNIT_COMPOSITIONS:
            _UNIT_COMPOSITIONS.clear()
            _UNIT_COMPOSITIONS[key] = prepare_composition(reg, bb, ca["adapters"], ca["weights"], ca["merger"], ca["params"],
                                                          spec["pool"], ca["allow_partial"])
        comp = _UNIT_COMPOSITIONS[key]
    if mcfg is None:
        ctx = merged_weights(bb.model, comp.deltas) if comp else contextlib.nullcontext()
        with ctx:
            outs = generate_greedy(bb, [e.input for e in queries], max_new_tokens=mx, batch_size=spec["batch_size"],
                                   stop_at_newline=True, on_batch=lambda n: prog.advance("decode", n))
        out = {"outputs": outs, "extras": None, "plan": None}
    elif u.view is not None:
        outs, loss, summary = _decode_scale_view(reg, bb, spec["pool"], task, queries, mcfg, u.view, mx,
                                                 spec["batch_size"], prog)
        out = {"outputs": outs, "loss": loss, "summary": summary}
    else:
        outs, extras, tplan = _decode_method(reg, bb, spec["pool"], task, queries, mcfg, mx, spec["batch_size"], prog)
        out = {"outputs": outs, "extras": extras, "plan": tplan}
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return out


def _stage_seconds(plans: dict[str, Any], stage: str) -> float:
    """Seconds one stage (retrieval, search, compose, decode) took over every task plan (and SCALE view) of a run."""
    return sum(float((v.get("seconds") or {}).get(stage, 0) or 0) for p in plans.values()
               for v in (p.get("views") or {"_": p}).values())


def _path_cost(bb, plans: dict[str, Any], res: EvalResult, comp, unit_rss_mb: float = 0.0) -> dict[str, Any]:
    """Decoded prediction paths per query relative to one view, composition and decoding seconds, peak memory."""
    import resource

    import torch

    paths = max((p.get("paths_per_query", 1) for p in plans.values()), default=1)
    compose_s = _stage_seconds(plans, "compose") + (comp.seconds if comp else 0.0)
    search_s = _stage_seconds(plans, "search")
    rss_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, unit_rss_mb)  # Linux reports KiB
    retr_s = _stage_seconds(plans, "retrieval")
    decode_s = res.decode_seconds - (compose_s - (comp.seconds if comp else 0.0)) - search_s - retr_s
    out = {"paths_per_query": float(paths), "compose_seconds": round(compose_s, 3), "search_seconds": round(search_s, 3),
           "retrieval_seconds": round(retr_s, 3), "decode_seconds": round(decode_s, 3), "peak_rss_mb": round(rss_mb, 1),
           "note": "decode_seconds: the run's decoding loop minus retrieval, search and composition"}
    if bb.device.startswith("cuda") and torch.cuda.is_available():
        out["gpu_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def compare_runs(reg, run_id: str, baseline_id: str) -> dict[str, Any]:
    """Flips of ``run_id`` against ``baseline_id`` per task and overall; both must cover the same queries.

    The alignment and flip counting are :mod:`scalectl.audit`'s (``audit paired`` adds the tests and intervals)."""
    from .audit import _keyed, _mismatch, flips

    ka, kb = _keyed(reg.records(run_id)), _keyed(reg.records(baseline_id))
    only_a, only_b, hashes = _mismatch(kb, ka)
    if only_a or only_b:
        ex = (only_a or only_b)[0]
        raise EvalError(f"runs {run_id} and {baseline_id} cover different queries ({len(only_a)} only in the first, "
                        f"{len(only_b)} only in the second, e.g. {ex[0]} {ex[1]})")
    if hashes:
        raise EvalError(f"query {hashes[0][1]} has a different input in the two runs (input hash differs)")
    per: dict[str, dict[str, Any]] = {}
    for task in dict.fromkeys(k[0] for k in ka):
        keys = [k for k in ka if k[0] == task]
        ca, cb = [ka[k]["correct"] for k in keys], [kb[k]["correct"] for k in keys]
        per[task] = {"n": len(keys), **flips(ca, cb), "correct": sum(ca), "baseline_correct": sum(cb),
                     "accuracy": sum(ca) / len(keys), "baseline_accuracy": sum(cb) / len(keys)}
    total = {key: sum(d[key] for d in per.values()) for key in ("n", "i2c", "c2i", "unchanged")}
    macro = sum(d["accuracy"] for d in per.values()) / len(per) if per else math.nan
    macro_b = sum(d["baseline_accuracy"] for d in per.values()) / len(per) if per else math.nan
    return {"run": run_id, "baseline": baseline_id, "tasks": per, "total": total, "macro_accuracy": macro,
            "baseline_macro_accuracy": macro_b, "delta": macro - macro_b}


def _method_config(mcfg, pool: str | None) -> dict[str, Any] | None:
    if mcfg is None:
        return None
    d = {k: v for k, v in vars(mcfg).items() if k != "search"}
    d["search"] = vars(mcfg.search)
    d["pool"] = pool
    return d


def _decode_groups(reg, bb, pool: str, plan, queries: list[bbh.Example], max_new: int, batch_size: int,
                   prog: Progress, support_enc=None) -> tuple[list[str], float]:
    """Decode every group of a plan (its queries with its update); returns outputs and composition seconds.

    With ``support_enc`` each composed group's support cross-entropy is measured while its update is
    in the weights (``g.view_loss``), so the update is composed once."""

    from .backbone import generate_greedy
    from .methods import generate_mixed, group_deltas
    from .stacked import merged_weights

    outs: list[str | None] = [None] * len(queries)
    compose_s = 0.0
    plan_groups = [(g, g.queries) for g in plan.groups] if plan.groups else [(None, list(range(len(queries))))]
    for g, qi in plan_groups:
        prompts = [queries[i].input for i in qi]
        if g is None:
            res = generate_greedy(bb, prompts, max_new_tokens=max_new, batch_size=batch_size, stop_at_newline=True,
                                  on_batch=lambda n: prog.advance("decode", n))
        elif g.example_weights is not None:  # logo: every candidate a branch, per-query weights
            factors = [reg.load_factors(n, pool) for n in g.candidates]
            res = generate_mixed(bb, factors, prompts, g.example_weights, max_new, batch_size,
                                 on_batch=lambda n: prog.advance("decode", n))
        else:
            tc = time.perf_counter()
            deltas = group_deltas(reg, bb, pool, g)
            compose_s += time.perf_counter() - tc
            with merged_weights(bb.model, deltas):
                res = generate_greedy(bb, prompts, max_new_tokens=max_new, batch_size=batch_size, stop_at_newline=True,
                                      on_batch=lambda n: prog.advance("decode", n))
                if support_enc is not None:
                    from .search import support_loss

                    g.view_loss = support_loss(bb, bb.model, support_enc)
            del deltas
        for i, o in zip(qi, res):
            outs[i] = o
    return [o or "" for o in outs], compose_s


def _plan_summary(plan) -> dict[str, Any]:
    return {
        "support_ids": plan.support_ids, "retrieval": plan.retrieval, "notes": plan.notes, "seconds": plan.seconds,
        "groups": [{"label": g.label, "merger": g.merger, "params": g.params, "candidates": g.candidates,
                    "weights": [round(w, 6) for w in g.weights], "queries": len(g.queries), "support_loss": g.support_loss,
                    "search": g.search.to_dict() if g.search else None} for g in plan.groups],
    }


def _decode_method(reg, bb, pool: str, task: bbh.Task, queries: list[bbh.Example], mcfg, max_new: int, batch_size: int,
                   prog: Progress) -> tuple[list[str], list[dict[str, Any]], dict[str, Any]]:
    """Plan one task with a method (retrieve, search), then decode each group of queries with its update.
    SCALE never comes here: its units are (task, view) (:func:`_decode_scale_view`, then :func:`_aggregate_scale`)."""
    from .methods import plan_task

    plan = plan_task(reg, bb, task, pool, mcfg, queries, progress=prog)
    t0 = time.perf_counter()
    outs, compose_s = _decode_groups(reg, bb, pool, plan, queries, max_new, batch_size, prog)
    plan.seconds["compose"] = round(compose_s, 3)
    plan.seconds["decode"] = round(time.perf_counter() - t0 - compose_s, 3)
    extras = [plan.record_extra(i) for i in range(len(queries))]
    return outs, extras, _plan_summary(plan)


def _decode_scale_view(reg, bb, pool: str, task: bbh.Task, queries: list[bbh.Example], mcfg, view: str, max_new: int,
                       batch_size: int, prog: Progress) -> tuple[list[str], float, dict[str, Any]]:
    """One SCALE view: ilc's retrieval and weights on this view, SDP + LASRC, every query decoded; the view's
    support loss L_v is the mean support cross-entropy under its composed states (one per routed cluster)."""
    import copy

    from .methods import plan_scale
    from .search import encode_support

    vcfg = copy.copy(mcfg)
    vcfg.views = [view]
    [(_, plan)] = plan_scale(reg, bb, task, pool, vcfg, queries, progress=prog)
    enc = encode_support(bb, task.support)
    t0 = time.perf_counter()
    outs, compose_s = _decode_groups(reg, bb, pool, plan, queries, max_new, batch_size, prog, support_enc=enc)
    ls = [g.view_loss for g in plan.groups]
    loss = sum(ls) / len(ls)
    plan.seconds["compose"] = round(compose_s, 3)
    plan.seconds["decode"] = round(time.perf_counter() - t0 - compose_s, 3)
    return outs, loss, {**_plan_summary(plan), "support_loss": loss, "cluster_losses": ls}


def _aggregate_scale(task: bbh.Task, queries: list[bbh.Example], views: list[tuple[str, dict[str, Any]]], mcfg
                     ) -> tuple[list[str], list[dict[str, Any]], dict[str, Any]]:
    """SCALE's answer per query from its views' answers, weighted by softmax(-L_v) (method.md)."""
    from .methods import aggregate

    per_view = {v: r["outputs"] for v, r in views}
    losses = {v: r["loss"] for v, r in views}
    summary: dict[str, Any] = {"views": {v: r["summary"] for v, r in views}}
    extras, final = [], []
    for i, q in enumerate(queries):
        preds = {v: per_view[v][i].split("\n", 1)[0].strip() for v in per_view}
        norm = {v: bbh.normalize(p) for v, p in preds.items()}
        ans, view, agree = aggregate(norm, losses, "support", mcfg.temperature)
        final.append(per_view[view][i])
        extras.append({
            "aggregation": "support", "chosen_view": view, "agreement": round(agree, 6),
            "view_losses": {v: round(x, 6) for v, x in losses.items()},
            "views": {v: {"output": per_view[v][i], "normalized": norm[v], "correct": bbh.exact_match(preds[v], q.target)}
                      for v in per_view},
            "support_ids": [e.id for e in task.support],
        })
    summary["view_losses"] = losses
    summary["paths_per_query"] = len(per_view)
    return final, extras, summary


def derive_scale_runs(reg, run_id: str, aggregations: list[str] | None = None) -> dict[str, str]:
    """Runs for SCALE's other aggregations, computed from the view records of ``run_id`` without decoding again.

    ``oracle`` (per task, the single view with the best query accuracy) uses query labels and is
    marked as such in its method name (``scale-oracle``), config and every record."""
    from .methods import aggregate

    run = reg.run(run_id)
    recs = reg.records(run_id)
    if run["method"] != "scale" or not recs or "views" not in (recs[0].get("extra") or {}):
        raise EvalError(f"run {run_id} is not a SCALE run with view records")
    aggregations = aggregations or ["uniform", "best-view", "oracle"]
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        by_task.setdefault(r["task"], []).append(r)
    oracle_view = {}
    for t, rs in by_task.items():
        views = list(rs[0]["extra"]["views"])
        acc = {v: sum(r["extra"]["views"][v]["correct"] for r in rs) / len(rs) for v in views}
        losses = rs[0]["extra"]["view_losses"]
        oracle_view[t] = max(views, key=lambda v: (acc[v], -losses[v]))
    out = {}
    for how in aggregations:
        uses_labels = how == "oracle"
        method = f"scale-{how}"
        cfg = {**run["config"], "method": method, "derived_from": run_id, "aggregation": how, "uses_labels": uses_labels}
        new_id = reg.create_run("eval", method, cfg, base_model=run["base_model"], label=run.get("label"))
        new_recs = []
        for r in recs:
            x = r["extra"]
            norm = {v: d["normalized"] for v, d in x["views"].items()}
            ans, view, agree = aggregate(norm, x["view_losses"], how, oracle_view=oracle_view[r["task"]])
            out_text = x["views"][view]["output"]
            pred = out_text.split("\n", 1)[0].strip()
            new_recs.append({
                "task": r["task"], "query_id": r["query_id"], "idx": r["idx"], "input_hash": r["input_hash"],
                "raw_output": out_text, "prediction": pred, "normalized": bbh.normalize(pred), "reference": r["reference"],
                "correct": bbh.exact_match(pred, r["reference"]), "extracted": r["extracted"],
                "extracted_correct": r["extracted_correct"],
                "extra": {**x, "aggregation": how, "chosen_view": view, "agreement": round(agree, 6), "uses_labels": uses_labels,
                          **({"oracle_view": oracle_view[r["task"]]} if uses_labels else {})},
            })
        tasks = []
        for t, rs in by_task.items():
            mine = [x for x in new_recs if x["task"] == t]
            opt = sum(bool(bbh.OPTION_RE.match(x["reference"].strip())) for x in mine) * 2 > len(mine)
            for x in mine:
                x["extracted"] = bbh.extract_answer(x["raw_output"], opt)
                x["extracted_correct"] = bbh.exact_match(x["extracted"], x["reference"])
            c = sum(x["correct"] for x in mine)
            tasks.append({"task": t, "n": len(rs), "correct": c, "accuracy": c / len(rs),
                          "extracted_accuracy": sum(x["extracted_correct"] for x in mine) / len(rs)})
        reg.add_records(new_id, new_recs)
        summary = {"tasks": tasks, "macro_accuracy": sum(x["accuracy"] for x in tasks) / len(tasks),
                   "macro_extracted": sum(x["extracted_accuracy"] for x in tasks) / len(tasks),
                   "path_cost": {**(run["summary"] or {}).get("path_cost", {}),
                                 "note": "aggregated from the scale run's view records"},
                   "n_queries": len(new_recs), "derived_from": run_id, "uses_labels": uses_labels}
        if uses_labels:
            summary["oracle_views"] = oracle_view
            summary["any_view_correct"] = sum(any(d["correct"] for d in r["extra"]["views"].values()) for r in recs) / len(recs)
        reg.finish_run(new_id, "done", summary=summary)
        out[how] = new_id
    return out
