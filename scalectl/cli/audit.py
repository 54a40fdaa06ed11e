"""``scalectl audit``: paired statistics against a baseline, seed spread, replication bundles (method.md, "Audit statistics")."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any, Optional, Sequence

import typer

from . import WideOpt

app = typer.Typer(help="How far to trust a result: paired tests and intervals against a baseline, seed spread, replication bundles.",
                  no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
CsvOpt = Annotated[Optional[Path], typer.Option("--csv", help="Also write the rows as CSV to this path (atomically).", dir_okay=False)]


def write_csv(path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    """``rows`` as CSV at ``path``: written to a temp file beside it, then renamed into place."""
    from ..fsutil import atomic_file

    with atomic_file(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})


def _pct(x: float | None) -> str | None:
    return None if x is None else f"{100 * x:.1f}"


def _pts(x: float | None) -> str | None:
    return None if x is None else f"{100 * x:+.1f}"


def _p(p: float | None) -> str | None:
    return None if p is None else (f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}")


PAIRED_CSV = ["run", "method", "label", "task", "n_queries", "n_tasks", "accuracy", "baseline_accuracy", "delta",
              "i2c", "c2i", "unchanged", "wins", "losses", "ties", "p", "ci_low", "ci_high", "baseline_run"]


@app.command("paired")
def paired_cmd(
    baseline: Annotated[str, typer.Option("--baseline", "-b", help="Baseline run id (or unique prefix), or a METHOD name: its latest done run.")],
    runs: Annotated[Optional[str], typer.Option("--runs", help="Comma-separated run ids / method names. Default: the latest done run of every other method over the same queries.")] = None,
    per_task: Annotated[bool, typer.Option("--per-task", help="Also print a per-task table for every run.")] = False,
    task: Annotated[Optional[list[str]], typer.Option("--task", help="Only this task (repeatable or comma-separated), e.g. bbh/date_understanding.")] = None,
    samples: Annotated[int, typer.Option("--samples", help="Sign-flip samples and bootstrap replicates.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the permutation test and the bootstrap.")] = 0,
    resample: Annotated[str, typer.Option("--resample", help="Bootstrap unit: tasks (with replacement) or queries (within each task).")] = "tasks",
    pool: Annotated[Optional[str], typer.Option("--pool", "-p", envvar="SCALECTL_POOL", help="Only runs on this pool (zero-shot runs use none and always qualify).")] = None,
    as_json: JsonOpt = False,
    csv_path: CsvOpt = None,
    wide: WideOpt = False,
) -> None:
    """Paired comparison against a baseline: macro accuracy, delta, flips, W/L/T, permutation p and bootstrap 95% CI."""
    from .. import report
    from ..audit import paired
    from ..registry import Registry

    res = paired(Registry(), runs, baseline, per_task=per_task, n_samples=samples, seed=seed, resample=resample, tasks=task,
                 pool=pool)
    if csv_path is not None:
        rows = []
        for r in res["results"]:
            rows.append({**r, "task": "macro", "accuracy": r["macro_accuracy"], "baseline_accuracy": r["baseline_macro_accuracy"],
                         "baseline_run": res["baseline"]["run"]})
            for t in r.get("tasks", []):
                rows.append({**t, "run": r["run"], "method": r["method"], "label": r["label"], "n_tasks": 1,
                             "baseline_run": res["baseline"]["run"]})
        write_csv(csv_path, rows, PAIRED_CSV)
    if as_json:
        report.emit_json(res)
    else:
        b = res["baseline"]
        table = [{"method": f"{b['configuration']} (baseline)", "run": b["run"], "label": b["label"], "macro": _pct(b["macro_accuracy"])}]
        for r in res["results"]:
            table.append({"method": r["configuration"], "run": r["run"], "label": r["label"], "macro": _pct(r["macro_accuracy"]),
                          "delta": _pts(r["delta"]), "flips": f"+{r['i2c']}/-{r['c2i']}/={r['unchanged']}",
                          "wlt": f"{r['wins']}/{r['losses']}/{r['ties']}", "p": _p(r["p"]),
                          "ci": f"[{_pts(r['ci_low'])}, {_pts(r['ci_high'])}]"})
        n_q = res["results"][0]["n_queries"]
        unit = "tasks with replacement" if res["resample"] == "tasks" else "queries within each task"
        report.table(table, [report.Col("method", "method", 0, "text", min_width=10), report.Col("run", "run", 0, "id"),
                             report.Col("label", "label", 4, "id", min_width=12), report.Col("macro", "macro EM %"),
                             report.Col("delta", "delta (points)"), report.Col("flips", "flips +i2c/-c2i/=same", 3), report.Col("wlt", "W/L/T", 5),
                             report.Col("p", "p", 2), report.Col("ci", f"{100 * res['level']:.0f}% CI (points)", 1)],
                     title=f"paired audit vs {b['method']} run {b['run']}",
                     caption=f"{len(res['tasks'])} tasks, {n_q} queries; p: two-sided paired sign-flip permutation test "
                             f"({res['n_samples']} samples, seed {res['seed']}, uncorrected); CI: percentile bootstrap of the "
                             f"macro difference resampling {unit}")
        for r in res["results"] if per_task else []:
            report.table([{**t, "acc": _pct(t["accuracy"]), "bacc": _pct(t["baseline_accuracy"]), "delta": _pts(t["delta"]),
                           "flips": f"+{t['i2c']}/-{t['c2i']}/={t['unchanged']}", "p": _p(t["p"])} for t in r["tasks"]],
                         [report.Col("task", "task", 0, "task"), report.Col("n_queries", "queries", 3), report.Col("bacc", "baseline EM %"),
                          report.Col("acc", "EM %"), report.Col("delta", "delta (points)"), report.Col("flips", "flips +i2c/-c2i/=same", 2),
                          report.Col("p", "p", 1)],
                         title=f"{r['method']} run {r['run']} per task")
    for n in res["notes"]:
        report.info(n)
    if csv_path is not None:
        report.info(f"wrote {csv_path}")


SEEDS_CSV = ["run", "label", "seed", "seed_key", "macro_accuracy", "n_queries", "n_tasks", "created"]


@app.command("seeds")
def seeds_cmd(
    method: Annotated[str, typer.Option("--method", "-m", help="The method whose seed sweep to summarize (its default settings), or METHOD[key=value,...] for a variant, e.g. scale[sdp_rate=0].")],
    label: Annotated[Optional[str], typer.Option("--label", help="Only runs with this label.")] = None,
    as_json: JsonOpt = False,
    csv_path: CsvOpt = None,
    wide: WideOpt = False,
) -> None:
    """Seed spread: macro accuracy of every done run of a method, with mean, std, min and max."""
    from .. import report
    from ..audit import seeds
    from ..registry import Registry

    res = seeds(Registry(), method, label=label)
    s = res["summary"]
    if csv_path is not None:
        summary_row = {"run": "summary", "label": f"n={s['n']} mean={s['mean']} std={s['std']} min={s['min']} max={s['max']}"}
        write_csv(csv_path, res["runs"] + [summary_row], SEEDS_CSV)
    if as_json:
        report.emit_json(res)
    else:
        rows = [{**r, "macro": _pct(r["macro_accuracy"])} for r in res["runs"]]
        std = "-" if s["std"] is None else f"{100 * s['std']:.1f}"
        rows.append({"run": f"all {s['n']} runs", "seed": "-",
                     "macro": f"{_pct(s['mean'])} ± {std} [{_pct(s['min'])}, {_pct(s['max'])}]"})
        report.table(rows, [report.Col("run", "run", 0, "id"), report.Col("label", "label", 2, "id", min_width=12),
                            report.Col("seed", "seed (" + (res["runs"][0]["seed_key"] if res["runs"] else "seed") + ")", 1), report.Col("macro", "macro EM %"), report.Col("n_queries", "queries", 3),
                            report.Col("created", "created", 4, "id")],
                     title=f"{method}: macro accuracy across seeds", caption="summary: mean ± std (sample, ddof=1) [min, max]")
    for n in res["notes"]:
        report.warn(n)
    if csv_path is not None:
        report.info(f"wrote {csv_path}")


EXPORT_CSV = ["run", "method", "label", "status", "n_records"]


@app.command("import")
def import_cmd(
    bundle: Annotated[Path, typer.Argument(help="A bundle directory written by `scalectl audit export`.", file_okay=False)],
    as_json: JsonOpt = False,
) -> None:
    """Add a bundle's runs and records to the registry (runs already there are kept): audit them here, or resume a
    results sweep (`scalectl report --markdown`) from a committed bundle."""
    from .. import report
    from ..bundle import load_into, read
    from ..registry import Registry

    b = read(bundle)
    res = {"bundle": str(bundle), "runs": len(b.runs), **load_into(Registry(), b)}
    if as_json:
        report.emit_json(res)
    else:
        report.info(f"{bundle}: {res['imported']} run(s) imported, {res['kept']} already in the registry")


@app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="The bundle directory (records.jsonl.gz, runs.json.gz).", file_okay=False)],
    runs: Annotated[Optional[str], typer.Option("--runs", help="Comma-separated run ids / method names. Default: every done run.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing non-empty --out.")] = False,
    as_json: JsonOpt = False,
    csv_path: CsvOpt = None,
    wide: WideOpt = False,
) -> None:
    """Write a replication bundle: every record of the runs (records.jsonl.gz) and their configs and summaries (runs.json.gz)."""
    from .. import report
    from ..audit import split_specs
    from ..bundle import export, select_runs
    from ..registry import Registry

    reg = Registry()
    res = export(reg, select_runs(reg, split_specs(runs)), out, force=force)
    if csv_path is not None:
        write_csv(csv_path, res["runs"], EXPORT_CSV)
    if as_json:
        report.emit_json(res)
    else:
        report.table(res["runs"], [report.Col("run", "run", 0, "id"), report.Col("method", "method", 0, "id"),
                                   report.Col("label", "label", 2, "id", min_width=12), report.Col("status", "status", 1),
                                   report.Col("n_records", "records", 1)],
                     title=f"exported {len(res['runs'])} runs to {res['out']}",
                     caption=f"{res['n_records']} records, their sha256 {res['records_sha256'][:16]}...")
    if csv_path is not None:
        report.info(f"wrote {csv_path}")


def _png_opt(what: str):
    return typer.Option("--png", help=f"Also draw {what} as a PNG at this path (atomically).", dir_okay=False)


def _wrote(path: Path | None) -> None:
    if path is not None:
        from .. import report

        report.info(f"wrote {path}")


# ---------------------------------------------------------------- views


def _fmt_views(row: dict[str, Any], names: list[str]) -> dict[str, Any]:
    out = dict(row)
    for k in ["support", "uniform", "best_view", "oracle", "any_view_correct"] + [f"view:{v}" for v in names]:
        out[k] = _pct(row.get(k))
    out["headroom"] = _pts(row.get("headroom"))
    return out


@app.command("views")
def views_cmd(
    run: Annotated[str, typer.Option("--run", "-r", help="SCALE run id (or prefix), a derived scale-* run (its parent is used), or the method name scale (its latest done run).")] = "scale",
    as_json: JsonOpt = False,
    csv_path: CsvOpt = None,
    wide: WideOpt = False,
) -> None:
    """SCALE per task and macro: each single view, support / uniform / best-view aggregation, the oracle (uses labels), any view correct, oracle headroom, path cost."""
    from .. import report
    from ..audit import views, views_caption, views_columns, views_rows
    from ..registry import Registry

    res = views(Registry(), run)
    rows = views_rows(res)
    cols = views_columns(res)
    if csv_path is not None:
        write_csv(csv_path, rows, [k for k, _ in cols] + ["lowest_loss_view"])
    if as_json:
        report.emit_json(res)
    else:
        report.table([_fmt_views(r, res["views"]) for r in rows], [_views_col(report, k, h) for k, h in cols],
                     title=f"SCALE views: run {res['run']}" + (f" ({res['label']})" if res.get("label") else ""),
                     caption=views_caption(res))
    for n in res["notes"]:
        report.info(n)
    _wrote(csv_path)


# what each `audit views` column gives up at 80 columns: key -> (priority, kind); the per-view columns go first
VIEWS_COLS = {"task": (0, "task"), "n": (3, ""), "support": (0, ""), "uniform": (1, ""), "best_view": (1, ""),
              "oracle": (2, ""), "any_view_correct": (3, ""), "headroom": (2, ""), "oracle_view": (4, "id")}
VIEW_COL = (5, "")


def _views_col(report, key: str, header: str):
    return report.Col(key, header, *VIEWS_COLS.get(key, VIEW_COL))


# ---------------------------------------------------------------- ablations

ABLATIONS_CSV = ["run", "method", "label", "no_norm_rescale", "no_pruning", "fixed_alpha", "no_floor", "no_guard",
                 "macro_accuracy", "delta", "reference", "i2c", "c2i", "n_queries", "n_tasks"]


@app.command("ablations")
def ablations_cmd(
    runs: Annotated[Optional[str], typer.Option("--runs", help="Comma-separated run ids / method names. Default: every done run with an lasrc merger (derived scale-* runs left out).")] = None,
    as_json: JsonOpt = False,
    csv_path: CsvOpt = None,
    wide: WideOpt = False,
) -> None:
    """LASRC ablations side by side: one column per switch, macro accuracy, and the delta vs the run with no switch on the same queries."""
    from .. import report
    from ..audit import ABLATION_SWITCHES, ablations
    from ..registry import Registry

    res = ablations(Registry(), runs)
    flat = [{**{k: v for k, v in r.items() if k not in ("switches", "on")}, **r["switches"]} for r in res["runs"]]
    if csv_path is not None:
        write_csv(csv_path, flat, ABLATIONS_CSV)
    if as_json:
        report.emit_json(res)
    else:
        rows = []
        for r in flat:
            row = {**r, **{s: ("on" if r[s] else "") for s in ABLATION_SWITCHES}, "macro": _pct(r["macro_accuracy"]),
                   "delta": "reference" if r["reference"] == r["run"] else _pts(r["delta"]),
                   "flips": None if r["i2c"] is None or r["reference"] == r["run"] else f"+{r['i2c']}/-{r['c2i']}",
                   "vs": None if r["reference"] == r["run"] else r["reference"],
                   "switches_on": ", ".join(s for s in ABLATION_SWITCHES if r[s]) or "none"}
            rows.append(row)
        labels = [report.Col("label", "label", 3, "id", min_width=12)] if any(r["label"] for r in flat) else []
        # at 80 columns one "switches on" column stands for the five per-switch columns (--wide shows them)
        report.table(rows, [report.Col("run", "run", 0, "id"), report.Col("method", "method", 1, "id")] + labels
                     + [report.Col("switches_on", "switches on", 0, "text", min_width=15)]
                     + [report.Col(s, s, 6) for s in ABLATION_SWITCHES]
                     + [report.Col("macro", "macro EM %"), report.Col("delta", "delta (points)"),
                        report.Col("flips", "flips +i2c/-c2i", 2), report.Col("vs", "vs run", 4, "id"),
                        report.Col("n_queries", "queries", 5)],
                     title="LASRC ablations",
                     caption="delta: macro EM minus the latest done run with every switch off in the same family (method, "
                             "adapters and weights or method config, other LASRC parameters) on the same queries")
    for n in res["notes"]:
        report.info(n)
    _wrote(csv_path)


# ---------------------------------------------------------------- calibration

CALIBRATION_CSV = ["section", "task", "view", "support_loss", "accuracy", "n", "threshold", "covered", "coverage", "risk"]


@app.command("calibration")
def calibration_cmd(
    run: Annotated[str, typer.Option("--run", "-r", help="SCALE run id (or prefix), a derived scale-* run (its own agreement scores), or the method name scale.")] = "scale",
    png: Annotated[Optional[Path], _png_opt("the loss-accuracy scatter and the coverage-risk curve")] = None,
    as_json: JsonOpt = False,
    csv_path: CsvOpt = None,
    wide: WideOpt = False,
) -> None:
    """Calibration of SCALE: correlation of each (task, view) support loss with that view's query accuracy (Pearson, Spearman), and the coverage-risk curve with the agreement score as confidence."""
    from .. import report
    from ..audit import calibration, calibration_caption
    from ..registry import Registry

    res = calibration(Registry(), run)
    cr = res["coverage_risk"]
    if csv_path is not None:
        write_csv(csv_path, [{"section": "loss-accuracy", **p} for p in res["points"]]
                  + [{"section": "coverage-risk", **p} for p in cr["points"]], CALIBRATION_CSV)
    if png is not None:
        from ..plots import calibration_png

        calibration_png(res["points"], cr, png, title=f"{res['method']} run {res['run']}")
    if as_json:
        report.emit_json(res)
    else:
        report.table([{**p, "acc": _pct(p["accuracy"]), "loss": f"{p['support_loss']:.4f}"} for p in res["points"]],
                     [report.Col("task", "task", 0, "task"), report.Col("view", "view", 0, "id"), ("loss", "support loss"),
                      ("acc", "query EM %"), report.Col("n", "queries", 1)],
                     title=f"support loss vs view accuracy: {res['method']} run {res['run']}", caption=calibration_caption(res))
        report.table([{**p, "th": f"{p['threshold']:.4f}", "cov": _pct(p["coverage"]), "risk_": _pct(p["risk"])} for p in cr["points"]],
                     [("th", "agreement >="), ("covered", "answered"), ("cov", "coverage %"), ("risk_", "risk %")],
                     title="coverage-risk (confidence = agreement score)",
                     caption=f"{cr['n']} queries; AURC {100 * cr['aurc']:.2f}; risk at full coverage {100 * cr['full_risk']:.1f}%")
    for n in res["notes"]:
        report.info(n)
    _wrote(csv_path)
    _wrote(png)


# ---------------------------------------------------------------- compat

COMPAT_CSV = ["rank", "a", "b", "rms_cosine", "mean_cosine"]


@app.command("compat")
def compat_cmd(
    pool: Annotated[str, typer.Option("--pool", "-p", envvar="SCALECTL_POOL", help="Pool whose adapters to compare.")] = "default",
    top: Annotated[int, typer.Option("--top", help="Print the N most similar pairs.")] = 20,
    families: Annotated[bool, typer.Option("--families", help="Order by the adapters' family tags (kind:, skill:, template:, seed:) and summarize the cosines per relation: seed repeats, other templates, mixtures and their parts, unrelated skills.")] = False,
    png: Annotated[Optional[Path], _png_opt("the K x K RMS cosine heatmap")] = None,
    as_json: JsonOpt = False,
    csv_path: CsvOpt = None,
    wide: WideOpt = False,
) -> None:
    """Pairwise compatibility of a pool: RMS cosine of the adapters' updates over their common modules (most similar pairs first), and a heatmap."""
    from .. import report
    from ..audit import compat
    from ..registry import Registry

    res = compat(Registry(), pool, top=top, families=families)
    if csv_path is not None:
        write_csv(csv_path, res["pairs"], COMPAT_CSV)
    if png is not None:
        from ..plots import heatmap_png

        heatmap_png(res["names"], res["rms_cosine"], png, title=f"pool {pool}: pairwise RMS cosine ({len(res['names'])} adapters)")
    if as_json:
        report.emit_json(res)
    else:
        report.table([{**p, "rms": f"{p['rms_cosine']:.4f}", "mean": f"{p['mean_cosine']:+.4f}"} for p in res["pairs"]],
                     [("rank", "#"), report.Col("a", "adapter", 0, "id", min_width=24), report.Col("b", "adapter", 0, "id", min_width=24),
                      ("rms", "RMS cosine"), report.Col("mean", "mean cosine", 1)],
                     title=f"pool {pool}: most similar pairs ({len(res['pairs'])} of {res['n_pairs']})",
                     caption=f"over {res['modules']} common modules; RMS cosine near 1: the updates repeat or oppose each other "
                             "(naive summation over-counts or cancels), near 0: independent directions")
        if families:
            report.table([{**r, "mean_": f"{r['mean']:.4f}", "median_": f"{r['median']:.4f}", "max_": f"{r['max']:.4f}"}
                          for r in res["families"]["relations"]],
                         [report.Col("relation", "relation", 0, "id"), report.Col("pairs", "pairs", 1), ("mean_", "mean RMS"),
                          ("median_", "median"), report.Col("max_", "max", 1)],
                         title=f"pool {pool}: RMS cosine by family relation",
                         caption="adapters ordered by family in the heatmap; relations from the kind:/skill:/template:/seed: tags")
    for n in res["notes"]:
        report.info(n)
    _wrote(csv_path)
    _wrote(png)


# ---------------------------------------------------------------- retrieval families

RETRIEVAL_CSV = ["task", "view", "list", "n", "distractors", "skill", "template", "mixture", "families"]


def _top_families(c: dict, n: int = 4) -> str:
    return ", ".join(f"{f} x{k}" for f, k in c["families"][:n]) + (" ..." if len(c["families"]) > n else "")


def _retrieval_rows(res: dict) -> list[dict]:
    rows = []
    for task, entries in res["tasks"].items():
        for e in entries:
            lists = [("global", e["global"])] + [(f"local {i}", c) for i, c in enumerate(e["local"])]
            for label, c in lists:
                rows.append({"task": task.split("/")[-1], "view": e["view"] or "-", "list": label, "n": c["n"],
                             "distractors": c["distractors"], **{k: c["kinds"].get(k, 0) for k in
                                                                 ("skill", "template", "mixture")},
                             "families": _top_families(c, 99)})
    return rows


@app.command("retrieval")
def retrieval_cmd(
    run: Annotated[str, typer.Option("--run", "-r", help="A run id (or prefix), label, method name or METHOD[key=value].")] = "ilc",
    as_json: JsonOpt = False,
    csv_path: CsvOpt = None,
    wide: WideOpt = False,
) -> None:
    """Which adapter families a run's retrieval brought, per task (and SCALE view): the global list and each support example's local list, by the adapters' family tags (kind:, skill:); how many are distractors."""
    from .. import report
    from ..audit import retrieval_families
    from ..registry import Registry

    res = retrieval_families(Registry(), run)
    if csv_path is not None:
        write_csv(csv_path, _retrieval_rows(res), RETRIEVAL_CSV)
    if as_json:
        report.emit_json(res)
    else:
        rows = []
        for task, entries in res["tasks"].items():
            for e in entries:
                g = e["global"]
                locs = e["local"]
                rows.append({"task": task.split("/")[-1], "view": e["view"] or "-", "g": f"{g['distractors']}/{g['n']}",
                             "gf": _top_families(g, 3),
                             "l": "-" if e["local_distractors_mean"] is None else
                                  f"{e['local_distractors_mean']:.1f}/{locs[0]['n'] if locs else 0}",
                             "lf": _top_families(locs[0], 3) if locs else "-"})
        report.table(rows, [report.Col("task", "task", 0, "task"), report.Col("view", "view", 1, "id"),
                            ("g", "global distractors"), report.Col("gf", "global: top families", 0),
                            ("l", "local distractors (mean)"), report.Col("lf", "local 0: top families", 2)],
                     title=f"retrieval by family: {res['method']} run {res['run']} (pool {res['pool']})",
                     caption="families from the kind:/skill: tags; a mixture's family is its skills joined with +; "
                             "--csv lists every list's families")
    for n in res["notes"]:
        report.info(n)
    _wrote(csv_path)


# ---------------------------------------------------------------- geometry

GEOMETRY_CSV = ["task", "groups", "k", "zero_share", "mean_abs_w", "max_abs_w", "blocks", "overlap", "alpha_median",
                "alpha_max", "at_floor", "guarded"]


@app.command("geometry")
def geometry_cmd(
    run: Annotated[str, typer.Option("--run", "-r", help="A run id (or prefix), label, method name or METHOD[key=value].")] = "lasrc",
    as_json: JsonOpt = False,
    csv_path: CsvOpt = None,
    wide: WideOpt = False,
) -> None:
    """The composition geometry behind a run's merges, per task: the searched weights' spread and, for LASRC, each block's overlap, alpha, floor and guard. Why LASRC did or did not move away from its linear anchor."""
    from .. import report
    from ..audit import geometry
    from ..registry import Registry

    res = geometry(Registry(), run)
    rows = [{"task": t.split("/")[-1], **g} for t, g in res["tasks"].items()]
    if res["all"]:
        rows.append({"task": "all", **res["all"]})
    if csv_path is not None:
        write_csv(csv_path, rows, GEOMETRY_CSV)
    if as_json:
        report.emit_json(res)
    else:
        fmt = lambda r, k, f: f.format(r[k]) if r.get(k) is not None else "-"  # noqa: E731
        report.table([{"task": r["task"], "groups": r["groups"], "k": fmt(r, "k", "{:.1f}"),
                       "zero": fmt(r, "zero_share", "{:.0%}"), "w": fmt(r, "mean_abs_w", "{:.2f}"),
                       "overlap": fmt(r, "overlap", "{:.3f}"), "alpha": fmt(r, "alpha_median", "{:.3f}"),
                       "floor": fmt(r, "at_floor", "{:.0%}"), "guard": fmt(r, "guarded", "{:.0%}")} for r in rows],
                     [report.Col("task", "task", 0, "task"), report.Col("groups", "clusters", 2), ("k", "K"),
                      ("zero", "w = 0"), report.Col("w", "mean |w|", 1), ("overlap", "overlap"),
                      ("alpha", "alpha median"), report.Col("floor", "alpha at floor", 1), report.Col("guard", "guard", 2)],
                     title=f"{res['method']}: composition geometry (run {res['run']})",
                     caption="overlap 0: the weighted updates are mutually orthogonal; alpha 0 is the linear anchor")
    for n in res["notes"]:
        report.info(n)
    _wrote(csv_path)


# ---------------------------------------------------------------- errors

ERRORS_CSV = ["category", "decided", "count", "share", "undecided", "rule"]


@app.command("errors")
def errors_cmd(
    run: Annotated[str, typer.Option("--run", "-r", help="Run id (or prefix) or method name (its latest done run).")],
    baseline: Annotated[Optional[str], typer.Option("--baseline", "-b", help="A linear-merge run (ilc, or --merger linear) on the same queries: decides composition failures of an lasrc run.")] = None,
    no_sdp: Annotated[Optional[str], typer.Option("--no-sdp", help="A SCALE run without SDP (eval --method scale --sdp 0) on the same queries and views: decides sparsification failures.")] = None,
    as_json: JsonOpt = False,
    csv_path: CsvOpt = None,
    wide: WideOpt = False,
) -> None:
    """Error taxonomy of the run's wrong queries (method.md); a query may be in several categories.

    Each category is decided by records (scalectl.audit.ERROR_RULES):

    - retrieval_miss: the query's decoding path was weight-searched and the search found nothing that helps: every
      weight is within 0.001 of 0, or the path's support loss is no lower than the base model's (the loss of the search
      step whose weights are all 0); SCALE: true for the query's path in every view.

    - composition_failure: the --baseline run (a linear merge: ilc, or --merger linear) is correct on the query and this
      run (an lasrc merge) is wrong.

    - sparsification_failure: SCALE with SDP: every view answered wrong while at least one of the same views decoded
      without SDP (the --no-sdp run: scale --sdp 0) answered right.

    - agreement_failure: SCALE: at least one view's answer was correct but the aggregated answer is wrong.

    - calibration_failure: SCALE: the lowest-support-loss view's answer was wrong while another view's answer was
      correct.

    - normalization_failure: the extractor's answer is correct (extracted_correct = 1) but normalized exact match is
      wrong (correct = 0).

    - other: a wrong query in none of the categories above (some categories may be undecided for the run).
    """
    from .. import report
    from ..audit import errors
    from ..registry import Registry

    res = errors(Registry(), run, baseline=baseline, no_sdp=no_sdp)
    if csv_path is not None:
        write_csv(csv_path, res["categories"], ERRORS_CSV)
    if as_json:
        report.emit_json(res)
    else:
        rows = [{**c, "count_": c["count"] if c["decided"] else "undecided", "share_": _pct(c["share"]) if c["decided"] else None}
                for c in res["categories"]]
        report.table(rows, [report.Col("category", "category", 0, "id"), ("count_", "wrong queries"), ("share_", "% of wrong")],
                     title=f"error taxonomy: {res['method']} run {res['run']}",
                     caption=f"{res['n_wrong']} wrong of {res['n_queries']} queries; a query may be in several categories; "
                             "the rules: scalectl audit errors --help"
                             + (f"; baseline {res['baseline']}" if res["baseline"] else "")
                             + (f"; no-SDP control {res['no_sdp']}" if res["no_sdp"] else ""))
    for n in res["notes"]:
        report.info(n)
    _wrote(csv_path)

