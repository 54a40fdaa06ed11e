"""The name -> operator table: each operator declares its name, parameters with defaults, and paper.

A merger spec is one operator name, optionally preceded by the ``sdp`` stage: ``lasrc``,
``sdp+lasrc``, ``sdp+linear``. Parameters come as ``key=value`` strings; ``sdp.KEY`` goes to
the SDP stage.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ScalectlError


class MergeError(ScalectlError):
    """A merger name, parameter or input the operators refuse."""


def _in_open01(name: str) -> Callable[[Any], str | None]:
    return lambda v: None if 0 < v <= 1 else f"{name} must be in (0, 1], got {v}"


def _drop(name: str) -> Callable[[Any], str | None]:
    return lambda v: None if 0 <= v < 1 else f"{name} must be in [0, 1), got {v}"


def _nonneg(name: str) -> Callable[[Any], str | None]:
    return lambda v: None if v >= 0 else f"{name} must be >= 0, got {v}"


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None

    def parse(self, raw: Any) -> Any:
        t = type(self.default)
        try:
            if t is bool:
                if isinstance(raw, bool):
                    return raw
                s = str(raw).strip().lower()
                if s not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                return s in ("1", "true", "yes", "on")
            return t(raw)
        except (TypeError, ValueError):
            raise MergeError(f"parameter {self.name}: expected {t.__name__}, got {raw!r}") from None


@dataclass(frozen=True)
class Operator:
    name: str
    summary: str
    reference: str
    kind: str  # "factor": exact LoRA output; "dense": dense deltas, SVD-truncated output; "stage": preprocessing
    params: tuple[Param, ...] = field(default_factory=tuple)

    def resolve(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults overridden by ``given``; unknown names and out-of-range values raise MergeError."""
        known = {p.name: p for p in self.params}
        for k in given:
            if k not in known:
                hint = difflib.get_close_matches(k, list(known), n=1)
                raise MergeError(
                    f"{self.name} has no parameter {k!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                    + f" (its parameters: {', '.join(known) or 'none'})"
                )
        out = {}
        for p in self.params:
            v = p.parse(given[p.name]) if p.name in given else p.default
            if p.check and (msg := p.check(v)):
                raise MergeError(f"{self.name}: {msg}")
            out[p.name] = v
        return out


SIGN_ELECTION = Param(
    "sign_election", "unweighted", "elect signs on the unweighted stack (PEFT utils/merge_utils.py) or on the weighted "
    "deltas (weighted: mergekit generalized_task_arithmetic.py); they differ when weights are negative",
    lambda v: None if v in ("unweighted", "weighted") else f"sign_election must be unweighted or weighted, got {v!r}")

SEED = Param("seed", 42, "seed of the random masks (a mask is a pure function of seed, adapter and module)")

LASRC_PARAMS = (
    Param("tau", 0.0, "Gram-Schmidt pruning threshold: discard residuals with ||r|| <= tau ||u||", _nonneg("tau")),
    Param("alpha_max", 0.5, "largest residual mixing weight (the paper's value was lost; 0.5 is scalectl's choice)",
          lambda v: None if 0 <= v <= 1 else f"alpha_max must be in [0, 1], got {v}"),
    Param("floor", 0.05, "smallest residual mixing weight",
          lambda v: None if 0 <= v <= 1 else f"floor must be in [0, 1], got {v}"),
    Param("guard", 0.3, "norm guard g: alpha = floor when ||s_res|| / ||s_lin|| < g", _nonneg("guard")),
    Param("kappa", 1.0, "consensus exponent on the overlap", lambda v: None if v > 0 else f"kappa must be > 0, got {v}"),
    Param("align", 0.0, "alignment term a: alpha *= 1 + a cos(s_lin, s_res)"),
    Param("no_norm_rescale", False, "ablation: skip rescaling s_res to ||s_lin||"),
    Param("no_pruning", False, "ablation: tau = 0"),
    Param("fixed_alpha", False, "ablation: alpha_b = alpha_max instead of the overlap rule"),
    Param("no_floor", False, "ablation: floor = 0"),
    Param("no_guard", False, "ablation: no norm guard"),
)

OPERATORS: dict[str, Operator] = {op.name: op for op in [
    Operator("linear", "weighted sum of the updates, sum_n w_n dW_n; exactly a LoRA of rank sum(r) (the iLoRAComp anchor)",
             "Wang et al. 2024 (iLoRAComp); SCALE-LoRA method.md", "factor"),
    Operator("cat", "PEFT add_weighted_adapter(combination_type='cat'): concatenated factors with w_n s_n folded into B "
             "(the same update as linear)", "PEFT LoraModel.add_weighted_adapter", "factor"),
    Operator("lorahub", "LoRAHub's factor-space rule: A = sum w A_n, B = sum w B_n (cross terms; equal ranks)",
             "Huang et al. 2024 (LoRAHub)", "factor"),
    Operator("lasrc", "Layer-Adaptive Sparse Residual Composition: per block, linear anchor mixed with Gram-Schmidt "
             "residuals; computed from K x K Gram matrices, output exactly a LoRA of rank sum(r)",
             "SCALE-LoRA (method.md, LASRC)", "factor", LASRC_PARAMS),
    Operator("ties", "TIES: top-density magnitude pruning per adapter, sign election by total mass, disjoint mean",
             "Yadav et al. 2023 (TIES-Merging)", "dense",
             (Param("density", 0.2, "fraction of entries kept per adapter and module", _in_open01("density")),
              Param("sign", "total", "sign election: total (mass) or frequency",
                    lambda v: None if v in ("total", "frequency") else f"sign must be total or frequency, got {v!r}"),
              SIGN_ELECTION)),
    Operator("magnitude-prune", "top-density magnitude pruning per adapter and module, then the weighted sum",
             "PEFT add_weighted_adapter(combination_type='magnitude_prune')", "dense",
             (Param("density", 0.2, "fraction of entries kept per adapter and module", _in_open01("density")),)),
    Operator("dare-linear", "DARE: Bernoulli drop with rate p, survivors rescaled by 1/(1-p), then the weighted sum",
             "Yu et al. 2024 (DARE)", "dense",
             (Param("drop_rate", 0.5, "probability of dropping an entry", _drop("drop_rate")), SEED)),
    Operator("dare-ties", "DARE drop and rescale, then TIES sign election and disjoint mean",
             "Yu et al. 2024 (DARE)", "dense",
             (Param("drop_rate", 0.5, "probability of dropping an entry", _drop("drop_rate")),
              Param("sign", "total", "sign election: total or frequency",
                    lambda v: None if v in ("total", "frequency") else f"sign must be total or frequency, got {v!r}"),
              SIGN_ELECTION, SEED)),
    Operator("sdp", "Stochastic Delta Pruning (a stage before any operator): seeded Bernoulli mask on each dW, "
             "survivor rescale, norm preservation", "SCALE-LoRA (method.md, SDP)", "stage",
             (Param("drop_rate", 0.5, "drop rate p", _drop("drop_rate")),
              Param("rescale", True, "rescale survivors by 1/(1-p)"),
              Param("preserve_norm", True, "rescale to the original Frobenius norm"), SEED)),
]}

SDP_FOLLOWERS = ("linear", "cat", "lasrc", "ties", "magnitude-prune", "dare-linear", "dare-ties")


@dataclass(frozen=True)
class MergerSpec:
    name: str  # as given, e.g. "sdp+lasrc"
    op: Operator
    params: dict[str, Any]
    sdp: dict[str, Any] | None  # the SDP stage's resolved params, or None

    @property
    def dense(self) -> bool:
        """Whether the composition runs on dense deltas (a dense operator, or SDP in front)."""
        return self.op.kind == "dense" or self.sdp is not None


def get_operator(name: str) -> Operator:
    op = OPERATORS.get(name)
    if op is None:
        names = [n for n in OPERATORS]
        close = difflib.get_close_matches(name, names + [f"sdp+{n}" for n in SDP_FOLLOWERS], n=3)
        raise MergeError(
            f"unknown merger {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
            + f" (mergers: {', '.join(n for n in names if n != 'sdp')}, and sdp+MERGER)"
        )
    return op


def parse_params(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for it in items or []:
        if "=" not in it:
            raise MergeError(f"--param expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def resolve_merger(name: str, params: dict[str, Any] | None = None) -> MergerSpec:
    """Parse ``[sdp+]OPERATOR`` and resolve its parameters (``sdp.KEY`` for the SDP stage)."""
    params = dict(params or {})
    parts = [p.strip() for p in name.strip().lower().split("+")]
    sdp_given = {k[4:]: v for k, v in params.items() if k.startswith("sdp.")}
    own = {k: v for k, v in params.items() if not k.startswith("sdp.")}
    if len(parts) == 2 and parts[0] == "sdp":
        op = get_operator(parts[1])
        if op.name not in SDP_FOLLOWERS:
            raise MergeError(f"sdp cannot precede {op.name} (a factor-space rule); it can precede: {', '.join(SDP_FOLLOWERS)}")
        return MergerSpec(name=f"sdp+{op.name}", op=op, params=op.resolve(own), sdp=OPERATORS["sdp"].resolve(sdp_given))
    if len(parts) != 1 or parts[0] == "sdp":
        get_operator(name)  # raises with the list
        raise MergeError(f"a merger is OPERATOR or sdp+OPERATOR, got {name!r}")
    if sdp_given:
        raise MergeError(f"sdp.* parameters given but the merger {name!r} has no sdp stage (use sdp+{parts[0]})")
    op = get_operator(parts[0])
    return MergerSpec(name=op.name, op=op, params=op.resolve(own), sdp=None)
