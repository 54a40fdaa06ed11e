"""What a method is: the interface every family implements, and the engine's view of it.

A method declares its ``name``, a one-line ``summary``, the ``reference`` it follows, the options it
reads (:data:`scalectl.methods.config.OPTIONS`), and:

- ``unit_views(cfg)``: how one task splits into units computed on their own (default: one unit;
  SCALE: one per view). The engine (:mod:`scalectl.evaluate`) computes units anywhere (here, or on Ray
  workers) and collects them per task;
- ``compute(ctx, cfg, task, queries, view, decoding, progress)``: one unit: plan (retrieve, search) and
  decode, returning a :class:`UnitOutput`;
- ``combine(cfg, task, queries, outputs)``: a task's final outputs, record extras and plan from its
  units' outputs;
- ``derive(reg, run_id)``: runs computed from a finished run's records without decoding (SCALE's other
  aggregations); most methods have none.

:class:`GroupMethod` is the usual shape: ``plan`` returns a :class:`~scalectl.methods.plan.TaskPlan`,
decoded by :func:`~scalectl.methods.plan.decode_plan`; one unit per task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..progress import Progress
from ..runrecords import PathRecord, PlanSummary, ViewsPlanSummary, ViewsRecord
from .config import MethodConfig, OptionError

RETRIEVAL_OPTIONS = ("view", "n_global", "n_local", "embedder", "search")
EXPORT_OPTIONS = ("export_rank", "export_max_error")  # methods that score composed updates can score them low-rank


@dataclass(frozen=True)
class Decoding:
    """How a task's queries are decoded (the run's settings, the same for every method)."""

    max_new_tokens: int
    batch_size: int


@dataclass
class UnitOutput:
    """What one unit computed: an output per query, each query's record extra, the plan, and (SCALE views) the
    view's support loss. ``seconds`` and ``peak_rss_mb`` are filled by the engine."""

    outputs: list[str]
    extras: list[PathRecord | ViewsRecord] | None = None
    plan: PlanSummary | ViewsPlanSummary | None = None
    loss: float | None = None
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


@dataclass
class TaskOutput:
    outputs: list[str]
    extras: list[PathRecord | ViewsRecord] | None
    plan: PlanSummary | ViewsPlanSummary | None
    seconds: float = 0.0


@dataclass
class Method:
    name: str
    summary: str
    reference: str
    options: tuple[str, ...] = ()  # the MethodConfig fields it reads
    seed_key: str = "search.seed"  # the seed its seed sweep varies (audit seeds)
    base_only: ClassVar[bool] = False  # the base model alone: no pool, no method config
    merger_params: bool = False  # takes --param (LASRC's parameters)

    # -- settings

    def check(self, cfg: MethodConfig) -> None:
        if cfg.lowrank.active and "export_rank" not in self.options:
            raise OptionError("export_rank", f"approximates composed updates; {self.name} scores none")
        if cfg.merger_params:
            from ..merge.table import resolve_merger
            from . import METHODS

            if not self.merger_params:
                takers = ", ".join(m.name for m in METHODS.values() if m.merger_params)
                raise OptionError("merger_params", f"sets LASRC parameters of the methods {takers}, not {self.name}")
            resolve_merger("lasrc", cfg.merger_params)  # unknown keys or bad values fail now, before any search

    def index_views(self, cfg: MethodConfig) -> list[str]:
        """The index views this method retrieves from (checked before a run is recorded)."""
        return [cfg.view] if "view" in self.options else []

    def merger(self, cfg: dict[str, Any]) -> str | None:
        """The merger its composed paths use, from a stored method config (``audit compat``); None: no one merger."""
        return None

    # -- the engine's calls

    def unit_views(self, cfg: MethodConfig) -> list[str | None]:
        return [None]

    def prefetch(self, ctx, cfg: MethodConfig, task, queries, progress: Progress) -> None:
        """Work a task's units share, done once before they are computed in one process (SCALE: every view's
        weight searches in lockstep); by default nothing."""

    def compute(self, ctx, cfg: MethodConfig, task, queries, view: str | None, decoding: Decoding,
                progress: Progress) -> UnitOutput:
        """Plan the task (:meth:`plan`) and decode each group of its queries with its composed update."""
        from .plan import decode_plan

        plan = self.plan(ctx, cfg, task, queries, progress)
        outs = decode_plan(ctx, plan, queries, decoding, progress)
        return UnitOutput(outs, [plan.path_record(i) for i in range(len(queries))], plan.summary())

    def plan(self, ctx, cfg: MethodConfig, task, queries, progress: Progress):
        """The task's plan: no groups, so every query is decoded with the base model (a method that composes
        overrides this)."""
        from .plan import new_plan

        return new_plan(task, self.name)

    def combine(self, cfg: MethodConfig, task, queries, outputs: dict[str | None, UnitOutput]) -> TaskOutput:
        [out] = outputs.values()
        return TaskOutput(out.outputs, out.extras, out.plan, out.seconds)

    def derive(self, reg, run_id: str) -> dict[str, str]:
        return {}


class GroupMethod(Method):
    """A method whose plan is a set of groups decoded with their composed updates: it overrides :meth:`plan`."""
