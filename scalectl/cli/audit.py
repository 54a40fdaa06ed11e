"""``scalectl audit``: paired statistics against a baseline, seed spread, replication bundles (method.md, "Audit statistics")."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional, Sequence

import typer

app = typer.Typer(help="How far to trust a result: paired tests and intervals against a baseline, seed spread, replication bundles.",
                  no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
CsvOpt = Annotated[Optional[Path], typer.Option("--csv", help="Also write the rows as CSV to this path (atomically).", dir_okay=False)]


def write_csv(path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    """``rows`` as CSV at ``path``: written to a temp file beside it, then renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    as_json: JsonOpt = False,
    csv_path: CsvOpt = None,
) -> None:
    """Paired comparison against a baseline: macro accuracy, delta, flips, W/L/T, permutation p and bootstrap 95% CI."""
    from .. import report
    from ..audit import paired
    from ..registry import Registry

    res = paired(Registry(), runs, baseline, per_task=per_task, n_samples=samples, seed=seed, resample=resample, tasks=task)
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
        table = [{"method": f"{b['method']} (baseline)", "run": b["run"], "label": b["label"], "macro": _pct(b["macro_accuracy"])}]
        for r in res["results"]:
            table.append({"method": r["method"], "run": r["run"], "label": r["label"], "macro": _pct(r["macro_accuracy"]),
                          "delta": _pts(r["delta"]), "flips": f"+{r['i2c']}/-{r['c2i']}/={r['unchanged']}",
                          "wlt": f"{r['wins']}/{r['losses']}/{r['ties']}", "p": _p(r["p"]),
                          "ci": f"[{_pts(r['ci_low'])}, {_pts(r['ci_high'])}]"})
        n_q = res["results"][0]["n_queries"]
        unit = "tasks with replacement" if res["resample"] == "tasks" else "queries within each task"
        report.table(table, [("method", "method"), ("run", "run"), ("label", "label"), ("macro", "macro EM %"),
                             ("delta", "delta (points)"), ("flips", "flips +i2c/-c2i/=same"), ("wlt", "W/L/T"), ("p", "p"),
                             ("ci", f"{100 * res['level']:.0f}% CI (points)")],
                     title=f"paired audit vs {b['method']} run {b['run']}",
                     caption=f"{len(res['tasks'])} tasks, {n_q} queries; p: two-sided paired sign-flip permutation test "
                             f"({res['n_samples']} samples, seed {res['seed']}, uncorrected); CI: percentile bootstrap of the "
                             f"macro difference resampling {unit}")
        for r in res["results"] if per_task else []:
            report.table([{**t, "acc": _pct(t["accuracy"]), "bacc": _pct(t["baseline_accuracy"]), "delta": _pts(t["delta"]),
                           "flips": f"+{t['i2c']}/-{t['c2i']}/={t['unchanged']}", "p": _p(t["p"])} for t in r["tasks"]],
                         [("task", "task"), ("n_queries", "queries"), ("bacc", "baseline EM %"), ("acc", "EM %"),
                          ("delta", "delta (points)"), ("flips", "flips +i2c/-c2i/=same"), ("p", "p")],
                         title=f"{r['method']} run {r['run']} per task")
    for n in res["notes"]:
        report.info(n)
    if csv_path is not None:
        report.info(f"wrote {csv_path}")


SEEDS_CSV = ["run", "label", "seed", "macro_accuracy", "n_queries", "n_tasks", "created"]


@app.command("seeds")
def seeds_cmd(
    method: Annotated[str, typer.Option("--method", "-m", help="The method whose done runs to summarize.")],
    label: Annotated[Optional[str], typer.Option("--label", help="Only runs with this label.")] = None,
    as_json: JsonOpt = False,
    csv_path: CsvOpt = None,
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
        report.table(rows, [("run", "run"), ("label", "label"), ("seed", "seed"), ("macro", "macro EM %"),
                            ("n_queries", "queries"), ("created", "created")],
                     title=f"{method}: macro accuracy across seeds", caption="summary: mean ± std (sample, ddof=1) [min, max]")
    for n in res["notes"]:
        report.warn(n)
    if csv_path is not None:
        report.info(f"wrote {csv_path}")


EXPORT_CSV = ["run", "method", "label", "status", "n_records"]


@app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="The bundle directory (records.jsonl, runs.json).", file_okay=False)],
    runs: Annotated[Optional[str], typer.Option("--runs", help="Comma-separated run ids / method names. Default: every done run.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing non-empty --out.")] = False,
    as_json: JsonOpt = False,
    csv_path: CsvOpt = None,
) -> None:
    """Write a replication bundle: every record of the runs (records.jsonl) and their configs and summaries (runs.json)."""
    from .. import report
    from ..audit import export
    from ..registry import Registry

    res = export(Registry(), runs, out, force=force)
    if csv_path is not None:
        write_csv(csv_path, res["runs"], EXPORT_CSV)
    if as_json:
        report.emit_json(res)
    else:
        report.table(res["runs"], [("run", "run"), ("method", "method"), ("label", "label"), ("status", "status"),
                                   ("n_records", "records")],
                     title=f"exported {len(res['runs'])} runs to {res['out']}",
                     caption=f"{res['n_records']} records, records.jsonl sha256 {res['records_sha256'][:16]}...")
    if csv_path is not None:
        report.info(f"wrote {csv_path}")
