"""Everything the user sees: rich tables on stdout, one-line errors and warnings on stderr, JSON.

This is the only module that imports rich.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def error(msg: str) -> None:
    # One line: collapse newlines so scripts can grep it.
    err_console.print(f"[bold red]error:[/] {' '.join(str(msg).split())}", highlight=False, soft_wrap=True)


def warn(msg: str) -> None:
    err_console.print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)


def info(msg: str) -> None:
    err_console.print(msg, highlight=False, soft_wrap=True)


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) or "-"
    if isinstance(v, dict):
        return json.dumps(v) if v else "-"
    return str(v)


def table(rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]], title: str | None = None,
          caption: str | None = None) -> None:
    """Print ``rows`` as a rich table; ``columns`` is a list of (key, header)."""
    t = Table(title=title, caption=caption, header_style="bold")
    for _, header in columns:
        t.add_column(header, overflow="fold")
    for r in rows:
        t.add_row(*[_fmt(r.get(k)) for k, _ in columns])
    console.print(t)


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    f = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if f < 1024 or unit == "GiB":
            return f"{f:.0f} {unit}" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1024
    return str(n)


ADAPTER_COLUMNS = [
    ("pool", "pool"), ("name", "name"), ("status", "status"), ("base_model", "base model"), ("r", "r"),
    ("lora_alpha", "alpha"), ("target_modules", "targets"), ("n_blocks", "blocks"), ("size", "size"),
    ("tags", "tags"),
]


def adapters(rows: list[dict[str, Any]], title: str = "adapters") -> None:
    for r in rows:
        r["size"] = human_size(r.get("size_bytes"))
    table(rows, ADAPTER_COLUMNS, title=f"{title} ({len(rows)})")


def pools(rows: list[dict[str, Any]]) -> None:
    table(rows, [("name", "pool"), ("base_model", "base model"), ("adapters", "adapters"), ("description", "description")],
          title="pools")


def adapter_detail(row: dict[str, Any]) -> None:
    t = Table(show_header=False, title=f"{row['pool']}:{row['name']}")
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    for k, v in row.items():
        if k in ("examples", "id"):
            continue
        t.add_row(k, human_size(v) if k == "size_bytes" else _fmt(v))
    console.print(t)
    ex = row.get("examples") or []
    if ex:
        table(ex[:10], [("input", "input"), ("output", "output")], title=f"examples ({len(ex)})")


def verify(results: list[Any]) -> None:
    style = {"ok": "green", "modified": "bold red", "missing": "bold red", "remote": "dim"}
    t = Table(title="pool verify", header_style="bold")
    for h in ("pool", "name", "status", "detail"):
        t.add_column(h, overflow="fold")
    for v in results:
        t.add_row(v.pool, v.name, f"[{style.get(v.status, '')}]{v.status}[/]", v.detail)
    console.print(t)


def compose_result(res: Any) -> None:
    rows = []
    for b in res.blocks:
        r = dict(b)
        r["coefficients"] = " ".join(f"{c:+.3f}" for c in b.get("coefficients", []))
        rows.append(r)
    cols = [("block", "block"), ("coefficients", "coefficients")]
    if any("alpha" in b for b in res.blocks):
        cols += [("overlap", "overlap"), ("alpha", "alpha"), ("retained", "retained"), ("guarded", "guard")]
    table(rows, cols, title=f"{res.merger}: per-block composition ({res.seconds:.3f} s)")
    where = ", ".join(x for x in (res.out, res.merged_model) if x)
    kind = "exact LoRA" if res.exact else f"truncated SVD, max relative Frobenius error {res.max_rel_error:.3g}"
    info(f"wrote {where} ({kind}, rank {res.rank})" + (f"; registered as {res.registered}" if res.registered else ""))


class RichProgress:
    """The library's progress protocol (:mod:`scalectl.progress`) drawn as rich progress bars on stderr."""

    def __init__(self, enabled: bool = True):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.enabled = enabled
        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                           TimeRemainingColumn(), console=err_console, transient=False, disable=not enabled)
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> "RichProgress":
        self._p.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._p.stop()

    def start(self, key: str, description: str, total: int | None) -> None:
        if key in self._tasks:
            self._p.reset(self._tasks[key], total=total, description=description)
        else:
            self._tasks[key] = self._p.add_task(description, total=total)

    def advance(self, key: str, n: int = 1, description: str | None = None) -> None:
        if key in self._tasks:
            kw = {"description": description} if description else {}
            self._p.update(self._tasks[key], advance=n, **kw)

    def finish(self, key: str) -> None:
        if key in self._tasks:
            t = self._tasks.pop(key)
            self._p.update(t, completed=next(x.total for x in self._p.tasks if x.id == t) or 0)

    def log(self, message: str) -> None:
        if self.enabled:
            self._p.console.print(message, highlight=False, soft_wrap=True)


def eval_result(res: Any) -> None:
    rows = [{"task": t.task, "n": t.n, "correct": t.correct, "em": f"{100 * t.accuracy:.1f}",
             "extracted": f"{100 * t.extracted_accuracy:.1f}", "seconds": t.seconds} for t in res.tasks]
    rows.append({"task": "macro average", "n": res.n_queries, "correct": sum(t.correct for t in res.tasks),
                 "em": f"{100 * res.macro_accuracy:.1f}", "extracted": f"{100 * res.macro_extracted:.1f}",
                 "seconds": res.decode_seconds})
    cap = f"first {res.limit} queries per task" if res.limit else "all queries"
    table(rows, [("task", "task"), ("n", "queries"), ("correct", "correct"), ("em", "EM %"),
                 ("extracted", "extractor % (separate)"), ("seconds", "seconds")],
          title=f"{res.method}: run {res.run_id}", caption=f"{cap}; EM = normalized exact match")


def train_result(res: Any) -> None:
    table([{"step": c["step"], "train": c.get("train_loss"), "heldout": c["heldout_loss"]} for c in res.curve],
          [("step", "step"), ("train", "train loss"), ("heldout", "held-out loss")], title=f"{res.name}: training curve")
    info(f"best step {res.best_step}: held-out loss {res.heldout_loss_base:.3f} -> {res.heldout_loss_best:.3f}, "
         f"held-out exact match {100 * res.heldout_em_base:.1f}% -> {100 * res.heldout_em_best:.1f}% "
         f"({res.seconds_per_step:.2f} s/step on {res.device}, {res.seconds:.0f} s in all)")
    info(f"wrote {res.path}" + (f"; registered as {res.registered}" if res.registered else ""))


def runs(rows: list[dict[str, Any]]) -> None:
    out = []
    for r in rows:
        s = r.get("summary") or {}
        c = r.get("config") or {}
        out.append({"id": r["id"], "method": r["method"], "label": r.get("label"), "status": r["status"],
                    "tasks": len(c.get("tasks") or []), "queries": s.get("n_queries"),
                    "macro": f"{100 * s['macro_accuracy']:.1f}" if s.get("macro_accuracy") is not None else None,
                    "created": r["created"]})
    table(out, [("id", "run"), ("method", "method"), ("label", "label"), ("status", "status"), ("tasks", "tasks"),
                ("queries", "queries"), ("macro", "macro EM %"), ("created", "created")], title=f"runs ({len(rows)})")


def demo_result(res: dict[str, Any], mergers: Sequence[str]) -> None:
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    rows = []
    for t in res["tasks"]:
        r = {"task": t["task"], "n": t["n"], "zero-shot": pct(t["zero-shot"])}
        for m in mergers:
            f = t[f"{m}_flips"]
            r[m] = pct(t[m])
            r[f"{m}_f"] = f"+{f['i2c']} / -{f['c2i']}"
        rows.append(r)
    macro = {"task": "macro average", "n": sum(t["n"] for t in res["tasks"]), "zero-shot": pct(res["macro"]["zero-shot"])}
    for m in mergers:
        f = res["flips_total"][m]
        macro[m] = pct(res["macro"][m])
        macro[f"{m}_f"] = f"+{f['i2c']} / -{f['c2i']}"
    rows.append(macro)
    cols = [("task", "task"), ("n", "n"), ("zero-shot", "zero-shot")]
    for m in mergers:
        label = res.get("methods", {}).get(m, m)
        label = f"{label} ({m})" if label != m else m
        cols += [(m, label), (f"{m}_f", f"{m} flips")]
    cap = f"first {res['limit']} queries per task; --full runs all" if res["limit"] else "all queries"
    table(rows, cols, title=f"{res['base']['spec']} + pool {res['pool']} ({len(res['adapters'])} adapters; {res['weights']})",
          caption=f"Normalized exact match %, {cap}. Flips against zero-shot: +incorrect->correct / -correct->incorrect.")
    info(f"runs: {', '.join(f'{m} {r}' for m, r in res['runs'].items())} (scalectl runs show RUN --records)")
    info(f"done in {res['seconds']['total']:.0f} s; registry: {res['registry']}")
