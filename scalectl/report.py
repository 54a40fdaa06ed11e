"""Everything the user sees: rich tables on stdout, one-line errors and warnings on stderr, JSON.

This is the only module that imports rich.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


def _line(label: str, style: str, msg: Any) -> Text:
    """A label and a message as plain text: user text in messages (names, tags, paths) is never read as markup."""
    return Text.assemble((label, style), " ", str(msg)) if label else Text(str(msg))


def error(msg: str) -> None:
    # One line: collapse newlines so scripts can grep it.
    err_console.print(_line("error:", "bold red", " ".join(str(msg).split())), highlight=False, soft_wrap=True)


def warn(msg: str) -> None:
    err_console.print(_line("warning:", "yellow", msg), highlight=False, soft_wrap=True)


def info(msg: str) -> None:
    err_console.print(_line("", "", msg), highlight=False, soft_wrap=True)


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON; a NaN or infinity is refused (JSON has none: ``Infinity`` breaks every parser)."""
    from .errors import ScalectlError

    try:
        text = json.dumps(obj, indent=2, default=str, sort_keys=False, allow_nan=False)
    except ValueError:
        raise ScalectlError("the result holds a NaN or infinite number, which JSON cannot carry; "
                            "run without --json to see it") from None
    sys.stdout.write(text + "\n")
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


# ---------------------------------------------------------------- tables that fit the terminal
#
# A table is laid out for ``width()`` columns (the terminal's; 80 when stdout is not a terminal; $COLUMNS wins).
# When it would not fit, in this order: task names lose their ``bbh/`` prefix, columns of low priority are dropped
# (the caption names them), free text wraps; only when the essential columns alone do not fit are identifiers cut
# with "…". ``--wide`` (or SCALECTL_WIDE=1) shows every column, nothing cut. JSON never goes through here.

DEFAULT_WIDTH = 80  # when stdout is not a terminal and $COLUMNS is not set
TEXT_MIN = 20  # free text wraps, but to no fewer columns than this before other columns are dropped
WIDE_ENV = "SCALECTL_WIDE"
TASK_PREFIXES = ("bbh/",)  # dropped from task names in table cells when space is short


def short_task(name: str) -> str:
    """``bbh/navigate`` -> ``navigate`` (table cells only)."""
    for p in TASK_PREFIXES:
        if name.startswith(p):
            return name[len(p):]
    return name


@dataclass(frozen=True)
class Kind:
    """How the cells of a kind of column give way: ``overflow`` / ``no_wrap`` are rich's; ``whole``: the column's
    narrowest width keeps every cell whole; ``short``: a shorter form of a cell tried before dropping columns."""

    overflow: str
    no_wrap: bool
    whole: bool
    short: Callable[[str], str] | None = None


KINDS: dict[str, Kind] = {
    "": Kind("fold", False, True),  # short values (numbers, statuses): never split; the header may wrap
    "id": Kind("ellipsis", True, True),  # names, run ids, pools: whole; cut with "…" only as a last resort
    "task": Kind("ellipsis", True, True, short_task),  # a task id: bbh/TASK, shown as TASK when space is short
    "text": Kind("fold", False, False),  # free text (descriptions): wraps
}


@dataclass(frozen=True)
class Col:
    """A table column. ``priority`` 0: always shown; higher numbers are dropped first when the table would not fit.
    ``kind``: a key of :data:`KINDS`. ``min_width``: the narrowest the column may get before lower-priority columns are
    dropped (ids: cut with "…" beyond it; text: wraps to it; default: ids whole, text TEXT_MIN). ``styles``: cell value
    -> rich style."""

    key: str
    header: str
    priority: int = 0
    kind: str = ""
    min_width: int | None = None
    styles: Mapping[str, str] | None = None


def _col(c: Any) -> Col:
    col = c if isinstance(c, Col) else Col(*c)
    if col.kind not in KINDS:
        raise ValueError(f"unknown column kind {col.kind!r} (one of {', '.join(map(repr, KINDS))})")
    return col


def width() -> int:
    """Columns a table may use: $COLUMNS, else a width set on the console, else the terminal's, else 80."""
    env = os.environ.get("COLUMNS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    fixed = getattr(console, "_width", None)  # console.width = N (rich keeps it here; None: detect)
    if fixed:
        return int(fixed)
    return console.size.width if console.is_terminal else DEFAULT_WIDTH


_wide = False  # --wide of the running command (the CLI resets it around every invocation)


def set_wide(on: bool = True) -> None:
    """Tables show every column, nothing cut (``--wide``)."""
    global _wide
    _wide = on


def is_wide() -> bool:
    return _wide or os.environ.get(WIDE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _print(renderable: RenderableType, at: int) -> None:
    saved = getattr(console, "_width", None)
    console.width = at  # rich's Console.print(width=) cannot go past the detected width: set it for this print
    try:
        console.print(renderable)
    finally:
        console._width = saved


def _cell_w(s: str) -> int:
    return max((cell_len(line) for line in s.split("\n")), default=0)


def _word_w(s: str) -> int:
    return max((cell_len(w) for w in s.split()), default=0)


def _outer(n: int) -> int:
    return 3 * n + 1  # per column: one space each side and a border on the left; and the right border


def layout(cols: Sequence[Col], cells: Sequence[Sequence[str]], avail: int) -> tuple[list[int], dict[int, int]]:
    """The columns to show (indices, in order) and their widths (without padding) for ``avail`` columns."""
    n = len(cols)
    nat = [max([_cell_w(c.header)] + [_cell_w(r[i]) for r in cells]) for i, c in enumerate(cols)]
    if sum(nat) + _outer(n) <= avail:
        return list(range(n)), dict(enumerate(nat))
    mins = []
    for i, c in enumerate(cols):
        longest = max((_cell_w(r[i]) for r in cells), default=0)
        lo = longest if KINDS[c.kind].whole else min(nat[i], TEXT_MIN)
        if c.min_width is not None:
            lo = min(longest, c.min_width)
        mins.append(max(lo, _word_w(c.header), 1))

    def need(idx: Sequence[int]) -> int:
        return sum(mins[i] for i in idx) + _outer(len(idx))

    shown = list(range(n))
    dropped: list[int] = []
    for i in sorted((i for i in shown if cols[i].priority > 0), key=lambda i: (-cols[i].priority, -i)):
        if need(shown) <= avail:
            break
        shown.remove(i)
        dropped.append(i)
    for i in reversed(dropped):  # the most important first: back in where it fits after all
        if need(sorted(shown + [i])) <= avail:
            shown = sorted(shown + [i])
    widths = {i: mins[i] for i in shown}
    spare = avail - need(shown)
    # spare room: first whole headers and uncut names (smallest need first), then wider text, then longer cut names
    for i in sorted((i for i in shown if cols[i].kind != "text"), key=lambda i: nat[i] - widths[i]):
        if 0 < nat[i] - widths[i] <= spare:
            spare -= nat[i] - widths[i]
            widths[i] = nat[i]
    text = [i for i in shown if cols[i].kind == "text"]
    while spare > 0 and any(widths[i] < nat[i] for i in text):
        i = min((i for i in text if widths[i] < nat[i]), key=lambda i: widths[i])
        widths[i] += 1
        spare -= 1
    for i in (i for i in shown if KINDS[cols[i].kind].no_wrap):
        give = min(max(spare, 0), nat[i] - widths[i])
        widths[i] += give
        spare -= give
    # the essential columns alone do not fit: narrow the widest (ids get "…", text wraps)
    while spare < 0:
        i = max(shown, key=lambda i: widths[i])
        if widths[i] <= 4:
            break
        widths[i] -= 1
        spare += 1
    return shown, widths


def _cell(s: str, col: Col) -> Text:
    k = KINDS[col.kind]
    t = console.render_str(s, markup=False, emoji=False, style=(col.styles or {}).get(s, ""))
    t.no_wrap, t.overflow = k.no_wrap, k.overflow  # type: ignore[assignment]
    return t


def table(rows: Iterable[dict[str, Any]], columns: Sequence[Any], title: str | None = None,
          caption: str | None = None) -> None:
    """Print ``rows`` as a table that fits the terminal. ``columns``: :class:`Col` s or (key, header[, priority[, kind
    [, min_width]]]) tuples; plain (key, header) columns are always shown."""
    cols = [_col(c) for c in columns]
    rows = list(rows)
    cells = [[_fmt(r.get(c.key)) for c in cols] for r in rows]
    wide, avail = is_wide(), width()
    n = len(cols)
    nat = sum(max([_cell_w(c.header)] + [_cell_w(r[i]) for r in cells]) for i, c in enumerate(cols)) + _outer(n)
    if wide:
        shown, widths = list(range(n)), None
        avail = max(avail, nat)
    else:
        if nat > avail:
            cells = [[KINDS[c.kind].short(v) if KINDS[c.kind].short else v for c, v in zip(cols, r)] for r in cells]
        shown, widths = layout(cols, cells, avail)
    notes = []
    hidden = [cols[i].header for i in range(n) if i not in shown]
    if hidden:
        notes.append("hidden columns: " + ", ".join(hidden))
    if widths and any(KINDS[cols[i].kind].no_wrap and _cell_w(r[i]) > widths[i] for i in shown for r in cells):
        notes.append("values ending in … are cut")
    t = Table(title=Text(title, style="table.title") if title else None, header_style="bold",
              caption=_caption(caption, notes))
    for i in shown:
        t.add_column(Text(cols[i].header, overflow="fold"), width=None if widths is None else widths[i],
                     overflow=KINDS[cols[i].kind].overflow)
    for r in cells:
        t.add_row(*[_cell(r[i], cols[i]) for i in shown])
    _print(t, avail)


def _caption(caption: str | None, notes: list[str]) -> Text | None:
    if not caption and not notes:
        return None
    out = Text(caption or "", style="table.caption")
    if notes:
        if caption:
            out.append("\n")
        out.append("; ".join(notes) + "; --wide shows everything", style="dim")
    return out


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    f = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if f < 1024 or unit == "GiB":
            return f"{f:.0f} {unit}" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1024
    return str(n)


# `pool list`: pool, name (cut with "…" past 40 characters only when short of space), status, rank and alpha are kept
# longest; base model (one per pool: `pool pools`), blocks, targets, size and tags are dropped first.
ADAPTER_COLUMNS = [
    Col("pool", "pool", 0, "id"), Col("name", "name", 0, "id", min_width=40), Col("status", "status", 1),
    Col("base_model", "base model", 7, "id"), Col("r", "r", 2), Col("lora_alpha", "alpha", 2),
    Col("target_modules", "targets", 5), Col("n_blocks", "blocks", 6), Col("size", "size", 4),
    Col("tags", "tags", 3, "text"),
]


def adapters(rows: list[dict[str, Any]], title: str = "adapters") -> None:
    for r in rows:
        r["size"] = human_size(r.get("size_bytes"))
    table(rows, ADAPTER_COLUMNS, title=f"{title} ({len(rows)})")


def pools(rows: list[dict[str, Any]]) -> None:
    table(rows, [Col("name", "pool", 0, "id"), Col("base_model", "base model", 1, "id"), Col("adapters", "adapters"),
                 Col("description", "description", 2, "text")], title="pools")


def adapter_detail(row: dict[str, Any]) -> None:
    t = Table(show_header=False, title=Text(f"{row['pool']}:{row['name']}", style="table.title"))
    t.add_column("field", style="bold", no_wrap=True)
    t.add_column("value", overflow="fold")
    for k, v in row.items():
        if k in ("examples", "id"):
            continue
        t.add_row(k, Text(human_size(v) if k == "size_bytes" else _fmt(v)))
    _print(t, width())
    ex = row.get("examples") or []
    if ex:
        table(ex[:10], [Col("input", "input", 0, "text"), Col("output", "output", 0, "text")], title=f"examples ({len(ex)})")


def verify(results: list[Any]) -> None:
    style = {"ok": "green", "modified": "bold red", "missing": "bold red", "remote": "dim"}
    table([v.__dict__ for v in results], [Col("pool", "pool", 0, "id"), Col("name", "name", 0, "id", min_width=40),
                                          Col("status", "status", styles=style), Col("detail", "detail", 1, "text")],
          title="pool verify")


COEFFICIENTS_SHOWN = 4  # per block, when the table is not --wide: the largest ones, by input number


def coefficient_summary(coefs: Sequence[float], shown: int = COEFFICIENTS_SHOWN) -> str:
    """A block's coefficients in a few characters: the largest by |c| as ``#input +c`` (inputs numbered from 1,
    in input order), then how many more are non-zero and how many are zero."""
    nz = sorted((i for i, c in enumerate(coefs) if abs(c) >= 5e-4), key=lambda i: -abs(coefs[i]))
    parts = [f"#{i + 1} {coefs[i]:+.3f}" for i in sorted(nz[:shown])]
    if len(nz) > shown:
        parts.append(f"+{len(nz) - shown} more")
    zeros = len(coefs) - len(nz)
    if zeros:
        parts.append(f"{zeros} of {len(coefs)} zero" if nz else f"all {len(coefs)} zero")
    return ", ".join(parts)


def compose_result(res: Any) -> None:
    rows = []
    for b in res.blocks:
        r = dict(b)
        coefs = list(b.get("coefficients", []))
        r["coefficients"] = (" ".join(f"{c:+.3f}" for c in coefs) if is_wide() or len(coefs) <= COEFFICIENTS_SHOWN
                             else coefficient_summary(coefs))
        rows.append(r)
    cols = [Col("block", "block", 0, "id"), Col("coefficients", "coefficients", 0, "text")]
    if any("alpha" in b for b in res.blocks):
        cols += [Col("overlap", "overlap", 1), Col("alpha", "alpha", 1), Col("retained", "retained", 1),
                 Col("guarded", "guard", 2)]
    summarized = any(len(b.get("coefficients", [])) > COEFFICIENTS_SHOWN for b in res.blocks) and not is_wide()
    table(rows, cols, title=f"{res.merger}: per-block composition ({res.seconds:.3f} s)",
          caption="#N: the N-th input adapter; --wide shows every coefficient" if summarized else None)
    where = ", ".join(x for x in (res.out, res.merged_model) if x)
    low = res.low_rank
    if res.exact:
        kind = "exact LoRA"
    elif low is not None and low.get("rank_min") != low.get("rank_max"):
        kind = (f"best low-rank approximation, ranks {low['rank_min']}-{low['rank_max']} per module, "
                f"max relative Frobenius error {res.max_rel_error:.3g}")
    else:
        kind = f"best rank-{res.rank} approximation, max relative Frobenius error {res.max_rel_error:.3g}"
    info(f"wrote {where} ({kind}, rank {res.rank})" + (f"; registered as {res.registered}" if res.registered else ""))
    if not res.exact and res.out:
        info(f"{res.out} approximates the {res.merger} update (mean relative error "
             f"{(low or {}).get('mean_rel_error', res.max_rel_error):.3g}; per module in its provenance); eval "
             "--rank / --max-error scores this approximation, without them the exact update")
    for w in getattr(res, "warnings", None) or []:
        warn(w)


class RichProgress:
    """The library's progress protocol (:mod:`scalectl.progress`) drawn as rich progress bars on stderr."""

    def __init__(self, enabled: bool = True):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.enabled = enabled
        self._p = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                           TimeRemainingColumn(), console=err_console, transient=False, disable=not enabled)
        self._tasks: dict[str, Any] = {}
        self._started = False  # the bars start with the first one: a command that fails before it prints no blank line

    def __enter__(self) -> "RichProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            self._p.stop()

    def start(self, key: str, description: str, total: int | None) -> None:
        if not self._started:
            self._p.start()
            self._started = True
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
            self._p.console.print(Text(str(message)), highlight=False, soft_wrap=True)


def eval_result(res: Any) -> None:
    rows = [{"task": t.task, "n": t.n, "correct": t.correct, "em": f"{100 * t.accuracy:.1f}",
             "extracted": f"{100 * t.extracted_accuracy:.1f}", "seconds": t.seconds} for t in res.tasks]
    rows.append({"task": "macro average", "n": res.n_queries, "correct": sum(t.correct for t in res.tasks),
                 "em": f"{100 * res.macro_accuracy:.1f}", "extracted": f"{100 * res.macro_extracted:.1f}",
                 "seconds": res.decode_seconds})
    cap = f"first {res.limit} queries per task" if res.limit else "all queries"
    table(rows, [Col("task", "task", 0, "task"), Col("n", "queries", 1), Col("correct", "correct", 3), Col("em", "EM %"),
                 Col("extracted", "extractor % (separate)", 2), Col("seconds", "seconds", 4)],
          title=f"{res.method}: run {res.run_id}", caption=f"{cap}; EM = normalized exact match")


def train_result(res: Any) -> None:
    table([{"step": c["step"], "train": c.get("train_loss"), "heldout": c["heldout_loss"]} for c in res.curve],
          [("step", "step"), ("train", "train loss"), ("heldout", "held-out loss")], title=f"{res.name}: training curve")
    info(f"best step {res.best_step}: held-out loss {res.heldout_loss_base:.3f} -> {res.heldout_loss_best:.3f}, "
         f"held-out exact match {100 * res.heldout_em_base:.1f}% -> {100 * res.heldout_em_best:.1f}% "
         f"({res.seconds_per_step:.2f} s/step on {res.device}, {res.seconds:.0f} s in all)")
    info(f"wrote {res.path}" + (f"; registered as {res.registered}" if res.registered else ""))


def runs(rows: list[dict[str, Any]]) -> None:
    from .runrecords import RunRecord

    out = []
    for r in rows:
        run = RunRecord.from_row(r)
        s = run.summary
        out.append({"id": run.id, "method": run.method, "label": run.label, "status": run.status,
                    "tasks": len(run.config.tasks or []), "queries": s.n_queries if s is not None else None,
                    "macro": f"{100 * s.macro_accuracy:.1f}" if s is not None and s.macro_accuracy is not None else None,
                    "created": r["created"]})
    table(out, [Col("id", "run", 0, "id"), Col("method", "method", 0, "id"), Col("label", "label", 2, "id", min_width=12),
                Col("status", "status", 1), Col("tasks", "tasks", 4), Col("queries", "queries", 3), Col("macro", "macro EM %"),
                Col("created", "created", 5, "id")], title=f"runs ({len(rows)})")


def demo_result(res: dict[str, Any], mergers: Sequence[str]) -> None:
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    rows = []
    for t in res["tasks"]:
        r = {"task": t["task"], "n": t["n"], "zero-shot": pct(t["zero-shot"])}
        for m in mergers:
            f = t[f"{m}_flips"]
            r[m] = pct(t[m])
            r[f"{m}_f"] = f"+{f['i2c']}/-{f['c2i']}"
        rows.append(r)
    macro = {"task": "macro average", "n": sum(t["n"] for t in res["tasks"]), "zero-shot": pct(res["macro"]["zero-shot"])}
    for m in mergers:
        f = res["flips_total"][m]
        macro[m] = pct(res["macro"][m])
        macro[f"{m}_f"] = f"+{f['i2c']}/-{f['c2i']}"
    rows.append(macro)
    cols = [Col("task", "task", 0, "task"), Col("n", "n", 2), Col("zero-shot", "zero-shot")]
    for m in mergers:
        label = res.get("methods", {}).get(m, m)
        label = f"{label} ({m})" if label != m else m
        cols += [Col(m, label), Col(f"{m}_f", f"{m} flips", 1)]
    cap = f"first {res['limit']} queries per task; --full runs all" if res["limit"] else "all queries"
    table(rows, cols, title=f"{res['base']['spec']} + pool {res['pool']} ({len(res['adapters'])} adapters; {res['weights']})",
          caption=f"Normalized exact match %, {cap}. Flips against zero-shot: +incorrect->correct / -correct->incorrect.")
    info(f"runs: {', '.join(f'{m} {r}' for m, r in res['runs'].items())} (scalectl runs show RUN --records)")
    info(f"done in {res['seconds']['total']:.0f} s; registry: {res['registry']}")
