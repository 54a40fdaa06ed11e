"""The results page: the paper's tables, run on the embedded default and written to ``docs/results.md``.

``scalectl report --markdown docs/results.md`` does everything: for every (row, task) it looks up a
finished run in the registry (label ``results:ROW``, that one task, the same query cap and pool); it runs
the missing ones (serially in task-major order, so whatever finishes is a complete subset of tasks, or
fanned out with ``--ray``); then it renders the tables from the query records alone. With ``--rows`` (run only
these) or ``--no-run`` it renders whatever has finished: rows and tasks without a finished run are left out of the
tables, the page says at the top which ones and the command that fills them in, and a paired statistic appears
only where both sides are on the page ('-' and the reason elsewhere). The tables:

- Table 1, matched reuse: zero-shot, LoRAHub, iLoRAComp (ilc), LMix-FR, LMix-SR, LASRC.
- Table 2, merge-operator controls: ilc, TIES, DARE+TIES, DARE-add, LASRC (ilc's retrieval and weights).
- Table 3, sparsity and SCALE: SDP+LASRC at drop rates .5 and .7, SCALE uniform / support / oracle.
- Table 4, the paired audit of every row against ilc and against zero-shot: flips, W/L/T, sign-flip p,
  task-stratified bootstrap 95% CI; and LoGo beside them.
- Path cost in seconds: weight search (original search time, also when read from the search cache),
  composition and decoding per run, and decoded paths per query.
- Per-task accuracy, and findings stated from the numbers (including where nothing beats the baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .audit import composition_geometry, run_groups
from .errors import EvalError
from .runid import config_of
from .runrecords import PlanSummary, QueryRecord, RunConfig, RunRecord, ViewsPlanSummary, load_records

LABEL_PREFIX = "results:"


@dataclass(frozen=True)
class Row:
    key: str  # the run label is LABEL_PREFIX + key (derived rows: the source's label)
    title: str
    method: str  # the MethodConfig method, or the derived run's method for derived rows
    operator: str
    kw: dict[str, Any] = field(default_factory=dict)
    derived_from: str | None = None  # scale-uniform / scale-oracle come from the scale run's view records
    uses_labels: bool = False


ROWS: list[Row] = [
    Row("zero-shot", "Zero-shot", "zero-shot", "-"),
    Row("lorahub", "LoRAHub", "lorahub", "factor rule, global"),
    Row("ilc", "iLoRAComp", "ilc", "factor rule, local"),
    Row("ilc-linear", "iLoRAComp-linear", "ilc-linear", "linear (LASRC's anchor)"),
    Row("lmix-fr", "LMix-FR", "lmix-fr", "hard route"),
    Row("lmix-sr", "LMix-SR", "lmix-sr", "soft route"),
    Row("lasrc", "LASRC", "lasrc", "residual"),
    Row("ties", "TIES", "ties", "trim"),
    Row("dare-ties", "DARE+TIES", "dare-ties", "drop+trim"),
    Row("dare-linear", "DARE-add", "dare-linear", "drop+add"),
    Row("sdp+lasrc@0.5", "SDP+LASRC p=.5", "sdp+lasrc", "sdp .5 + residual", {"sdp_rate": 0.5, "sdp_seed": 42}),
    Row("sdp+lasrc@0.7", "SDP+LASRC p=.7", "sdp+lasrc", "sdp .7 + residual", {"sdp_rate": 0.7, "sdp_seed": 42}),
    Row("scale", "SCALE-s (support)", "scale", "3 views, sdp .5 + residual",
        {"sdp_rate": 0.5, "sdp_seed": 42, "views": ["retrieval", "balanced", "qa"]}),
    Row("scale-uniform", "SCALE-u (uniform)", "scale-uniform", "3 views, agreement", derived_from="scale"),
    Row("scale-oracle", "Oracle view (uses labels)", "scale-oracle", "3 views, test labels", derived_from="scale",
        uses_labels=True),
    Row("logo", "LoGo", "logo", "per-query mixture"),
]
ROW_KEYS = [r.key for r in ROWS]


def row(key: str) -> Row:
    for r in ROWS:
        if r.key == key:
            return r
    raise EvalError(f"unknown results row {key!r}; rows: {', '.join(ROW_KEYS)}")


def method_config(r: Row):
    from .methods import MethodConfig

    if r.derived_from:
        raise EvalError(f"row {r.key} is derived from {r.derived_from}; it is not run by itself")
    cfg = MethodConfig(method=r.method, **{k: (list(v) if isinstance(v, list) else v) for k, v in r.kw.items()})
    cfg.check()
    return cfg


# ---------------------------------------------------------------- finding and running the runs

def find_run(reg, r: Row, task: str, limit: int | None, pool: str, runs: list[dict[str, Any]] | None = None
             ) -> dict[str, Any] | None:
    """The latest done run of row ``r`` on exactly ``task`` with this query cap and pool, or None."""
    label = LABEL_PREFIX + (r.derived_from or r.key)
    best = None
    for run in runs if runs is not None else reg.runs(kind="eval", status="done"):
        if run.get("status") != "done" or run.get("label") != label or run["method"] != r.method:
            continue
        cfg = config_of(run)
        if cfg.tasks != [task] or cfg.limit != limit:
            continue
        if r.method != "zero-shot" and cfg.pool != pool:
            continue
        best = run  # runs come in insertion order: keep the latest
    return best


def pool_row(reg, pool: str) -> dict[str, Any]:
    prow = reg.pool(pool)
    if prow is None:
        raise EvalError(f"no pool {pool!r}; `scalectl pool pools` lists them")
    return prow


def prepare_pool(reg, pool: str, views: tuple[str, ...] = ("retrieval", "balanced", "qa"), log=None) -> None:
    """Register the shipped demo pool when it is the one asked for and absent; index the views the rows use
    (only adapters whose text changed are embedded again)."""
    from .demo import DEMO_POOL, demo_manifest
    from .index import build_index

    if pool == DEMO_POOL and not reg.list(pool=pool):
        reg.add_sources(manifest=demo_manifest(), replace=True)
        if log:
            log(f"registered the shipped pool {pool}")
    pool_row(reg, pool)
    for v in views:
        build_index(reg, pool, v)


def missing_jobs(reg, tasks: list[str], limit: int | None, pool: str, keys: list[str] | None = None) -> list[tuple[Row, str]]:
    """(row, task) pairs with no finished run, in task-major order (derived rows come with their source)."""
    runs = reg.runs(kind="eval", status="done")
    want = [row(k) for k in (keys or ROW_KEYS)]
    out = []
    for t in tasks:
        for r in want:
            if r.derived_from:
                src = row(r.derived_from)
                if find_run(reg, r, t, limit, pool, runs) is None and (src, t) not in out:
                    out.append((src, t))
                continue
            if find_run(reg, r, t, limit, pool, runs) is None and (r, t) not in out:
                out.append((r, t))
    return out


def run_missing(reg, tasks: list[str], limit: int | None, pool: str, *, base: str | None = None,
                bbh_dir: str | None = None, batch_size: int = 10, device: str | None = None,
                keys: list[str] | None = None, ray: str | None = None, ray_workers: int | None = None, progress=None,
                on_done=None) -> list[str]:
    """Run every missing (row, task); returns the new run ids. ``ray``: fan out (see :mod:`scalectl.fanout`)."""
    from .backbone import load_backbone
    from .evaluate import run_base, run_eval

    pool_row(reg, pool)  # an unknown pool is refused before anything runs
    jobs = missing_jobs(reg, tasks, limit, pool, keys)
    if not jobs:
        return []
    if ray is not None:
        from .evaluate import RunRequest
        from .fanout import run_specs

        specs = [RunRequest(tasks=[t], method=method_config(r), pool=pool, limit=limit, label=LABEL_PREFIX + r.key,
                            base=base, bbh_dir=bbh_dir, batch_size=batch_size, device=device)
                 for r, t in jobs]
        done = run_specs(specs, address=ray, num_cpus=ray_workers, reg=reg, progress=progress)
        if on_done:
            for (r, t), res in zip(jobs, done):
                on_done(r, t, res)
        return [res.run_id for res in done]
    bb = load_backbone(run_base(reg, base, pool, required=True).spec, device=device)  # None: the pool's base
    ids = []
    for r, t in jobs:
        res = run_eval([t], reg=reg, bb=bb, pool=pool, method=method_config(r), bbh_dir=bbh_dir, limit=limit,
                       batch_size=batch_size, label=LABEL_PREFIX + r.key, progress=progress)
        ids.append(res.run_id)
        if on_done:
            on_done(r, t, res)
    return ids


# ---------------------------------------------------------------- collecting and computing

def _search_seconds(run: dict[str, Any]) -> float:
    """Seconds of the distinct weight searches behind a run, as first measured (cached ones included); for a
    method without searches (LoGo's signal pass) the plan's own search-stage seconds."""
    from .audit import run_plans

    seen: dict[tuple, float] = {}
    wall = 0.0
    for p in run_plans(run).values():
        vplans: list[PlanSummary] = list(p.views.values()) if isinstance(p, ViewsPlanSummary) else [p]
        for vp in vplans:
            wall += float((vp.seconds or {}).get("search") or 0.0)
            for g in vp.groups or []:
                s = g.search  # a search.SearchResult as stored
                if s:
                    seen[(tuple(s.get("names") or g.candidates or []), tuple(s.get("weights") or []))] = \
                        float(s.get("seconds") or 0.0)
    return max(sum(seen.values()), wall)


GEOMETRY_ROWS = ("ilc", "lasrc", "sdp+lasrc@0.5", "scale")  # the rows whose merges the geometry table explains


# LMix-FR picks one of ilc's clusters by support loss and LMix-SR mixes them all: both need every cluster search
SEARCHES_OF = {"lmix-fr": "ilc", "lmix-sr": "ilc"}  # (ilc-linear and the operator rows reuse ilc's searches too)


def _rectangle(found: dict[str, dict[str, dict[str, Any]]], tasks: list[str]) -> tuple[list[str], list[str]]:
    """(tasks, rows) on the page: rows in table order, each narrowing the tasks to those it finished too."""
    complete, shown = list(tasks), []
    for r in ROWS:
        have = [t for t in complete if t in found[r.key]]
        if have:
            shown.append(r.key)
            complete = have
    return (complete if shown else []), shown


def _row_data(reg, r: Row, found: dict[str, dict[str, dict[str, Any]]], complete: list[str]) -> dict[str, Any]:
    """One row's query records, path cost, run ids and (for GEOMETRY_ROWS) composition geometry."""
    recs: dict[tuple[str, str], QueryRecord] = {}
    cost = {"search": 0.0, "compose": 0.0, "decode": 0.0, "retrieval": 0.0, "paths": 1.0, "rss_mb": 0.0}
    run_ids = []
    for t in complete:
        run = found[r.key][t]
        run_ids.append(run["id"])
        for rec in load_records(reg, run["id"]):
            recs[(rec.task, rec.query_id)] = rec
        src = found[r.derived_from].get(t, run) if r.derived_from else run
        pc = RunRecord.from_row(src).path_cost
        # (without ilc's run on the task, an LMix row's own searches are what it is charged)
        cost["search"] += _search_seconds(found[SEARCHES_OF[r.key]].get(t, src) if r.key in SEARCHES_OF else src)
        cost["compose"] += float(pc.compose_seconds or 0.0)
        cost["decode"] += float(pc.decode_seconds or 0.0)
        cost["retrieval"] += float(pc.retrieval_seconds or 0.0)
        cost["paths"] = float(pc.paths_per_query or 1.0)
        cost["rss_mb"] = max(cost["rss_mb"], float(pc.peak_rss_mb or 0.0))
    return {"records": recs, "cost": cost, "runs": run_ids,
            "geometry": composition_geometry([g for t in complete for g in run_groups(found[r.key][t])])
            if r.key in GEOMETRY_ROWS else None}


def _run_settings(found: dict[str, dict[str, dict[str, Any]]], shown: list[str], complete: list[str]
                  ) -> dict[str, Any]:
    """The decoding config and base model the runs stored, and the index embedder retrieval used."""
    from .audit import run_plans

    any_run = found[shown[0]][complete[0]]  # zero-shot's when it is on the page
    out: dict[str, Any] = {"config": config_of(any_run), "base_model": any_run.get("base_model")}
    for k in ["ilc"] + shown:  # the index embedder: ilc's retrieval, else any retrieving row's
        if complete[0] in found[k]:
            plan = run_plans(found[k][complete[0]]).get(complete[0])
            retrieval = plan.retrieval if isinstance(plan, PlanSummary) else None  # a retrieve.Retrieval as stored
            out["embedder"] = (retrieval or {}).get("embedder")
            if out["embedder"]:
                break
    return out


def _pool_desc(reg, pool: str, pool_info: dict[str, Any] | None) -> str:
    if pool_info is None:
        from .index import candidate_rows

        rows = candidate_rows(reg, pool)  # the pool's own adapters, not compositions written into it
        pool_info = {"adapters": len(rows), "ranks": sorted({int(r["r"]) for r in rows if r.get("r")})}
    ranks = pool_info.get("ranks") or []
    return f"{pool_info['adapters']} adapters" + (f", rank {'/'.join(map(str, ranks))}" if ranks else "")


def collect(reg, tasks: list[str], limit: int | None, pool: str, pool_info: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """Every finished row's records and costs over the tasks that all of them finished.

    The page is one rectangle, rows x tasks, every row on it finished on every task on it (the paired statistics
    need the same queries). Rows are taken in table order, zero-shot (the baseline) first: a row is on the page
    when it finished at least one of the tasks the page has so far, which then narrow to those. Rows and tasks
    left out are listed (``missing_rows``, ``missing_tasks``); with every row on every task the page is complete.
    ``pool_info`` (``{"adapters", "ranks"}``, from a bundle) describes the pool when the registry lacks it."""
    runs = reg.runs(kind="eval", status="done")
    found: dict[str, dict[str, dict[str, Any]]] = {r.key: {} for r in ROWS}
    for t in tasks:
        for r in ROWS:
            run = find_run(reg, r, t, limit, pool, runs)
            if run is not None:
                found[r.key][t] = run
    complete, shown = _rectangle(found, tasks)
    partial = [t for t in tasks if t not in complete and any(t in found[r.key] for r in ROWS)]
    data: dict[str, Any] = {"tasks": complete, "partial_tasks": partial, "rows": {}, "shown": shown,
                            "missing_rows": [r.key for r in ROWS if r.key not in shown],
                            "missing_tasks": {t: sum(t in found[r.key] for r in ROWS) for t in tasks if t not in complete}}
    for r in ROWS:
        if r.key in shown:
            data["rows"][r.key] = _row_data(reg, r, found, complete)
            data["finished"] = max([data.get("finished") or ""] + [str(found[r.key][t].get("finished") or "")
                                                                  for t in complete])
    if complete:
        data.update(_run_settings(found, shown, complete))
    data["pool_desc"] = _pool_desc(reg, pool, pool_info)
    return data


def _stats(cm: np.ndarray, cb: np.ndarray, t: np.ndarray) -> dict[str, Any]:
    from . import audit

    _, am, _ = audit.task_accuracy(cm, t)
    _, ab, _ = audit.task_accuracy(cb, t)
    lo, hi = audit.bootstrap_ci(cm, cb, t)
    return {"delta": float(am.mean() - ab.mean()), **audit.flips(cm, cb), **audit.win_loss_tie(am, ab),
            "p": audit.permutation_test(cm - cb), "ci_low": lo, "ci_high": hi}


def compute(data: dict[str, Any]) -> dict[str, Any]:
    from . import audit

    tasks = data["tasks"]
    shown = [r for r in ROWS if r.key in data["rows"]]  # the rows on the page, in table order
    keys = sorted(data["rows"][shown[0].key]["records"])
    t = np.array([k[0] for k in keys])
    out: dict[str, Any] = {"n_queries": len(keys), "n_tasks": len(tasks), "rows": {},
                           "missing_rows": list(data.get("missing_rows") or [])}
    correct = {}
    for r in shown:
        recs = data["rows"][r.key]["records"]
        missing = [k for k in keys if k not in recs]
        if missing:
            raise EvalError(f"row {r.key} lacks query {missing[0][0]} {missing[0][1]}: its runs cover other queries")
        correct[r.key] = np.array([recs[k].correct for k in keys], dtype=float)
    # paired statistics only where both sides are on the page (None: the baseline has not finished)
    vs = lambda k, base: _stats(correct[k], correct[base], t) if base in correct else None  # noqa: E731
    for r in shown:
        names, acc, n = audit.task_accuracy(correct[r.key], t)
        row_out = {"macro": float(acc.mean()), "per_task": {str(a): float(b) for a, b in zip(names, acc)},
                   "vs_ilc": vs(r.key, "ilc"), "vs_zero": vs(r.key, "zero-shot"), "vs_lasrc": vs(r.key, "lasrc"),
                   "vs_lin": vs(r.key, "ilc-linear"), "cost": data["rows"][r.key]["cost"], "runs": data["rows"][r.key]["runs"],
                   "geometry": data["rows"][r.key].get("geometry")}
        out["rows"][r.key] = row_out
    # identical outputs between the matched merges (the demo found lasrc == linear on every query)
    out["same_outputs_as_ilc"] = {}
    if "ilc" in data["rows"]:
        ilc = data["rows"]["ilc"]["records"]
        out["same_outputs_as_ilc"] = {r.key: sum(data["rows"][r.key]["records"][k].raw_output == ilc[k].raw_output
                                                 for k in keys) for r in shown}
    out["same_outputs_as_linear"] = None
    if "ilc-linear" in data["rows"] and "lasrc" in data["rows"]:
        lin, las = data["rows"]["ilc-linear"]["records"], data["rows"]["lasrc"]["records"]
        out["same_outputs_as_linear"] = sum(las[k].raw_output == lin[k].raw_output for k in keys)
    out["any_view_correct"] = None
    sc = data["rows"]["scale"]["records"] if "scale" in data["rows"] else {}
    if sc and all(sc[k].views is not None for k in keys):
        out["any_view_correct"] = float(np.mean([any(v.correct for v in sc[k].views.views.values()) for k in keys]))
    return out


# ---------------------------------------------------------------- markdown

def _pt(x: float) -> str:
    return f"{100 * x:.1f}"


def _d(x: float) -> str:
    return f"{100 * x:+.1f}"


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def _ci(s: dict[str, Any]) -> str:
    return f"[{100 * s['ci_low']:+.1f}, {100 * s['ci_high']:+.1f}]"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _verb(names: list[str]) -> str:
    return "improves" if len(names) == 1 else "improve"


def _deploy(rows: dict[str, Any]) -> list[Row]:
    """The rows on the page a user could deploy: no labels used, not the zero-shot baseline."""
    return [r for r in ROWS if not r.uses_labels and r.key != "zero-shot" and r.key in rows]


def _best_deployable(res: dict[str, Any]) -> list[str]:
    rows, deploy = res["rows"], _deploy(res["rows"])
    if "zero-shot" not in rows:
        if not deploy:
            return []
        best = max(deploy, key=lambda r: rows[r.key]["macro"])
        return [f"The best row that does not use labels is {best.title} at {_pt(rows[best.key]['macro'])}; zero-shot "
                "has not finished on these tasks, so no row is compared with it."]
    zero = rows["zero-shot"]["macro"]
    if not deploy:
        return [f"Zero-shot scores {_pt(zero)}; no other row that does not use labels has finished, so nothing is "
                "compared with it yet."]
    best = max(deploy, key=lambda r: rows[r.key]["macro"])
    vz = rows[best.key]["vs_zero"]
    if rows[best.key]["macro"] > zero:
        out = [f"The best row that does not use labels is {best.title} at {_pt(rows[best.key]['macro'])} "
               f"(zero-shot {_pt(zero)}, {_d(vz['delta'])} points, p {_p(vz['p'])}, CI {_ci(vz)})."]
    else:
        out = [f"No row that does not use labels beats zero-shot ({_pt(zero)}) on the macro average."]
    sig_zero = [r.title for r in deploy if rows[r.key]["vs_zero"]["p"] < 0.05 and rows[r.key]["vs_zero"]["delta"] > 0
                and rows[r.key]["vs_zero"]["ci_low"] > 0]
    below_zero = [r.title for r in deploy if rows[r.key]["vs_zero"]["delta"] <= 0]
    ci0 = "p < 0.05 and a task-bootstrap CI above 0."
    return out + ["Against zero-shot, " + (f"{', '.join(sig_zero)} {_verb(sig_zero)} with {ci0}" if sig_zero
                                           else f"no row improves with both {ci0}")
                  + (f" {', '.join(below_zero)} do not beat zero-shot at all." if below_zero else "")]


def _lasrc_tests(res: dict[str, Any]) -> list[str]:
    rows, out = res["rows"], []
    if "lasrc" in rows and "ilc" in rows:
        v = rows["lasrc"]["vs_ilc"]
        out.append(f"LASRC against iLoRAComp (the matched merge test): {_d(v['delta'])} points, flips "
                   f"{v['i2c']}/{v['c2i']}/{v['unchanged']}, p {_p(v['p'])}, CI {_ci(v)}; "
                   f"{res['same_outputs_as_ilc']['lasrc']} of {res['n_queries']} outputs are identical to ilc's.")
    if "lasrc" in rows and "ilc-linear" in rows:
        v = rows["lasrc"]["vs_lin"]
        out.append(f"LASRC against iLoRAComp-linear (the same weights and anchor: residualization alone): "
                   f"{_d(v['delta'])} points, flips {v['i2c']}/{v['c2i']}/{v['unchanged']}, p {_p(v['p'])}; "
                   f"{res['same_outputs_as_linear']} of {res['n_queries']} outputs are identical.")
    return out


def _against_ilc(res: dict[str, Any]) -> list[str]:
    rows = res["rows"]
    others = [r for r in _deploy(rows) if r.key != "ilc"]
    if "ilc" not in rows:
        return []
    out = []
    if others:
        beat = [r.title for r in others if rows[r.key]["vs_ilc"]["p"] < 0.05 and rows[r.key]["vs_ilc"]["delta"] > 0]
        worse = [f"{r.title} ({_d(rows[r.key]['vs_ilc']['delta'])}, p {_p(rows[r.key]['vs_ilc']['p'])})" for r in others
                 if rows[r.key]["vs_ilc"]["p"] < 0.05 and rows[r.key]["vs_ilc"]["delta"] < 0]
        out.append("Against iLoRAComp, " + (f"{', '.join(beat)} {_verb(beat)} with p < 0.05." if beat
                                            else "no row improves with p < 0.05.")
                   + (f" Worse with p < 0.05: {', '.join(worse)}." if worse else ""))
    ops = [(row(k).title, rows[k]["vs_ilc"]) for k in ("ties", "dare-ties", "dare-linear") if k in rows]
    if ops:
        out.append("Merge-operator controls against iLoRAComp: " + "; ".join(
            f"{t} {_d(v['delta'])} (flips {v['i2c']}/{v['c2i']}, p {_p(v['p'])})" for t, v in ops) + ".")
    return out


def _scale_and_sdp(res: dict[str, Any]) -> list[str]:
    rows, out = res["rows"], []
    if all(k in rows for k in ("scale", "scale-uniform", "scale-oracle")):
        s, u, o = rows["scale"]["macro"], rows["scale-uniform"]["macro"], rows["scale-oracle"]["macro"]
        line = (f"SCALE: support-weighted {_pt(s)}, uniform {_pt(u)}, oracle view choice {_pt(o)} (uses labels; "
                f"headroom {_d(o - s)} points over support weighting)")
        if res.get("any_view_correct") is not None:
            line += f"; some view is right on {_pt(res['any_view_correct'])}% of queries"
        out.append(line + f", at {rows['scale']['cost']['paths']:.0f}x the decoded paths.")
        if o < s:
            out.append("The oracle picks one view per task; agreement chooses per query, so it can beat the best single view "
                       "per task, as it does here.")
    if "sdp+lasrc@0.5" in rows and "sdp+lasrc@0.7" in rows:
        sdp5, sdp7 = rows["sdp+lasrc@0.5"]["macro"], rows["sdp+lasrc@0.7"]["macro"]
        out.append(f"SDP+LASRC: {_pt(sdp5)} at p=.5 and {_pt(sdp7)} at p=.7"
                   + (f" (LASRC {_pt(rows['lasrc']['macro'])})." if "lasrc" in rows else "."))
    return out


def _caveats(res: dict[str, Any]) -> list[str]:
    rows, deploy, out = res["rows"], _deploy(res["rows"]), []
    if res["n_tasks"] < 10:
        out.append(f"With {res['n_tasks']} tasks the task-stratified bootstrap resamples very few values: its intervals "
                   "are coarse (and can exclude 0 while the query-level p does not); read them with the p-value.")
    if "zero-shot" in rows and deploy:
        tasks_none = [t for t in rows["zero-shot"]["per_task"]
                      if all(rows[r.key]["per_task"][t] <= rows["zero-shot"]["per_task"][t] for r in deploy)]
        if tasks_none:
            names = ", ".join(x.split("/")[-1] for x in tasks_none)
            out.append(f"On {len(tasks_none)} task(s) no row beats zero-shot: {names}.")
    return out


# the page's findings, in the order stated; each speaks only where every row it names is on the page
FINDINGS = (_best_deployable, _lasrc_tests, _against_ilc, _scale_and_sdp, _caveats)


def findings(res: dict[str, Any]) -> list[str]:
    """Plain statements from the numbers: what beat what, with p and CI; where nothing beat the baseline.

    On a partial page a statement is made only where every row it speaks of is on the page."""
    return [s for f in FINDINGS for s in f(res)]


T1_KEYS = ("zero-shot", "lorahub", "ilc", "ilc-linear", "lmix-fr", "lmix-sr", "lasrc")
T2_KEYS = ("ilc", "ilc-linear", "ties", "dare-ties", "dare-linear", "lasrc")
T3_ROWS = {"ilc": (1, "-", "-"), "lasrc": (1, "-", "-"), "sdp+lasrc@0.5": (1, ".5", "-"),
           "sdp+lasrc@0.7": (1, ".7", "-"), "scale-uniform": (3, ".5", "uniform"), "scale": (3, ".5", "support"),
           "scale-oracle": (3, ".5", "test labels")}  # row -> (views, SDP rate, selection)
PAIRED_HEAD = ["Method", "Operator", "Paths", "Avg EM", "vs iLC", "flips vs iLC", "p", "95% CI", "vs zero-shot",
               "flips vs zero-shot", "p", "95% CI"]


def _pair(s: dict[str, Any] | None) -> list[str]:
    """delta, flips, p, CI; '-' where the baseline has not finished."""
    if s is None:
        return ["-"] * 4
    return [_d(s["delta"]), f"{s['i2c']}/{s['c2i']}/{s['unchanged']}", _p(s["p"]), _ci(s)]


class _Page:
    """The page's sections, each a list of lines, in the order ``render`` joins them."""

    def __init__(self, res: dict[str, Any], data: dict[str, Any], command: str, pool: str, limit: int | None,
                 requested: list[str], source: str | None):
        self.res, self.rows, self.data = res, res["rows"], data
        self.command, self.pool, self.limit, self.requested, self.source = command, pool, limit, requested, source

    def text(self) -> str:
        L = self.opening() + self.setup()
        L += ["## What happened", ""] + [f"- {s}" for s in findings(self.res)] + [""]
        L += self.table_1() + self.table_2() + self.table_3()
        L += ["## Table 4: every row, paired against iLoRAComp and zero-shot", ""]
        L += self.table(ROW_KEYS, PAIRED_HEAD, self.paired_line, ("ilc", "zero-shot"))
        L += geometry_section(self.rows) + self.cost_section() + self.per_task() + self.runs_and_reproduce()
        return "\n".join(L)

    def opening(self) -> list[str]:
        finished = str(self.data.get("finished") or "")[:16].replace("T", " ")
        L = ["# Results on record", "",
             f"Rendered by `{self.command}` from the query records of runs finished by {finished} UTC; every number "
             "below is computed from those records" + (f" ({self.source})." if self.source else "."), ""]
        m = missing(self.data, self.command)
        if m:  # said first, plainly: what is not on this page and the command that fills it in
            L += ["> " + missing_text(m, len(self.requested)), ""]
        return L

    def setup(self) -> list[str]:
        from .backbone import DEFAULT_BASE, resolve_base, same_base

        data, res, limit, pool = self.data, self.res, self.limit, self.pool
        settings = (data.get("config") or RunConfig()).other  # the decoding settings the runs stored
        embedded = bool(data.get("base_model")) and same_base(resolve_base(DEFAULT_BASE).canonical, data["base_model"])
        partial = data["partial_tasks"]
        return ["## Setup", "",
                f"- Backbone: `{data.get('base_model')}`" + (" (the embedded default, `smollm2-135m`)" if embedded else "")
                + f", device `{settings.get('device')}`, {settings.get('dtype')}; greedy decoding, batch "
                f"{settings.get('batch_size')}, {settings.get('prompt')} prompts.",
                f"- Adapter pool: `{pool}`, {data.get('pool_desc')}"
                + (" (the shipped pool: LoRAs trained by `scalectl pool train` on synthetic skills, none on BBH)."
                   if pool == "smollm2-skills" else "."),
                f"- Tasks: {res['n_tasks']} BBH tasks (" + ", ".join(t.split('/')[-1] for t in data["tasks"]) + f"); "
                f"requested {len(self.requested)}."
                + (f" Not complete yet: {', '.join(t.split('/')[-1] for t in partial)}." if partial else ""),
                "- Queries: " + (f"the first {limit} queries of each task" if limit else "every query") +
                f" after the support set, {res['n_queries']} in all. Support: 5 examples per task "
                "(`examples[10:15]`), the only labels any method sees (except the oracle row).",
                "- Protocol: method.md's defaults, each row as its peer's code computes it. LoRAHub: 20 adapters drawn "
                "at random (seed 0, in draw order), one 40-step NGOpt search (LoRAHub's parametrization, loss and "
                "factor rule). iLoRAComp and every row matched to it (iLoRAComp-linear, LMix, LASRC, the operator "
                "controls, SDP+LASRC): one cluster per support example over its 20 local candidates (balanced view; "
                f"index embedder `{data.get('embedder')}`), weights searched in two stages (30 + 10 steps, the factor "
                "rule), each query routed to its most similar support example; only the merge differs. LoGo: the "
                "whole pool, top 20 per query. SCALE: views retrieval, balanced, qa, each as iLoRAComp, then SDP .5 "
                "(seed 42) + LASRC. Normalized exact match.",
                "- Statistics: flips are incorrect-to-correct / correct-to-incorrect / unchanged; p is the two-sided "
                "paired sign-flip permutation test (10,000 samples); CI is the task-stratified bootstrap 95% interval "
                "of the macro difference (10,000 resamples), in points.", ""]

    def table(self, keys, header: list[str], cells, against: tuple[str, ...]) -> list[str]:
        """The rows of ``keys`` on the page; a note for each baseline in ``against`` whose cells read '-'."""
        keys = [k for k in keys if k in self.rows]
        if not keys:
            return ["None of this table's rows has finished on these tasks yet.", ""]
        notes = [f"`-`: {row(b).title} (`{b}`) has no finished run on these tasks, so nothing is paired with it."
                 for b in against if b not in self.rows]
        return _table(header, [cells(k) for k in keys]) + [""] + ([*notes, ""] if notes else [])

    def paired_line(self, key: str) -> list[str]:
        r, x = row(key), self.rows[key]
        return [r.title, r.operator, f"{x['cost']['paths']:.0f}", _pt(x["macro"])] + _pair(x["vs_ilc"]) + _pair(x["vs_zero"])

    def table_1(self) -> list[str]:
        return ["## Table 1: matched reuse", "",
                "Retrieval, support set, weight search, decoding and scoring fixed; only the composition changes.",
                ""] + self.table(T1_KEYS, PAIRED_HEAD, self.paired_line, ("ilc", "zero-shot"))

    def table_2(self) -> list[str]:
        same, nq = self.res["same_outputs_as_ilc"], self.res["n_queries"]

        def cells(k: str) -> list[str]:
            r, x = row(k), self.rows[k]
            vi = _pair(x["vs_ilc"])
            return [r.title, r.operator, _pt(x["macro"]), vi[0], _pair(x["vs_lasrc"])[0], vi[1], vi[2],
                    f"{same[k]}/{nq}" if k in same else "-"]

        return ["## Table 2: merge-operator controls", "",
                "ilc's retrieval, clusters and searched weights; each cluster merged with the operator's defaults "
                "(TIES density .2; DARE drop .5, seed 42).", ""] + self.table(
            T2_KEYS, ["Method", "Operator", "Avg EM", "vs iLC", "vs LASRC", "flips vs iLC", "p", "outputs = iLC"],
            cells, ("ilc", "lasrc"))

    def table_3(self) -> list[str]:
        def cells(k: str) -> list[str]:
            x, (views, rate, sel) = self.rows[k], T3_ROWS[k]
            vi = _pair(x["vs_ilc"])
            return [row(k).title, str(views), rate, sel, f"{x['cost']['paths']:.1f}x", _pt(x["macro"]),
                    _pair(x["vs_lasrc"])[0], vi[1], vi[2], vi[3]]

        return ["## Table 3: sparsity and SCALE", "", "Cost is decoded prediction paths per query relative to one view.",
                ""] + self.table(tuple(T3_ROWS), ["Method", "Views", "SDP", "Selection", "Cost", "Avg EM", "vs LASRC",
                                                  "flips vs iLC", "p vs iLC", "95% CI vs iLC"], cells, ("lasrc", "ilc"))

    def cost_section(self) -> list[str]:
        nq = max(self.res["n_queries"], 1)

        def cells(k: str) -> list[str]:
            c = self.rows[k]["cost"]
            total = c["search"] + c["compose"] + c["decode"] + c["retrieval"]
            return [row(k).title, f"{c['paths']:.0f}", f"{c['retrieval']:.1f}", f"{c['search']:.1f}",
                    f"{c['compose']:.1f}", f"{c['decode']:.1f}", f"{total:.1f}", f"{total / nq:.2f}", f"{c['rss_mb']:.0f}"]

        return ["## Path cost in seconds", "",
                "Summed over the tasks. Search is the weight-search time as first measured, counted for every row "
                "that needs it (ilc and its matched variants share searches through the search cache; a method run "
                "alone would pay it; LMix-FR and LMix-SR need all of ilc's cluster searches; LoGo's is its one signal "
                "pass). Compose and decode are each run's own. SCALE's derived rows (uniform, oracle) reuse "
                "the SCALE run's decoding and report its cost.", ""] + self.table(
            ROW_KEYS, ["Method", "Paths", "Retrieval s", "Search s", "Compose s", "Decode s", "Total s", "s / query",
                       "Peak RSS MB"], cells, ())

    def shown(self) -> list[str]:
        return [k for k in ROW_KEYS if k in self.rows]

    def per_task(self) -> list[str]:
        shown = self.shown()
        tasks = list(self.rows[shown[0]]["per_task"])
        return ["## Per-task accuracy (EM, %)", ""] + _table(
            ["Task"] + [row(k).title for k in shown],
            [[t.split("/")[-1]] + [_pt(self.rows[k]["per_task"][t]) for k in shown] for t in tasks]) + [""]

    def runs_and_reproduce(self) -> list[str]:
        return (["## Runs", "", "Each (row, task) is one registry run labelled `results:ROW`; "
                 "`scalectl audit paired --baseline RUN` and `scalectl runs show RUN` open any of them.", ""]
                + [f"- {row(k).title}: " + ", ".join(f"`{i}`" for i in self.rows[k]["runs"]) for k in self.shown()]
                + ["", "## Reproduce", "", "```", self.command, "```", "",
                   "Finished (row, task) runs are reused; missing ones are run first (add `--ray` to fan them out). "
                   "Weight searches are cached under `$SCALECTL_HOME/cache/search` by their full content "
                   "(`SCALECTL_SEARCH_CACHE=0` turns this off).", ""])


def render(res: dict[str, Any], data: dict[str, Any], command: str, pool: str, limit: int | None,
           requested: list[str], source: str | None = None) -> str:
    return _Page(res, data, command, pool, limit, requested, source).text()


def geometry_section(rows: dict[str, Any]) -> list[str]:
    """Why LASRC did or did not move away from its anchor: the searched weights and LASRC's per-block statistics."""
    keys = [k for k in GEOMETRY_ROWS if k in rows and rows[k].get("geometry")]
    if not keys:
        return []
    L = ["## Composition geometry", "",
         "The searched weights behind each merge (K candidates per cluster; the share of weights the search left "
         "at 0) and, for LASRC merges, per block: the overlap of the weighted updates (0: mutually orthogonal, "
         "near 1: they repeat each other), the residual weight alpha (the anchor is alpha = 0), how often alpha "
         "sat at its floor, and how often the norm guard fired. With little overlap and alpha at the floor, LASRC "
         "is its linear anchor.", ""]
    fmt = lambda g, k, f="{:.2f}": f.format(g[k]) if k in g else "-"  # noqa: E731
    body = [[row(k).title, str(rows[k]["geometry"]["groups"]), f"{rows[k]['geometry']['k']:.1f}",
             f"{100 * rows[k]['geometry']['zero_share']:.0f}%", fmt(rows[k]["geometry"], "mean_abs_w"),
             fmt(rows[k]["geometry"], "max_abs_w"), fmt(rows[k]["geometry"], "overlap", "{:.3f}"),
             fmt(rows[k]["geometry"], "alpha_median", "{:.3f}"), fmt(rows[k]["geometry"], "alpha_max", "{:.3f}"),
             fmt(rows[k]["geometry"], "at_floor", "{:.0%}"), fmt(rows[k]["geometry"], "guarded", "{:.0%}")]
            for k in keys]
    return L + _table(["Method", "Clusters", "K", "w = 0", "mean abs w", "max abs w", "Overlap", "alpha median",
                       "alpha max", "alpha at floor", "guard fired"], body) + [""]


def missing(data: dict[str, Any], command: str) -> dict[str, Any] | None:
    """What a partial page lacks: the rows and the tasks not on it, and the command that runs them; None when the
    page is complete (every row on every requested task)."""
    rows, tasks = list(data.get("missing_rows") or []), dict(data.get("missing_tasks") or {})
    if not rows and not tasks:
        return None
    return {"rows": rows, "tasks": tasks, "command": command}


def missing_text(m: dict[str, Any], n_tasks: int) -> str:
    """One plain sentence (the page's opening note and the CLI's one-line summary)."""
    parts = []
    if m["rows"]:
        parts.append(f"{len(m['rows'])} of {len(ROWS)} rows ("
                     + ", ".join(f"{row(k).title} (`{k}`)" for k in m["rows"]) + ")")
    if m["tasks"]:
        parts.append(f"{len(m['tasks'])} of {n_tasks} tasks ("
                     + ", ".join(f"{t.split('/')[-1]}: {n} of {len(ROWS)} rows finished" for t, n in m["tasks"].items())
                     + ")")
    return (f"Partial page: not finished yet, so not in the tables: {' and '.join(parts)}. "
            f"`{m['command']}` runs what is missing and rewrites the page.")


def write_markdown(reg, out: str | Path, tasks: list[str], limit: int | None, pool: str, command: str,
                   pool_info: dict[str, Any] | None = None, source: str | None = None) -> dict[str, Any]:
    """Render the page from the finished runs in ``reg`` (``source``: where they came from, said on the page)."""
    from .fsutil import atomic_file

    data = collect(reg, tasks, limit, pool, pool_info)
    if not data["tasks"]:
        # a page without a single number would only replace a page that has some: refuse, write nothing
        raise EvalError(f"nothing is finished yet: no row has a finished run on the {len(tasks)} requested task(s) with "
                        + (f"--limit {limit}" if limit else "every query") + f" on pool {pool!r}, so no page was written; "
                        f"`{command}` runs them")
    res = compute(data)
    text = render(res, data, command, pool, limit, tasks, source)
    with atomic_file(out, encoding="utf-8") as f:
        f.write(text)
    res["tasks"] = data["tasks"]
    res["partial_tasks"] = data["partial_tasks"]
    res["missing"] = missing(data, command)
    res["path"] = str(out)
    return res


def summary_json(res: dict[str, Any]) -> dict[str, Any]:
    m = res.get("missing")
    return {"path": res["path"], "tasks": res["tasks"], "partial_tasks": res["partial_tasks"], "n_queries": res["n_queries"],
            "complete": m is None, "missing_rows": m["rows"] if m else [],
            "missing_tasks": list(m["tasks"]) if m else [], "fill_command": m["command"] if m else None,
            "rows": {k: {"macro_accuracy": v["macro"], "vs_ilc": v["vs_ilc"], "vs_zero_shot": v["vs_zero"],
                         "cost": v["cost"], "runs": v["runs"]} for k, v in res["rows"].items()},
            "findings": findings(res)}

