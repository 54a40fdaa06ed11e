"""``scalectl demo``: the main job on the embedded default."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def demo(
    base: Annotated[Optional[str], typer.Option("--base", envvar="SCALECTL_BASE", help="Base model (default: smollm2-135m).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Prepare the embedded default, decode one prompt, register the shipped pool manifests, list them."""
    from .. import report
    from ..demo import run_demo

    res = run_demo(base, progress=None if as_json else report.info)
    if as_json:
        report.emit_json(res)
        return
    for r in res["registered"]:
        for w in r["warnings"]:
            report.warn(f"{r['manifest']}: {w}")
    b, g = res["base"], res["generation"]
    report.table([{**b, "prompt": g["prompt"], "output": g["output"], "decode_seconds": g["seconds"]}],
                 [("spec", "base"), ("canonical", "model"), ("device", "device"), ("load_seconds", "load s"),
                  ("prompt", "prompt"), ("output", "greedy output"), ("decode_seconds", "decode s")],
                 title="embedded default")
    report.pools(res["pools"])
    report.info(f"registry: {res['registry']}  (scalectl pool list --pool POOL shows the adapters)")
