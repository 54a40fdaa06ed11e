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
    or a method name) that retrieves, searches and composes per task from ``pool``."""
    import contextlib

    from .backbone import generate_greedy, load_backbone
    from .methods import MethodConfig
    from .registry import Registry
    from .stacked import merged_weights

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
    if bb is None:
        prog.log("loading the base model")
        bb = load_backbone(base, device=device)
    comp = None
    if adapters:
        prog.log(f"composing {len(adapters)} adapter(s) with {merger}")
        comp = prepare_composition(reg, bb, adapters, weights, merger, params, pool, allow_partial)
    mcfg = method
    if mcfg is not None:
        from .backbone import same_base

        prow = next((p for p in reg.pools() if p["name"] == pool), None)
        if prow is None:
            raise EvalError(f"no pool {pool!r}; `scalectl pool pools` lists them")
        if not same_base(prow["base_model"], bb.base.canonical):
            raise EvalError(f"the backbone is {bb.base.spec!r} but pool {pool!r} is on {prow['base_model']!r}; "
                            f"pass --base {prow['base_model']}")
        if mcfg.method != "lorahub" or mcfg.retrieved:
            from .index import load_index

            load_index(reg, pool, mcfg.view, mcfg.embedder)  # a missing index fails here, before any run is recorded
    method = "zero-shot" if base_only else (mcfg.method if mcfg is not None else comp.method)  # type: ignore[union-attr]
    plan = [(t, t.queries[:limit] if limit else t.queries) for t in task_objs]
    config = {
        "tasks": [t.name for t in task_objs], "method": method, "bbh_dir": str(task_objs[0].path.parent),
        "support_offset": bbh.SUPPORT_OFFSET, "support_size": bbh.SUPPORT_SIZE,
        "support_ids": {t.name: [e.id for e in t.support] for t in task_objs},
        "limit": limit, "queries": {t.name: len(q) for t, q in plan},
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
    run_id = reg.create_run("eval", method, config, base_model=bb.base.canonical, label=label)
    total = sum(len(q) for _, q in plan)
    scores: list[TaskScore] = []
    plans: dict[str, Any] = {}
    t_all = time.perf_counter()
    try:
        ctx = merged_weights(bb.model, comp.deltas) if comp else contextlib.nullcontext()
        prog.start("decode", f"{method}: decoding", total)
        with ctx:
            for task, queries in plan:
                prog.advance("decode", 0, description=f"{method}: {task.name}")
                t0 = time.perf_counter()
                mx = config["max_new_tokens"][task.name]
                if mcfg is None:
                    outs = generate_greedy(bb, [e.input for e in queries], max_new_tokens=mx, batch_size=batch_size,
                                           stop_at_newline=True, on_batch=lambda n: prog.advance("decode", n))
                    extras = None
                else:
                    outs, extras, tplan = _decode_method(reg, bb, pool, task, queries, mcfg, mx, batch_size, prog)
                    plans[task.name] = tplan
                recs = score(task, queries, outs)
                if extras is not None:
                    for r, x in zip(recs, extras):
                        r["extra"] = x
                reg.add_records(run_id, recs)
                n = len(recs)
                c = sum(r["correct"] for r in recs)
                scores.append(TaskScore(task=task.name, n=n, correct=c, accuracy=c / n,
                                        extracted_accuracy=sum(r["extracted_correct"] for r in recs) / n,
                                        seconds=round(time.perf_counter() - t0, 3)))
        prog.finish("decode")
    except BaseException as e:
        reg.finish_run(run_id, "failed", error=f"{type(e).__name__}: {e}"[:500])
        raise
    decode_s = time.perf_counter() - t_all
    macro = sum(s.accuracy for s in scores) / len(scores)
    macro_x = sum(s.extracted_accuracy for s in scores) / len(scores)
    res = EvalResult(run_id=run_id, method=method, label=label, tasks=scores, macro_accuracy=macro,
                     macro_extracted=macro_x, n_queries=total, decode_seconds=round(decode_s, 3),
                     compose_seconds=round(comp.seconds, 3) if comp else 0.0, limit=limit, config=config)
    summary = {k: v for k, v in res.to_dict().items() if k != "config"}
    summary["queries_per_second"] = round(total / decode_s, 3) if decode_s > 0 else None
    if plans:
        summary["plans"] = plans
    reg.finish_run(run_id, "done", summary=summary)
    return res


def compare_runs(reg, run_id: str, baseline_id: str) -> dict[str, Any]:
    """Flips of ``run_id`` against ``baseline_id`` per task and overall; both must cover the same queries."""
    a, b = reg.records(run_id), reg.records(baseline_id)
    ka = {(r["task"], r["query_id"]): r for r in a}
    kb = {(r["task"], r["query_id"]): r for r in b}
    if set(ka) != set(kb):
        only_a, only_b = sorted(set(ka) - set(kb)), sorted(set(kb) - set(ka))
        ex = (only_a or only_b)[0]
        raise EvalError(f"runs {run_id} and {baseline_id} cover different queries ({len(only_a)} only in the first, "
                        f"{len(only_b)} only in the second, e.g. {ex[0]} {ex[1]})")
    for k in ka:
        if ka[k]["input_hash"] != kb[k]["input_hash"]:
            raise EvalError(f"query {k[1]} has a different input in the two runs (input hash differs)")
    per: dict[str, dict[str, int]] = {}
    for k, ra in ka.items():
        rb = kb[k]
        d = per.setdefault(k[0], {"n": 0, "i2c": 0, "c2i": 0, "unchanged": 0, "correct": 0, "baseline_correct": 0})
        d["n"] += 1
        d["correct"] += ra["correct"]
        d["baseline_correct"] += rb["correct"]
        if ra["correct"] and not rb["correct"]:
            d["i2c"] += 1
        elif rb["correct"] and not ra["correct"]:
            d["c2i"] += 1
        else:
            d["unchanged"] += 1
    total = {key: sum(d[key] for d in per.values()) for key in ("n", "i2c", "c2i", "unchanged")}
    for d in per.values():
        d["accuracy"] = d["correct"] / d["n"]
        d["baseline_accuracy"] = d["baseline_correct"] / d["n"]
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


def _decode_method(reg, bb, pool: str, task: bbh.Task, queries: list[bbh.Example], mcfg, max_new: int, batch_size: int,
                   prog: Progress) -> tuple[list[str], list[dict[str, Any]], dict[str, Any]]:
    """Plan one task with a method (retrieve, search), then decode each group of queries with its update."""
    import torch

    from .backbone import generate_greedy
    from .methods import group_deltas, plan_task
    from .stacked import StackedLora, merged_weights

    plan = plan_task(reg, bb, task, pool, mcfg, queries, progress=prog)
    outs: list[str | None] = [None] * len(queries)
    t0 = time.perf_counter()
    compose_s = 0.0
    if not plan.groups:  # zero-shot
        plan_groups = [(None, list(range(len(queries))))]
    else:
        plan_groups = [(g, g.queries) for g in plan.groups]
    for g, qi in plan_groups:
        prompts = [queries[i].input for i in qi]
        if g is None:
            res = generate_greedy(bb, prompts, max_new_tokens=max_new, batch_size=batch_size, stop_at_newline=True,
                                  on_batch=lambda n: prog.advance("decode", n))
        elif g.example_weights is not None:  # logo: every candidate a branch, per-query weights
            factors = [reg.load_factors(n, pool) for n in g.candidates]
            res = []
            with StackedLora(bb.model, factors) as st:
                for i in range(0, len(prompts), batch_size):
                    st.set_example_weights(torch.as_tensor(g.example_weights[i:i + batch_size]))
                    res += generate_greedy(bb, prompts[i:i + batch_size], max_new_tokens=max_new, batch_size=batch_size,
                                           stop_at_newline=True, on_batch=lambda n: prog.advance("decode", n))
        else:
            tc = time.perf_counter()
            deltas = group_deltas(reg, bb, pool, g)
            compose_s += time.perf_counter() - tc
            with merged_weights(bb.model, deltas):
                res = generate_greedy(bb, prompts, max_new_tokens=max_new, batch_size=batch_size, stop_at_newline=True,
                                      on_batch=lambda n: prog.advance("decode", n))
        for i, o in zip(qi, res):
            outs[i] = o
    plan.seconds["compose"] = round(compose_s, 3)
    plan.seconds["decode"] = round(time.perf_counter() - t0 - compose_s, 3)
    extras = [plan.record_extra(i) for i in range(len(queries))]
    summary = {
        "support_ids": plan.support_ids, "retrieval": plan.retrieval, "notes": plan.notes, "seconds": plan.seconds,
        "groups": [{"label": g.label, "merger": g.merger, "candidates": g.candidates,
                    "weights": [round(w, 6) for w in g.weights], "queries": len(g.queries), "support_loss": g.support_loss,
                    "search": g.search.to_dict() if g.search else None} for g in plan.groups],
    }
    return [o or "" for o in outs], extras, summary
