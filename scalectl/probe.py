"""``scalectl probe two-hop``: does composing two adapters integrate what each one knows?

A seeded synthetic world (invented names, so the backbone knows none of it):

- ``facts`` variant: person -> city (first hop), city -> country (second hop); the two-hop
  question asks a person's country.
- ``math`` variant: person -> how many crates they own (first hop), town -> how many apples one
  crate holds there (second hop); the two-hop question names the person and their town and asks
  how many apples fill all their crates (a product of the two recalled numbers).

One adapter is trained on first-hop records, another on second-hop records (disjoint data),
a third on both (the upper bound), all with ``scalectl pool train``'s training loop. The
two-hop questions are then answered by: the base model, each single adapter, parameter
averaging (``linear``, weights 1/2 each and 1 each), ``lasrc``, dynamic selection (``logo``:
both adapters as branches, per-query weights from one forward pass), and the union adapter.
Every row also reports first-hop and second-hop recall, so a composition that forgot a hop is
visible. The verdict says composition integrated the knowledge only when a composed model
answers at least two more two-hop questions than both the better single adapter and chance
(1 in the number of countries for ``facts``) while still recalling both hops (50% or more).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EvalError
from .progress import Progress, ensure

_SYL = ["ka", "lo", "mi", "ra", "ven", "dor", "sel", "tu", "bri", "nax", "qua", "zen", "pel", "vor", "thi", "mun"]


def _name(rng: random.Random, parts: int, taken: set[str]) -> str:
    while True:
        n = "".join(rng.choice(_SYL) for _ in range(parts)).capitalize()
        if n not in taken:
            taken.add(n)
            return n


@dataclass
class World:
    variant: str
    seed: int
    hop1: list[dict[str, str]] = field(default_factory=list)  # first-hop records
    hop2: list[dict[str, str]] = field(default_factory=list)  # second-hop records
    two_hop: list[dict[str, str]] = field(default_factory=list)  # the questions composition must answer


def make_world(variant: str = "facts", n_people: int = 24, n_groups: int = 6, seed: int = 0) -> World:
    """A seeded world; invented names. ``n_groups`` cities (facts) or crate sizes (math)."""
    if variant not in ("facts", "math"):
        raise EvalError(f"unknown probe variant {variant!r}; use facts or math")
    if n_people < 2 or n_groups < 2:
        raise EvalError("the probe needs at least 2 people and 2 groups")
    rng = random.Random(f"two-hop:{variant}:{seed}")
    taken: set[str] = set()
    people = [_name(rng, 2, taken) for _ in range(n_people)]
    w = World(variant=variant, seed=seed)
    if variant == "facts":
        cities = [_name(rng, 3, taken) for _ in range(n_groups)]
        countries = [_name(rng, 2, taken) + "ia" for _ in range(n_groups)]
        home = {p: cities[i % n_groups] for i, p in enumerate(rng.sample(people, n_people))}
        country = dict(zip(cities, rng.sample(countries, n_groups)))
        w.hop1 = [{"input": f"In which city does {p} live?", "target": home[p]} for p in people]
        w.hop2 = [{"input": f"In which country is the city of {c}?", "target": country[c]} for c in cities]
        w.two_hop = [{"input": f"In which country does {p} live?", "target": country[home[p]]} for p in people]
    else:
        towns = [_name(rng, 3, taken) for _ in range(n_groups)]
        size = {t: rng.randint(2, 9) for t in towns}
        town = {p: towns[i % n_groups] for i, p in enumerate(rng.sample(people, n_people))}
        crates = {p: rng.randint(2, 9) for p in people}
        w.hop1 = [{"input": f"How many crates does {p} from {town[p]} own?", "target": str(crates[p])} for p in people]
        w.hop2 = [{"input": f"How many apples fit in one crate in {t}?", "target": str(size[t])} for t in towns]
        w.two_hop = [{"input": f"{p} from {town[p]} fills every crate they own with apples. How many apples is that?",
                      "target": str(crates[p] * size[town[p]])} for p in people]
    return w


@dataclass
class ProbeResult:
    variant: str
    rows: list[dict[str, Any]]
    verdict: str
    integrated: bool
    adapters: dict[str, str]
    seconds: float
    world: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _max_new(bb, records: list[dict[str, str]]) -> int:
    return max(len(bb.tokenizer(r["target"], add_special_tokens=False)["input_ids"]) for r in records) + 2


def _accuracy(bb, records: list[dict[str, str]], batch_size: int = 16) -> float:
    from .backbone import generate_greedy
    from .tasks.bbh import exact_match

    outs = generate_greedy(bb, [r["input"] for r in records], max_new_tokens=_max_new(bb, records), batch_size=batch_size,
                           stop_at_newline=True)
    return sum(exact_match(o, r["target"]) for o, r in zip(outs, records)) / len(records)


def _train_hops(w, variant: str, base: str | None, seed: int, steps: int, rank: int, lr: float, out_dir: Path,
                reg, bb, prog: Progress) -> dict[str, str]:
    """The hop1, hop2 and union adapters, trained on the world's records into a probe pool of their own."""
    from .train import TrainConfig, train_skill

    pool = f"probe-two-hop-{variant}-{seed}"
    adapters: dict[str, str] = {}
    for label, recs in {"hop1": w.hop1, "hop2": w.hop2, "union": w.hop1 + w.hop2}.items():
        cfg = TrainConfig(skill=f"two-hop-{variant}-{label}", base=base, rank=rank, steps=steps, seed=seed, lr=lr,
                          batch_size=8, max_len=96, heldout=len(recs), eval_every=max(1, steps // 4))
        prog.log(f"training the {label} adapter on {len(recs)} records ({steps} steps)")
        r = train_skill(cfg, name=label, pool=pool, out=out_dir / label, overwrite=True, reg=reg, bb=bb, progress=prog,
                        examples=(recs, recs), description=f"two-hop probe ({variant}, seed {seed}): {label} records",
                        command=f"scalectl probe two-hop --variant {variant} --seed {seed} --steps {steps}")
        adapters[label] = r.registered or label
    return adapters


def _logo_scores(ctx, bb, factors: dict[str, Any], w) -> dict[str, float]:
    """Dynamic selection: both adapters as branches, per-query weights from one forward pass (L2 signal, weighted)."""
    from .methods import MethodConfig
    from .methods.logo import generate_mixed, logo_weights
    from .tasks.bbh import exact_match

    lcfg = MethodConfig(method="logo", logo_k=2)
    fs = [factors["hop1"], factors["hop2"]]
    out = {}
    for key, recs in (("hop1", w.hop1), ("hop2", w.hop2), ("two_hop", w.two_hop)):
        prompts = [r["input"] for r in recs]
        W, _ = logo_weights(ctx, ["hop1", "hop2"], prompts, lcfg)
        outs = generate_mixed(bb, fs, prompts, W, _max_new(bb, recs), batch_size=16)
        out[key] = sum(exact_match(o, r["target"]) for o, r in zip(outs, recs)) / len(recs)
    return out


def _conditions(ctx, bb, factors: dict[str, Any], w, prog: Progress) -> list[dict[str, Any]]:
    """Accuracy on first-hop, second-hop and two-hop questions under each condition, in the table's order."""
    from .methods.plan import compose_deltas
    from .stacked import merged_weights

    def scores() -> dict[str, float]:
        return {"hop1": _accuracy(bb, w.hop1), "hop2": _accuracy(bb, w.hop2), "two_hop": _accuracy(bb, w.two_hop)}

    def alone(label: str):
        return merged_weights(bb.model, {m: factors[label].delta(m).float() for m in factors[label].modules})

    prog.log("answering with the base model, each adapter, and each composition")
    rows: list[dict[str, Any]] = [{"condition": "base model", **scores()}]
    for label in ("hop1", "hop2"):
        with alone(label):
            rows.append({"condition": f"{label} adapter alone", **scores()})
    for merger, ws, tag in (("linear", [0.5, 0.5], "parameter averaging (linear, 1/2 each)"),
                            ("linear", [1.0, 1.0], "naive summation (linear, 1 each)"),
                            ("lasrc", [1.0, 1.0], "lasrc (weights 1 each)")):
        with merged_weights(bb.model, compose_deltas(ctx, ["hop1", "hop2"], ws, merger)):
            rows.append({"condition": tag, **scores()})
    rows.append({"condition": "dynamic selection (logo)", **_logo_scores(ctx, bb, factors, w)})
    with alone("union"):
        rows.append({"condition": "union adapter (trained on both; upper bound)", **scores()})
    return rows


def _verdict(rows: list[dict[str, Any]], variant: str, n_groups: int, n_two_hop: int) -> tuple[bool, str]:
    """Did composition integrate the knowledge: (integrated, the sentence that says so and why)."""
    single = max(r["two_hop"] for r in rows[1:3])
    comps = rows[3:7]
    best = max(comps, key=lambda r: (r["two_hop"], r["hop1"] + r["hop2"]))
    # facts: a guess among the world's countries is right 1 time in n_groups; math answers are products (chance ~0)
    chance = 1.0 / n_groups if variant == "facts" else 0.0
    need = max(single, chance) + 2.0 / n_two_hop
    retained = best["hop1"] >= 0.5 and best["hop2"] >= 0.5
    integrated = best["two_hop"] >= need and retained
    union = rows[-1]["two_hop"]
    why = ("" if integrated else
           " (the rule: two-hop accuracy at least 2 questions above both the better single adapter and chance "
           f"({100 * chance:.0f}%), with both hops still recalled at 50% or more)")
    return integrated, (
        f"composition {'integrated' if integrated else 'did not integrate'} the knowledge: the best composition "
        f"({best['condition']}) answers {100 * best['two_hop']:.0f}% of two-hop questions against "
        f"{100 * single:.0f}% for the better single adapter, {100 * chance:.0f}% by chance and {100 * union:.0f}% for "
        f"the adapter trained on both hops' records; its first-hop / second-hop recall is {100 * best['hop1']:.0f}% / "
        f"{100 * best['hop2']:.0f}%{why}.")


def run_two_hop(variant: str = "facts", base: str | None = None, n_people: int = 24, n_groups: int = 6, seed: int = 0,
                steps: int = 80, rank: int = 8, lr: float = 2e-3, out_dir: str | Path | None = None,
                progress: Progress | None = None, bb=None) -> ProbeResult:
    """Train the hop adapters, compose them every way, and answer first-hop, second-hop and two-hop questions."""
    from . import paths
    from .backbone import load_backbone
    from .context import RunContext
    from .registry import Registry

    prog = ensure(progress)
    t0 = time.perf_counter()
    w = make_world(variant, n_people, n_groups, seed)
    if bb is None:
        prog.log("loading the base model")
        bb = load_backbone(base)
    out_dir = Path(out_dir) if out_dir else paths.home() / "probe" / f"two-hop-{variant}-{seed}"
    reg = Registry()
    adapters = _train_hops(w, variant, base, seed, steps, rank, lr, out_dir, reg, bb, prog)
    ctx = RunContext(reg, bb, f"probe-two-hop-{variant}-{seed}")
    factors = {k: ctx.load_factors(k) for k in ("hop1", "hop2", "union")}
    rows = _conditions(ctx, bb, factors, w, prog)
    integrated, verdict = _verdict(rows, variant, n_groups, len(w.two_hop))
    return ProbeResult(variant=variant, rows=rows, verdict=verdict, integrated=integrated, adapters=adapters,
                       seconds=round(time.perf_counter() - t0, 1),
                       world={"people": n_people, "groups": n_groups, "two_hop_questions": len(w.two_hop)})
