"""What an eval run stores, typed: one class per stored shape, and the same class writes it and reads it back.

A run is a ``runs`` row (:class:`RunConfig` as its config, :class:`RunSummary` as its summary) and one
``records`` row per query (:class:`QueryRecord`, whose ``extra`` is a :class:`PathRecord` for a query
decoded on one composed path or a :class:`ViewsRecord` for SCALE's per-view answers). Audit, results,
the HTML report and the tests read stored runs through :func:`load_run` and :func:`load_records`, never
by key-guessing on the JSON.

``SCHEMA`` is the version of these shapes, stored in every new run's config. Runs written before it
existed read as version 1 (the same shapes); a run from a newer scalectl is refused, not misread.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Union

from .errors import ScalectlError

SCHEMA = 2  # 1: the untyped records before this module (same shapes, no version stored)


class Stored:
    """A stored shape: ``to_dict`` leaves out optional fields that are None; ``from_dict`` builds the nested
    typed fields back and keeps keys it does not know in ``other`` (so nothing read is dropped)."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()  # fields left out of the stored dict when None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if f.name == "other":
                out.update(v)
            elif not (v is None and f.name in self.OPTIONAL):
                out[f.name] = _dump(v)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        if not isinstance(d, dict):
            raise ScalectlError(f"a stored {cls.__name__} is not an object: {type(d).__name__}")
        hints, names = _shape(cls)
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k in names and k != "other":
                kw[k] = _load(hints[k], v)
        if "other" in names:
            kw["other"] = {k: v for k, v in d.items() if k not in names}
        try:
            return cls(**kw)
        except TypeError as e:  # a required field is missing
            raise ScalectlError(f"a stored {cls.__name__} is incomplete: {e}") from None


@functools.lru_cache(maxsize=None)
def _shape(cls) -> tuple[dict[str, Any], frozenset[str]]:
    """A stored class's field types and names, resolved once per class."""
    return typing.get_type_hints(cls), frozenset(f.name for f in dataclasses.fields(cls))


def _dump(v: Any) -> Any:
    if isinstance(v, Stored):
        return v.to_dict()
    if isinstance(v, list):
        return [_dump(x) for x in v]
    if isinstance(v, dict):
        return {k: _dump(x) for k, x in v.items()}
    return v


def _load(tp: Any, v: Any) -> Any:
    """``v`` read as type ``tp``: Stored classes (also inside Optional, list and dict) are built back."""
    if v is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        present = [a for a in args if a is not type(None)]
        if len(present) == 1:  # Optional[X]
            return _load(present[0], v)
        stored = [a for a in present if isinstance(a, type) and issubclass(a, Stored)]
        if len(stored) == 1:
            return _load(stored[0], v)
        if len(stored) > 1:  # a tagged union: the class whose TAG key the dict has
            for a in stored:
                if getattr(a, "TAG", None) in v:
                    return a.from_dict(v)
            return stored[-1].from_dict(v)
        return v
    if isinstance(tp, type) and issubclass(tp, Stored):
        return tp.from_dict(v)
    if origin is list and args:
        return [_load(args[0], x) for x in v]
    if origin is dict and len(args) == 2:
        return {k: _load(args[1], x) for k, x in v.items()}
    return v


# --- one query ---------------------------------------------------------------------------------------------------


@dataclass
class PathRecord(Stored):
    """A query decoded on one composed path: the group it was routed to and what composed it."""

    TAG: ClassVar[str] = "path"
    OPTIONAL = ("path", "merger", "candidates", "weights", "support_loss")
    support_ids: list[str]
    path: Optional[str] = None
    merger: Optional[str] = None
    candidates: Optional[list[str]] = None
    weights: Optional[list[float]] = None  # searched weights (logo: this query's branch weights)
    support_loss: Optional[float] = None
    other: dict[str, Any] = field(default_factory=dict)


@dataclass
class ViewAnswer(Stored):
    output: str
    normalized: str
    correct: bool


@dataclass
class ViewsRecord(Stored):
    """SCALE: every view's answer to one query, the views' support losses, and the aggregation's choice."""

    TAG: ClassVar[str] = "views"
    OPTIONAL = ("uses_labels", "oracle_view")
    aggregation: str
    chosen_view: str
    agreement: float
    view_losses: dict[str, float]
    views: dict[str, ViewAnswer]
    support_ids: list[str]
    uses_labels: Optional[bool] = None
    oracle_view: Optional[str] = None
    other: dict[str, Any] = field(default_factory=dict)

    def view_correct(self, view: str) -> bool:
        return bool(self.views[view].correct)


@dataclass
class QueryRecord(Stored):
    """One query of a run: what was decoded and how it scored (normalized exact match; extractor apart)."""

    task: str
    query_id: str
    idx: int
    input_hash: str
    raw_output: str
    prediction: str
    normalized: str
    reference: str
    correct: bool
    extracted: Optional[str] = None
    extracted_correct: Optional[bool] = None
    extra: Union[ViewsRecord, PathRecord, None] = None

    @classmethod
    def scored(cls, task: str, query_id: str, idx: int, input_hash: str, reference: str, output: str,
               option_task: bool, extra: "ViewsRecord | PathRecord | None" = None) -> "QueryRecord":
        """The record of one decoded query: its prediction (the output's first line), normalized exact match
        against the reference, and the answer extractor's output and correctness as a separate metric."""
        from .tasks import bbh

        pred = bbh.prediction(output)
        extracted = bbh.extract_answer(output, option_task)
        return cls(task=task, query_id=query_id, idx=idx, input_hash=input_hash, raw_output=output, prediction=pred,
                   normalized=bbh.normalize(pred), reference=reference, correct=bbh.exact_match(pred, reference),
                   extracted=extracted, extracted_correct=bbh.exact_match(extracted, reference), extra=extra)

    @property
    def key(self) -> tuple[str, str]:
        return (self.task, self.query_id)

    @property
    def views(self) -> Optional[ViewsRecord]:
        return self.extra if isinstance(self.extra, ViewsRecord) else None

    @property
    def path(self) -> Optional[PathRecord]:
        return self.extra if isinstance(self.extra, PathRecord) else None


# --- one run's summary -------------------------------------------------------------------------------------------


@dataclass
class GroupSummary(Stored):
    """One decoding path of a task: its merge, candidates, searched weights and the queries routed to it."""

    OPTIONAL = ("geometry",)
    label: str
    merger: str
    params: Optional[dict[str, Any]]
    candidates: list[str]
    weights: list[float]
    queries: int
    support_loss: Optional[float]
    search: Optional[dict[str, Any]]  # a search.SearchResult as stored (history included)
    geometry: Optional[list[dict[str, Any]]] = None  # LASRC rows: per block overlap, alpha, guarded, res_ratio


@dataclass
class PlanSummary(Stored):
    """What a method decided for one task (or one SCALE view of it): retrieval, groups, notes, stage seconds."""

    OPTIONAL = ("support_loss", "cluster_losses")
    support_ids: list[str]
    retrieval: Optional[dict[str, Any]]  # a retrieve.Retrieval as stored
    notes: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    groups: list[GroupSummary] = field(default_factory=list)
    support_loss: Optional[float] = None  # SCALE view: L_v
    cluster_losses: Optional[list[float]] = None  # SCALE view: each routed cluster's support loss


@dataclass
class ViewsPlanSummary(Stored):
    """SCALE's plan of one task: each view's plan and loss, and the paths decoded per query."""

    TAG: ClassVar[str] = "views"
    views: dict[str, PlanSummary]
    view_losses: dict[str, float]
    paths_per_query: int


TaskPlan = Union[ViewsPlanSummary, PlanSummary]


@dataclass
class PathCost(Stored):
    """Where a run's time and memory went; the stage seconds are summed over its task plans."""

    OPTIONAL = ("gpu_max_allocated_mb",)
    paths_per_query: float = 1.0
    compose_seconds: float = 0.0
    search_seconds: float = 0.0
    retrieval_seconds: float = 0.0
    decode_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    note: str = ""
    gpu_max_allocated_mb: Optional[float] = None
    other: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskScoreRecord(Stored):
    OPTIONAL = ("seconds",)
    task: str
    n: int
    correct: int
    accuracy: float
    extracted_accuracy: float
    seconds: Optional[float] = None


@dataclass
class RunSummary(Stored):
    """A finished run's summary: scores per task and macro, path cost, and per-task plans."""

    OPTIONAL = ("run_id", "method", "decode_seconds", "compose_seconds", "limit", "queries_per_second",
                "plans", "derived_from", "uses_labels", "oracle_views", "any_view_correct")
    tasks: list[TaskScoreRecord]
    macro_accuracy: float
    macro_extracted: float
    n_queries: int
    path_cost: PathCost = field(default_factory=PathCost)
    run_id: Optional[str] = None
    method: Optional[str] = None
    label: Optional[str] = None
    decode_seconds: Optional[float] = None
    compose_seconds: Optional[float] = None
    limit: Optional[int] = None
    queries_per_second: Optional[float] = None
    plans: Optional[dict[str, TaskPlan]] = None
    derived_from: Optional[str] = None  # a SCALE aggregation derived from this run's view records
    uses_labels: Optional[bool] = None
    oracle_views: Optional[dict[str, str]] = None
    any_view_correct: Optional[float] = None
    other: dict[str, Any] = field(default_factory=dict)


# --- one run -----------------------------------------------------------------------------------------------------


@dataclass
class RunConfig(Stored):
    """Everything that made a run: tasks, method (and its whole method config), base, decoding, composition."""

    OPTIONAL = ("derived_from", "aggregation", "uses_labels", "derived_runs")
    tasks: list[str] = field(default_factory=list)
    method: str = ""
    schema: int = 1
    method_config: Optional[dict[str, Any]] = None  # a methods.MethodConfig as stored (with "pool")
    composition: Optional[dict[str, Any]] = None  # --adapters: merger, params, adapters with sha256, weights
    limit: Optional[int] = None
    support_ids: dict[str, list[str]] = field(default_factory=dict)
    queries: dict[str, int] = field(default_factory=dict)
    base: Optional[str] = None
    base_model: Optional[str] = None
    derived_from: Optional[str] = None
    aggregation: Optional[str] = None
    uses_labels: Optional[bool] = None
    derived_runs: Optional[dict[str, str]] = None
    other: dict[str, Any] = field(default_factory=dict)  # decoding settings, versions, ...

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        v = (d or {}).get("schema", 1)
        if not isinstance(v, int) or v > SCHEMA:
            raise ScalectlError(f"this run was written by a newer scalectl (record schema {v}; this one reads up to "
                                f"{SCHEMA}): upgrade scalectl to read it")
        return super().from_dict(d or {})

    @property
    def pool(self) -> Optional[str]:
        return (self.method_config or {}).get("pool")


@dataclass
class RunRecord:
    """A ``runs`` row read back: identity, status, and its typed config and summary."""

    id: str
    kind: str
    method: str
    status: str
    config: RunConfig
    summary: Optional[RunSummary]
    label: Optional[str] = None
    base_model: Optional[str] = None
    error: Optional[str] = None
    row: dict[str, Any] = field(default_factory=dict, repr=False)  # the registry row as read

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "RunRecord":
        summary = row.get("summary")
        return cls(id=row["id"], kind=row.get("kind", "eval"), method=row["method"], status=row["status"],
                   config=RunConfig.from_dict(row.get("config") or {}),
                   summary=RunSummary.from_dict(summary) if summary and "tasks" in summary else None,
                   label=row.get("label"), base_model=row.get("base_model"), error=row.get("error"), row=row)

    @property
    def plans(self) -> dict[str, TaskPlan]:
        return (self.summary.plans if self.summary is not None else None) or {}

    @property
    def path_cost(self) -> PathCost:
        return self.summary.path_cost if self.summary is not None else PathCost()


def load_run(reg, run_id: str) -> RunRecord:
    """The run ``run_id`` (an id or unique prefix, as ``Registry.run`` takes it), typed."""
    return RunRecord.from_row(reg.run(run_id))


def load_records(reg, run_id: str, task: str | None = None) -> list[QueryRecord]:
    """The query records of ``run_id`` (one task's with ``task``), typed, in the registry's order."""
    return [QueryRecord.from_dict(r) for r in reg.records(run_id, task)]
