"""A method run's settings: one :class:`MethodConfig` (the shape stored with every run) and the option table.

Each option is declared once in :data:`OPTIONS`: the flag ``scalectl eval`` gives it, what it means, the
reference its default follows, the check its values must pass, and whether setting it makes a run a
control, ablation or other mode of its method (``runid.CONTROL_KEYS``) rather than the method with another
budget or seed. The defaults are :class:`MethodConfig`'s fields, read from the dataclass (not restated).
Which options a method reads is declared by the method (``Method.options``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ParameterError
from ..lowrank import LowRankSpec, max_error_problem, rank_problem
from ..search import SearchConfig

DEFAULT_VIEWS = ["retrieval", "balanced", "qa"]
LOGO_SIGNALS = ("l2", "entropy")
LOGO_VARIANTS = ("weighted", "uniform", "top1")
SCALE_MERGERS = ("lasrc", "linear")
CANDIDATE_SETS = ("local", "union")  # iLoRAComp: each support example's local list; union: global + local (option)
SEARCH_RULES = ("lorahub", "linear")  # the composition inside the search: the factor rule (peers'), or linear


class OptionError(ParameterError):
    """A method option with a value it refuses (named by its MethodConfig field; the CLI says its flag)."""

    def __init__(self, option: str, problem: str):
        super().__init__("{0} " + problem.replace("{", "{{").replace("}", "}}"), option)
        self.option, self.problem = option, problem


def flags() -> dict[str, str]:
    """Each option's ``scalectl eval`` flag, by MethodConfig field."""
    return {o.name: o.flag for o in OPTIONS}


@dataclass
class MethodConfig:
    method: str
    view: str = "balanced"
    n_global: int = 20
    n_local: int = 20
    embedder: str | None = None
    candidates: str = "local"  # instance-level rows: each cluster's candidates (iLoRAComp: the local 20)
    search: SearchConfig = field(default_factory=SearchConfig)
    search_rule: str = "lorahub"  # composition inside the search: LoRAHub's and iLoRAComp's factor rule
    lorahub_k: int = 20
    lorahub_seed: int = 0
    retrieved: bool = False  # lorahub over the global retrieval list instead of a random draw
    temperature: float = 1.0
    logo_signal: str = "l2"
    logo_k: int = 20
    logo_variant: str = "weighted"
    views: list[str] = field(default_factory=lambda: list(DEFAULT_VIEWS))  # scale
    sdp_rate: float = 0.5  # scale: SDP drop rate per view (0 = the "without SDP" control)
    sdp_seed: int = 42
    scale_merger: str = "lasrc"  # scale: "linear" is the "multi-view without LASRC" control
    random_views: bool = False  # scale: the "random sparse views" control (random candidates per cluster)
    merger_params: dict[str, Any] = field(default_factory=dict)  # e.g. LASRC's ablation switches for lasrc / scale
    export_rank: int | None = None  # score the best rank-R approximation of each composed update (compose --rank)
    export_max_error: float | None = None  # ... or per module the smallest rank within this relative error

    @property
    def lowrank(self) -> LowRankSpec:
        """What the composed updates are approximated by before they are scored (inactive: exact)."""
        return LowRankSpec(self.export_rank, self.export_max_error)

    def check(self) -> None:
        """Every option's own check, then the method's (unknown methods: did-you-mean)."""
        from . import get

        method = get(self.method)
        for opt in OPTIONS:
            if opt.check is not None and (problem := opt.check(getattr(self, opt.name))):
                raise OptionError(opt.name, problem)
        self.search.check()
        method.check(self)


def default(name: str) -> Any:
    """An option's default, as :class:`MethodConfig` declares it."""
    f = MethodConfig.__dataclass_fields__[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _at_least_1(v: Any) -> str | None:
    return None if v >= 1 else "must be at least 1"


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be positive"


def _drop_rate(v: Any) -> str | None:
    return None if 0 <= v < 1 else f"must be in [0, 1), got {v}"


def _distinct(v: Any) -> str | None:
    return None if v and len(set(v)) == len(v) else f"must name distinct views, got {v}"


@dataclass(frozen=True)
class Option:
    name: str  # the MethodConfig field
    flag: str  # scalectl eval's flag for it
    help: str
    reference: str  # where its default comes from
    check: Callable[[Any], str | None] | None = None
    control: bool = False  # setting it away from the default makes a control / ablation / mode of the method


OPTIONS: tuple[Option, ...] = (
    Option("view", "--view", "index view retrieved from", "method.md, Retrieval"),
    Option("n_global", "--global", "global candidates", "method.md: 20 (iLoRAComp)", _at_least_1),
    Option("n_local", "--local", "local candidates per support example", "method.md: 20 (iLoRAComp)", _at_least_1),
    Option("embedder", "--embedder", "embedder of the index (default: the index's)", "the index"),
    Option("candidates", "--candidates", "instance-level rows: a cluster's candidates (local, or union with global)",
           "method.md: the local 20 (noname822/iLoraComp)", _one_of(CANDIDATE_SETS), control=True),
    Option("search", "--steps/--search-seed/--search-loss", "the support-set weight search",
           "method.md, Weight search (sail-sg/lorahub)"),
    Option("search_rule", "--search-rule", "composition inside the search: lorahub (factor rule) or linear",
           "method.md: the factor rule (sail-sg/lorahub, noname822/iLoraComp)", _one_of(SEARCH_RULES), control=True),
    Option("lorahub_k", "--lorahub-k", "lorahub: candidates drawn", "LoRAHub: 20", _at_least_1),
    Option("lorahub_seed", "--lorahub-seed", "lorahub: seed of the random draw", "LoRAHub"),
    Option("retrieved", "--retrieved", "lorahub over the global retrieval list", "method.md", control=True),
    Option("temperature", "--temperature", "softmax(-L/T) temperature (lmix-sr, scale)", "method.md: T = 1",
           _positive),
    Option("logo_signal", "--logo-signal", "logo: branch signal", "LoGo: l2", _one_of(LOGO_SIGNALS), control=True),
    Option("logo_k", "--logo-k", "logo: adapters kept per query", "LoGo: 20", _at_least_1),
    Option("logo_variant", "--logo-variant", "logo: branch weighting", "LoGo: weighted", _one_of(LOGO_VARIANTS),
           control=True),
    Option("views", "--views", "scale: index views", "SCALE-LoRA: retrieval, balanced, qa", _distinct),
    Option("sdp_rate", "--sdp", "SDP drop rate (scale: 0 is the no-SDP control)", "SCALE-LoRA: 0.5", _drop_rate,
           control=True),
    Option("sdp_seed", "--seed", "SDP seed", "SCALE-LoRA: 42"),
    Option("scale_merger", "--scale-merger", "scale: lasrc, or linear (the no-LASRC control)", "SCALE-LoRA",
           _one_of(SCALE_MERGERS), control=True),
    Option("random_views", "--random-views", "scale: random candidates per view (control)", "SCALE-LoRA",
           control=True),
    Option("merger_params", "--param", "LASRC parameters (ablation switches)", "merge/table.py: lasrc",
           control=True),
    Option("export_rank", "--rank", "score the best rank-R approximation of each composed update",
           "exact (compose --rank writes the same approximation)", rank_problem, control=True),
    Option("export_max_error", "--max-error", "score, per module, the smallest rank within this relative error",
           "exact (compose --max-error)", max_error_problem, control=True),
)
OPTION = {o.name: o for o in OPTIONS}
