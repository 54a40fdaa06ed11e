"""How far to trust a result: paired statistics of evaluation runs against a baseline (method.md, "Audit statistics").

Pure statistics over numpy arrays (no registry, no I/O):

- :func:`task_accuracy` / :func:`macro_accuracy`: accuracy per task = mean exact match over its queries; the
  headline number is the macro average over tasks.
- :func:`flips`: incorrect-to-correct, correct-to-incorrect and unchanged queries against a baseline.
- :func:`win_loss_tie`: tasks where the method's accuracy is higher / lower / equal.
- :func:`permutation_test`: paired permutation test on ``d = c_method - c_base`` by Monte Carlo sign flips,
  two-sided ``p = (1 + #{|mean(d*)| >= |mean(d)|}) / (N + 1)``.
- :func:`bootstrap_ci`: percentile bootstrap interval of the macro-average difference, resampling the tasks with
  replacement (default) or the queries within each task.

And functions over registry runs:

- :func:`paired`: runs aligned by (task, query_id) against one baseline, every statistic above per run.
- :func:`seeds`: the spread of one method's macro accuracy across its done runs (search / SDP seeds).
- :func:`export`: the replication bundle (``records.jsonl`` + ``runs.json``), written atomically.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import EvalError, RegistryError

N_SAMPLES = 10_000  # method.md: 10,000 sign-flip samples and 10,000 bootstrap resamples
SEED = 0
LEVEL = 0.95  # method.md: 95% interval
RESAMPLE = ("tasks", "queries")  # method.md: resample the tasks (default); also offer queries within each task
_CHUNK = 1 << 21  # random numbers drawn per chunk (bounds memory: 16 MiB of float64)


# ---------------------------------------------------------------- statistics


def task_accuracy(correct: np.ndarray, tasks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy per task (method.md, "Audit statistics": mean exact match over the task's queries).

    Args:
        correct: 0/1 (or bool) per query.
        tasks: the task label of each query, same length as ``correct``.

    Returns:
        ``(names, accuracy, n)``: the sorted distinct task labels, each task's mean of ``correct`` and its
        number of queries.
    """
    c = np.asarray(correct, dtype=float).ravel()
    t = np.asarray(tasks).ravel()
    if c.shape != t.shape:
        raise ValueError(f"correct has {c.size} entries but tasks has {t.size}")
    names, inv = np.unique(t, return_inverse=True)
    n = np.bincount(inv, minlength=names.size)
    acc = np.bincount(inv, weights=c, minlength=names.size) / np.maximum(n, 1)
    return names, acc, n


def macro_accuracy(correct: np.ndarray, tasks: np.ndarray) -> float:
    """The headline number (method.md, "Audit statistics"): the macro average over tasks of per-task accuracy.

    Args:
        correct: 0/1 per query.
        tasks: the task label of each query.

    Returns:
        The unweighted mean of the per-task accuracies (NaN when there are no queries).
    """
    _, acc, _ = task_accuracy(correct, tasks)
    return float(acc.mean()) if acc.size else float("nan")


def flips(c_method: np.ndarray, c_base: np.ndarray) -> dict[str, int]:
    """Flips against a baseline on the same queries (method.md, "Audit statistics").

    Args:
        c_method: 0/1 per query for the method.
        c_base: 0/1 per query for the baseline, aligned with ``c_method``.

    Returns:
        ``{"i2c": incorrect-to-correct, "c2i": correct-to-incorrect, "unchanged": the rest}``.
    """
    m = np.asarray(c_method).astype(bool).ravel()
    b = np.asarray(c_base).astype(bool).ravel()
    if m.shape != b.shape:
        raise ValueError(f"the method has {m.size} queries but the baseline has {b.size}")
    i2c = int(np.count_nonzero(m & ~b))
    c2i = int(np.count_nonzero(~m & b))
    return {"i2c": i2c, "c2i": c2i, "unchanged": int(m.size - i2c - c2i)}


def win_loss_tie(acc_method: np.ndarray, acc_base: np.ndarray, tol: float = 1e-12) -> dict[str, int]:
    """Task-level W/L/T (method.md, "Audit statistics"): tasks where the method's accuracy is higher/lower/equal.

    Args:
        acc_method: per-task accuracy of the method.
        acc_base: per-task accuracy of the baseline, same task order.
        tol: differences within ``tol`` count as ties (accuracies are ratios of counts).

    Returns:
        ``{"wins": ..., "losses": ..., "ties": ...}``.
    """
    d = np.asarray(acc_method, dtype=float).ravel() - np.asarray(acc_base, dtype=float).ravel()
    return {"wins": int(np.count_nonzero(d > tol)), "losses": int(np.count_nonzero(d < -tol)),
            "ties": int(np.count_nonzero(np.abs(d) <= tol))}


def permutation_test(d: np.ndarray, n_samples: int = N_SAMPLES, seed: int = SEED) -> float:
    """Paired permutation test by Monte Carlo sign flips (method.md, "Audit statistics").

    Under the null the sign of each per-query difference ``d = c_method - c_base`` is exchangeable; each of the
    ``N = n_samples`` samples flips every sign independently with probability 1/2. Two-sided,
    ``p = (1 + #{|mean(d*)| >= |mean(d)|}) / (N + 1)``. Zero differences are unaffected by a flip, so only the
    non-zero ones are drawn (``numpy.random.default_rng(seed)``, one uniform per non-zero difference per sample,
    in chunks that bound memory; the result does not depend on the chunking).

    Args:
        d: per-query differences (any real values; typically in {-1, 0, 1}).
        n_samples: N, the number of sign-flip samples (method.md: 10,000).
        seed: the generator's seed (default 0).

    Returns:
        The two-sided p-value, in ``[1 / (N + 1), 1]``; exactly 1 when every difference is zero.
    """
    d = np.asarray(d, dtype=float).ravel()
    if d.size == 0:
        raise ValueError("no differences to test")
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    nz = d[d != 0]
    if nz.size == 0:
        return 1.0
    total = nz.sum()
    obs = abs(total)  # |mean| compared as |sum|: every sample has the same n
    tol = 1e-9 * np.abs(nz).sum()  # float sums in another order; exact for integer differences
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // nz.size)
    hits = 0
    done = 0
    while done < n_samples:
        m = min(rows, n_samples - done)
        flip = rng.random((m, nz.size)) < 0.5
        null = total - 2.0 * (flip @ nz)  # sum of d* = sum(d) - 2 * sum of the flipped entries
        hits += int(np.count_nonzero(np.abs(null) >= obs - tol))
        done += m
    return (1 + hits) / (n_samples + 1)


def bootstrap_ci(c_method: np.ndarray, c_base: np.ndarray, tasks: np.ndarray, n_samples: int = N_SAMPLES,
                 seed: int = SEED, resample: str = "tasks", level: float = LEVEL) -> tuple[float, float]:
    """Bootstrap percentile interval of the macro-average difference (method.md, "Audit statistics").

    ``resample="tasks"`` (the default, task-stratified): draw the tasks with replacement, each replicate is the
    mean of the drawn tasks' accuracy differences. ``resample="queries"``: keep every task and draw its queries
    with replacement (stratified by task), each replicate is the macro average of the per-task differences.
    The interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the replicates (linear
    interpolation, as ``numpy.percentile``).

    Args:
        c_method: 0/1 per query for the method.
        c_base: 0/1 per query for the baseline, aligned.
        tasks: the task label of each query.
        n_samples: the number of bootstrap replicates (method.md: 10,000).
        seed: ``numpy.random.default_rng`` seed (default 0).
        resample: ``"tasks"`` or ``"queries"``.
        level: the interval's coverage (method.md: 0.95).

    Returns:
        ``(low, high)`` of the macro-average difference (method minus baseline), as fractions.
    """
    if resample not in RESAMPLE:
        raise ValueError(f"resample must be one of {', '.join(RESAMPLE)}, got {resample!r}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    d = np.asarray(c_method, dtype=float).ravel() - np.asarray(c_base, dtype=float).ravel()
    names, diffs, n = task_accuracy(d, tasks)
    if names.size == 0:
        raise ValueError("no queries to resample")
    rng = np.random.default_rng(seed)
    if resample == "tasks":
        reps = _bootstrap_means(diffs, n_samples, rng)
    else:
        t = np.asarray(tasks).ravel()
        reps = np.zeros(n_samples)
        for name in names:
            reps += _bootstrap_means(d[t == name], n_samples, rng)
        reps /= names.size
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(reps, [q, 100 - q])
    return float(lo), float(hi)


def task_bootstrap_ci(task_diffs: np.ndarray, n_samples: int = N_SAMPLES, seed: int = SEED,
                      level: float = LEVEL) -> tuple[float, float]:
    """The task-resampling interval of :func:`bootstrap_ci` from per-task differences directly.

    Args:
        task_diffs: per-task accuracy differences (method minus baseline).
        n_samples: bootstrap replicates (method.md: 10,000).
        seed: ``numpy.random.default_rng`` seed.
        level: coverage (method.md: 0.95).

    Returns:
        ``(low, high)`` percentile interval of the mean difference.
    """
    x = np.asarray(task_diffs, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("no tasks to resample")
    reps = _bootstrap_means(x, n_samples, np.random.default_rng(seed))
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(reps, [q, 100 - q])
    return float(lo), float(hi)


def _bootstrap_means(x: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``n_samples`` means of ``x`` resampled with replacement (chunked)."""
    out = np.empty(n_samples)
    rows = max(1, _CHUNK // x.size)
    for start in range(0, n_samples, rows):
        m = min(rows, n_samples - start)
        out[start:start + m] = x[rng.integers(0, x.size, size=(m, x.size))].mean(axis=1)
    return out


# ---------------------------------------------------------------- runs


def _order(reg) -> dict[str, int]:
    """Insertion order of the runs (``created`` has one-second resolution; the id's suffix is random)."""
    return {r["id"]: r["rowid"] for r in reg.db.query("select rowid, id from runs")}


def _latest(reg, runs: list[dict[str, Any]]) -> dict[str, Any]:
    order = _order(reg)
    return max(runs, key=lambda r: (r["created"] or "", order.get(r["id"], 0)))


def _describe(run: dict[str, Any]) -> str:
    return f"{run['id']} ({run['method']}" + (f", {run['label']}" if run.get("label") else "") + ")"


def resolve_run(reg, spec: str, role: str = "run") -> tuple[dict[str, Any], str | None]:
    """A run by id, unique id prefix, or METHOD name (the latest done run of that method).

    Returns ``(run, note)``; ``note`` says which run a method name picked when it had several done runs.
    Raises :class:`EvalError` naming close run ids and methods when nothing matches.
    """
    spec = spec.strip()
    if not spec:
        raise EvalError(f"empty {role} id")
    try:
        return reg.run(spec), None
    except RegistryError as e:
        if "matches" in str(e):  # an ambiguous id prefix
            raise EvalError(f"{role} {spec!r} is ambiguous: {e}") from None
    all_runs = reg.runs()
    of_method = [r for r in all_runs if r["method"] == spec]
    if of_method:
        done = [r for r in of_method if r["status"] == "done"]
        if not done:
            states = ", ".join(f"{r['id']} {r['status']}" for r in of_method)
            raise EvalError(f"{role} method {spec!r} has no done run ({states})")
        pick = _latest(reg, done)
        note = None
        if len(done) > 1:
            labels = {r.get("label") for r in done}
            note = (f"{role} {spec!r}: the latest of {len(done)} done {spec} runs, {_describe(pick)}"
                    + ("; they have different labels, pass a run id to choose another" if len(labels) > 1 else ""))
        return pick, note
    methods = sorted({r["method"] for r in all_runs if r["method"]})
    prefixed = [m for m in methods if m.startswith(spec)]
    if len(prefixed) > 1:
        raise EvalError(f"{role} {spec!r} is ambiguous: it is no run id, and it begins the methods {', '.join(prefixed)}; "
                        "give one of them or a run id")
    close = difflib.get_close_matches(spec, methods + [r["id"] for r in all_runs], n=3, cutoff=0.5)
    close = sorted(set(close + prefixed), key=(close + prefixed).index)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    if not all_runs:
        hint = "; the registry has no runs yet (`scalectl eval` records them)"
    raise EvalError(f"no run or method {spec!r} for the {role}{hint}")


def _split(specs: str | Sequence[str] | None) -> list[str]:
    if specs is None:
        return []
    if isinstance(specs, str):
        specs = [specs]
    return [s.strip() for item in specs for s in str(item).split(",") if s.strip()]


def _require_done(runs: list[dict[str, Any]]) -> None:
    bad = [r for r in runs if r["status"] != "done"]
    if bad:
        names = "; ".join(f"{_describe(r)} is {r['status']}" for r in bad)
        raise EvalError(f"only done runs can be audited: {names}")


def _base_model(run: dict[str, Any]) -> str | None:
    return (run.get("config") or {}).get("base_model") or run.get("base_model")


def _require_same_backbone(base: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    from .backbone import same_base

    want = _base_model(base)
    for r in runs:
        got = _base_model(r)
        if not same_base(want, got):
            raise EvalError(f"run {_describe(r)} is on backbone {got!r} but the baseline {_describe(base)} is on {want!r}; "
                            "compare runs of one backbone")


def _filter_tasks(recs: list[dict[str, Any]], tasks: list[str] | None, run: dict[str, Any]) -> list[dict[str, Any]]:
    if not tasks:
        if not recs:
            raise EvalError(f"run {_describe(run)} has no records")
        return recs
    have = sorted({r["task"] for r in recs})
    for t in tasks:
        if t not in have:
            close = difflib.get_close_matches(t, have, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise EvalError(f"task {t!r} has no records in run {_describe(run)}; {hint}its tasks: {', '.join(have) or 'none'}")
    keep = set(tasks)
    return [r for r in recs if r["task"] in keep]


def _keyed(recs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["task"], str(r["query_id"])): r for r in recs}


def _mismatch(kb: dict, km: dict) -> tuple[list, list, list]:
    only_m = sorted(set(km) - set(kb))
    only_b = sorted(set(kb) - set(km))
    hashes = sorted(k for k in set(kb) & set(km) if kb[k].get("input_hash") != km[k].get("input_hash"))
    return only_m, only_b, hashes


def _check_alignment(base: dict[str, Any], run: dict[str, Any], kb: dict, km: dict) -> None:
    only_m, only_b, hashes = _mismatch(kb, km)
    if only_m or only_b:
        ex = (only_m or only_b)[0]
        raise EvalError(f"run {_describe(run)} and baseline {_describe(base)} cover different queries: {len(only_m)} only in "
                        f"the run, {len(only_b)} only in the baseline (e.g. {ex[0]} query {ex[1]}); "
                        "compare runs over the same tasks and --limit")
    if hashes:
        ex = hashes[0]
        raise EvalError(f"run {_describe(run)} and baseline {_describe(base)} saw different inputs for {len(hashes)} "
                        f"queries (input_hash differs, e.g. {ex[0]} query {ex[1]}); they were not evaluated on the same prompts")


def _load(reg, run: dict[str, Any], tasks: list[str] | None) -> dict[tuple[str, str], dict[str, Any]]:
    return _keyed(_filter_tasks(reg.records(run["id"]), tasks, run))


def paired(reg, run_ids: Sequence[str] | str | None, baseline: str, per_task: bool = False, n_samples: int = N_SAMPLES,
           seed: int = SEED, resample: str = "tasks", tasks: Sequence[str] | str | None = None,
           level: float = LEVEL) -> dict[str, Any]:
    """Every audit statistic of each run against one baseline on the same queries (method.md, "Audit statistics").

    Args:
        reg: the :class:`~scalectl.registry.Registry`.
        run_ids: runs to compare (ids, unique prefixes or method names; a comma-separated string works). Empty or
            ``None``: the latest done run of every other method that covers the same queries as the baseline.
        baseline: a run id, unique prefix, or a METHOD name (its latest done run).
        per_task: also return a per-task table for every run.
        n_samples: sign-flip samples and bootstrap replicates (method.md: 10,000).
        seed: seed of both generators (default 0).
        resample: ``"tasks"`` (method.md's task-stratified bootstrap) or ``"queries"`` (within each task).
        tasks: restrict every run to these tasks (the query sets are compared after the restriction).
        level: interval coverage (method.md: 0.95).

    Returns:
        ``{"baseline": {...}, "results": [one dict per run: run, method, label, macro_accuracy,
        baseline_macro_accuracy, delta, i2c, c2i, unchanged, wins, losses, ties, p, ci_low, ci_high, n_queries,
        n_tasks, and "tasks" when per_task], "n_samples", "seed", "resample", "level", "tasks", "notes"}``.
        Accuracies and deltas are fractions (the CLI prints points).

    Raises:
        EvalError: unknown or ambiguous baseline/run, runs not done, different backbones, different query sets
            or inputs, a task filter with no records, bad parameters.
    """
    if resample not in RESAMPLE:
        raise EvalError(f"--resample must be one of {', '.join(RESAMPLE)}, got {resample!r}")
    if n_samples < 1:
        raise EvalError(f"--samples must be at least 1, got {n_samples}")
    if not 0 < level < 1:
        raise EvalError(f"the interval level must be in (0, 1), got {level}")
    task_filter = _split(tasks) or None
    notes: list[str] = []
    base, note = resolve_run(reg, baseline, role="baseline")
    if note:
        notes.append(note)
    specs = _split(run_ids)
    if specs:
        runs = []
        for s in specs:
            r, note = resolve_run(reg, s)
            if note:
                notes.append(note)
            if r["id"] not in {x["id"] for x in runs}:
                runs.append(r)
        _require_done([base] + runs)
        _require_same_backbone(base, runs)
        kb = _load(reg, base, task_filter)
        loaded = []
        for r in runs:
            km = _load(reg, r, task_filter)
            _check_alignment(base, r, kb, km)
            loaded.append((r, km))
    else:
        _require_done([base])
        kb = _load(reg, base, task_filter)
        loaded = _default_runs(reg, base, kb, task_filter, notes)
    keys = list(kb)  # the baseline's order: by task, then query index
    t = np.array([k[0] for k in keys])
    cb = np.array([kb[k]["correct"] for k in keys], dtype=float)
    names, acc_b, n_t = task_accuracy(cb, t)
    if names.size == 1 and resample == "tasks":
        notes.append("one task only: the task bootstrap interval is a single point; use --resample queries")
    results = []
    for r, km in loaded:
        cm = np.array([km[k]["correct"] for k in keys], dtype=float)
        _, acc_m, _ = task_accuracy(cm, t)
        d = cm - cb
        lo, hi = bootstrap_ci(cm, cb, t, n_samples=n_samples, seed=seed, resample=resample, level=level)
        res = {"run": r["id"], "method": r["method"], "label": r.get("label"),
               "macro_accuracy": float(acc_m.mean()), "baseline_macro_accuracy": float(acc_b.mean()),
               "delta": float(acc_m.mean() - acc_b.mean()), **flips(cm, cb), **win_loss_tie(acc_m, acc_b),
               "p": permutation_test(d, n_samples=n_samples, seed=seed), "ci_low": lo, "ci_high": hi,
               "n_queries": int(len(keys)), "n_tasks": int(names.size)}
        if per_task:
            rows = []
            for i, name in enumerate(names):
                sel = t == name
                rows.append({"task": str(name), "n_queries": int(n_t[i]), "accuracy": float(acc_m[i]),
                             "baseline_accuracy": float(acc_b[i]), "delta": float(acc_m[i] - acc_b[i]),
                             **flips(cm[sel], cb[sel]), "p": permutation_test(d[sel], n_samples=n_samples, seed=seed)})
            res["tasks"] = rows
        results.append(res)
    return {"baseline": {"run": base["id"], "method": base["method"], "label": base.get("label"),
                         "macro_accuracy": float(acc_b.mean()), "base_model": _base_model(base)},
            "results": results, "n_samples": n_samples, "seed": seed, "resample": resample, "level": level,
            "tasks": [str(x) for x in names], "notes": notes}


def _default_runs(reg, base: dict[str, Any], kb: dict, task_filter: list[str] | None,
                  notes: list[str]) -> list[tuple[dict[str, Any], dict]]:
    """The latest done run of every other method (same backbone) whose records match the baseline's queries."""
    from .backbone import same_base

    order = _order(reg)
    done = [r for r in reg.runs(status="done") if r["method"] != base["method"] and r["id"] != base["id"]]
    done.sort(key=lambda r: (r["created"] or "", order.get(r["id"], 0)), reverse=True)
    picked: dict[str, tuple[dict[str, Any], dict]] = {}
    skipped: dict[str, str] = {}
    for r in done:
        if r["method"] in picked:
            continue
        if not same_base(_base_model(base), _base_model(r)):
            skipped.setdefault(r["method"], "another backbone")
            continue
        recs = reg.records(r["id"])
        if task_filter:
            recs = [x for x in recs if x["task"] in set(task_filter)]
        km = _keyed(recs)
        only_m, only_b, hashes = _mismatch(kb, km)
        if only_m or only_b or hashes:
            skipped.setdefault(r["method"], "other queries" if (only_m or only_b) else "other inputs")
            continue
        picked[r["method"]] = (r, km)
    for m, why in sorted(skipped.items()):
        if m not in picked:
            notes.append(f"no done {m} run covers the baseline's queries ({why}); skipped")
    if not picked:
        raise EvalError(f"no done run of another method covers the same queries as the baseline {_describe(base)}; "
                        "pass --runs")
    return sorted(picked.values(), key=lambda x: (x[0]["created"] or "", order.get(x[0]["id"], 0)))


def run_seed(run: dict[str, Any]) -> Any:
    """The search seed of a run: ``config["method_config"]["search"]["seed"]``, else ``config["seed"]``."""
    cfg = run.get("config") or {}
    search = ((cfg.get("method_config") or {}).get("search") or {})
    if isinstance(search, dict) and search.get("seed") is not None:
        return search["seed"]
    return cfg.get("seed")


def seeds(reg, method: str, label: str | None = None) -> dict[str, Any]:
    """Spread of one method's macro accuracy over its done runs (seed variance; method.md, "Audit statistics").

    Args:
        reg: the registry.
        method: the method name (``lasrc``, ``ilc``, ...).
        label: only runs with this label.

    Returns:
        ``{"method", "runs": [run, label, seed, macro_accuracy, n_queries, n_tasks, created], "summary": {n, mean,
        std (sample, ddof=1; None below two runs), min, max}, "notes"}``.

    Raises:
        EvalError: no such method, or no done run of it.
    """
    runs = reg.runs(method=method)
    if label is not None:
        runs = [r for r in runs if r.get("label") == label]
    if not runs:
        methods = sorted({r["method"] for r in reg.runs() if r["method"]})
        close = difflib.get_close_matches(method, methods, n=3, cutoff=0.5)
        hint = (f"; did you mean {', '.join(close)}?" if close
                else f"; methods with runs: {', '.join(methods)}" if methods else "")
        raise EvalError(f"no runs of method {method!r}" + (f" with label {label!r}" if label is not None else "") + hint)
    done = [r for r in runs if r["status"] == "done"]
    if not done:
        raise EvalError(f"method {method!r} has no done run ({', '.join(r['id'] + ' ' + r['status'] for r in runs)})")
    order = _order(reg)
    done.sort(key=lambda r: (r["created"] or "", order.get(r["id"], 0)))
    rows = []
    for r in done:
        s = r.get("summary") or {}
        macro = s.get("macro_accuracy")
        n_q = s.get("n_queries")
        n_t = len(s.get("tasks") or [])
        if macro is None:  # no summary: recompute from the records
            recs = reg.records(r["id"])
            macro = macro_accuracy(np.array([x["correct"] for x in recs]), np.array([x["task"] for x in recs])) if recs else None
            n_q, n_t = len(recs), len({x["task"] for x in recs})
        rows.append({"run": r["id"], "label": r.get("label"), "seed": run_seed(r), "macro_accuracy": macro,
                     "n_queries": n_q, "n_tasks": n_t, "created": r["created"]})
    vals = np.array([x["macro_accuracy"] for x in rows if x["macro_accuracy"] is not None], dtype=float)
    summary = {"n": int(vals.size), "mean": float(vals.mean()) if vals.size else None,
               "std": float(vals.std(ddof=1)) if vals.size > 1 else None,
               "min": float(vals.min()) if vals.size else None, "max": float(vals.max()) if vals.size else None}
    notes = []
    cover = {json.dumps([(r.get("config") or {}).get("tasks"), (r.get("config") or {}).get("queries")], sort_keys=True)
             for r in done}
    if len(cover) > 1:
        notes.append(f"the {method} runs cover different tasks or query counts; the spread mixes query sets")
    seeds_seen = [x["seed"] for x in rows]
    if len(rows) > 1 and len(set(map(str, seeds_seen))) < len(rows):
        notes.append("some runs share a seed; their difference is not seed variance")
    return {"method": method, "label": label, "runs": rows, "summary": summary, "notes": notes}


def export(reg, run_ids: Sequence[str] | str | None, out_dir: str | Path, force: bool = False) -> dict[str, Any]:
    """Write the replication bundle of some runs to ``out_dir``, atomically (a temp dir renamed into place).

    ``records.jsonl``: every record of the chosen runs, one JSON object a line, each with its ``run_id``.
    ``runs.json``: ``{"scalectl_version", "exported", "records": {file, n, sha256}, "runs": [each run's id, kind,
    method, label, status, base model, config, summary, ...]}``.

    Args:
        reg: the registry.
        run_ids: ids, unique prefixes or method names (comma-separated string works); empty: every done run.
        out_dir: the bundle directory; it must not exist or be empty unless ``force``.
        force: replace an existing non-empty ``out_dir``.

    Returns:
        ``{"out", "runs": [{run, method, label, status, n_records}], "n_records", "records_sha256"}``.

    Raises:
        EvalError: an unknown run, a run still running, no runs, an existing non-empty ``out_dir`` without force.
    """
    from . import __version__

    out = Path(out_dir)
    specs = _split(run_ids)
    if specs:
        runs = []
        for s in specs:
            r, _ = resolve_run(reg, s)
            if r["id"] not in {x["id"] for x in runs}:
                runs.append(r)
    else:
        runs = reg.runs(status="done")
        if not runs:
            raise EvalError("no done runs to export")
    running = [r for r in runs if r["status"] == "running"]
    if running:
        raise EvalError(f"run {_describe(running[0])} is still running; export it when it is done or failed")
    if out.exists() and not out.is_dir():
        raise EvalError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise EvalError(f"{out} exists and is not empty; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        h = hashlib.sha256()
        counts = []
        with open(tmp / "records.jsonl", "w", encoding="utf-8") as f:
            for r in runs:
                recs = reg.records(r["id"])
                counts.append(len(recs))
                for rec in recs:
                    line = json.dumps({"run_id": r["id"], **{k: v for k, v in rec.items() if k != "run_id"}},
                                      ensure_ascii=False, default=str) + "\n"
                    h.update(line.encode("utf-8"))
                    f.write(line)
            f.flush()
            os.fsync(f.fileno())
        n_records = sum(counts)
        meta = {"scalectl_version": __version__,
                "exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "records": {"file": "records.jsonl", "n": n_records, "sha256": h.hexdigest()},
                "runs": [{**r, "n_records": n} for r, n in zip(runs, counts)]}
        (tmp / "runs.json").write_text(json.dumps(meta, indent=2, default=str, ensure_ascii=False) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        old = None
        if out.exists():
            if any(out.iterdir()):
                old = out.parent / f".{out.name}.{os.getpid()}.old"
                os.replace(out, old)
            else:
                out.rmdir()
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(out), "n_records": n_records, "records_sha256": h.hexdigest(),
            "runs": [{"run": r["id"], "method": r["method"], "label": r.get("label"), "status": r["status"], "n_records": n}
                     for r, n in zip(runs, counts)]}
