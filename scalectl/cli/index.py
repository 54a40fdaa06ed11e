"""``scalectl index``: embed a pool's adapters under a view (incremental), or list the views and indexes."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def index_cmd(
    view: Annotated[Optional[str], typer.Option("--view", "-V", help="View to index: retrieval, balanced, qa, or a custom name with --recipe.")] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", help="Recipe of a custom view: retrieval, balanced or qa.")] = None,
    embedder: Annotated[Optional[str], typer.Option("--embedder", "-e", help="minilm (default), a sentence-transformers dir or hub id, or hash:DIM. Default: the index's own.")] = None,
    pool: Annotated[Optional[str], typer.Option("--pool", "-p", envvar="SCALECTL_POOL", help="Pool to index (default: default).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-embed every adapter, changed or not.")] = False,
    list_views: Annotated[bool, typer.Option("--list", help="List the views, their recipes and the indexes built.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Embed every adapter of a pool with a view's text recipe; only changed adapters are re-embedded."""
    from .. import report
    from ..errors import RetrievalError
    from ..registry import DEFAULT_POOL, Registry
    from ..views import VIEWS

    if list_views:
        from ..index import list_indexes

        views = [{"view": v.name, "recipe": v.name, "description": v.description} for v in VIEWS.values()]
        built = list_indexes(Registry())
        if as_json:
            report.emit_json({"views": views, "indexes": built})
            return
        report.table(views, [report.Col("view", "view", 0, "id"), report.Col("recipe", "recipe", 1, "id"),
                             report.Col("description", "text embedded", 0, "text")], title="views",
                     caption="custom view: scalectl index --view NAME --recipe retrieval|balanced|qa")
        if built:
            report.table(built, [report.Col("pool", "pool", 0, "id"), report.Col("view", "view", 0, "id"),
                                 report.Col("recipe", "recipe", 3, "id"), report.Col("embedder", "embedder", 1, "id", min_width=24),
                                 report.Col("dim", "dim", 2), report.Col("vectors", "vectors", 2),
                                 report.Col("updated", "updated", 4, "id")], title="indexes")
        return
    if not view:
        raise RetrievalError("give --view NAME (retrieval, balanced, qa, or a custom name with --recipe), or --list")
    from ..index import build_index

    with report.RichProgress(enabled=not as_json) as prog:
        res = build_index(Registry(), pool or DEFAULT_POOL, view, embedder=embedder, recipe=recipe, force=force, progress=prog)
    if as_json:
        report.emit_json(res)
        return
    labels = {"pool": "pool", "view": "view", "recipe": "recipe", "embedder": "embedder", "dim": "dimensions",
              "adapters": "adapters in pool", "embedded": "embedded now", "unchanged": "unchanged (kept)",
              "removed": "removed (adapter gone)", "seconds": "seconds"}
    report.table([{"field": label, "value": res[k]} for k, label in labels.items()],
                 [report.Col("field", "field", 0, "id"), report.Col("value", "value", 0, "text")],
                 title=f"scalectl index: {res['pool']}/{res['view']}")
