"""``scalectl base``: prepare and try the base model (the embedded default or any other)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

app = typer.Typer(help="The base model: prepare the embedded default, generate with it.", no_args_is_help=True)

BaseOpt = Annotated[Optional[str], typer.Option("--base", envvar="SCALECTL_BASE",
                                                help="smollm2-135m (embedded default; its hub id HuggingFaceTB/SmolLM2-135M-Instruct "
                                                     "is the same copy), a local model dir, a hub id, or hf:ORG/NAME "
                                                     "for the hub itself.")]


@app.command("prepare")
def prepare(base: BaseOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Convert/cache the base model (once) and load it; print where it lives and the load time."""
    from .. import report
    from ..backbone import load_backbone, model_dir

    bb = load_backbone(base, progress=report.info)
    n = sum(p.numel() for p in bb.model.parameters())
    out = {"base": bb.base.spec, "canonical": bb.base.canonical, "kind": bb.base.kind,
           "path": model_dir(bb.base), "parameters": n,
           "device": bb.device, "load_seconds": round(bb.load_seconds, 3)}
    if as_json:
        report.emit_json(out)
    else:
        report.table([{"field": k, "value": v} for k, v in out.items()],
                     [report.Col("field", "field", 0, "id"), report.Col("value", "value", 0, "text")], title="base model")


@app.command("generate")
def generate(
    prompt: Annotated[str, typer.Argument(help="User message (the chat template is applied when the model has one).")],
    base: BaseOpt = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n", min=1)] = 32,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Greedy-decode one prompt with the base model."""
    from .. import report
    from ..backbone import generate_greedy, load_backbone

    bb = load_backbone(base, progress=report.info)
    text = generate_greedy(bb, [prompt], max_new_tokens=max_new_tokens)[0]
    if as_json:
        report.emit_json({"base": bb.base.spec, "prompt": prompt, "output": text})
    else:
        typer.echo(text)
