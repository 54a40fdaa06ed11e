"""``scalectl report --html``: one static, self-contained HTML page of the audit.

The page needs nothing but a browser: the CSS is inline and every figure is a PNG embedded as a base64 data URI
(drawn by :mod:`scalectl.plots`). Sections:

- the runs (id, method, label, backbone, queries, macro accuracy);
- accuracy per task of every run (a task x run table and a bar chart);
- the paired audit of every run against ``baseline`` (:func:`scalectl.audit.paired`), when a baseline is given;
- for every SCALE run: its views (:func:`scalectl.audit.views`) and calibration (:func:`scalectl.audit.calibration`);
- the pairwise compatibility heatmap of ``pool`` (:func:`scalectl.audit.compat`), when a pool is given.

:func:`build` collects the numbers, :func:`render` turns them into HTML, :func:`write_report` does both and writes
the page atomically (temporary file beside it, then ``os.replace``).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path
from typing import Any, Sequence

from .errors import EvalError, ScalectlError

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #1d1d1f; background: #ffffff; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.7em; border-bottom: 3px solid #2b6cb0; padding-bottom: .2em; }
h2 { font-size: 1.3em; margin-top: 2em; color: #2b6cb0; border-bottom: 1px solid #cbd5e0; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .88em; }
th, td { border: 1px solid #cbd5e0; padding: .3em .6em; text-align: right; }
th { background: #edf2f7; }
td.l, th.l { text-align: left; }
tr.macro td { font-weight: bold; background: #f7fafc; }
caption { caption-side: bottom; text-align: left; font-size: .85em; color: #4a5568; padding-top: .3em; }
.pos { color: #276749; } .neg { color: #c53030; }
.labels { background: #fefcbf; }
.note { color: #744210; background: #fffff0; border-left: 4px solid #d69e2e; padding: .3em .7em; margin: .3em 0; }
.meta { color: #4a5568; font-size: .9em; }
img { max-width: 100%; border: 1px solid #e2e8f0; margin: .5em 0; }
"""


def _esc(x: Any) -> str:
    return html.escape("-" if x is None else str(x))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}"


def _p(p: float | None) -> str:
    return "-" if p is None else (f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}")


def table_html(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], caption: str | None = None,
               left: Sequence[str] = (), css: dict[str, str] | None = None, macro_key: str | None = None) -> str:
    """An HTML table; ``columns`` = [(key, header)], values already formatted (escaped here).

    ``left``: keys aligned left; ``css``: key -> class of its cells; ``macro_key``: rows whose value at this key is
    ``"macro"`` get the ``macro`` class."""
    css = css or {}
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{_esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f'<th class="{"l" if k in left else ""} {css.get(k, "")}">{_esc(h)}</th>'
                                       for k, h in columns) + "</tr></thead><tbody>")
    for r in rows:
        cls = ' class="macro"' if macro_key and r.get(macro_key) == "macro" else ""
        out.append(f"<tr{cls}>" + "".join(f'<td class="{"l" if k in left else ""} {css.get(k, "")}">{_esc(r.get(k))}</td>'
                                          for k, _ in columns) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def img_html(png: bytes, alt: str) -> str:
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


# ---------------------------------------------------------------- data


def _runs(reg, specs: Sequence[str] | str | None) -> tuple[list[dict[str, Any]], list[str]]:
    from .audit import require_done, resolve_runs

    runs, notes = resolve_runs(reg, specs)
    if runs:
        require_done(runs)
    else:
        runs = reg.runs(status="done")  # in insertion order
        if not runs:
            raise EvalError("no done runs to report; `scalectl eval` records runs")
    return runs, notes


def build(reg, runs: Sequence[str] | str | None = None, baseline: str | None = None, pool: str | None = None,
          n_samples: int = 10_000, seed: int = 0, top: int = 20) -> dict[str, Any]:
    """Everything the page shows, as plain data (accuracies are fractions).

    Returns ``{"generated", "scalectl_version", "registry", "runs": [run rows with "tasks" {task: acc}],
    "tasks": [...], "paired": paired() result or None, "scale": [{"views", "calibration"} per SCALE run], "compat":
    compat() result or None, "notes"}``.

    Raises:
        EvalError: unknown or unfinished runs, an unknown baseline, an empty or too small pool.
    """
    import numpy as np

    from . import __version__
    from .audit import calibration, compat, describe, has_views, paired, resolve_run, task_accuracy, views
    from .runid import config_of
    from .runrecords import load_records

    chosen, notes = _runs(reg, runs)
    rows = []
    for r in chosen:
        recs = load_records(reg, r["id"])
        if not recs:
            notes.append(f"run {describe(r)} has no records; left out")
            continue
        names, acc, n = task_accuracy(np.array([x.correct for x in recs], dtype=float), np.array([x.task for x in recs]))
        rows.append({"run": r["id"], "method": r["method"], "label": r.get("label"), "base_model": r.get("base_model"),
                     "created": r.get("created"), "n_queries": len(recs), "n_tasks": int(names.size),
                     "macro_accuracy": float(acc.mean()), "tasks": {str(t): float(a) for t, a in zip(names, acc)},
                     "uses_labels": bool(config_of(r).uses_labels), "is_scale": has_views(recs)
                     and not config_of(r).derived_from})  # a multi-view run, not one derived from it
    if not rows:
        raise EvalError("none of the runs has records")
    tasks = sorted({t for r in rows for t in r["tasks"]})
    pair = None
    if baseline:
        base, note = resolve_run(reg, baseline, role="baseline")
        if note:
            notes.append(note)
        results = []
        pair = None
        for r in rows:
            if r["run"] == base["id"]:
                continue
            try:
                res = paired(reg, [r["run"]], base["id"], n_samples=n_samples, seed=seed)
            except ScalectlError as e:
                notes.append(f"paired audit of {r['run']} ({r['method']}) vs the baseline skipped: {e}")
                continue
            pair = pair or res
            results += res["results"]
        if pair is None:
            notes.append(f"no run could be paired with the baseline {describe(base)}")
        else:
            pair = {**pair, "results": results}
    scale = []
    for r in rows:
        if r["is_scale"]:
            try:
                scale.append({"views": views(reg, r["run"]), "calibration": calibration(reg, r["run"])})
            except ScalectlError as e:
                notes.append(f"SCALE audit of {r['run']} skipped: {e}")
    comp = compat(reg, pool, top=top) if pool else None
    return {"generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "scalectl_version": __version__,
            "registry": str(getattr(reg, "path", "")), "runs": rows, "tasks": tasks, "paired": pair, "scale": scale,
            "compat": comp, "notes": notes}


# ---------------------------------------------------------------- page


def _section(title: str, body: list[str], anchor: str) -> str:
    return f'<section id="{_esc(anchor)}">\n<h2>{_esc(title)}</h2>\n' + "\n".join(body) + "\n</section>"


def _notes(notes: Sequence[str]) -> str:
    return "\n".join(f'<p class="note">{_esc(n)}</p>' for n in notes)


def _runs_section(data: dict[str, Any], png) -> list[str]:
    rows = [{**r, "macro": _pct(r["macro_accuracy"]), "label": r["label"],
             "method": r["method"] + (" (uses labels)" if r["uses_labels"] else "")} for r in data["runs"]]
    return [_section("Runs", [table_html(rows, [("run", "run"), ("method", "method"), ("label", "label"),
                                                ("base_model", "backbone"), ("n_tasks", "tasks"), ("n_queries", "queries"),
                                                ("macro", "macro EM %"), ("created", "created")],
                                         caption="macro EM = mean over tasks of normalized exact match",
                                         left=("run", "method", "label", "base_model", "created"))], "runs")]


def _accuracy_section(data: dict[str, Any], png) -> list[str]:
    runs = data["runs"]
    cols = [("task", "task")] + [(r["run"], f"{r['method']} {r['run'][-6:]}") for r in runs]
    trows = [{"task": t, **{r["run"]: _pct(r["tasks"].get(t)) for r in runs}} for t in data["tasks"]]
    trows.append({"task": "macro", **{r["run"]: _pct(r["macro_accuracy"]) for r in runs}})
    body = [table_html(trows, cols, caption="EM % per task; '-' = the run has no queries of the task", left=("task",),
                       macro_key="task")]
    if png is not None:
        series = [(f"{r['method']} {r['run'][-6:]}", {**r["tasks"], "macro": r["macro_accuracy"]}) for r in runs[:12]]
        body.append(img_html(png.accuracy_png(series, title="EM per task"), "accuracy per task"))
        if len(runs) > 12:
            body.append(_notes([f"the chart shows the first 12 of {len(runs)} runs"]))
    return [_section("Accuracy per task", body, "accuracy")]


def _paired_section(data: dict[str, Any], png) -> list[str]:
    pair = data.get("paired")
    if not pair:
        return []
    b = pair["baseline"]
    prow = [{"method": f"{b['method']} (baseline)", "run": b["run"], "macro": _pct(b["macro_accuracy"])}]
    labelled = {r["run"] for r in data["runs"] if r["uses_labels"]}
    for r in pair["results"]:
        prow.append({"method": r["method"] + (" (uses labels)" if r["run"] in labelled else ""), "run": r["run"],
                     "macro": _pct(r["macro_accuracy"]), "delta": _pts(r["delta"]),
                     "flips": f"+{r['i2c']}/-{r['c2i']}/={r['unchanged']}", "wlt": f"{r['wins']}/{r['losses']}/{r['ties']}",
                     "p": _p(r["p"]), "ci": f"[{_pts(r['ci_low'])}, {_pts(r['ci_high'])}]"})
    unit = "tasks with replacement" if pair["resample"] == "tasks" else "queries within each task"
    return [_section(f"Paired audit vs {b['method']} ({b['run']})", [table_html(
        prow, [("method", "method"), ("run", "run"), ("macro", "macro EM %"), ("delta", "delta (points)"),
               ("flips", "flips +i2c/-c2i/=same"), ("wlt", "W/L/T"), ("p", "p"), ("ci", f"{100 * pair['level']:.0f}% CI")],
        caption=f"p: two-sided paired sign-flip permutation test ({pair['n_samples']} samples, seed {pair['seed']}, "
                f"uncorrected); CI: percentile bootstrap of the macro difference resampling {unit}",
        left=("method", "run"))], "paired")]


def _scale_section(s: dict[str, Any], png) -> str:
    """One SCALE run: its views side by side, the calibration points and the coverage-risk curve."""
    from .audit import calibration_caption, views_caption, views_columns, views_rows

    v, c = s["views"], s["calibration"]
    vrows = []
    for r in views_rows(v):
        f = dict(r)
        for k in ["support", "uniform", "best_view", "oracle", "any_view_correct"] + [f"view:{n}" for n in v["views"]]:
            f[k] = _pct(r.get(k))
        f["headroom"] = _pts(r.get("headroom"))
        vrows.append(f)
    body = [table_html(vrows, views_columns(v), caption=views_caption(v), left=("task", "oracle_view"), macro_key="task",
                       css={"oracle": "labels", "any_view_correct": "labels"})]
    body.append("<h3>Calibration</h3>")
    body.append(table_html([{**p, "loss": f"{p['support_loss']:.4f}", "acc": _pct(p["accuracy"])} for p in c["points"]],
                           [("task", "task"), ("view", "view"), ("loss", "support loss"), ("acc", "query EM %")],
                           caption=calibration_caption(c), left=("task", "view")))
    cr = c["coverage_risk"]
    body.append(table_html([{"th": f"{p['threshold']:.4f}", "covered": p["covered"], "cov": _pct(p["coverage"]),
                             "risk": _pct(p["risk"])} for p in cr["points"]],
                           [("th", "agreement >="), ("covered", "answered"), ("cov", "coverage %"), ("risk", "risk %")],
                           caption=f"coverage-risk with the agreement score as confidence; {cr['n']} queries, AURC "
                                   f"{100 * cr['aurc']:.2f}, risk at full coverage {100 * cr['full_risk']:.1f}%"))
    if png is not None:
        body.append(img_html(png.calibration_png(c["points"], cr, title=f"SCALE run {c['run']}"), "calibration"))
    body.append(_notes(v["notes"] + c["notes"]))
    return _section(f"SCALE run {v['run']}: views and calibration", body, f"scale-{v['run']}")


def _scale_sections(data: dict[str, Any], png) -> list[str]:
    return [_scale_section(s, png) for s in data.get("scale") or []]


def _compat_section(data: dict[str, Any], png) -> list[str]:
    comp = data.get("compat")
    if not comp:
        return []
    body = [table_html([{**p, "rms": f"{p['rms_cosine']:.4f}", "mean": f"{p['mean_cosine']:+.4f}"} for p in comp["pairs"]],
                       [("rank", "#"), ("a", "adapter"), ("b", "adapter"), ("rms", "RMS cosine"), ("mean", "mean cosine")],
                       caption=f"the {len(comp['pairs'])} most similar of {comp['n_pairs']} pairs, over {comp['modules']} "
                               "common modules", left=("a", "b"))]
    if png is not None:
        body.append(img_html(png.heatmap_png(comp["names"], comp["rms_cosine"], title=f"pool {comp['pool']}: RMS cosine"),
                             "compatibility heatmap"))
    body.append(_notes(comp["notes"]))
    return [_section(f"Compatibility of pool {comp['pool']}", body, "compat")]


def _notes_section(data: dict[str, Any], png) -> list[str]:
    return [_section("Notes", [_notes(data["notes"])], "notes")] if data.get("notes") else []


# the page's sections in order; each (data, plots module or None) -> HTML sections
SECTIONS = (_runs_section, _accuracy_section, _paired_section, _scale_sections, _compat_section, _notes_section)


def render(data: dict[str, Any], plot: bool = True) -> str:
    """The page as one HTML string (``plot=False`` leaves the figures out)."""
    png = None
    if plot:
        from . import plots as png
    parts = [html for section in SECTIONS for html in section(data, png)]
    head = (f'<p class="meta">generated {_esc(data["generated"])} by scalectl {_esc(data["scalectl_version"])}; registry '
            f'{_esc(data["registry"])}; {len(data["runs"])} run(s). Accuracies are normalized exact match '
            '(<code>str(x).strip().lower().replace(".", "")</code>); cells marked in yellow use query labels.</p>')
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>scalectl audit report</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>scalectl audit report</h1>\n{head}\n" + "\n".join(parts) + "\n</body>\n</html>\n")


def write_report(reg, out: str | Path, runs: Sequence[str] | str | None = None, baseline: str | None = None,
                 pool: str | None = None, n_samples: int = 10_000, seed: int = 0, top: int = 20) -> dict[str, Any]:
    """:func:`build` + :func:`render`, written atomically to ``out``.

    Returns the data of :func:`build` plus ``out``, ``bytes`` and ``sections`` (the section anchors on the page).
    """
    import re

    from .plots import write_atomic

    out = Path(out)
    if out.exists() and out.is_dir():
        raise EvalError(f"{out} is a directory; give the HTML file's path")
    data = build(reg, runs, baseline=baseline, pool=pool, n_samples=n_samples, seed=seed, top=top)
    page = render(data)
    raw = page.encode("utf-8")
    write_atomic(out, raw)
    return {**data, "out": str(out), "bytes": len(raw), "sections": re.findall(r'<section id="([^"]+)">', page)}
