"""``scalectl report --html``: one static, self-contained HTML page of the audit (tables and embedded PNG plots).

``scalectl report --markdown docs/results.md``: the results page (:mod:`scalectl.results`): runs every missing
(row, task) of the paper's tables on the pool, then writes the tables from the query records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

REPORT_CSV = ["run", "method", "label", "task", "accuracy", "n_queries"]


def report_cmd(
    html_out: Annotated[Optional[Path], typer.Option("--html", help="Write the page here (atomically): inline CSS, PNGs embedded as data URIs.", dir_okay=False)] = None,
    markdown_out: Annotated[Optional[Path], typer.Option("--markdown", help="Write the results page here (e.g. docs/results.md): the paper's tables on --pool, running missing runs first.", dir_okay=False)] = None,
    tasks: Annotated[str, typer.Option("--tasks", "-t", help="--markdown: BBH tasks (a suite, bbh/TASK, or a comma list).")] = "bbh",
    limit: Annotated[Optional[int], typer.Option("--limit", help="--markdown: the first N queries of each task.")] = None,
    rows: Annotated[Optional[str], typer.Option("--rows", help="--markdown: run only these rows (comma list); the page shows whatever has finished and names what is missing.")] = None,
    no_run: Annotated[bool, typer.Option("--no-run", help="--markdown: only render from finished runs (a partial page names what is missing); run nothing.")] = False,
    from_bundle: Annotated[Optional[Path], typer.Option("--from", help="--markdown: render from this bundle (scalectl audit export) alone, with no registry; runs nothing.", file_okay=False)] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", help="--markdown: fan the missing runs out over Ray: an ADDRESS, or 'local' for a local Ray instance.")] = None,
    ray_workers: Annotated[Optional[int], typer.Option("--ray-workers", help="CPUs (workers) of a local Ray instance (default: all cores).")] = None,
    bbh_dir: Annotated[Optional[str], typer.Option("--bbh-dir", envvar="SCALECTL_BBH_DIR", help="Directory of BBH <task>.json files.")] = None,
    base: Annotated[Optional[str], typer.Option("--base", envvar="SCALECTL_BASE", help="Base model: smollm2-135m (embedded), a model dir, a hub id, or hf:ORG/NAME for the hub itself (default: the pool's base, else smollm2-135m).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, ... (default: cuda when present).")] = None,
    runs: Annotated[Optional[str], typer.Option("--runs", help="Comma-separated run ids / method names. Default: every done run.")] = None,
    baseline: Annotated[Optional[str], typer.Option("--baseline", "-b", help="Also audit every run against this run (paired statistics); run id or METHOD.")] = None,
    pool: Annotated[Optional[str], typer.Option("--pool", "-p", help="--html: also show this pool's compatibility heatmap. --markdown: the pool (default smollm2-skills).")] = None,
    samples: Annotated[int, typer.Option("--samples", help="Sign-flip samples and bootstrap replicates of the paired audit.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the permutation test and the bootstrap.")] = 0,
    top: Annotated[int, typer.Option("--top", help="Most similar adapter pairs listed with --pool.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written (path, sections, numbers) as JSON.")] = False,
    csv_path: Annotated[Optional[Path], typer.Option("--csv", help="Also write the per-run per-task accuracy as CSV (atomically).", dir_okay=False)] = None,
) -> None:
    """Write a static HTML audit report (--html), or the results page with the paper's tables (--markdown)."""
    from .. import report
    from ..errors import ScalectlError

    if (html_out is None) == (markdown_out is None):
        raise ScalectlError("give one of --html PAGE or --markdown PAGE")
    if markdown_out is not None:
        if from_bundle is not None:
            _markdown_from(markdown_out, from_bundle, tasks, limit, pool or "smollm2-skills", bbh_dir, as_json)
        else:
            _markdown(markdown_out, tasks, limit, pool or "smollm2-skills", rows, no_run, ray, ray_workers, bbh_dir, base,
                      device, as_json)
        return
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
                     [report.Col("out", "page", 0, "text"), ("kib", "KiB"), ("runs", "runs"),
                      report.Col("sections", "sections", 0, "text")], title="HTML report")
    for n in res["notes"]:
        report.info(n)
    report.info(f"wrote {res['out']}")
    if csv_path is not None:
        report.info(f"wrote {csv_path}")


def _markdown(out: Path, tasks: str, limit: Optional[int], pool: str, rows: Optional[str], no_run: bool, ray: Optional[str],
              ray_workers: Optional[int], bbh_dir: Optional[str], base: Optional[str], device: Optional[str],
              as_json: bool) -> None:
    import sys

    from .. import report, results
    from ..errors import EvalError
    from ..registry import Registry
    from ..tasks import bbh

    if limit is not None and limit < 1:
        raise EvalError(f"--limit must be at least 1, got {limit}")
    names = [t.name for t in bbh.load_tasks(tasks, bbh_dir)]  # bad task names fail before anything runs
    keys = [k.strip() for k in rows.split(",") if k.strip()] if rows else None
    for k in keys or []:
        results.row(k)
    reg = Registry()
    command = _page_command(out, tasks, limit, pool)
    if not no_run:
        results.prepare_pool(reg, pool, log=report.info if not as_json else None)
        todo = results.missing_jobs(reg, names, limit, pool, keys)
        if not as_json:
            report.info(f"{len(todo)} (row, task) runs to do over {len(names)} task(s)" + (f", fanned out over Ray ({ray})" if ray else ""))
        with report.RichProgress(enabled=not as_json and sys.stderr.isatty()) as prog:
            results.run_missing(reg, names, limit, pool, base=base, bbh_dir=bbh_dir, device=device, keys=keys,
                                ray=ray, ray_workers=ray_workers, progress=prog,
                                on_done=None if as_json else lambda r, t, res: report.info(
                                    f"{r.key} on {t}: EM {100 * res.macro_accuracy:.1f} ({res.run_id})"))
    res = results.write_markdown(reg, out, names, limit, pool, command)
    _summary(res, names, as_json)


def _page_command(out: Path, tasks: str, limit: Optional[int], pool: str) -> str:
    """The command a page says it was made with (and that runs what it lacks)."""
    import shlex

    return "scalectl report --markdown " + shlex.quote(str(out)) + f" --tasks {shlex.quote(tasks)}" + \
        (f" --limit {limit}" if limit else "") + f" --pool {shlex.quote(pool)}"


def _markdown_from(out: Path, bundle_dir: Path, tasks: str, limit: Optional[int], pool: str, bbh_dir: Optional[str],
                   as_json: bool) -> None:
    """The results page rendered from a bundle alone (a throwaway registry holds its runs)."""
    import tempfile

    from .. import bundle, results
    from ..tasks import bbh

    names = [t.name for t in bbh.load_tasks(tasks, bbh_dir)]
    b = bundle.read(bundle_dir)
    with tempfile.TemporaryDirectory(prefix="scalectl-bundle-") as tmp:
        reg = bundle.open_registry(b, tmp)
        res = results.write_markdown(reg, out, names, limit, pool, _page_command(out, tasks, limit, pool),
                                     pool_info=b.pools.get(pool), source=f"the bundle `{bundle_dir.as_posix()}`, read alone")
    _summary(res, names, as_json)


def _summary(res, names: list[str], as_json: bool) -> None:
    from .. import report, results

    if as_json:
        report.emit_json(results.summary_json(res))
        return
    d = lambda s: f"{100 * s['delta']:+.1f}" if s else "-"  # noqa: E731 - '-': that baseline has not finished
    report.table([{"row": results.row(k).title, "em": f"{100 * v['macro']:.1f}", "d_ilc": d(v["vs_ilc"]),
                   "p": f"{v['vs_ilc']['p']:.2g}" if v["vs_ilc"] else "-", "d_zero": d(v["vs_zero"])}
                  for k, v in res["rows"].items()],
                 [report.Col("row", "row", 0, "text"), ("em", "EM"), ("d_ilc", "vs iLC"), ("p", "p vs iLC"),
                  ("d_zero", "vs zero-shot")],
                 title=f"results over {len(res['tasks'])} task(s), {res['n_queries']} queries")
    if res["missing"]:
        report.info(results.missing_text(res["missing"], len(names)))
    report.info(f"wrote {res['path']}")
