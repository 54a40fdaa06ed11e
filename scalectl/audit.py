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
- :func:`compare_runs`: the flips of one run against a baseline per task (``scalectl runs compare``).
- :func:`seeds`: the spread of one method's macro accuracy across its done runs (search / SDP seeds).
- :func:`views`: a SCALE run's single views, aggregations, the label-based oracle and its headroom, path cost.
- :func:`ablations`: LASRC ablation runs (one switch each) against the run with no switch on the same queries.
- :func:`calibration`: support loss vs view accuracy (Pearson, Spearman) and the coverage-risk curve of the
  agreement score (:func:`correlation`, :func:`coverage_risk`).
- :func:`compat`: a pool's pairwise RMS cosines (method.md, "Compatibility (naive summation)").
- :func:`errors`: the error taxonomy per wrong query, each category decided by records (:data:`ERROR_RULES`).
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Any, Sequence

import numpy as np

from . import runid
from .errors import EvalError, RegistryError, ScalectlError
from .methods.scale import DERIVED, oracle_views
from .runid import config_of
from .runrecords import GroupSummary, PathCost, PlanSummary, QueryRecord, RunRecord, ViewsPlanSummary, ViewsRecord, load_records

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


LIBRARY_NAMES = {"resample": "resample", "n_samples": "n_samples", "level": "level"}
PAIRED_NAMES = {"resample": "--resample", "n_samples": "--samples", "level": "the interval level"}  # as the CLI says


def resampling_problem(resample: str, n_samples: int, level: float, names: dict[str, str] = LIBRARY_NAMES
                       ) -> str | None:
    """What is wrong with a resampling request, in one sentence naming each setting by ``names``; None when fine."""
    if resample not in RESAMPLE:
        return f"{names['resample']} must be one of {', '.join(RESAMPLE)}, got {resample!r}"
    if n_samples < 1:
        return f"{names['n_samples']} must be at least 1, got {n_samples}"
    if not 0 < level < 1:
        return f"{names['level']} must be in (0, 1), got {level}"
    return None


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
    problem = resampling_problem(resample, n_samples, level)
    if problem:
        raise ValueError(problem)
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


# ---------------------------------------------------------------- reading stored runs typed

TaskPlan = PlanSummary | ViewsPlanSummary  # what a run's summary stores for one task


def as_record(rec: QueryRecord | dict[str, Any]) -> QueryRecord:
    """A query record typed: a :class:`~scalectl.runrecords.QueryRecord` as it is, a stored record dict read back."""
    return rec if isinstance(rec, QueryRecord) else QueryRecord.from_dict(rec)


def as_plan(plan: TaskPlan | dict[str, Any] | None) -> TaskPlan | None:
    """One task's plan typed (SCALE's, with per-view plans: a ViewsPlanSummary); None (or empty) reads as None."""
    if isinstance(plan, (PlanSummary, ViewsPlanSummary)):
        return plan
    if not plan:
        return None
    return ViewsPlanSummary.from_dict(plan) if ViewsPlanSummary.TAG in plan else PlanSummary.from_dict(plan)


def run_plans(run: RunRecord | dict[str, Any]) -> dict[str, TaskPlan]:
    """A run's per-task plans, typed (``RunRecord.plans`` holds them as the stored dicts)."""
    rec = run if isinstance(run, RunRecord) else RunRecord.from_row(run)
    out = {t: as_plan(p) for t, p in rec.plans.items()}
    return {t: p for t, p in out.items() if p is not None}


def recorded_path_cost(run: RunRecord | dict[str, Any]) -> dict[str, Any]:
    """A run's path cost as stored; ``{}`` when it has none (no summary, or nothing recorded)."""
    rec = run if isinstance(run, RunRecord) else RunRecord.from_row(run)
    pc = rec.path_cost
    return {} if rec.summary is None or pc == PathCost() else pc.to_dict()


def _views(rec: QueryRecord) -> ViewsRecord:
    """The per-view answers of a record known to have them (:func:`has_views`)."""
    if rec.views is None:
        raise EvalError(f"{rec.task} query {rec.query_id} has no per-view records")
    return rec.views


# ---------------------------------------------------------------- runs


def _latest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return max(runs, key=lambda r: r["seq"])  # seq: the registry's insertion order of runs


def describe(run: dict[str, Any]) -> str:
    """A run as messages name it: ``ID (configuration[, label])``."""
    return f"{run['id']} ({runid.describe(run)}" + (f", {run['label']}" if run.get("label") else "") + ")"


def _pick_configuration(runs: list[dict[str, Any]], spec: str, method: str, want: dict[str, Any],
                        role: str) -> tuple[dict[str, Any], str | None]:
    """Among one method's runs, the latest done run of the configuration ``want`` names (the defaults for {})."""
    done = [r for r in runs if r["status"] == "done"]
    if not done:
        states = ", ".join(f"{r['id']} {r['status']}" for r in runs)
        raise EvalError(f"{role} method {spec!r} has no done run ({states})")
    fit = [r for r in done if runid.eligible(runid.variant(r), want)]
    if not fit and not want and len({runid.describe(r) for r in done}) == 1:  # one configuration only: said so
        pick = _latest(done)
        return pick, f"{role} {spec!r}: no {method} run without a control setting; using the only configuration, " \
                     f"{describe(pick)}"
    if not fit:
        what = "no control or ablation setting" if not want else "that configuration"
        listed = "; ".join(describe(r) for r in done[-6:]) + (f"; and {len(done) - 6} more" if len(done) > 6 else "")
        raise EvalError(f"{role} {spec!r}: no done {method} run with {what}; its done runs: {listed}; "
                        "name one by id or as METHOD[key=value]")
    pick = _latest(fit)
    kinds = sorted({runid.describe(r) for r in fit})
    note = None
    if len(fit) > 1:
        others = [k for k in kinds if k != runid.describe(pick)]
        note = (f"{role} {spec!r}: the latest of {len(fit)} done runs it names, {describe(pick)}"
                + (f"; other configurations: {'; '.join(others)}" if others else "")
                + "; pass a run id or METHOD[key=value] to choose another")
    return pick, note


def run_pool(run: dict[str, Any]) -> str | None:
    """The pool a run retrieved from or composed adapters of; None for the base model alone (zero-shot)."""
    cfg = config_of(run)
    if cfg.pool:
        return cfg.pool
    inputs = (cfg.composition or {}).get("adapters") or []
    return next((a.get("pool") for a in inputs if a.get("pool")), None)


def on_pool(run: dict[str, Any], pool: str | None) -> bool:
    """True when ``pool`` is None, or the run used it, or the run used no pool (a zero-shot run fits any pool)."""
    return pool is None or run_pool(run) in (None, pool)


def resolve_run(reg, spec: str, role: str = "run", pool: str | None = None) -> tuple[dict[str, Any], str | None]:
    """A run by id, unique id prefix, METHOD (the latest done run of that method with its default settings),
    METHOD[key=value,...] (of that configuration: :mod:`scalectl.runid`), or label; with ``pool``, only runs on it.

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
    all_runs = [r for r in reg.runs() if on_pool(r, pool)]
    sel = runid.parse_selector(spec)
    if sel is not None:
        of_method = [r for r in all_runs if r["method"] == sel[0]]
        if of_method:
            return _pick_configuration(of_method, spec, sel[0], sel[1], role)
    labelled = [r for r in all_runs if r.get("label") == spec and r["status"] == "done"]
    if labelled:
        kinds = sorted({runid.describe(r) for r in labelled})
        if len(kinds) > 1:
            raise EvalError(f"{role} {spec!r} is a label of {len(kinds)} configurations ({'; '.join(kinds)}); "
                            "pass a run id or METHOD[key=value]")
        pick = _latest(labelled)
        return pick, (f"{role} {spec!r}: the latest of {len(labelled)} runs labelled so, {describe(pick)}"
                      if len(labelled) > 1 else None)
    methods = sorted({r["method"] for r in all_runs if r["method"]})
    prefixed = [m for m in methods if m.startswith(spec)]
    if len(prefixed) > 1:
        raise EvalError(f"{role} {spec!r} is ambiguous: it is no run id, and it begins the methods {', '.join(prefixed)}; "
                        "give one of them or a run id")
    close = difflib.get_close_matches(spec, methods + [r["id"] for r in all_runs], n=3, cutoff=0.5)
    close = sorted(set(close + prefixed), key=(close + prefixed).index)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    if not all_runs:
        hint = f"; pool {pool!r} has no runs yet" if pool else "; the registry has no runs yet (`scalectl eval` records them)"
    raise EvalError(f"no run or method {spec!r} for the {role}" + (f" on pool {pool!r}" if pool else "") + hint)


def split_specs(specs: str | Sequence[str] | None) -> list[str]:
    if specs is None:
        return []
    if isinstance(specs, str):
        specs = [specs]
    return [s.strip() for item in specs for s in str(item).split(",") if s.strip()]


def resolve_runs(reg, specs: str | Sequence[str] | None, pool: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Runs named by ids, id prefixes or method names (comma lists allowed), without duplicates, with the
    notes :func:`resolve_run` gives when a method name picked one of several runs."""
    runs: list[dict[str, Any]] = []
    notes: list[str] = []
    for s in split_specs(specs):
        r, note = resolve_run(reg, s, pool=pool)
        if note:
            notes.append(note)
        if r["id"] not in {x["id"] for x in runs}:
            runs.append(r)
    return runs, notes


def require_done(runs: list[dict[str, Any]]) -> None:
    """Refuse (:class:`EvalError`) unless every run is done."""
    bad = [r for r in runs if r["status"] != "done"]
    if bad:
        names = "; ".join(f"{describe(r)} is {r['status']}" for r in bad)
        raise EvalError(f"only done runs can be audited: {names}")


def _base_model(run: dict[str, Any]) -> str | None:
    return config_of(run).base_model or run.get("base_model")


def _require_same_backbone(base: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    from .backbone import same_base

    want = _base_model(base)
    for r in runs:
        got = _base_model(r)
        if not same_base(want, got):
            raise EvalError(f"run {describe(r)} is on backbone {got!r} but the baseline {describe(base)} is on {want!r}; "
                            "compare runs of one backbone")


def _filter_tasks(recs: list[QueryRecord], tasks: list[str] | None, run: dict[str, Any]) -> list[QueryRecord]:
    if not tasks:
        if not recs:
            raise EvalError(f"run {describe(run)} has no records")
        return recs
    have = sorted({r.task for r in recs})
    for t in tasks:
        if t not in have:
            close = difflib.get_close_matches(t, have, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise EvalError(f"task {t!r} has no records in run {describe(run)}; {hint}its tasks: {', '.join(have) or 'none'}")
    keep = set(tasks)
    return [r for r in recs if r.task in keep]


def keyed(recs: Sequence[QueryRecord]) -> dict[tuple[str, str], QueryRecord]:
    """Records by ``(task, query_id)``, in their order."""
    return {(r.task, str(r.query_id)): r for r in recs}


def mismatch(kb: dict[tuple[str, str], QueryRecord], km: dict[tuple[str, str], QueryRecord]) -> tuple[list, list, list]:
    """What keeps two keyed record sets from pairing: the keys only in ``km``, only in ``kb``, and the shared keys
    whose input hashes differ."""
    only_m = sorted(set(km) - set(kb))
    only_b = sorted(set(kb) - set(km))
    hashes = sorted(k for k in set(kb) & set(km) if kb[k].input_hash != km[k].input_hash)
    return only_m, only_b, hashes


def _check_alignment(base: dict[str, Any], run: dict[str, Any], kb: dict, km: dict) -> None:
    only_m, only_b, hashes = mismatch(kb, km)
    if only_m or only_b:
        ex = (only_m or only_b)[0]
        raise EvalError(f"run {describe(run)} and baseline {describe(base)} cover different queries: {len(only_m)} only in "
                        f"the run, {len(only_b)} only in the baseline (e.g. {ex[0]} query {ex[1]}); "
                        "compare runs over the same tasks and --limit")
    if hashes:
        ex = hashes[0]
        raise EvalError(f"run {describe(run)} and baseline {describe(base)} saw different inputs for {len(hashes)} "
                        f"queries (input_hash differs, e.g. {ex[0]} query {ex[1]}); they were not evaluated on the same prompts")


def _load(reg, run: dict[str, Any], tasks: list[str] | None) -> dict[tuple[str, str], QueryRecord]:
    return keyed(_filter_tasks(load_records(reg, run["id"]), tasks, run))


def _check_paired_params(resample: str, n_samples: int, level: float) -> None:
    problem = resampling_problem(resample, n_samples, level, PAIRED_NAMES)
    if problem:
        raise EvalError(problem)


def _paired_inputs(reg, run_ids, base: dict[str, Any], task_filter: list[str] | None, notes: list[str],
                   pool: str | None) -> tuple[dict, list[tuple[dict[str, Any], dict]]]:
    """The baseline's keyed records and each compared run with its keyed records (checked against the baseline)."""
    runs, more = resolve_runs(reg, run_ids, pool=pool)
    notes += more
    if not runs:
        require_done([base])
        kb = _load(reg, base, task_filter)
        return kb, _default_runs(reg, base, kb, task_filter, notes, pool)
    require_done([base] + runs)
    _require_same_backbone(base, runs)
    kb = _load(reg, base, task_filter)
    loaded = []
    for r in runs:
        km = _load(reg, r, task_filter)
        _check_alignment(base, r, kb, km)
        loaded.append((r, km))
    return kb, loaded


def _paired_tasks(names: np.ndarray, n_t: np.ndarray, t: np.ndarray, cm: np.ndarray, cb: np.ndarray,
                  acc_m: np.ndarray, acc_b: np.ndarray, n_samples: int, seed: int) -> list[dict[str, Any]]:
    """The per-task rows of one compared run: accuracy, delta, flips and the sign-flip p within the task."""
    d, rows = cm - cb, []
    for i, name in enumerate(names):
        sel = t == name
        rows.append({"task": str(name), "n_queries": int(n_t[i]), "accuracy": float(acc_m[i]),
                     "baseline_accuracy": float(acc_b[i]), "delta": float(acc_m[i] - acc_b[i]),
                     **flips(cm[sel], cb[sel]), "p": permutation_test(d[sel], n_samples=n_samples, seed=seed)})
    return rows


def paired(reg, run_ids: Sequence[str] | str | None, baseline: str, per_task: bool = False, n_samples: int = N_SAMPLES,
           seed: int = SEED, resample: str = "tasks", tasks: Sequence[str] | str | None = None,
           level: float = LEVEL, pool: str | None = None) -> dict[str, Any]:
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
        pool: only runs on this pool (and zero-shot runs, which use none) are named by method or picked by default.

    Returns:
        ``{"baseline": {...}, "results": [one dict per run: run, method, label, macro_accuracy,
        baseline_macro_accuracy, delta, i2c, c2i, unchanged, wins, losses, ties, p, ci_low, ci_high, n_queries,
        n_tasks, and "tasks" when per_task], "n_samples", "seed", "resample", "level", "tasks", "notes"}``.
        Accuracies and deltas are fractions (the CLI prints points).

    Raises:
        EvalError: unknown or ambiguous baseline/run, runs not done, different backbones, different query sets
            or inputs, a task filter with no records, bad parameters.
    """
    _check_paired_params(resample, n_samples, level)
    task_filter = split_specs(tasks) or None
    notes: list[str] = []
    base, note = resolve_run(reg, baseline, role="baseline", pool=pool)
    if note:
        notes.append(note)
    kb, loaded = _paired_inputs(reg, run_ids, base, task_filter, notes, pool)
    keys = list(kb)  # the baseline's order: by task, then query index
    t = np.array([k[0] for k in keys])
    cb = np.array([kb[k].correct for k in keys], dtype=float)
    names, acc_b, n_t = task_accuracy(cb, t)
    if names.size == 1 and resample == "tasks":
        notes.append("one task only: the task bootstrap interval is a single point; use --resample queries")
    results = []
    for r, km in loaded:
        cm = np.array([km[k].correct for k in keys], dtype=float)
        _, acc_m, _ = task_accuracy(cm, t)
        d = cm - cb
        lo, hi = bootstrap_ci(cm, cb, t, n_samples=n_samples, seed=seed, resample=resample, level=level)
        res = {"run": r["id"], "method": r["method"], "configuration": runid.describe(r), "label": r.get("label"),
               "macro_accuracy": float(acc_m.mean()), "baseline_macro_accuracy": float(acc_b.mean()),
               "delta": float(acc_m.mean() - acc_b.mean()), **flips(cm, cb), **win_loss_tie(acc_m, acc_b),
               "p": permutation_test(d, n_samples=n_samples, seed=seed), "ci_low": lo, "ci_high": hi,
               "n_queries": int(len(keys)), "n_tasks": int(names.size)}
        if per_task:
            res["tasks"] = _paired_tasks(names, n_t, t, cm, cb, acc_m, acc_b, n_samples, seed)
        results.append(res)
    return {"baseline": {"run": base["id"], "method": base["method"], "configuration": runid.describe(base),
                         "label": base.get("label"),
                         "macro_accuracy": float(acc_b.mean()), "base_model": _base_model(base)},
            "results": results, "n_samples": n_samples, "seed": seed, "resample": resample, "level": level,
            "tasks": [str(x) for x in names], "notes": notes}


def _default_runs(reg, base: dict[str, Any], kb: dict, task_filter: list[str] | None,
                  notes: list[str], pool: str | None = None) -> list[tuple[dict[str, Any], dict]]:
    """The latest done run of every other configuration (:func:`scalectl.runid.describe`: a method with its
    defaults, or a named variant of it; same backbone, on ``pool`` when given) whose records match the
    baseline's queries."""
    from .backbone import same_base

    mine = runid.describe(base)
    done = [r for r in reg.runs(status="done") if r["id"] != base["id"] and on_pool(r, pool)]
    done.reverse()  # newest first
    picked: dict[str, tuple[dict[str, Any], dict]] = {}
    skipped: dict[str, str] = {}
    for r in done:
        key = runid.describe(r)
        if key in picked or key == mine:
            continue
        if not same_base(_base_model(base), _base_model(r)):
            skipped.setdefault(key, "another backbone")
            continue
        recs = load_records(reg, r["id"])
        if task_filter:
            recs = [x for x in recs if x.task in set(task_filter)]
        km = keyed(recs)
        only_m, only_b, hashes = mismatch(kb, km)
        if only_m or only_b or hashes:
            skipped.setdefault(key, "other queries" if (only_m or only_b) else "other inputs")
            continue
        picked[key] = (r, km)
    for m, why in sorted(skipped.items()):
        if m not in picked:
            notes.append(f"no done {m} run covers the baseline's queries ({why}); skipped")
    if not picked:
        raise EvalError(f"no done run of another method covers the same queries as the baseline {describe(base)}; "
                        "pass --runs")
    return sorted(picked.values(), key=lambda x: x[0]["seq"])


def compare_runs(reg, run_id: str, baseline_id: str) -> dict[str, Any]:
    """Flips of ``run_id`` against ``baseline_id`` per task and overall; both must cover the same queries.

    The alignment and flip counting are those of :func:`paired` (``audit paired`` adds the tests and intervals)."""
    ka, kb = keyed(load_records(reg, run_id)), keyed(load_records(reg, baseline_id))
    only_a, only_b, hashes = mismatch(kb, ka)
    if only_a or only_b:
        ex = (only_a or only_b)[0]
        raise EvalError(f"runs {run_id} and {baseline_id} cover different queries ({len(only_a)} only in the first, "
                        f"{len(only_b)} only in the second, e.g. {ex[0]} {ex[1]})")
    if hashes:
        raise EvalError(f"query {hashes[0][1]} has a different input in the two runs (input hash differs)")
    per: dict[str, dict[str, Any]] = {}
    for task in dict.fromkeys(k[0] for k in ka):
        keys = [k for k in ka if k[0] == task]
        ca, cb = [ka[k].correct for k in keys], [kb[k].correct for k in keys]
        per[task] = {"n": len(keys), **flips(ca, cb), "correct": sum(ca), "baseline_correct": sum(cb),
                     "accuracy": sum(ca) / len(keys), "baseline_accuracy": sum(cb) / len(keys)}
    total = {key: sum(d[key] for d in per.values()) for key in ("n", "i2c", "c2i", "unchanged")}
    macro = sum(d["accuracy"] for d in per.values()) / len(per) if per else math.nan
    macro_b = sum(d["baseline_accuracy"] for d in per.values()) / len(per) if per else math.nan
    return {"run": run_id, "baseline": baseline_id, "tasks": per, "total": total, "macro_accuracy": macro,
            "baseline_macro_accuracy": macro_b, "delta": macro - macro_b}


def run_seed(run: dict[str, Any]) -> Any:
    """The seed a seed sweep of this run's method varies: SCALE's and SDP+LASRC's SDP seed, LoRAHub's draw seed,
    else the weight-search seed (:func:`scalectl.runid.seed_of`)."""
    cfg = config_of(run)
    if not cfg.method_config and cfg.other.get("seed") is not None:  # a run without a method: its decoding seed
        return cfg.other["seed"]
    return runid.seed_of(run)


def _sweep(done: list[dict[str, Any]], spec: str, want: dict[str, Any], notes: list[str]) -> list[dict[str, Any]]:
    """The runs of one seed sweep: those that differ only in their sweep seed, of the configuration ``want`` names
    (the defaults for {}); the other configurations are named in a note, never averaged in."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in done:
        groups.setdefault(json.dumps(runid.sweep_variant(r), sort_keys=True, default=str), []).append(r)
    seed_key = runid.seed_key(done[0])  # one method: one sweep seed
    target = {k: v for k, v in want.items() if k != seed_key}
    fit = {k: g for k, g in groups.items() if runid.eligible(runid.sweep_variant(g[0]), target)}
    if len(fit) > 1:  # several budgets of the method: the sweep of its latest run, the others named below
        latest = _latest([r for g in fit.values() for r in g])
        fit = {k: g for k, g in fit.items() if latest in g}
    if not fit and not want and len(groups) == 1:  # the method's one configuration, said so
        fit = dict(groups)
        notes.append(f"no {spec} run has the default settings; the sweep of its only configuration, "
                     f"{_sweep_name(next(iter(groups.values()))[0])}")
    if len(fit) != 1:
        kinds = "; ".join(sorted(f"{len(g)} x {_sweep_name(g[0])}" for g in groups.values()))
        what = "no" if not fit else f"{len(fit)}"
        raise EvalError(f"{spec!r} names {what} seed sweep(s) among its runs ({kinds}); "
                        "name one as METHOD[key=value]")
    chosen = next(iter(fit.values()))
    left = [g for k, g in groups.items() if g is not chosen]
    if left:
        notes.append("left out (other configurations, not seeds): "
                     + "; ".join(f"{len(g)} x {_sweep_name(g[0])}" for g in left))
    return chosen


def _sweep_name(run: dict[str, Any]) -> str:
    v = runid.sweep_variant(run)
    return run["method"] + ("[" + ",".join(f"{k}={x}" for k, x in sorted(v.items())) + "]" if v else "")


def seeds(reg, method: str, label: str | None = None) -> dict[str, Any]:
    """Spread of one configuration's macro accuracy over its seeds (seed variance; method.md, "Audit statistics").

    Args:
        reg: the registry.
        method: the method name (``lasrc``, ``scale``, ...: its runs with the default settings), or
            ``METHOD[key=value,...]`` for a variant (``scale[sdp_rate=0]``). Runs that differ in anything but the
            method's sweep seed (SDP seed for SCALE and SDP+LASRC, the draw seed for LoRAHub, else the search
            seed) are not the same sweep and are left out, with a note.
        label: only runs with this label.

    Returns:
        ``{"method", "runs": [run, label, seed, seed_key, macro_accuracy, n_queries, n_tasks, created], "summary":
        {n, mean, std (sample, ddof=1; None below two runs), min, max}, "notes"}``.

    Raises:
        EvalError: no such method, no done run of it, or a selector that names no (or several) sweeps.
    """
    sel = runid.parse_selector(method)
    if sel is None:
        raise EvalError(f"--method {method!r}: give METHOD or METHOD[key=value,...]")
    name, want = sel
    runs = reg.runs(method=name)
    if label is not None:
        runs = [r for r in runs if r.get("label") == label]
    if not runs:
        methods = sorted({r["method"] for r in reg.runs() if r["method"]})
        close = difflib.get_close_matches(name, methods, n=3, cutoff=0.5)
        hint = (f"; did you mean {', '.join(close)}?" if close
                else f"; methods with runs: {', '.join(methods)}" if methods else "")
        raise EvalError(f"no runs of method {name!r}" + (f" with label {label!r}" if label is not None else "") + hint)
    done = [r for r in runs if r["status"] == "done"]
    if not done:
        raise EvalError(f"method {name!r} has no done run ({', '.join(r['id'] + ' ' + r['status'] for r in runs)})")
    notes: list[str] = []
    done = _sweep(done, method, want, notes)
    done.sort(key=lambda r: r["seq"])
    rows = []
    for r in done:
        s = RunRecord.from_row(r).summary
        macro = s.macro_accuracy if s is not None else None
        n_q = s.n_queries if s is not None else None
        n_t = len(s.tasks or []) if s is not None else 0
        if macro is None:  # no summary: recompute from the records
            recs = load_records(reg, r["id"])
            macro = macro_accuracy(np.array([x.correct for x in recs]), np.array([x.task for x in recs])) if recs else None
            n_q, n_t = len(recs), len({x.task for x in recs})
        rows.append({"run": r["id"], "label": r.get("label"), "seed": run_seed(r), "seed_key": runid.seed_key(r),
                     "macro_accuracy": macro, "n_queries": n_q, "n_tasks": n_t, "created": r["created"]})
    vals = np.array([x["macro_accuracy"] for x in rows if x["macro_accuracy"] is not None], dtype=float)
    summary = {"n": int(vals.size), "mean": float(vals.mean()) if vals.size else None,
               "std": float(vals.std(ddof=1)) if vals.size > 1 else None,
               "min": float(vals.min()) if vals.size else None, "max": float(vals.max()) if vals.size else None}
    cover = {json.dumps([config_of(r).tasks, config_of(r).queries], sort_keys=True) for r in done}
    if len(cover) > 1:
        notes.append(f"the {method} runs cover different tasks or query counts; the spread mixes query sets")
    seeds_seen = [x["seed"] for x in rows]
    if len(rows) > 1 and len(set(map(str, seeds_seen))) < len(rows):
        notes.append("some runs share a seed; their difference is not seed variance")
    return {"method": method, "label": label, "runs": rows, "summary": summary, "notes": notes}


# ---------------------------------------------------------------- SCALE views (method.md, "SCALE: multi-view reliability")

SCALE_AGGREGATES = DERIVED  # the derived runs of a SCALE run (scale-<how>)


def has_views(recs: Sequence[QueryRecord | dict[str, Any]]) -> bool:
    """True when there are records and every one carries SCALE's per-view answers (a SCALE or derived ``scale-*`` run)."""
    return bool(recs) and all(_has_view_answers(as_record(r)) for r in recs)


def _has_view_answers(rec: QueryRecord) -> bool:
    return rec.views is not None and bool(rec.views.views)


def _view_names(run: dict[str, Any], recs: list[QueryRecord]) -> list[str]:
    names = list(_views(recs[0]).views)
    for r in recs:
        if sorted(_views(r).views) != sorted(names):
            raise EvalError(f"run {describe(run)}: {r.task} query {r.query_id} has views "
                            f"{', '.join(sorted(_views(r).views))} but the first record has {', '.join(sorted(names))}")
    return names


def _view_run(reg, spec: str, role: str = "run",
              to_parent: bool = False) -> tuple[dict[str, Any], list[QueryRecord], list[str]]:
    """A done run whose records carry SCALE's per-view answers (``scale``, or a derived ``scale-*`` run).

    ``to_parent``: a derived run is replaced by the SCALE run it was derived from (with a note)."""
    run, note = resolve_run(reg, spec, role=role)
    notes = [note] if note else []
    parent = config_of(run).derived_from
    if to_parent and parent:
        try:
            prun = reg.run(parent)
        except RegistryError:
            raise EvalError(f"run {describe(run)} was derived from the SCALE run {parent}, "
                            "which is no longer in the registry") from None
        notes.append(f"{describe(run)} is derived from the SCALE run {prun['id']}; auditing that run and its derived runs")
        run = prun
    require_done([run])
    recs = load_records(reg, run["id"])
    if not has_views(recs):
        what = "has no records" if not recs else "has no per-view records"
        raise EvalError(f"run {describe(run)} {what}: it is not a SCALE run (`scalectl eval --method scale` records one)")
    return run, recs, notes


def derived_runs(reg, run_id: str) -> dict[str, dict[str, Any]]:
    """The latest done run of each aggregation derived from the SCALE run ``run_id`` (``{"uniform": run, ...}``)."""
    out: dict[str, dict[str, Any]] = {}
    for r in reg.runs(status="done"):
        cfg = config_of(r)
        if cfg.derived_from != run_id:
            continue
        how = cfg.aggregation or str(r["method"]).removeprefix("scale-")
        old = out.get(how)
        if old is None or r["seq"] > old["seq"]:
            out[how] = r
    return out


def _by_task(recs: list[QueryRecord]) -> dict[str, list[QueryRecord]]:
    out: dict[str, list[QueryRecord]] = {}
    for r in recs:
        out.setdefault(r.task, []).append(r)
    return dict(sorted(out.items()))


def _lowest_loss_view(losses: dict[str, float]) -> str:
    """The lowest-support-loss view; ties go to the view name (as :func:`scalectl.methods.aggregate`)."""
    return min(losses, key=lambda v: (losses[v], v))


def _aggregate_correct(recs: list[QueryRecord], how: str, oracle: dict[str, str] | None = None) -> dict[tuple[str, str], bool]:
    """Correctness of each query under one aggregation, recomputed from the view records (no decoding)."""
    from .methods.scale import aggregate

    out = {}
    for r in recs:
        x = _views(r)
        norm = {v: d.normalized for v, d in x.views.items()}
        _, view, _ = aggregate(norm, x.view_losses, how, oracle_view=(oracle or {}).get(r.task))
        out[(r.task, str(r.query_id))] = bool(x.views[view].correct)
    return out


def _view_support_loss(plans: dict[str, TaskPlan], task: str, view: str) -> float | None:
    """``L_v`` of one view on one task as its plan stored it (None when the plan has no such view or loss)."""
    p = plans.get(task)
    vp = p.views.get(view) if isinstance(p, ViewsPlanSummary) else None
    return vp.support_loss if vp is not None else None


def views(reg, run: str = "scale") -> dict[str, Any]:
    """SCALE's views side by side (method.md, "SCALE: multi-view reliability"), per task and macro.

    Columns per task: the query accuracy of each single view (its own decoded answers), of the three aggregations
    (``support``: omega = softmax(-L_v), the SCALE run itself; ``uniform``; ``best-view``: the lowest-loss view),
    the ``oracle`` (per task the view with the best query accuracy: USES LABELS, a diagnostic upper bound), "any view
    correct" (the query-level upper bound, also label-based) and the oracle headroom ``oracle - support``. The macro
    row averages every column over tasks. Aggregations come from the derived ``scale-*`` runs when they exist, else
    they are recomputed from the view records with :func:`scalectl.methods.aggregate` (noted).

    Args:
        reg: the registry.
        run: a SCALE run id / prefix, the method name ``scale`` (its latest done run), or a derived run (its parent).

    Returns:
        ``{"run", "label", "views": [names], "tasks": [rows], "macro": row, "derived": {how: run id or None},
        "path_cost": {...}, "notes"}``; a row has task, n, ``view_accuracy`` {view: acc}, support, uniform,
        best_view, oracle, oracle_view, any_view_correct, headroom, lowest_loss_view, view_losses. Fractions.

    Raises:
        EvalError: no such run, not done, not a SCALE run, inconsistent views.
    """
    srun, recs, notes = _view_run(reg, run, to_parent=True)
    names = _view_names(srun, recs)
    by_task = _by_task(recs)
    derived = derived_runs(reg, srun["id"])
    oracle_view = oracle_views(by_task, names)
    agg: dict[str, dict[tuple[str, str], bool]] = {"support": {(r.task, str(r.query_id)): bool(r.correct) for r in recs}}
    for how in SCALE_AGGREGATES:
        d = derived.get(how)
        drecs = keyed(load_records(reg, d["id"])) if d else {}
        if d and set(drecs) == set(agg["support"]):
            agg[how] = {k: bool(v.correct) for k, v in drecs.items()}
            if how == "oracle":
                dsum = RunRecord.from_row(d).summary
                ov = dsum.oracle_views if dsum is not None else None
                if isinstance(ov, dict):
                    oracle_view.update({t: v for t, v in ov.items() if t in oracle_view})
        else:
            if d:
                notes.append(f"the derived scale-{how} run {d['id']} covers other queries; recomputed from the view records")
            else:
                notes.append(f"no derived scale-{how} run: recomputed from the view records")
            agg[how] = _aggregate_correct(recs, how, oracle_view)
    srec = RunRecord.from_row(srun)
    plans = run_plans(srec)
    rows = []
    for t, rs in by_task.items():
        keys = [(t, str(r.query_id)) for r in rs]
        acc = {how: sum(agg[how][k] for k in keys) / len(rs) for how in agg}
        losses = dict(_views(rs[0]).view_losses or {})
        for v in names:
            sl = _view_support_loss(plans, t, v)
            if sl is not None:
                losses[v] = float(sl)
        rows.append({
            "task": t, "n": len(rs),
            "view_accuracy": {v: sum(bool(_views(r).views[v].correct) for r in rs) / len(rs) for v in names},
            "support": acc["support"], "uniform": acc["uniform"], "best_view": acc["best-view"], "oracle": acc["oracle"],
            "oracle_view": oracle_view[t],
            "any_view_correct": sum(any(bool(d.correct) for d in _views(r).views.values()) for r in rs) / len(rs),
            "headroom": acc["oracle"] - acc["support"],
            "lowest_loss_view": _lowest_loss_view(losses) if losses else None, "view_losses": losses,
        })
    keys = ("support", "uniform", "best_view", "oracle", "any_view_correct", "headroom")
    macro = {"task": "macro", "n": len(recs),
             "view_accuracy": {v: float(np.mean([r["view_accuracy"][v] for r in rows])) for v in names},
             **{k: float(np.mean([r[k] for r in rows])) for k in keys}, "oracle_view": None, "lowest_loss_view": None,
             "view_losses": None}
    return {"run": srun["id"], "label": srun.get("label"), "views": names, "tasks": rows, "macro": macro,
            "derived": {how: (derived[how]["id"] if how in derived else None) for how in SCALE_AGGREGATES},
            "path_cost": recorded_path_cost(srec), "notes": notes}


# presentation helpers shared by the CLI tables and the HTML report


def views_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The views table flattened: one row per task and the macro row, one ``view:NAME`` column per view."""
    out = []
    for r in res["tasks"] + [res["macro"]]:
        out.append({**{k: v for k, v in r.items() if k not in ("view_accuracy", "view_losses")},
                    **{f"view:{v}": r["view_accuracy"][v] for v in res["views"]}})
    return out


def views_columns(res: dict[str, Any]) -> list[tuple[str, str]]:
    return ([("task", "task"), ("n", "queries")] + [(f"view:{v}", f"view {v}") for v in res["views"]]
            + [("support", "support (SCALE)"), ("uniform", "uniform"), ("best_view", "best-view"),
               ("oracle", "oracle (uses labels)"), ("any_view_correct", "any view correct (uses labels)"),
               ("headroom", "headroom oracle-support (points)"), ("oracle_view", "oracle view")])


def views_caption(res: dict[str, Any]) -> str:
    pc = res.get("path_cost") or {}
    cost = (f"path cost: {pc['paths_per_query']:g} decoded paths per query ({pc['paths_per_query']:g}x one view)"
            if pc.get("paths_per_query") is not None else "path cost: not recorded")
    extra = ", ".join(f"{k.replace('_', ' ')} {pc[k]:g}" for k in ("compose_seconds", "search_seconds", "decode_seconds",
                                                                   "peak_rss_mb") if isinstance(pc.get(k), (int, float)))
    return (f"EM %; support = softmax(-L_v) weighted vote (the SCALE run), uniform = 1/V vote, best-view = lowest support "
            f"loss; oracle = per task the view with the best query accuracy and any view correct: both USE QUERY LABELS "
            f"(diagnostic upper bounds, not a method). {cost}" + (f"; {extra}" if extra else ""))


def _fmt_p(p: float | None) -> str:
    return "-" if p is None else (f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}")


def calibration_caption(res: dict[str, Any]) -> str:
    c = res["correlation"]
    lb = res["lowest_loss_best"]
    if c["pearson"] is None:
        corr = "correlation undefined"
    else:
        corr = (f"Pearson r = {c['pearson']:+.3f} (p {_fmt_p(c['pearson_p'])}), Spearman rho = {c['spearman']:+.3f} "
                f"(p {_fmt_p(c['spearman_p'])}) over {c['n']} (task, view) points (negative: lower loss, higher accuracy)")
    return f"{corr}; the lowest-loss view is the most accurate on {lb['tasks']} of {lb['n_tasks']} tasks"


# ---------------------------------------------------------------- LASRC ablations (method.md, "Merge operators": lasrc)

ABLATION_SWITCHES = ("no_norm_rescale", "no_pruning", "fixed_alpha", "no_floor", "no_guard")


def lasrc_setting(run: dict[str, Any]) -> dict[str, Any] | None:
    """How a run composes with LASRC, from its config; ``None`` when it does not use an lasrc merger.

    Two places record it: ``config["composition"]`` (``scalectl eval --adapters ... --merger lasrc --param K=V``:
    ``merger`` and resolved ``params``) and ``config["method_config"]`` (``--method lasrc``, or ``--method scale``
    with the lasrc merger: ``merger_params`` as given). Returns ``{"switches": {name: bool} for the five ablation
    switches, "params": the other resolved LASRC parameters, "family": a JSON key of everything but the switches
    (method, backbone, other parameters, adapters and weights or the method config)}``.
    """
    from .merge.table import resolve_merger
    from .methods import merger_of

    cfg = config_of(run)
    comp = cfg.composition or None
    mc = cfg.method_config or None
    if isinstance(comp, dict) and str(comp.get("merger", "")).split("+")[-1] == "lasrc":
        given = comp.get("params") or {}
        family: dict[str, Any] = {"merger": comp.get("merger"), "sdp": comp.get("sdp"),
                                  "adapters": [a.get("name") if isinstance(a, dict) else a for a in comp.get("adapters") or []],
                                  "weights": comp.get("weights")}
    elif isinstance(mc, dict) and str(merger_of(mc) or "").split("+")[-1] == "lasrc":
        given = mc.get("merger_params") or {}
        family = {"method_config": {k: v for k, v in mc.items() if k != "merger_params"}}
    else:
        return None
    try:
        resolved = resolve_merger("lasrc", {k: v for k, v in given.items() if not str(k).startswith("sdp.")}).params
    except ScalectlError as e:
        raise EvalError(f"run {describe(run)} records LASRC parameters that no longer resolve: {e}") from None
    switches = {s: bool(resolved.get(s, False)) for s in ABLATION_SWITCHES}
    other = {k: v for k, v in resolved.items() if k not in ABLATION_SWITCHES}
    key = json.dumps({"method": run["method"], "base_model": _base_model(run), "params": other, **family},
                     sort_keys=True, default=str)
    return {"switches": switches, "params": other, "family": key}


def _ablation_runs(reg, specs: list[str], done: list[dict[str, Any]], settings: dict[str, Any], notes: list[str]
                   ) -> list[dict[str, Any]]:
    """The runs to show: those named (each must compose with lasrc), else every done lasrc run not derived."""
    if not specs:
        chosen = [r for r in done if r["id"] in settings and not config_of(r).derived_from]
        if not chosen:
            raise EvalError("no done run composes with lasrc; e.g. `scalectl eval --method lasrc --param no_guard=true ...` "
                            "and the same without --param record an ablation pair")
        return chosen
    chosen = []
    for spec in specs:
        r, note = resolve_run(reg, spec)
        if note:
            notes.append(note)
        require_done([r])
        if r["id"] not in settings:
            raise EvalError(f"run {describe(r)} does not compose with lasrc (neither config.composition nor "
                            "config.method_config names an lasrc merger)")
        if r["id"] not in {x["id"] for x in chosen}:
            chosen.append(r)
    return chosen


class _KeyedRecords:
    """Each run's records keyed by (task, query id), loaded once."""

    def __init__(self, reg):
        self.reg, self.cache = reg, {}

    def __call__(self, rid: str) -> dict[tuple[str, str], QueryRecord]:
        if rid not in self.cache:
            self.cache[rid] = keyed(load_records(self.reg, rid))
        return self.cache[rid]


def _keyed_macro(k: dict[tuple[str, str], QueryRecord], keys: list | None = None) -> float:
    keys = list(k) if keys is None else keys
    return macro_accuracy(np.array([k[x].correct for x in keys], dtype=float), np.array([x[0] for x in keys]))


def _ablation_row(r: dict[str, Any], settings: dict[str, Any], by_id: dict[str, dict[str, Any]],
                  keyed_of: _KeyedRecords, notes: list[str]) -> dict[str, Any]:
    """One run's switches and macro accuracy, and its delta and flips against its all-off reference."""
    s = settings[r["id"]]
    km = keyed_of(r["id"])
    if not km:
        raise EvalError(f"run {describe(r)} has no records")
    row = {"run": r["id"], "method": r["method"], "label": r.get("label"), "switches": s["switches"],
           "on": [k for k, v in s["switches"].items() if v], "macro_accuracy": _keyed_macro(km), "n_queries": len(km),
           "n_tasks": len({k[0] for k in km}), "reference": None, "delta": None, "i2c": None, "c2i": None,
           "family": s["family"]}
    if not row["on"]:
        row.update(reference=r["id"], delta=0.0, i2c=0, c2i=0)
        return row
    refs = [by_id[i] for i, x in settings.items() if x["family"] == s["family"] and not any(x["switches"].values())]
    refs = [x for x in refs if not any(mismatch(keyed_of(x["id"]), km))]
    if not refs:
        notes.append(f"{describe(r)} ({', '.join(row['on'])}): no done run with every switch off in the same "
                     "family (method, adapters/weights or method config, other parameters) covers its queries")
        return row
    ref = max(refs, key=lambda x: x["seq"])
    kb = keyed_of(ref["id"])
    keys = list(kb)
    f = flips(np.array([km[k].correct for k in keys]), np.array([kb[k].correct for k in keys]))
    row.update(reference=ref["id"], delta=_keyed_macro(km, keys) - _keyed_macro(kb, keys), i2c=f["i2c"], c2i=f["c2i"])
    return row


def ablations(reg, runs: Sequence[str] | str | None = None) -> dict[str, Any]:
    """LASRC ablation runs side by side: which switch is on, macro accuracy, delta vs the run with no switch.

    A run's reference is the latest done run with every switch off in the same family (same method, backbone, other
    LASRC parameters, and the same adapters and weights or the same method config; see :func:`lasrc_setting`) that
    covers exactly the same queries (task, query id and input hash). ``delta = macro(run) - macro(reference)``;
    flips are counted on the shared queries. Runs derived from a SCALE run are left out unless named.

    Args:
        reg: the registry.
        runs: run ids / prefixes / method names (comma-separated string works). Empty: every done run with an
            lasrc merger.

    Returns:
        ``{"switches": [...], "runs": [run, method, label, switches {name: bool}, on [names], macro_accuracy,
        n_queries, n_tasks, reference (run id or None), delta, i2c, c2i], "notes"}``, references first in each family.

    Raises:
        EvalError: a named run that is not done or uses no lasrc merger; no lasrc run at all.
    """
    notes: list[str] = []
    done = reg.runs(status="done")
    settings = {}
    for r in done:
        s = lasrc_setting(r)
        if s is not None:
            settings[r["id"]] = s
    chosen = _ablation_runs(reg, split_specs(runs), done, settings, notes)
    by_id, keyed_of = {r["id"]: r for r in done}, _KeyedRecords(reg)
    rows = [_ablation_row(r, settings, by_id, keyed_of, notes) for r in chosen]
    fam_order = {f: i for i, f in enumerate(dict.fromkeys(x["family"] for x in rows))}
    rows.sort(key=lambda x: (fam_order[x["family"]], bool(x["on"]), [not x["switches"][k] for k in ABLATION_SWITCHES]))
    for x in rows:
        x.pop("family")
    return {"switches": list(ABLATION_SWITCHES), "runs": rows, "notes": notes}


# ---------------------------------------------------------------- calibration (method.md, "Audit statistics")


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Pearson and Spearman correlation (``scipy.stats``) with their two-sided p-values.

    Returns ``{"n", "pearson", "pearson_p", "spearman", "spearman_p"}``; the four are ``None`` with fewer than 3
    points or a constant side (undefined)."""
    from scipy import stats

    a = np.asarray(x, dtype=float).ravel()
    b = np.asarray(y, dtype=float).ravel()
    out: dict[str, Any] = {"n": int(a.size), "pearson": None, "pearson_p": None, "spearman": None, "spearman_p": None}
    if a.size != b.size:
        raise ValueError(f"x has {a.size} values but y has {b.size}")
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return out
    pr = stats.pearsonr(a, b)
    sr = stats.spearmanr(a, b)
    out.update(pearson=float(pr.statistic), pearson_p=float(pr.pvalue), spearman=float(sr.statistic), spearman_p=float(sr.pvalue))
    return out


def coverage_risk(confidence: Sequence[float], correct: Sequence[float]) -> dict[str, Any]:
    """Selective prediction: the coverage-risk curve of answering only the most confident queries.

    Queries are sorted by confidence, highest first; one point per distinct confidence value ``c`` (descending)
    covers every query with confidence ``>= c`` (tied queries enter together, so the curve does not depend on an
    arbitrary order): ``coverage = covered / N``, ``risk`` = error rate of the covered queries. ``aurc`` is the area
    under the step curve, ``sum_k risk_k (coverage_k - coverage_{k-1})``; ``full_risk`` the risk at coverage 1 (what
    a random confidence would give at every coverage, in expectation).

    Returns:
        ``{"points": [{threshold, covered, coverage, risk, accuracy}], "aurc", "full_risk", "n"}``.
    """
    c = np.asarray(confidence, dtype=float).ravel()
    y = np.asarray(correct, dtype=float).ravel()
    if c.size != y.size:
        raise ValueError(f"confidence has {c.size} values but correct has {y.size}")
    if c.size == 0:
        raise ValueError("no queries")
    if not np.all(np.isfinite(c)):
        raise ValueError("confidence has NaN or infinite values")
    points = []
    prev = 0.0
    aurc = 0.0
    for th in np.unique(c)[::-1]:
        sel = c >= th
        n = int(sel.sum())
        acc = float(y[sel].mean())
        cov = n / c.size
        aurc += (1 - acc) * (cov - prev)
        prev = cov
        points.append({"threshold": float(th), "covered": n, "coverage": cov, "risk": 1 - acc, "accuracy": acc})
    return {"points": points, "aurc": float(aurc), "full_risk": float(1 - y.mean()), "n": int(c.size)}


def calibration(reg, run: str = "scale") -> dict[str, Any]:
    """Is SCALE's support loss a reliable signal? (method.md, "Audit statistics": calibration).

    (a) One point per (task, view): the view's support loss ``L_v`` on the task (``summary.plans[task].views[view]
    .support_loss``, else the records' ``view_losses``) and that view's query accuracy on the task; Pearson and
    Spearman correlation over all points (negative = lower loss, higher accuracy), and the tasks where the
    lowest-loss view is (one of) the most accurate. (b) The coverage-risk curve over every query of the run, with
    its per-query ``agreement`` score (the omega-weighted vote of its answer) as the confidence
    (:func:`coverage_risk`).

    Args:
        reg: the registry.
        run: a SCALE run (or a derived ``scale-*`` run: its own agreement scores), id / prefix / method name.

    Returns:
        ``{"run", "method", "label", "points": [task, view, support_loss, accuracy, n], "correlation": {...},
        "lowest_loss_best": {"tasks", "n_tasks"}, "coverage_risk": {...}, "notes"}``.
    """
    r, recs, notes = _view_run(reg, run)
    names = _view_names(r, recs)
    plans = run_plans(r)
    points = []
    best_hits = 0
    by_task = _by_task(recs)
    for t, rs in by_task.items():
        rec_losses = _views(rs[0]).view_losses or {}
        accs = {}
        for v in names:
            sl = _view_support_loss(plans, t, v)
            if sl is None:
                sl = rec_losses.get(v)
            if sl is None:
                raise EvalError(f"run {describe(r)}: no support loss for view {v} on {t}")
            accs[v] = sum(bool(_views(x).views[v].correct) for x in rs) / len(rs)
            points.append({"task": t, "view": v, "support_loss": float(sl), "accuracy": accs[v], "n": len(rs)})
        tl = {p["view"]: p["support_loss"] for p in points if p["task"] == t}
        best_hits += accs[_lowest_loss_view(tl)] >= max(accs.values()) - 1e-12
    corr = correlation([p["support_loss"] for p in points], [p["accuracy"] for p in points])
    if corr["pearson"] is None:
        notes.append(f"correlation undefined: {len(points)} (task, view) points" +
                     (" (fewer than 3)" if len(points) < 3 else ", and the losses or the accuracies are all equal"))
    conf = []
    for x in recs:
        a = _views(x).agreement
        if a is None:
            raise EvalError(f"run {describe(r)}: {x.task} query {x.query_id} has no agreement score")
        conf.append(float(a))
    cr = coverage_risk(conf, [x.correct for x in recs])
    if len(cr["points"]) == 1:
        notes.append("every query has the same agreement score: the coverage-risk curve is a single point")
    return {"run": r["id"], "method": r["method"], "label": r.get("label"), "views": names, "points": points,
            "correlation": corr, "lowest_loss_best": {"tasks": int(best_hits), "n_tasks": len(by_task)},
            "coverage_risk": cr, "notes": notes}


# ---------------------------------------------------------------- compatibility (method.md, "Compatibility")


def compat(reg, pool: str, top: int = 20, families: bool = False) -> dict[str, Any]:
    """Pairwise RMS cosine of a pool's adapters (:func:`scalectl.compat.pairwise_cosines`), most similar first.

    Remote rows (hub ids not fetched yet) are left out with a note; the cosines use the modules every loaded
    adapter shares. ``families``: order the adapters by their family tags (:class:`scalectl.compat.Family`) and
    summarize the cosines per relation (seed repeat, other template, mixture and its part, ..., unrelated);
    adapters without family tags (a registered composition, a hub adapter) are left out with a note.

    Returns:
        ``{"pool", "names", "rms_cosine" (K x K list), "mean_cosine", "modules", "pairs" (the ``top`` most similar:
        rank, a, b, rms_cosine, mean_cosine), "n_pairs", "notes"}``, with ``families`` ``{"relations": [...],
        "family": {name: {kind, skills, template, seed}}}``.
    """
    from .compat import Family, pairwise_cosines, relation_summary

    if top < 1:
        raise EvalError(f"--top must be at least 1, got {top}")
    rows = reg.list(pool=pool)
    if not rows:
        have = ", ".join(p["name"] for p in reg.pools()) or "none"
        raise EvalError(f"pool {pool!r} has no adapters (pools: {have})")
    notes = []
    remote = [r["name"] for r in rows if r.get("status") == "remote"]
    if remote:
        notes.append(f"{len(remote)} remote adapter(s) not fetched, left out (scalectl pool fetch): {', '.join(remote[:5])}"
                     + (" ..." if len(remote) > 5 else ""))
    local = [r for r in rows if r.get("status") != "remote"]
    fams = {r["name"]: Family.from_tags(r.get("tags")) for r in local} if families else {}
    if families:
        untagged = [n for n, f in fams.items() if f is None]
        if untagged:
            notes.append(f"{len(untagged)} adapter(s) without family tags (kind:, skill:) left out: "
                         + ", ".join(untagged[:5]) + (" ..." if len(untagged) > 5 else ""))
        local = sorted((r for r in local if fams[r["name"]] is not None), key=lambda r: fams[r["name"]].sort_key())
        if len(local) < 2:
            raise EvalError(f"pool {pool!r} has {len(local)} adapter(s) with family tags (kind:, skill:); "
                            "--families needs at least two (scalectl pool train writes them)")
    names = [r["name"] for r in local]
    if len(names) < 2:
        raise EvalError(f"pool {pool!r} has {len(names)} local adapter(s); compatibility needs at least two")
    factors = [reg.load_factors(n, pool) for n in names]
    try:
        c = pairwise_cosines(factors)
    except ScalectlError as e:
        raise EvalError(f"pool {pool!r}: {e}") from None
    pairs = c.pairs()
    out = {"pool": pool, "names": c.names, "rms_cosine": np.asarray(c.rms_cosine).tolist(),
           "mean_cosine": np.asarray(c.mean_cosine).tolist(), "modules": c.modules,
           "pairs": [{"rank": i + 1, **p} for i, p in enumerate(pairs[:top])], "n_pairs": len(pairs), "notes": notes}
    if families:
        out["families"] = {
            "relations": relation_summary(c.names, fams, c.rms_cosine),
            "family": {n: {"kind": fams[n].kind, "skills": sorted(fams[n].skills), "template": fams[n].template,
                           "seed": fams[n].seed} for n in c.names},
        }
    return out


# ---------------------------------------------------------------- which families retrieval brought


def family_counts(names: Sequence[str], families: dict[str, Any]) -> dict[str, Any]:
    """One candidate list by family: how many of each kind (skill, template, mixture, distractor, untagged), and
    how many adapters of each skill family (a mixture's family is its skills joined with ``+``), most first."""
    kinds: dict[str, int] = {}
    fams: dict[str, int] = {}
    for n in names:
        f = families.get(n)
        kind = f.kind if f is not None else "untagged"
        kinds[kind] = kinds.get(kind, 0) + 1
        label = "+".join(sorted(f.skills)) if f is not None else n
        fams[label] = fams.get(label, 0) + 1
    return {"n": len(names), "distractors": kinds.get("distractor", 0), "kinds": kinds,
            "families": sorted(fams.items(), key=lambda kv: (-kv[1], kv[0]))}


def retrieval_families(reg, run: str) -> dict[str, Any]:
    """Per task (and SCALE view) of a run: the families of its global list and of each support example's local
    list, read from the adapters' family tags in the registry (:class:`scalectl.compat.Family`).

    Returns:
        ``{"run", "method", "pool", "tasks": {task: [{"view", "global": family_counts, "local": [family_counts per
        support example], "local_distractors_mean"}]}, "notes"}``.
    """
    from .compat import Family
    from .retrieve import Retrieval

    r, note = resolve_run(reg, run)
    require_done([r])
    pool = run_pool(r)
    families = {row["name"]: Family.from_tags(row.get("tags")) for row in reg.list(pool=pool)} if pool else {}
    notes = [note] if note else []
    if not pool:
        notes.append("the run recorded no pool: its candidates' families are unknown (every one counts as untagged)")
    elif not any(families.values()):
        notes.append(f"pool {pool!r} carries no family tags (kind:, skill:): every candidate counts as untagged")
    tasks: dict[str, list[dict[str, Any]]] = {}
    for task, plan in run_plans(r).items():
        views = plan.views.items() if isinstance(plan, ViewsPlanSummary) else [(None, plan)]
        for view, p in views:
            if not p.retrieval:
                continue
            ret = Retrieval.from_dict(p.retrieval)
            local = [family_counts([n for n, _ in lst], families) for lst in ret.local_candidates]
            tasks.setdefault(task, []).append({
                "view": view or ret.view, "global": family_counts([n for n, _ in ret.global_candidates], families),
                "local": local,
                "local_distractors_mean": float(np.mean([c["distractors"] for c in local])) if local else None,
            })
    if not tasks:
        raise EvalError(f"run {r['id']} ({r['method']}) recorded no retrieval (LoRAHub draws at random; try ilc)")
    return {"run": r["id"], "method": r["method"], "pool": pool, "tasks": tasks, "notes": notes}


# ---------------------------------------------------------------- error taxonomy (method.md, "Audit statistics")

ZERO_WEIGHT = 1e-3  # |w| at or below this counts as "the search kept the weight at 0"
LOSS_TOL = 1e-6  # support losses are stored rounded to 6 decimals

ERROR_RULES: dict[str, str] = {
    "retrieval_miss": "the query's decoding path was weight-searched and the search found nothing that helps: every "
                      f"weight is within {ZERO_WEIGHT:g} of 0, or the path's support loss is no lower than the base model's "
                      "(the loss of the search step whose weights are all 0); SCALE: true for the query's path in every view",
    "composition_failure": "the --baseline run (a linear merge: ilc, or --merger linear) is correct on the query and this "
                           "run (an lasrc merge) is wrong",
    "sparsification_failure": "SCALE with SDP: every view answered wrong while at least one of the same views decoded "
                              "without SDP (the --no-sdp run: scale --sdp 0) answered right",
    "agreement_failure": "SCALE: at least one view's answer was correct but the aggregated answer is wrong",
    "calibration_failure": "SCALE: the lowest-support-loss view's answer was wrong while another view's answer was correct",
    "normalization_failure": "the extractor's answer is correct (extracted_correct = 1) but normalized exact match is "
                             "wrong (correct = 0)",
    "other": "a wrong query in none of the categories above (some categories may be undecided for the run)",
}
ERROR_CATEGORIES = tuple(ERROR_RULES)


def _base_loss(search: dict[str, Any] | None) -> float | None:
    """The base model's support loss: the loss of a search step whose weights are all exactly 0 (step 1, init 0)."""
    for h in (search or {}).get("history") or []:
        w = h.get("weights") or []
        if w and all(float(v) == 0.0 for v in w) and h.get("loss") is not None:
            return float(h["loss"])
    return None


def _searched_nothing(weights: Sequence[float] | None, support_loss: float | None, base_loss: float | None) -> bool:
    if weights and all(abs(float(w)) <= ZERO_WEIGHT for w in weights):
        return True
    return support_loss is not None and base_loss is not None and float(support_loss) >= base_loss - LOSS_TOL


def _scale_view_group(view_plan: PlanSummary, query_id: str) -> list[GroupSummary]:
    """The group(s) of one SCALE view that may have decoded ``query_id``: the routed cluster when the view's retrieval
    routing is stored (``support-J`` for the query's support example J, J its position in the retrieval's ``local``
    lists), else every group of the view."""
    groups = view_plan.groups or []
    ret = view_plan.retrieval or {}  # a retrieve.Retrieval as stored
    sids = [str(x.get("support")) for x in ret.get("local") or []] or [str(s) for s in view_plan.support_ids or []]
    for q in ret.get("queries") or []:
        if str(q.get("id")) == str(query_id) and str(q.get("support")) in sids:
            label = f"support-{sids.index(str(q.get('support')))}"
            hit = [g for g in groups if g.label == label]
            if hit:
                return hit
    return groups


def retrieval_miss(record: QueryRecord | dict[str, Any], plan: TaskPlan | dict[str, Any] | None) -> bool | None:
    """:data:`ERROR_RULES` ``retrieval_miss`` for one record; ``None`` when undecidable (no searched path).

    Args:
        record: a record (typed, or as stored); its ``extra`` is a PathRecord (``path``, ``weights``,
            ``support_loss``) for a method run, a ViewsRecord for a SCALE run.
        plan: the run's plan of the record's task (``summary.plans[task]``: groups with their search history; SCALE:
            per-view plans), typed or as stored, or None.
    """
    rec = as_record(record)
    p = as_plan(plan)
    if rec.views is not None:
        vplans = p.views if isinstance(p, ViewsPlanSummary) else {}
        if not vplans or any(v not in vplans for v in rec.views.views):
            return None
        for v in rec.views.views:
            groups = _scale_view_group(vplans[v], str(rec.query_id))
            if not groups or not all(_searched_nothing(g.weights, g.support_loss, _base_loss(g.search)) for g in groups):
                return False
        return True
    path = rec.path
    if path is None or path.support_loss is None or path.weights is None:
        return None  # zero-shot, --adapters, logo, lmix-sr: no searched path
    group = next((g for g in (p.groups if isinstance(p, PlanSummary) else []) or [] if g.label == path.path), None)
    return _searched_nothing(path.weights, path.support_loss, _base_loss(group.search if group is not None else None))


def _merger_of(run: dict[str, Any]) -> str | None:
    cfg = run.get("config") or {}
    comp = cfg.get("composition") or {}
    if isinstance(comp, dict) and comp.get("merger"):
        return str(comp["merger"])
    from .methods import merger_of

    return merger_of(cfg.get("method_config"))


def run_groups(run: dict[str, Any], task: str | None = None) -> list[GroupSummary]:
    """Every composed group of a run's plans (of one task; SCALE: of every view), typed."""
    out: list[GroupSummary] = []
    for t, p in run_plans(run).items():
        if task is None or t == task:
            for vp in (list(p.views.values()) if isinstance(p, ViewsPlanSummary) else [p]):
                out += list(vp.groups or [])
    return out


def composition_geometry(groups: list[GroupSummary]) -> dict[str, Any] | None:
    """The composition geometry behind some merges: the searched weights' spread (K per cluster, the share left at
    0, mean and largest |w|) and, for LASRC merges, per block the overlap of the weighted updates, alpha, how often
    alpha sat at the floor and how often the norm guard fired."""
    w = np.array([abs(x) for g in groups for x in g.weights], dtype=float)
    if not groups or not w.size:
        return None
    out: dict[str, Any] = {"groups": len(groups), "k": float(np.mean([len(g.weights) for g in groups])),
                           "zero_share": float((w <= ZERO_WEIGHT).mean()), "mean_abs_w": float(w.mean()),
                           "max_abs_w": float(w.max())}
    from .merge.table import resolve_merger

    blocks, floors = [], []
    for g in groups:
        if g.geometry:
            p = resolve_merger(g.merger, g.params).params  # the floor each block's alpha had
            blocks += g.geometry
            floors += [0.0 if p.get("no_floor") else float(p["floor"])] * len(g.geometry)
    if blocks:
        alpha = np.array([float(b["alpha"]) for b in blocks])
        out.update(blocks=len(blocks), overlap=float(np.mean([float(b["overlap"]) for b in blocks])),
                   alpha_median=float(np.median(alpha)), alpha_max=float(alpha.max()),
                   at_floor=float((alpha <= np.array(floors) + 1e-9).mean()),
                   guarded=float(np.mean([bool(b.get("guarded")) for b in blocks])))
    return out


def geometry(reg, run: str) -> dict[str, Any]:
    """The composition geometry of one run, per task and over all of them (:func:`composition_geometry`)."""
    r, note = resolve_run(reg, run)
    require_done([r])
    one = {t: composition_geometry(run_groups(r, t)) for t in run_plans(r)}
    return {"run": r["id"], "method": r["method"], "label": r.get("label"), "all": composition_geometry(run_groups(r)),
            "tasks": {t: g for t, g in one.items() if g}, "notes": [note] if note else []}


def _uses_sdp(run: dict[str, Any]) -> bool:
    for p in run_plans(run).values():
        for vp in (p.views if isinstance(p, ViewsPlanSummary) else {}).values():
            if any(str(g.merger or "").startswith("sdp+") for g in vp.groups or []):
                return True
    return str(_merger_of(run) or "").startswith("sdp+")


def classify_errors(records: Sequence[QueryRecord | dict[str, Any]], plans: dict[str, Any] | None = None,
                    baseline: dict[tuple[str, str], Any] | None = None,
                    no_sdp: dict[tuple[str, str], Any] | None = None) -> list[dict[str, Any]]:
    """The categories of every wrong record (:data:`ERROR_RULES`); pure, no registry.

    Args:
        records: the run's records (:class:`~scalectl.runrecords.QueryRecord`, or as stored).
        plans: the run's task plans (``summary.plans``, typed or as stored; for retrieval misses).
        baseline: the linear-merge baseline's records keyed by (task, query_id) (composition failures), or None.
        no_sdp: the no-SDP SCALE control's records keyed by (task, query_id) (sparsification failures), or None.

    Returns:
        One dict per wrong record: task, query_id, categories (list, "other" when none), and ``undecided`` (the
        categories that could not be decided for it).
    """
    typed_plans = {t: as_plan(p) for t, p in (plans or {}).items()}
    out = []
    for r in map(as_record, records):
        if r.correct:
            continue
        key = (r.task, str(r.query_id))
        vs = r.views.views if r.views is not None and r.views.views else None
        verdict: dict[str, bool | None] = {}
        verdict["retrieval_miss"] = retrieval_miss(r, typed_plans.get(r.task))
        verdict["composition_failure"] = None if baseline is None else bool(as_record(baseline[key]).correct)
        if vs is None or no_sdp is None:
            verdict["sparsification_failure"] = None
        else:
            cv = as_record(no_sdp[key]).views
            ctrl = cv.views if cv is not None else {}
            verdict["sparsification_failure"] = (not any(bool(d.correct) for d in vs.values())
                                                 and any(bool(ctrl[v].correct) for v in vs if v in ctrl))
        if vs is None:
            verdict["agreement_failure"] = verdict["calibration_failure"] = None
        else:
            verdict["agreement_failure"] = any(bool(d.correct) for d in vs.values())
            losses = _views(r).view_losses or {}
            if set(vs) <= set(losses):
                low = _lowest_loss_view({v: float(losses[v]) for v in vs})
                verdict["calibration_failure"] = not vs[low].correct and any(bool(vs[v].correct) for v in vs if v != low)
            else:
                verdict["calibration_failure"] = None
        ec = r.extracted_correct
        verdict["normalization_failure"] = None if ec is None else bool(ec)
        cats = [c for c, v in verdict.items() if v]
        out.append({"task": r.task, "query_id": str(r.query_id), "categories": cats or ["other"],
                    "undecided": [c for c, v in verdict.items() if v is None]})
    return out


def _linear_baseline(reg, baseline: str, r: dict[str, Any], km: dict, is_scale: bool, notes: list[str]
                     ) -> tuple[dict[str, Any], dict[tuple[str, str], QueryRecord]]:
    """The linear-merge run that decides composition failures of the lasrc run ``r``, and its keyed records."""
    b, note = resolve_run(reg, baseline, role="baseline")
    if note:
        notes.append(note)
    require_done([b])
    if _merger_of(b) != "linear":
        raise EvalError(f"the baseline {describe(b)} is not a linear merge (merger {_merger_of(b) or 'none'}); "
                        "composition failures compare with ilc-linear (ilc's weights, merged linearly) or "
                        "`eval --adapters ... --merger linear`")
    if "lasrc" not in str(_merger_of(r) or ""):
        raise EvalError(f"run {describe(r)} does not compose with lasrc (merger {_merger_of(r) or 'none'}); composition "
                        "failures compare an lasrc run with its linear baseline")
    _require_same_backbone(b, [r])
    base_k = keyed(load_records(reg, b["id"]))
    _check_alignment(b, r, base_k, km)
    if is_scale:
        notes.append("the run is SCALE: besides the merge it differs from the linear baseline in views, SDP and aggregation")
    return b, base_k


def _no_sdp_control(reg, no_sdp: str, r: dict[str, Any], recs: list[QueryRecord], km: dict, is_scale: bool,
                    notes: list[str]) -> tuple[dict[str, Any], dict[tuple[str, str], QueryRecord]]:
    """The SCALE run without SDP that decides sparsification failures of the SCALE run ``r``, and its records."""
    c, note = resolve_run(reg, no_sdp, role="no-SDP control")
    if note:
        notes.append(note)
    require_done([c])
    if not is_scale:
        raise EvalError(f"run {describe(r)} has no per-view records; sparsification failures are decided for SCALE runs")
    if not _uses_sdp(r):
        raise EvalError(f"run {describe(r)} composes its views without SDP; nothing to compare with a no-SDP control")
    crecs = load_records(reg, c["id"])
    if not has_views(crecs) or _uses_sdp(c):
        raise EvalError(f"the no-SDP control {describe(c)} must be a SCALE run without SDP (`eval --method scale --sdp 0`)")
    _require_same_backbone(c, [r])
    ctrl_k = keyed(crecs)
    _check_alignment(c, r, ctrl_k, km)
    missing = sorted(set(_views(recs[0]).views) - set(_views(crecs[0]).views))
    if missing:
        raise EvalError(f"the no-SDP control {describe(c)} lacks the view(s) {', '.join(missing)} of run {describe(r)}")
    return c, ctrl_k


def _error_categories(per_q: list[dict[str, Any]], available: dict[str, bool], why: dict[str, str],
                      notes: list[str]) -> list[dict[str, Any]]:
    """Count, share and undecided count per category; a note for each category no record decides."""
    n_wrong, cats = len(per_q), []
    for cat in ERROR_CATEGORIES:
        count = sum(cat in q["categories"] for q in per_q)
        undecided_n = sum(cat in q["undecided"] for q in per_q)
        cats.append({"category": cat, "rule": ERROR_RULES[cat], "decided": available[cat], "count": count,
                     "share": count / n_wrong if n_wrong else 0.0, "undecided": undecided_n})
        if not available[cat]:
            notes.append(f"{cat} undecided: {why[cat]}")
        elif 0 < undecided_n:
            notes.append(f"{cat} undecided for {undecided_n} of {n_wrong} wrong queries (no deciding record)")
    return cats


def _merge_only_note(per_q: list[dict[str, Any]], km: dict, base_k: dict) -> list[str]:
    """A note when composition failures also had other candidates or weights than the baseline."""
    def path(k: tuple[str, str], recs_k: dict[tuple[str, str], QueryRecord]) -> tuple:
        x = recs_k[k].path
        return (x.candidates, x.weights) if x is not None else (None, None)

    diff = sum(1 for q in per_q if "composition_failure" in q["categories"]
               and path((q["task"], q["query_id"]), km) != path((q["task"], q["query_id"]), base_k))
    return [f"{diff} composition failure(s) had other candidates or weights than the baseline: "
            "not a merge-only difference"] if diff else []


def errors(reg, run: str, baseline: str | None = None, no_sdp: str | None = None) -> dict[str, Any]:
    """method.md's error taxonomy over the wrong queries of one run, each category decided by records
    (:data:`ERROR_RULES`, :func:`classify_errors`). A query may be in several categories; "other" holds the rest.

    Args:
        reg: the registry.
        run: the run (id / prefix / method name).
        baseline: a linear-merge run on the same queries (decides composition failures; the run must use lasrc).
        no_sdp: a SCALE run without SDP on the same queries and views (decides sparsification failures; the run
            must be a SCALE run with SDP).

    Returns:
        ``{"run", "method", "label", "n_queries", "n_wrong", "categories": [{category, rule, decided, count, share}],
        "queries": [per wrong query: task, query_id, categories, undecided], "baseline", "no_sdp", "notes"}``; share
        is the fraction of wrong queries.

    Raises:
        EvalError: unknown or unfinished runs, a baseline that is not a linear merge or a run that is not lasrc, a
            no-SDP control that is not one, different backbones or queries.
    """
    r, note = resolve_run(reg, run)
    notes = [note] if note else []
    require_done([r])
    recs = load_records(reg, r["id"])
    if not recs:
        raise EvalError(f"run {describe(r)} has no records")
    km = keyed(recs)
    is_scale = has_views(recs)
    b, base_k = _linear_baseline(reg, baseline, r, km, is_scale, notes) if baseline else (None, None)
    c, ctrl_k = _no_sdp_control(reg, no_sdp, r, recs, km, is_scale, notes) if no_sdp else (None, None)
    plans = run_plans(r)
    per_q = classify_errors(recs, plans, base_k, ctrl_k)
    available = {"retrieval_miss": any(retrieval_miss(x, plans.get(x.task)) is not None for x in recs),
                 "composition_failure": base_k is not None, "sparsification_failure": ctrl_k is not None,
                 "agreement_failure": is_scale, "calibration_failure": is_scale,
                 "normalization_failure": any(x.extracted_correct is not None for x in recs), "other": True}
    why = {"retrieval_miss": "no weight-searched path in the records", "composition_failure": "no --baseline",
           "sparsification_failure": "no --no-sdp control" if is_scale else "not a SCALE run",
           "agreement_failure": "not a SCALE run", "calibration_failure": "not a SCALE run",
           "normalization_failure": "no extractor column"}
    cats = _error_categories(per_q, available, why, notes)
    if base_k is not None and not is_scale:
        notes += _merge_only_note(per_q, km, base_k)
    return {"run": r["id"], "method": r["method"], "label": r.get("label"), "n_queries": len(recs), "n_wrong": len(per_q),
            "categories": cats, "queries": per_q, "baseline": b["id"] if b else None, "no_sdp": c["id"] if c else None,
            "notes": notes}


errors.__doc__ = (errors.__doc__ or "") + "\n    The rules (:data:`ERROR_RULES`):\n\n" + "".join(
    f"    - ``{k}``: {v}.\n" for k, v in ERROR_RULES.items())
classify_errors.__doc__ = (classify_errors.__doc__ or "") + "\n    The rules:\n\n" + "".join(
    f"    - ``{k}``: {v}.\n" for k, v in ERROR_RULES.items())
