"""Composition: registered adapters + weights + a merger -> a composed update, written as a PEFT adapter.

Factor-expressible mergers (linear, cat, lorahub, lasrc) are written exactly: rank sum(r),
per-block coefficients folded into B. Dense mergers (ties, dare-*, magnitude-prune, and any
merger behind the sdp stage) are written as a truncated SVD at ``rank`` (default: the
largest input rank) with the relative Frobenius error of every module recorded.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import __version__
from .adapters import LoraFactors
from .backbone import same_base
from .errors import ParameterError
from .lowrank import LowRank, LowRankSpec, compress
from .merge.table import MergeError, MergerSpec, resolve_merger

if TYPE_CHECKING:  # pragma: no cover
    import torch

PROVENANCE_FILE = "scalectl_provenance.json"
COMPOSED_TAG = "composed"  # on every adapter scalectl composes; the index leaves these out of retrieval


def is_composed(row: dict[str, Any]) -> bool:
    """Whether a registry row is a composition scalectl wrote (tag ``composed``): no method offers one as a
    candidate, since it would count the adapters it was made of twice."""
    return COMPOSED_TAG in (row.get("tags") or [])


@dataclass
class ComposeInputs:
    names: list[str]
    rows: list[dict[str, Any]]
    factors: list[LoraFactors]
    modules: list[str]  # the modules composed (common to all inputs), in order
    blocks: dict[str, str]  # module -> block
    base_model: str | None
    pool: str | None


@dataclass
class Composition:
    """The composed update: exact factors (``A``, ``B``, scaling folded in) or dense deltas per module."""

    spec: MergerSpec
    weights: list[float]
    inputs: ComposeInputs
    A: dict[str, "torch.Tensor"] = field(default_factory=dict)
    B: dict[str, "torch.Tensor"] = field(default_factory=dict)
    dense: dict[str, "torch.Tensor"] = field(default_factory=dict)
    blocks: list[dict[str, Any]] = field(default_factory=list)  # the per-block table
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # said to the user and stored with the result

    @property
    def exact(self) -> bool:
        return not self.dense

    def delta(self, module: str) -> "torch.Tensor":
        return self.dense[module] if self.dense else self.B[module] @ self.A[module]


def parse_weights(text: str | None, k: int) -> list[float] | None:
    if text is None or text == "":
        return None
    try:
        w = [float(x) for x in text.split(",")]
    except ValueError:
        raise MergeError(f"--weights must be comma-separated numbers, got {text!r}") from None
    if len(w) != k:
        raise MergeError(f"--weights has {len(w)} values for {k} adapters")
    return w


def load_inputs(reg, names: list[str], pool: str | None = None, allow_partial: bool = False,
                allow_pickle: bool = False) -> ComposeInputs:
    """Load and check the adapters to compose: same base, same modules (or their common part), finite factors."""
    if not names:
        raise MergeError("no adapters given: pass --adapters a,b,c")
    if len(set(names)) != len(names):
        raise MergeError(f"an adapter is listed twice in {names}")
    rows, factors = [], []
    for n in names:
        row = reg.find(n, pool)
        if row.get("use_dora"):
            raise MergeError(f"{row['name']} is a DoRA adapter: its magnitude vector makes the update non-linear in "
                             "the factors, so it cannot be merged this way")
        f = reg.load_factors(row["name"], row["pool"], allow_pickle=allow_pickle)
        for m in f.modules:
            for which, t in (("A", f.A[m]), ("B", f.B[m])):
                if not _finite(t):
                    raise MergeError(f"{row['name']}: module {m} has NaN or inf in lora_{which}")
        rows.append(row)
        factors.append(f)
    bases = [r.get("base_model") for r in rows]
    for r, b in zip(rows[1:], bases[1:]):
        if not same_base(bases[0], b):
            raise MergeError(f"base models differ: {rows[0]['name']} is on {bases[0]!r}, {r['name']} on {b!r}")
    sets = [set(f.modules) for f in factors]
    common = set.intersection(*sets)
    if any(s != common for s in sets):
        diff = next((f, s - common) for f, s in zip(factors, sets) if s != common)
        leafs = lambda ms: sorted({m.rsplit(".", 1)[-1] for m in ms})  # noqa: E731
        msg = (f"target modules differ: {diff[0].name} adapts {len(diff[1])} module(s) the others lack "
               f"(e.g. {sorted(diff[1])[0]}; targets {[leafs(s) for s in sets]})")
        if not allow_partial:
            raise MergeError(msg + "; pass --allow-partial to merge the common modules")
        if not common:
            raise MergeError(msg + "; and no module is common to all of them")
    for m in common:
        shapes = {(tuple(f.A[m].shape[1:]), tuple(f.B[m].shape[:1])) for f in factors}
        if len(shapes) != 1:
            raise MergeError(f"module {m}: input/output sizes differ between adapters ({sorted(shapes)})")
    modules = [m for m in factors[0].modules if m in common]
    return ComposeInputs(names=[r["name"] for r in rows], rows=rows, factors=factors, modules=modules,
                         blocks={m: factors[0].blocks[m] for m in modules}, base_model=bases[0],
                         pool=rows[0]["pool"])


def _by_block(inp: ComposeInputs) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in inp.modules:
        out.setdefault(inp.blocks[m], []).append(m)
    return out


def _lasrc_config(p: dict[str, Any]):
    from .merge.lasrc import LasrcConfig

    return LasrcConfig(tau=p["tau"], alpha_max=p["alpha_max"], floor=p["floor"], guard=p["guard"], kappa=p["kappa"],
                       align=p["align"], fixed_alpha=p["fixed_alpha"], norm_rescale=not p["no_norm_rescale"],
                       no_pruning=p["no_pruning"], use_floor=not p["no_floor"], use_guard=not p["no_guard"])


def _lasrc_row(block: str, st) -> dict[str, Any]:
    return {"block": block, "coefficients": [round(float(g), 6) for g in st.gamma], "overlap": st.overlap,
            "alpha": st.alpha, "retained": len(st.kept), "guarded": st.guarded, "res_ratio": st.res_ratio}


def compose_inputs(inp: ComposeInputs, weights: list[float] | None, spec: MergerSpec,
                   progress: Callable[[int, int], None] | None = None) -> Composition:
    """Run the merger over every block and module. Pure with respect to the inputs (nothing is written)."""
    import torch

    k = len(inp.factors)
    w_list = weights if weights is not None else [1.0 / k] * k
    if len(w_list) != k:
        raise MergeError(f"{len(w_list)} weights for {k} adapters")
    if all(x == 0 for x in w_list):
        raise MergeError("all weights are zero: the composition would be empty")
    if any(not math.isfinite(x) for x in w_list):
        raise MergeError(f"weights must be finite, got {w_list}")
    w = torch.tensor(w_list, dtype=torch.float64)
    comp = Composition(spec=spec, weights=w_list, inputs=inp)
    if "sign_election" in spec.params and any(x < 0 for x in w_list):
        comp.warnings.append(
            f"{spec.name} with negative weights: sign_election={spec.params['sign_election']} "
            + ("(PEFT's) elects signs on the unweighted stack, so a negatively weighted adapter counts as agreeing "
               "and adds the opposite sign; sign_election=weighted is mergekit's convention"
               if spec.params["sign_election"] == "unweighted" else "(mergekit's) elects signs on the weighted deltas"))
    t0 = time.perf_counter()
    blocks = _by_block(inp)
    for i, (block, mods) in enumerate(blocks.items()):
        if spec.dense:
            _dense_block(comp, block, mods, w)
        else:
            _factor_block(comp, block, mods, w)
        if progress:
            progress(i + 1, len(blocks))
    comp.seconds = time.perf_counter() - t0
    for m in inp.modules:  # nothing non-finite leaves: weights like 1e300 overflow the product
        parts = [comp.dense[m]] if comp.dense else [comp.A[m], comp.B[m]]
        if not all(_finite(x) for x in parts):
            raise MergeError(f"{spec.name} gives NaN or infinite values in module {m} (weights {w_list}): "
                             "nothing was written")
    if all(float(comp.delta(m).abs().max()) == 0 for m in inp.modules):
        raise MergeError(f"{spec.name} produced an all-zero update (check the weights and the inputs)")
    return comp


def _finite(t: "torch.Tensor") -> bool:
    """Whether every value of ``t`` is finite. A NaN or an infinity makes the sum non-finite, so a finite sum
    settles it in one reduction; only a non-finite sum (that, or finite values whose sum overflows) takes the
    elementwise check."""
    import torch

    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _factor_block(comp: Composition, block: str, mods: list[str], w: "torch.Tensor") -> None:
    from .merge.factor import lorahub_factors, weighted_concat

    fs, spec = comp.inputs.factors, comp.spec
    A = lambda m: [f.A[m] for f in fs]  # noqa: E731
    B = lambda m: [f.B[m] for f in fs]  # noqa: E731
    S = lambda m: [f.scaling[m] for f in fs]  # noqa: E731
    if spec.op.name == "lasrc":
        import torch

        from .merge.lasrc import lasrc_gram, module_gram

        k = len(fs)
        G = torch.zeros(k, k, dtype=torch.float64)  # (K, K)
        stacked = {}
        for m in mods:  # stack once: the Gram and the output share A' = [A1; ...; AK] and [s1 B1 | ... | sK BK]
            a, b = weighted_concat(A(m), B(m), S(m), torch.ones(k))  # (R, d_in), (d_out, R)
            owner = torch.repeat_interleave(torch.arange(k), torch.tensor([x.shape[0] for x in A(m)]))  # (R,)
            G += module_gram(a, b, owner, k)
            stacked[m] = (a, b, owner)
        st = lasrc_gram((G + G.T) / 2, w, _lasrc_config(spec.params))
        gamma = st.gamma.to(torch.float32)
        for m, (a, b, owner) in stacked.items():  # b is weighted_concat's own copy: scaled in place
            comp.A[m], comp.B[m] = a, b.mul_(gamma[owner])  # (d_out, R): per-block coefficients folded into B
        comp.blocks.append(_lasrc_row(block, st))
        return
    for m in mods:
        if spec.op.name == "lorahub":
            comp.A[m], comp.B[m] = lorahub_factors(A(m), B(m), S(m), w)
        else:  # linear, cat
            comp.A[m], comp.B[m] = weighted_concat(A(m), B(m), S(m), w)
    comp.blocks.append({"block": block, "coefficients": [round(float(x), 6) for x in w], "modules": len(mods),
                        "rank": int(comp.A[mods[0]].shape[0])})


def _dense_block(comp: Composition, block: str, mods: list[str], w: "torch.Tensor") -> None:
    import torch

    from .merge import dense as D

    fs, spec, names = comp.inputs.factors, comp.spec, comp.inputs.names
    p = spec.params
    deltas: dict[str, torch.Tensor] = {}
    for m in mods:
        d = torch.stack([f.delta(m) for f in fs])  # (K, d_out, d_in)
        if spec.sdp is not None:
            q = spec.sdp
            d = torch.stack([D.sdp(d[n], q["drop_rate"], q["seed"], names[n], m, rescale=q["rescale"],
                                   preserve_norm=q["preserve_norm"]) for n in range(len(fs))])
        deltas[m] = d
    wf = w.to(torch.float32)
    row: dict[str, Any] = {"block": block, "coefficients": [round(float(x), 6) for x in w], "modules": len(mods)}
    name = spec.op.name
    if name == "lasrc":
        from .merge.lasrc import lasrc_dense

        V = torch.cat([deltas[m].reshape(len(fs), -1) for m in mods], dim=1).to(torch.float64)  # (K, D)
        res, st = lasrc_dense(V, w, _lasrc_config(p))
        off = 0
        for m in mods:
            n = deltas[m][0].numel()
            comp.dense[m] = res[off:off + n].reshape(deltas[m].shape[1:]).to(torch.float32)
            off += n
        row.update(_lasrc_row(block, st))
    else:
        merge = _dense_merges().get(name)
        if merge is None:  # pragma: no cover - the operator table admits no other dense operator
            raise MergeError(f"{name} has no dense implementation")
        for m in mods:
            comp.dense[m] = merge(deltas[m], wf, p, names, m)
    comp.blocks.append(row)


def _registration(reg, pool: str, out: str | Path, name: str | None, replace: bool) -> str:
    """The name ``out`` will be registered under, checked before anything is written: a valid name, and either free
    in the pool, or held by the row this very output created before (rewriting it), or named by ``replace``."""
    from .registry import valid_name

    reg_name = name or Path(out).name
    if not valid_name(reg_name):
        raise MergeError(f"invalid adapter name {reg_name!r}: use letters, digits, '.', '_', '-', '+' (or pass --name)")
    taken = next((r for r in reg.list(pool=pool) if r["name"] == reg_name), None)
    if taken is not None and not replace:
        same = taken.get("path") and Path(taken["path"]).resolve() == Path(out).resolve()
        if not same:
            raise MergeError(f"an adapter named {reg_name!r} is already registered in pool {pool!r} (from "
                             f"{taken.get('path') or taken.get('source')}); pass --name, or --replace to replace it")
    return reg_name


@functools.lru_cache(maxsize=1)
def _dense_merges() -> dict[str, Callable[..., Any]]:
    """Each dense operator's merge of one module's stack ``d`` (K, d_out, d_in) with weights ``w`` and its resolved
    parameters ``p`` (adapter ``names`` and the module name ``m`` key the seeded masks)."""
    import torch

    from .merge import dense as D

    return {
        "linear": lambda d, w, p, names, m: torch.einsum("k,kij->ij", w, d),
        "cat": lambda d, w, p, names, m: torch.einsum("k,kij->ij", w, d),
        "ties": lambda d, w, p, names, m: D.ties(d, w, p["density"], p["sign"], p["sign_election"]),
        "magnitude-prune": lambda d, w, p, names, m: D.prune_and_sum(d, w, p["density"]),
        "dare-linear": lambda d, w, p, names, m: D.dare_linear(d, w, p["drop_rate"], p["seed"], names, m),
        "dare-ties": lambda d, w, p, names, m: D.dare_ties(d, w, p["drop_rate"], p["seed"], names, m, p["sign"],
                                                           p["sign_election"]),
    }



@dataclass
class ComposeResult:
    out: str | None
    merged_model: str | None
    merger: str
    params: dict[str, Any]
    weights: list[float]
    blocks: list[dict[str, Any]]
    exact: bool
    rank: int
    max_rel_error: float
    seconds: float
    registered: str | None
    provenance: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    low_rank: dict[str, Any] | None = None  # what --rank / --max-error kept: the spec, errors and ranks summary


def provenance(comp: Composition, seed: int | None, rank: int, errors: dict[str, float],
               low: "LowRank | None" = None) -> dict[str, Any]:
    spec = comp.spec
    return {
        "scalectl_version": __version__,
        "operator": spec.name,
        "reference": spec.op.reference,
        "params": spec.params,
        "sdp": spec.sdp,
        "weights": comp.weights,
        "seed": seed,
        "inputs": [{"name": r["name"], "pool": r["pool"], "source": r["source"], "sha256": r["sha256"]}
                   for r in comp.inputs.rows],
        "base_model": comp.inputs.base_model,
        "modules": len(comp.inputs.modules),
        "exact": comp.exact,
        "rank": rank,
        "svd_rel_error": errors or None,
        "ranks": dict(low.ranks) if low is not None else None,
        "low_rank": low.record() if low is not None else None,
        "blocks": comp.blocks,
    }


def exported(comp: Composition, lowrank: LowRankSpec | None = None) -> "LowRank | None":
    """What a written adapter holds: the exact factors (``None``), or the best approximation under ``lowrank``.
    A factor composition is exact unless ``lowrank`` asks for less; a dense one is always approximated (by
    default at the largest input rank), its SVD taken of the dense update."""
    inp = comp.inputs
    if comp.exact:
        if lowrank is None or not lowrank.active:
            return None
        return compress({m: (comp.B[m], comp.A[m]) for m in comp.A}, None, lowrank)
    if lowrank is None or not lowrank.active:
        lowrank = LowRankSpec(rank=max(int(f.A[m].shape[0]) for f in inp.factors for m in inp.modules))
    return compress(None, comp.dense, lowrank)


def scored_deltas(comp: Composition, lowrank: LowRankSpec | None = None
                  ) -> tuple[dict[str, "torch.Tensor"], "LowRank | None"]:
    """The per-module update (float32) a run scores: the exact update, or under an active ``lowrank`` exactly
    what :func:`write_adapter` writes with it (so what is served is what was scored)."""
    import torch

    if lowrank is not None and lowrank.active:
        low = exported(comp, lowrank)
        return {m: low.delta(m) for m in low.A}, low
    return {m: comp.delta(m).to(torch.float32) for m in comp.inputs.modules}, None


def write_adapter(comp: Composition, out: str | Path, lowrank: LowRankSpec | None = None, overwrite: bool = False,
                  extra: dict[str, Any] | None = None, before_replace: Callable[[], None] | None = None,
                  after_replace: Callable[[], None] | None = None) -> "LowRank | None":
    """Write the composition as a PEFT directory (atomically): exact, or under ``lowrank`` (:func:`exported`; per
    module ranks go into ``rank_pattern``). Returns what :func:`exported` gave.
    ``before_replace`` / ``after_replace``: as :func:`~scalectl.fsutil.atomic_dir`."""
    import torch

    from .adapters import save_adapter

    inp = comp.inputs
    low = exported(comp, lowrank)
    A, B = (comp.A, comp.B) if low is None else (low.A, low.B)
    rank_out = max(int(a.shape[0]) for a in A.values())  # what was written: --rank 100000 is the numerical rank
    errors = dict(low.errors) if low is not None else {}
    task_type = next((r.get("task_type") for r in inp.rows if r.get("task_type")), None)
    prov = provenance(comp, comp.spec.params.get("seed", (comp.spec.sdp or {}).get("seed")), rank_out, errors, low)
    prov.update(extra or {})
    sidecar = {"description": f"{comp.spec.name} composition of {', '.join(inp.names)}",
               "tags": [COMPOSED_TAG, comp.spec.name], "source_task": None, "provenance": prov}
    save_adapter(out, {m: A[m].to(torch.float32) for m in A}, {m: B[m].to(torch.float32) for m in B},
                 base_model=inp.base_model, task_type=task_type, overwrite=overwrite,
                 metadata={"operator": comp.spec.name, "scalectl_version": __version__},
                 extra_files={PROVENANCE_FILE: json.dumps(prov, indent=2, default=str) + "\n",
                              "scalectl.json": json.dumps(sidecar, indent=2, default=str) + "\n"},
                 before_replace=before_replace, after_replace=after_replace)
    return low


def merged_backbone(comp: Composition, base: str | None = None):
    """The base model (``base``, else the adapters' own, the embedded copy for its hub id) loaded on the CPU in
    float32 with the composed update added to its weights; every module is checked before anything is written."""
    import torch

    from .backbone import choose_base, load_backbone, require_same_base, resolve_base

    spec = resolve_base(choose_base(base, comp.inputs.base_model))
    require_same_base(spec, comp.inputs.pool or "", comp.inputs.base_model)
    bb = load_backbone(spec.spec, device="cpu", dtype="float32")
    params = dict(bb.model.named_modules())
    fan = any(f.fan_in_fan_out for f in comp.inputs.factors)
    with torch.no_grad():
        for m in comp.inputs.modules:
            mod = params.get(m)
            if mod is None or not hasattr(mod, "weight"):
                raise MergeError(f"the base model has no module {m}: is {bb.base.spec!r} the adapters' base?")
            d = comp.delta(m)
            d = d.T if fan else d
            if tuple(mod.weight.shape) != tuple(d.shape):
                raise MergeError(f"module {m}: base weight {tuple(mod.weight.shape)} vs update {tuple(d.shape)}")
            mod.weight += d.to(mod.weight.dtype)
    return bb


def save_merged(bb, comp: Composition, out: str | Path, overwrite: bool = False) -> Path:
    """Write a :func:`merged_backbone` as a full model directory (atomically)."""
    from .fsutil import atomic_dir

    with atomic_dir(out, overwrite=overwrite) as tmp:
        bb.model.save_pretrained(str(tmp), safe_serialization=True)
        bb.tokenizer.save_pretrained(str(tmp))
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance(comp, None, 0, {}), indent=2, default=str) + "\n")
    return Path(out)


def merge_into_base(comp: Composition, out: str | Path, base: str | None = None, overwrite: bool = False) -> Path:
    """Write a full model with the composed update added to the base weights (atomically)."""
    return save_merged(merged_backbone(comp, base), comp, out, overwrite=overwrite)


def compose(reg, names: list[str], weights: list[float] | None = None, merger: str = "linear",
            params: dict[str, Any] | None = None, out: str | Path | None = None, merge_into: str | Path | None = None,
            pool: str | None = None, rank: int | None = None, max_error: float | None = None,
            overwrite: bool = False, allow_partial: bool = False,
            allow_pickle: bool = False, base: str | None = None, register: bool = True, name: str | None = None,
            replace: bool = False, progress: Callable[[int, int], None] | None = None) -> ComposeResult:
    """``scalectl compose``: load, check, merge, write (PEFT dir and/or merged model), register.

    Everything that can be refused is refused before anything is written (the name, a registry row of that name
    that this output did not create and ``replace`` does not name); after writing, a failure or a signal before
    the output is registered removes what was written, so a failed compose leaves neither a directory nor a row."""
    if out is None and merge_into is None:
        raise MergeError("give --out DIR (a PEFT adapter) and/or --merge-into-base DIR (a merged model)")
    lowrank = _lowrank(rank, max_error)
    spec = resolve_merger(merger, params)
    for target in (out, merge_into):
        if target is not None and Path(target).exists() and not overwrite:
            raise MergeError(f"output directory {target} exists; pass --overwrite to replace it")
    inp = load_inputs(reg, names, pool, allow_partial=allow_partial, allow_pickle=allow_pickle)
    reg_name = _registration(reg, inp.pool, out, name, replace) if out is not None and register else None
    comp = compose_inputs(inp, weights, spec, progress=progress)
    low = None
    registered = None
    # The merged model is built (base loaded, every module checked) before anything is written, so a base
    # that cannot load or does not fit leaves no --out behind and registers nothing.
    merged = merged_backbone(comp, base) if merge_into is not None else None
    written: list[Path] = []
    hooks: dict[str, Callable[[], None]] = {}
    if reg_name is not None:
        # Under the output's lock: the row of the files being replaced goes before they change, the new row right
        # after they are in place (a failure there removes them again), so a row never describes other files than
        # its own, whenever this process is killed, and a concurrent writer of the same --out cannot interleave.
        def _register() -> None:
            nonlocal registered
            res = reg.add_sources([str(out)], pool=inp.pool, name=reg_name, replace=True)
            registered = f"{res.pool}:{res.added[0]['name']}"

        hooks = {"before_replace": lambda: reg.forget_output(inp.pool, reg_name, out), "after_replace": _register}
    try:
        if merged is not None:
            save_merged(merged, comp, merge_into, overwrite=overwrite)
            written.append(Path(merge_into))
        if out is not None:  # written (and registered) last: once it is in place, nothing of this compose can fail
            low = write_adapter(comp, out, lowrank, overwrite=overwrite, **hooks)
    except BaseException:
        for p in written:  # written but not registered: nothing of this compose may stay behind
            shutil.rmtree(p, ignore_errors=True)
        if reg_name is not None and not Path(out).exists():  # a row left of files that are gone
            with contextlib.suppress(Exception):
                reg.forget_output(inp.pool, reg_name, out)
        raise
    errors = dict(low.errors) if low is not None else {}
    rank_out = (max(low.ranks.values()) if low is not None
                else max((int(a.shape[0]) for a in comp.A.values()), default=0))
    return ComposeResult(
        out=str(out) if out else None, merged_model=str(merge_into) if merge_into else None, merger=spec.name,
        params={**spec.params, **({f"sdp.{k}": v for k, v in spec.sdp.items()} if spec.sdp else {})},
        weights=comp.weights, blocks=comp.blocks, exact=comp.exact and low is None, rank=rank_out,
        max_rel_error=max(errors.values(), default=0.0), seconds=comp.seconds, registered=registered,
        provenance=provenance(comp, None, rank_out, errors, low), warnings=list(comp.warnings),
        low_rank=low.record() if low is not None else None,
    )


def _lowrank(rank: int | None, max_error: float | None) -> LowRankSpec:
    """``--rank`` / ``--max-error`` checked before anything is loaded (one line naming the flag)."""
    try:
        return LowRankSpec(rank, max_error).check()
    except ParameterError as e:
        raise MergeError(e.say({"rank": "--rank", "max_error": "--max-error"})) from None
