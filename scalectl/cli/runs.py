"""``scalectl runs``: list evaluation runs, show one with its per-query records, compare two."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from . import WideOpt

app = typer.Typer(help="Evaluation runs and their per-query records.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("list")
def list_runs(
    method: Annotated[Optional[str], typer.Option("--method", help="Only runs of this method.")] = None,
    status: Annotated[Optional[str], typer.Option("--status", help="running, done or failed.")] = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List the runs in the registry."""
    from .. import report
    from ..registry import Registry

    rows = Registry().runs(method=method, status=status)
    if as_json:
        report.emit_json(rows)
    else:
        report.runs(rows)


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    records: Annotated[bool, typer.Option("--records", help="Also print every query record.")] = False,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Show a run's config, its per-task scores, and optionally its records."""
    from .. import report
    from ..registry import Registry
    from ..runrecords import RunRecord

    reg = Registry()
    row = reg.run(run_id)
    recs = reg.records(row["id"]) if records or as_json else []
    if as_json:  # the registry row and its records as stored
        report.emit_json({**row, "records": recs})
        return
    run = RunRecord.from_row(row)
    s = run.summary
    report.table([{"task": t.task, "n": t.n, "em": f"{100 * t.accuracy:.1f}",
                   "x": f"{100 * t.extracted_accuracy:.1f}"} for t in (s.tasks if s is not None else [])],
                 [report.Col("task", "task", 0, "task"), ("n", "queries"), ("em", "EM %"), report.Col("x", "extractor %", 1)],
                 title=f"{run.method} run {run.id} ({run.status})",
                 caption=f"macro EM {100 * s.macro_accuracy:.1f}%" if s is not None and s.macro_accuracy is not None
                 else run.error)
    if records:
        report.table(recs, [report.Col("task", "task", 0, "task"), report.Col("query_id", "query", 0, "id"),
                            report.Col("prediction", "prediction", 0, "text"), report.Col("reference", "reference", 1, "text"),
                            ("correct", "correct")], title="records")


@app.command("compare")
def compare(
    run_id: Annotated[str, typer.Argument(help="The run to compare.")],
    baseline: Annotated[str, typer.Argument(help="The baseline run (same queries).")],
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Flips of a run against a baseline on the same queries (incorrect-to-correct, correct-to-incorrect)."""
    from .. import report
    from ..audit import compare_runs
    from ..registry import Registry

    reg = Registry()
    res = compare_runs(reg, reg.run(run_id)["id"], reg.run(baseline)["id"])
    if as_json:
        report.emit_json(res)
        return
    rows = [{"task": t, **d, "acc": f"{100 * d['accuracy']:.1f}", "bacc": f"{100 * d['baseline_accuracy']:.1f}"}
            for t, d in res["tasks"].items()]
    report.table(rows, [report.Col("task", "task", 0, "task"), report.Col("n", "queries", 2), ("bacc", "baseline EM %"),
                        ("acc", "EM %"), report.Col("i2c", "incorrect -> correct", 1), report.Col("c2i", "correct -> incorrect", 1),
                        report.Col("unchanged", "unchanged", 3)],
                 title=f"{res['run']} vs {res['baseline']}",
                 caption=f"macro {100 * res['macro_accuracy']:.1f}% vs {100 * res['baseline_macro_accuracy']:.1f}%")
