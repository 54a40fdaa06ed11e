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
