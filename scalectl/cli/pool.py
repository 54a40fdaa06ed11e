"""``scalectl pool``: register, list, show, remove, verify and fetch adapters."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import WideOpt

app = typer.Typer(help="The adapter registry: add, list, show, remove, verify, fetch.", no_args_is_help=True)

PoolOpt = Annotated[Optional[str], typer.Option("--pool", "-p", envvar="SCALECTL_POOL",
                                                help="Pool (namespace of adapters on one base model).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _registry():
    from ..registry import Registry

    return Registry()


def _public(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "id"}


@app.command("add")
def add(
    sources: Annotated[Optional[list[str]], typer.Argument(help="Adapter directories and/or hub ids hf:ORG/NAME[@REV].")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", "-m", help="TOML/JSON manifest, or a text file of hub ids.")] = None,
    pool: Annotated[Optional[str], typer.Option("--pool", "-p", help="Pool to add to (default: the manifest's pool, else SCALECTL_POOL, else 'default').")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Name for a single adapter (default: its directory or repo name).")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="Base model of a new pool (default: the first adapter's).")] = None,
    tag: Annotated[Optional[list[str]], typer.Option("--tag", "-t", help="Tag to attach (repeatable).")] = None,
    description: Annotated[Optional[str], typer.Option("--description", help="One-line description.")] = None,
    source_task: Annotated[Optional[str], typer.Option("--source-task", help="The task the adapter was trained on.")] = None,
    examples: Annotated[Optional[Path], typer.Option("--examples", help="JSONL of {input, output} records for the adapter.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite adapters of the same name.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Register even when the base model differs from the pool's.")] = False,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Accept pickle weight files (adapter_model.bin).")] = False,
    fetch: Annotated[bool, typer.Option("--fetch", help="Fetch manifest hub ids now instead of on first use.")] = False,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Register PEFT LoRA adapters (all or none: any bad input leaves the registry as it was)."""
    from .. import report
    from ..manifest import read_examples

    ex = read_examples(examples, "--examples") if examples else None
    res = _registry().add_sources(
        sources, manifest=manifest, pool=pool, name=name, base_model=base, tags=tag, description=description,
        source_task=source_task, examples=ex, replace=replace, force=force, allow_pickle=allow_pickle, fetch=fetch,
        default_pool=os.environ.get("SCALECTL_POOL") or None,  # a manifest's own pool comes before the env default
    )
    for w in res.warnings:
        report.warn(w)
    if as_json:
        report.emit_json({"pool": res.pool, "added": [_public(r) for r in res.added], "warnings": res.warnings})
        return
    remote = sum(r["status"] == "remote" for r in res.added)
    report.info(f"registered {len(res.added)} adapter(s) in pool {res.pool!r}"
                + (f" ({remote} remote, fetched on first use)" if remote else ""))
    if len(res.added) <= 50:
        report.adapters(res.added, title="added")


@app.command("list")
def list_(
    pool: PoolOpt = None,
    base: Annotated[Optional[str], typer.Option("--base", help="Only adapters on this base model.")] = None,
    tag: Annotated[Optional[str], typer.Option("--tag", "-t", help="Only adapters with this tag.")] = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List registered adapters."""
    from .. import report

    rows = _registry().list(pool=pool, base_model=base, tag=tag)
    if as_json:
        report.emit_json([_public(r) for r in rows])
    else:
        report.adapters(rows)


@app.command("pools")
def pools(as_json: JsonOpt = False, wide: WideOpt = False) -> None:
    """List pools with their base model and size."""
    from .. import report

    rows = _registry().pools()
    report.emit_json(rows) if as_json else report.pools(rows)


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Adapter name (or POOL:NAME).")], pool: PoolOpt = None,
         as_json: JsonOpt = False) -> None:
    """Show everything recorded about one adapter."""
    from .. import report

    row = _registry().find(name, pool)
    report.emit_json(_public(row)) if as_json else report.adapter_detail(row)


@app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="Adapter name (or POOL:NAME).")], pool: PoolOpt = None,
           as_json: JsonOpt = False) -> None:
    """Remove an adapter from the registry (its files are left untouched)."""
    from .. import report

    row = _registry().remove(name, pool)
    if as_json:
        report.emit_json({"removed": f"{row['pool']}:{row['name']}"})
    else:
        report.info(f"removed {row['pool']}:{row['name']} (files left in place)")


@app.command("verify")
def verify(pool: PoolOpt = None, as_json: JsonOpt = False, wide: WideOpt = False) -> None:
    """Re-hash every registered weight file; exit 3 when any is modified or missing."""
    from .. import report

    results = _registry().verify(pool)
    bad = [v for v in results if v.status in ("modified", "missing")]
    if as_json:
        report.emit_json([v.__dict__ for v in results])
    else:
        report.verify(results)
    if bad:
        report.error(f"{len(bad)} adapter(s) failed verification: " + ", ".join(f"{v.pool}:{v.name} ({v.status})" for v in bad))
        raise typer.Exit(3)


@app.command("fetch")
def fetch(
    names: Annotated[Optional[list[str]], typer.Argument(help="Remote adapters to fetch now.")] = None,
    pool: PoolOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="Fetch every remote adapter (of --pool).")] = False,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle")] = False,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Fetch remote (hub) adapters into the HF cache and record their files and hashes."""
    from .. import report
    from ..errors import RegistryError

    reg = _registry()
    if all_:
        targets = [(r["name"], r["pool"]) for r in reg.list(pool) if r["status"] == "remote"]
    elif names:
        targets = [(n, pool) for n in names]
    else:
        raise RegistryError("name adapters to fetch, or pass --all")
    rows = [reg.fetch(n, p, allow_pickle=allow_pickle) for n, p in targets]
    if as_json:
        report.emit_json([_public(r) for r in rows])
    else:
        report.adapters(rows, title="fetched")


@app.command("path")
def path() -> None:
    """Print the registry database path."""
    from .. import paths

    typer.echo(str(paths.registry_path()))


@app.command("inspect")
def inspect(name: Annotated[str, typer.Argument(help="Adapter name (or POOL:NAME).")], pool: PoolOpt = None,
            allow_pickle: Annotated[bool, typer.Option("--allow-pickle")] = False, as_json: JsonOpt = False) -> None:
    """Load an adapter's factors (verifying its sha256) and print per-block update norms."""
    from .. import report
    from ..adapters import block_norms

    f = _registry().load_factors(name, pool, allow_pickle=allow_pickle)
    rows = block_norms(f)
    if as_json:
        report.emit_json({"name": f.name, "blocks": rows})
    else:
        report.table(rows, [report.Col("block", "block", 0, "id"), ("modules", "modules"), ("rank", "rank"),
                            ("delta_norm", "||dW||_F")],
                     title=f"{f.name}: update norm per block (from factors)")


@app.command("train")
def train(
    skill: Annotated[Optional[str], typer.Option("--skill", "-s", help="Synthetic skill to train on (--list shows them), SKILL.TEMPLATE (another prompt template: instruct, qa, terse) or SKILL+SKILL (a mixture).")] = None,
    base: Annotated[Optional[str], typer.Option("--base", envvar="SCALECTL_BASE", help="Base model: smollm2-135m (embedded), a model dir, a hub id, or hf:ORG/NAME for the hub itself (default: the pool's base, else smollm2-135m).")] = None,
    rank: Annotated[int, typer.Option("--rank", "-r", help="LoRA rank.")] = 8,
    alpha: Annotated[Optional[float], typer.Option("--alpha", help="lora_alpha (default 2 x rank).")] = None,
    targets: Annotated[Optional[str], typer.Option("--targets", help="Comma-separated module names (default: q and v projections).")] = None,
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps.")] = 60,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the data, the LoRA init and the batch order.")] = 0,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate (warm-up, then cosine decay to 10%).")] = 1e-3,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per step.")] = 8,
    max_len: Annotated[int, typer.Option("--max-len", help="Tokens per example (prompt truncated from the left).")] = 128,
    heldout: Annotated[int, typer.Option("--heldout", help="Held-out generated examples for checkpoint selection.")] = 32,
    eval_every: Annotated[int, typer.Option("--eval-every", help="Measure the held-out loss every N steps.")] = 10,
    name: Annotated[Optional[str], typer.Option("--name", help="Adapter name (default: the skill name).")] = None,
    pool: Annotated[str, typer.Option("--pool", "-p", envvar="SCALECTL_POOL", help="Pool to register into.")] = "skills",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output directory (default: SCALECTL_HOME/adapters/POOL/NAME).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, ... (default: cuda when present).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output and registry entry.")] = False,
    no_register: Annotated[bool, typer.Option("--no-register", help="Only write the adapter directory.")] = False,
    list_skills: Annotated[bool, typer.Option("--list", help="List the skills and exit.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a LoRA adapter on a synthetic skill (never on BBH), keep the best held-out checkpoint, register it."""
    from .. import report
    from ..errors import TaskError
    from ..tasks import skills

    if list_skills:
        rows = [{"skill": s.name, "kind": s.kind, "format": s.answer_format, "description": s.description,
                 "example": s.make(__import__("random").Random(0))[0]} for s in skills.SKILLS.values()]
        if as_json:
            report.emit_json(rows)
        else:
            report.table(rows, [report.Col("skill", "skill", 0, "id"), report.Col("kind", "kind", 3),
                                report.Col("format", "answer format", 2), report.Col("description", "description", 1, "text")],
                         title=f"skills ({len(rows)})",
                         caption=f"variants: SKILL{skills.TEMPLATE_SEP}TEMPLATE (templates: {', '.join(skills.TEMPLATES)}) "
                                 f"and SKILL{skills.MIXTURE_SEP}SKILL (a mixture)")
        return
    if not skill:
        raise TaskError("no skill given: pass --skill NAME (scalectl pool train --list shows them)")
    from ..train import TrainConfig, train_skill

    cfg = TrainConfig(skill=skill, base=base, rank=rank, alpha=alpha,
                      targets=[t.strip() for t in targets.split(",") if t.strip()] if targets else None,
                      steps=steps, seed=seed, lr=lr, batch_size=batch_size, max_len=max_len, heldout=heldout,
                      eval_every=eval_every)
    skills.get_skill(skill)  # unknown skill: fail before loading anything
    with report.RichProgress(enabled=not as_json) as prog:
        res = train_skill(cfg, name=name, pool=pool, out=out, overwrite=overwrite, register=not no_register,
                          device=device, progress=prog)
    if as_json:
        report.emit_json(res.to_dict())
        return
    report.train_result(res)
