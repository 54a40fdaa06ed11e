"""``scalectl probe``: the limits of reuse (the two-hop probe)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

app = typer.Typer(help="Probes of what composition can and cannot do.", no_args_is_help=True)


@app.command("two-hop")
def two_hop(
    variant: Annotated[str, typer.Option("--variant", help="facts (person -> city -> country) or math (crates x crate size).")] = "facts",
    people: Annotated[int, typer.Option("--people", help="People in the world (two-hop questions).")] = 24,
    groups: Annotated[int, typer.Option("--groups", help="Cities (facts) or towns (math).")] = 6,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the world and the training.")] = 0,
    steps: Annotated[int, typer.Option("--steps", help="Training steps per adapter.")] = 80,
    rank: Annotated[int, typer.Option("--rank", help="LoRA rank.")] = 8,
    base: Annotated[Optional[str], typer.Option("--base", envvar="SCALECTL_BASE", help="Base model: smollm2-135m (embedded, the default), a model dir, a hub id, or hf:ORG/NAME.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Train first-hop, second-hop and union adapters on a synthetic world; compare compositions on two-hop questions."""
    from .. import report
    from ..probe import run_two_hop

    with report.RichProgress(enabled=not as_json) as prog:
        res = run_two_hop(variant, base=base, n_people=people, n_groups=groups, seed=seed, steps=steps, rank=rank,
                          progress=prog)
    if as_json:
        report.emit_json(res.to_dict())
        return
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    report.table([{**r, "hop1": pct(r["hop1"]), "hop2": pct(r["hop2"]), "two_hop": pct(r["two_hop"])} for r in res.rows],
                 [report.Col("condition", "condition", 0, "text"), ("hop1", "first hop %"), ("hop2", "second hop %"),
                  ("two_hop", "two-hop %")],
                 title=f"two-hop probe ({res.variant}, {res.world['two_hop_questions']} two-hop questions)")
    report.info(res.verdict)
    report.info(f"{res.seconds:.0f} s; adapters: {', '.join(res.adapters.values())}")
