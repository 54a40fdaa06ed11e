"""``scalectl report --html``: one static, self-contained HTML page of the audit (tables and embedded PNG plots)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

REPORT_CSV = ["run", "method", "label", "task", "accuracy", "n_queries"]


def report_cmd(
    html_out: Annotated[Path, typer.Option("--html", help="Write the page here (atomically): inline CSS, PNGs embedded as data URIs.", dir_okay=False)],
    runs: Annotated[Optional[str], typer.Option("--runs", help="Comma-separated run ids / method names. Default: every done run.")] = None,
    baseline: Annotated[Optional[str], typer.Option("--baseline", "-b", help="Also audit every run against this run (paired statistics); run id or METHOD.")] = None,
    pool: Annotated[Optional[str], typer.Option("--pool", "-p", help="Also show this pool's pairwise compatibility heatmap.")] = None,
    samples: Annotated[int, typer.Option("--samples", help="Sign-flip samples and bootstrap replicates of the paired audit.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the permutation test and the bootstrap.")] = 0,
    top: Annotated[int, typer.Option("--top", help="Most similar adapter pairs listed with --pool.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written (path, sections, numbers) as JSON.")] = False,
    csv_path: Annotated[Optional[Path], typer.Option("--csv", help="Also write the per-run per-task accuracy as CSV (atomically).", dir_okay=False)] = None,
) -> None:
    """Write a static HTML audit report: per-run per-task accuracy, the paired audit vs --baseline, SCALE views and calibration, the --pool compatibility heatmap."""
    from .. import report
    from ..html_report import write_report
    from ..registry import Registry
    from .audit import write_csv

    res = write_report(Registry(), html_out, runs=runs, baseline=baseline, pool=pool, n_samples=samples, seed=seed, top=top)
    if csv_path is not None:
        rows = []
        for r in res["runs"]:
            rows += [{**r, "task": t, "accuracy": a} for t, a in r["tasks"].items()]
            rows.append({**r, "task": "macro", "accuracy": r["macro_accuracy"]})
        write_csv(csv_path, rows, REPORT_CSV)
    if as_json:
        report.emit_json(res)
    else:
        report.table([{"out": res["out"], "kib": f"{res['bytes'] / 1024:.0f}", "runs": len(res["runs"]),
                       "sections": ", ".join(res["sections"])}],
                     [("out", "page"), ("kib", "KiB"), ("runs", "runs"), ("sections", "sections")], title="HTML report")
    for n in res["notes"]:
        report.info(n)
    report.info(f"wrote {res['out']}")
    if csv_path is not None:
        report.info(f"wrote {csv_path}")
