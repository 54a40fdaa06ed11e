"""Pool manifests: many adapters in one file (TOML, JSON, or a plain list of ids/paths).

TOML/JSON shape::

    pool = "lorahub-flan-t5-large"        # optional: pool to register into
    base_model = "google/flan-t5-large"    # optional: the pool's base model
    description = "..."
    [defaults]                            # optional: fields every entry inherits
    r = 16
    lora_alpha = 32
    target_modules = ["q", "v"]
    [[adapters]]
    name = "qasc_qa_with_separated_facts_3"
    source = "hf:lorahub/flan_t5_large-qasc_qa_with_separated_facts_3"   # or a local path
    source_task = "qasc"
    tags = ["qa"]
    examples = [{input = "...", output = "..."}]
    [[unresolved]]                        # optional: entries that cannot be registered
    name = "lora_race_middle"
    note = "..."

JSON may also be a bare list of entries. A plain-text manifest has one hub id
(``ORG/NAME`` or ``hf:ORG/NAME``) or local path a line; ``#`` starts a comment.
Relative local paths resolve against the manifest's directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ManifestError
from .hub import HUB_PREFIX

ENTRY_FIELDS = {
    "name", "source", "source_task", "description", "tags", "examples", "examples_file",
    "r", "lora_alpha", "target_modules", "base_model", "task_type", "use_rslora", "use_dora", "note",
    "provenance", "sha256",
}
_BARE_REPO = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_positive(v: Any) -> bool:
    import math

    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:  # an integer beyond a float's range (r = 1e400 written out) is no usable number either
        return math.isfinite(float(v)) and v > 0
    except OverflowError:
        return False


# What each entry field must be (a manifest is user input: "tags = 'qa'" must not become ['q', 'a'])
FIELD_TYPES: dict[str, tuple[Any, str]] = {
    "name": (_is_str, "a string"), "source": (_is_str, "a string"), "source_task": (_is_str, "a string"),
    "description": (_is_str, "a string"), "tags": (_is_str_list, "a list of strings"),
    "examples_file": (_is_str, "a string"), "r": (lambda v: _is_positive(v) and float(v).is_integer() and v < 2 ** 63,
                                                  "a positive integer (below 2**63)"),
    "lora_alpha": (_is_positive, "a positive finite number"),
    "target_modules": (lambda v: _is_str(v) or _is_str_list(v), "a string or a list of strings"),
    "base_model": (_is_str, "a string"), "task_type": (_is_str, "a string"),
    "use_rslora": (lambda v: isinstance(v, bool), "true or false"), "use_dora": (lambda v: isinstance(v, bool),
                                                                                "true or false"),
    "note": (_is_str, "a string"), "provenance": (lambda v: isinstance(v, dict), "a table"),
    "sha256": (lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None, "64 hex digits"),
}


def _check_types(entry: dict[str, Any], where: str) -> None:
    for k, v in entry.items():
        ok, what = FIELD_TYPES.get(k, (None, ""))
        if ok is not None and not ok(v):
            raise ManifestError(f"{where}: {k!r} must be {what}, got {v!r}"[:300])


@dataclass
class ManifestEntry:
    source: str  # "hf:ORG/NAME" or an absolute local path
    name: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def is_hub(self) -> bool:
        return self.source.startswith(HUB_PREFIX)


@dataclass
class Manifest:
    path: Path
    entries: list[ManifestEntry]
    pool: str | None = None
    base_model: str | None = None
    description: str | None = None
    unresolved: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def _norm_source(src: str, root: Path) -> str:
    src = src.strip()
    if "\x00" in src:  # no path or hub id holds one (os.stat would raise ValueError on it)
        raise ManifestError(f"source {src!r} holds a NUL byte; it is no path or hub id"[:300])
    if src.startswith(HUB_PREFIX):
        return src
    p = Path(src).expanduser()
    if p.is_absolute() or src.startswith((".", "~")) or (root / p).exists():
        return str((root / p).resolve() if not p.is_absolute() else p)
    if _BARE_REPO.match(src):
        return HUB_PREFIX + src
    return str((root / p).resolve())


def load_manifest(path: str | Path) -> Manifest:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    root = path.parent.resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        import tomllib

        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ManifestError(f"{path}: invalid TOML ({e})") from None
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}: invalid JSON ({e})") from None
    else:
        entries = []
        for i, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if " " in line or "\t" in line:
                raise ManifestError(f"{path}:{i}: expected one hub id or path per line, got {line!r}")
            entries.append(ManifestEntry(source=_norm_source(line, root)))
        if not entries:
            raise ManifestError(f"{path}: the manifest lists no adapters")
        return Manifest(path=path, entries=entries)

    if isinstance(data, list):
        data = {"adapters": data}
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a table/object with an 'adapters' list")
    raw = data.get("adapters")
    if not isinstance(raw, list) or not raw:
        raise ManifestError(f"{path}: 'adapters' must be a non-empty list")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ManifestError(f"{path}: 'defaults' must be a table")
    entries = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"source": item}
        if not isinstance(item, dict):
            raise ManifestError(f"{path}: adapters[{i}] must be a table or a string")
        unknown = set(item) - ENTRY_FIELDS
        if unknown:
            raise ManifestError(f"{path}: adapters[{i}] has unknown field(s) {sorted(unknown)}; known: {sorted(ENTRY_FIELDS)}")
        src = item.get("source")
        if not isinstance(src, str) or not src.strip():
            raise ManifestError(f"{path}: adapters[{i}] has no 'source' (a hub id hf:ORG/NAME or a local path)")
        merged = {**defaults, **item}
        _check_types(merged, f"{path}: adapters[{i}]")
        if "examples_file" in merged:
            merged["examples"] = read_examples(root / merged.pop("examples_file"), f"{path}: adapters[{i}]")
        if "examples" in merged:
            _check_examples(merged["examples"], f"{path}: adapters[{i}]")
        entries.append(ManifestEntry(source=_norm_source(src, root), name=merged.pop("name", None),
                                     fields={k: v for k, v in merged.items() if k != "source"}))
    for key in ("pool", "base_model", "description"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ManifestError(f"{path}: {key!r} must be a string, got {data[key]!r}"[:300])
    unresolved = data.get("unresolved") or []
    if not isinstance(unresolved, list) or not all(isinstance(u, dict) for u in unresolved):
        raise ManifestError(f"{path}: 'unresolved' must be a list of tables (name, note), got {unresolved!r}"[:300])
    meta = {k: v for k, v in data.items() if k not in ("adapters", "defaults", "unresolved", "pool", "base_model", "description")}
    return Manifest(path=path, entries=entries, pool=data.get("pool"), base_model=data.get("base_model"),
                    description=data.get("description"), unresolved=list(unresolved), meta=meta)


def _check_examples(ex: Any, where: str) -> None:
    if not isinstance(ex, list) or not all(isinstance(e, dict) and "input" in e and "output" in e for e in ex):
        raise ManifestError(f"{where}: 'examples' must be a list of {{input, output}} records")


def read_examples(p: Path, where: str) -> list[dict[str, str]]:
    if not p.is_file():
        raise ManifestError(f"{where}: examples file {p} does not exist")
    out = []
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{p}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise ManifestError(f"{p}:{i}: not a JSON line") from None
    _check_examples(out, str(p))
    return out
