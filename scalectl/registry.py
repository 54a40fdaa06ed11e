"""The adapter registry: one SQLite file (sqlite-utils), versioned migrations, transactional writes.

Tables (open them with any SQLite tool):

- ``pools``: name, base_model, description, created.
- ``adapters``: one row per (pool, name): source, status (``local``, ``remote`` = hub id
  registered but not fetched, ``fetched``), path, base model, task type, rank and
  patterns, alpha, scaling, DoRA flag, target modules, module/block counts, dtype,
  sha256 and size of the weight file, source task, description, tags, timestamps.
- ``examples``: input/output records per adapter (used to embed adapters).
- ``runs``: one row per evaluation run: kind, method, status (``running``, ``done``,
  ``failed``), base model, the whole config and the summary as JSON.
- ``records``: one row per (run, task, query): input hash, raw output, prediction,
  normalized prediction, reference, correct, extracted answer and its correctness, extra JSON.
- ``embeddings``: one vector per (adapter, view) (float32 little-endian BLOB) with its pool, view,
  recipe, embedder, dim and the sha256 of the embedded text (:mod:`scalectl.index`).
- ``_migrations``: which schema migrations have run.

Every write happens inside one ``BEGIN IMMEDIATE`` transaction: a failed call leaves the
registry exactly as it was, and concurrent writers wait for each other (busy timeout).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from . import paths
from .adapters import AdapterInfo, LoraFactors, inspect_adapter, load_factors, not_unicode
from .backbone import same_base
from .errors import AdapterError, IntegrityError, RegistryError
from .fsutil import sha256_file
from .hub import HUB_PREFIX, is_hub_ref, parse_hub_ref, snapshot
from .manifest import Manifest, ManifestEntry, _check_examples, _check_types

DEFAULT_POOL = "default"
# ASCII only, the whole string (fullmatch: "$" alone would let a trailing newline through): no look-alikes
NAME_RE = re.compile(r"[A-Za-z0-9][\w.+\-]*", re.ASCII)


def _config_changed(row: dict[str, Any]) -> str | None:
    """How a registered adapter's ``adapter_config.json`` differs from registration (None: unchanged or not
    recorded, as in rows registered before config hashes were kept)."""
    want = row.get("config_sha256")
    if not want or not row.get("path"):
        return None
    cfg = Path(row["path"]) / "adapter_config.json"
    if not cfg.is_file():
        return f"{cfg} no longer exists"
    got = sha256_file(cfg)
    return None if got == want else f"{cfg} changed after registration (sha256 {got[:12]}... != {want[:12]}...)"


def valid_name(s: str) -> bool:
    """An adapter or pool name: ASCII letters, digits, ``_ . + -``, starting with a letter or digit, nothing else."""
    return isinstance(s, str) and NAME_RE.fullmatch(s) is not None
_NOT_UNICODE = ("holds text that is not valid Unicode (a lone surrogate such as a JSON \\ud800 escape, or a non-UTF-8 "
                "byte in a path or an argument)")
JSON_COLS = ("rank_pattern", "alpha_pattern", "target_modules", "tags", "provenance")
SIDECAR = "scalectl.json"  # optional metadata beside an adapter: description, source_task, tags, examples
SIDECAR_FIELDS = ("name", "description", "source_task", "tags", "provenance")  # what registering reads of it


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- migrations


def _m001_initial(db) -> None:
    db["pools"].create(
        {"name": str, "base_model": str, "description": str, "created": str}, pk="name", not_null={"created"}
    )
    db["adapters"].create(
        {
            "id": int, "pool": str, "name": str, "source": str, "source_kind": str, "status": str,
            "path": str, "revision": str, "base_model": str, "task_type": str,
            "r": int, "lora_alpha": float, "rank_pattern": str, "alpha_pattern": str,
            "use_rslora": int, "scaling": float, "use_dora": int, "fan_in_fan_out": int,
            "target_modules": str, "n_modules": int, "n_blocks": int, "dtype": str,
            "weight_file": str, "sha256": str, "size_bytes": int, "pickle": int,
            "source_task": str, "description": str, "tags": str, "provenance": str,
            "created": str, "verified": str, "verify_status": str,
        },
        pk="id",
        not_null={"pool", "name", "source", "status", "created"},
        foreign_keys=[("pool", "pools", "name")],
    )
    db["adapters"].create_index(["pool", "name"], unique=True)
    db["examples"].create(
        {"id": int, "adapter_id": int, "idx": int, "input": str, "output": str},
        pk="id", not_null={"adapter_id", "input", "output"}, foreign_keys=[("adapter_id", "adapters", "id")],
    )
    db["examples"].create_index(["adapter_id", "idx"], unique=True)


def _m002_runs(db) -> None:
    # One row per evaluation/training run with its whole config; one record per decoded query.
    db["runs"].create(
        {"id": str, "kind": str, "method": str, "label": str, "status": str, "base_model": str, "config": str,
         "summary": str, "error": str, "created": str, "finished": str, "scalectl_version": str},
        pk="id", not_null={"kind", "status", "created"},
    )
    db["records"].create(
        {"run_id": str, "task": str, "query_id": str, "idx": int, "input_hash": str, "raw_output": str,
         "prediction": str, "normalized": str, "reference": str, "correct": int, "extracted": str,
         "extracted_correct": int, "extra": str},
        pk=("run_id", "task", "query_id"), not_null={"run_id", "task", "query_id", "correct"},
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["records"].create_index(["run_id", "task"])


def _m003_embeddings(db) -> None:
    # One vector per (adapter, view). Raw SQL for ON DELETE SET NULL: removing or replacing an adapter
    # keeps its row (matched again by name and text hash on the next `scalectl index`, else deleted there).
    db.execute(
        "CREATE TABLE embeddings ("
        " id INTEGER PRIMARY KEY,"
        " adapter_id INTEGER REFERENCES adapters(id) ON DELETE SET NULL,"
        " pool TEXT NOT NULL, name TEXT NOT NULL, view TEXT NOT NULL, recipe TEXT NOT NULL,"
        " embedder TEXT NOT NULL, dim INTEGER NOT NULL, text_hash TEXT NOT NULL, vector BLOB NOT NULL,"
        " created TEXT NOT NULL)"
    )
    db.execute("CREATE UNIQUE INDEX idx_embeddings_adapter_view ON embeddings (adapter_id, view)")
    db.execute("CREATE INDEX idx_embeddings_pool_view ON embeddings (pool, view)")


def _m004_config_sha256(db) -> None:
    # adapter_config.json decides behaviour (lora_alpha, r, rank_pattern): its sha256 is recorded and verified too
    db.execute("ALTER TABLE adapters ADD COLUMN config_sha256 TEXT")


def _m005_run_owner(db) -> None:
    # the process recording a run: a run still "running" whose process is gone was killed (shown as interrupted)
    db.execute("ALTER TABLE runs ADD COLUMN host TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN pid INTEGER")


MIGRATIONS: list[tuple[str, Callable]] = [
    ("001_initial", _m001_initial),
    ("002_runs", _m002_runs),
    ("003_embeddings", _m003_embeddings),
    ("004_config_sha256", _m004_config_sha256),
    ("005_run_owner", _m005_run_owner),
]


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


# ---------------------------------------------------------------- records


@dataclass
class Candidate:
    """An adapter ready to be written: inspected (local) or described (remote)."""

    name: str
    source: str
    source_kind: str  # "local" | "hub"
    status: str  # "local" | "fetched" | "remote"
    info: AdapterInfo | None = None
    revision: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # manifest/CLI metadata
    examples: list[dict[str, str]] = field(default_factory=list)

    @property
    def base_model(self) -> str | None:
        return self.info.base_model if self.info else self.fields.get("base_model")


@dataclass
class AddResult:
    added: list[dict[str, Any]]
    warnings: list[str]
    pool: str


@dataclass
class VerifyResult:
    pool: str
    name: str
    status: str  # ok | modified | missing | remote
    detail: str = ""


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    for c in JSON_COLS:
        if isinstance(row.get(c), str):
            try:
                row[c] = json.loads(row[c])
            except json.JSONDecodeError:
                pass
    for c in ("use_rslora", "use_dora", "fan_in_fan_out", "pickle"):
        if row.get(c) is not None:
            row[c] = bool(row[c])
    return row


def _sidecar(path: Path) -> dict[str, Any]:
    f = path / SIDECAR
    if not f.is_file():
        return {}
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdapterError(f"{f}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        return {}
    # user input like a manifest entry: "tags": "qa" must not become ['q', 'a'], "examples": [null] not a crash
    _check_types({k: v for k, v in data.items() if k in SIDECAR_FIELDS and v is not None}, str(f))
    if data.get("examples") is not None:
        _check_examples(data["examples"], str(f))
    return data


def _set_wal(conn: sqlite3.Connection, wait: float = 60.0) -> None:
    """Put the database in WAL mode (persistent: a no-op once the file is WAL).

    Switching a fresh file to WAL needs an exclusive lock, and SQLite answers
    ``database is locked`` at once, without calling the busy handler, when
    another process is creating the same new file. Retry until ``wait``.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Registry:
    """The adapter registry at ``path`` (default ``$SCALECTL_HOME/registry.db``)."""

    def __init__(self, path: str | Path | None = None):
        import sqlite_utils

        self.path = Path(path) if path else paths.registry_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise RegistryError(f"SCALECTL_HOME {self.path.parent} is not a directory") from None
        except PermissionError:
            raise RegistryError(f"cannot create the scalectl home {self.path.parent}: permission denied") from None
        try:
            conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)  # busy timeout 60 s
            _set_wal(conn)
            conn.execute("PRAGMA foreign_keys=ON")
            self.db = sqlite_utils.Database(conn)
            self.migrate()
            self._reap()
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"{self.path} is not a readable scalectl registry (SQLite: {e}); move it aside or "
                                "point SCALECTL_HOME elsewhere") from None

    # -- plumbing

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """One write transaction (``BEGIN IMMEDIATE``): all of it lands, or none of it."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def migrate(self) -> list[str]:
        applied: list[str] = []
        with self.transaction() as db:
            if "_migrations" not in db.table_names():
                db["_migrations"].create({"name": str, "applied": str}, pk="name")
            done = {r["name"] for r in db["_migrations"].rows}
            unknown = sorted(done - {name for name, _ in MIGRATIONS})
            if unknown:  # written by a newer scalectl: its tables may mean things this version does not know
                raise RegistryError(f"the registry {self.path} was written by a newer scalectl (schema "
                                    f"{len(done)}, with migration {unknown[-1]!r}; this scalectl knows schema "
                                    f"{len(MIGRATIONS)}): upgrade scalectl to use it")
            for name, fn in MIGRATIONS:
                if name not in done:
                    fn(db)
                    db["_migrations"].insert({"name": name, "applied": _now()})
                    applied.append(name)
        return applied

    @property
    def schema_version(self) -> int:
        return self.db["_migrations"].count

    def close(self) -> None:
        self.db.conn.close()

    # -- queries

    def pools(self) -> list[dict[str, Any]]:
        sql = ("select p.name, p.base_model, p.description, p.created, count(a.id) as adapters "
               "from pools p left join adapters a on a.pool = p.name group by p.name order by p.name")
        return [dict(r) for r in self.db.query(sql)]

    def pool(self, name: str | None) -> dict[str, Any] | None:
        """One pool's row (name, base_model, description, created, adapters), or None when there is no such pool."""
        return next((p for p in self.pools() if p["name"] == name), None) if name else None

    def list(self, pool: str | None = None, base_model: str | None = None, tag: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        if pool:
            where.append("pool = ?")
            args.append(pool)
        rows = [_decode(r) for r in self.db["adapters"].rows_where(" and ".join(where) or None, args, order_by="pool, id")]
        if base_model:
            rows = [r for r in rows if same_base(r.get("base_model"), base_model)]
        if tag:
            rows = [r for r in rows if tag in (r.get("tags") or [])]
        return rows

    def find(self, name: str, pool: str | None = None) -> dict[str, Any]:
        """One adapter by name (``POOL:NAME`` also works); unique across pools unless a pool is given."""
        if ":" in name and pool is None and not name.startswith(HUB_PREFIX):
            pool, name = name.split(":", 1)
        args: list[Any] = [name]
        sql = "name = ?"
        if pool:
            sql += " and pool = ?"
            args.append(pool)
        rows = [_decode(r) for r in self.db["adapters"].rows_where(sql, args)]
        if not rows:
            hint = self._did_you_mean(name, pool)
            raise RegistryError(f"no adapter named {name!r}" + (f" in pool {pool!r}" if pool else "") + hint)
        if len(rows) > 1:
            pools = ", ".join(r["pool"] for r in rows)
            raise RegistryError(f"adapter name {name!r} is in several pools ({pools}); name one as POOL:NAME or give its pool")
        row = rows[0]
        row["examples"] = [
            {"input": e["input"], "output": e["output"]}
            for e in self.db["examples"].rows_where("adapter_id = ?", [row["id"]], order_by="idx")
        ]
        return row

    def _did_you_mean(self, name: str, pool: str | None) -> str:
        import difflib

        names = [r["name"] for r in self.list(pool)]
        close = difflib.get_close_matches(name, names, n=3)
        return f"; did you mean {', '.join(close)}?" if close else ""

    # -- adding

    def candidate_from_path(self, path: str | Path, name: str | None = None, allow_pickle: bool = False,
                            fields: dict[str, Any] | None = None) -> Candidate:
        info = inspect_adapter(path, allow_pickle=allow_pickle)
        side = _sidecar(info.path)
        merged = {**{k: v for k, v in side.items() if k != "examples"}, **(fields or {})}
        examples = list((fields or {}).get("examples") or side.get("examples") or [])
        return Candidate(name=name or side.get("name") or info.path.name, source=str(info.path.resolve()),
                         source_kind="local", status="local", info=info, fields=merged, examples=examples)

    def candidate_from_hub(self, ref: str, name: str | None = None, allow_pickle: bool = False,
                           fields: dict[str, Any] | None = None, fetch: bool = True) -> Candidate:
        repo, rev = parse_hub_ref(ref)
        src = HUB_PREFIX + repo + (f"@{rev}" if rev else "")
        default_name = repo.split("/", 1)[1]
        fields = dict(fields or {})
        examples = list(fields.pop("examples", []) or [])
        if not fetch:
            return Candidate(name=name or default_name, source=src, source_kind="hub", status="remote",
                             revision=rev, fields=fields, examples=examples)
        snap = snapshot(repo, rev, allow_pickle=allow_pickle)
        info = inspect_adapter(snap, allow_pickle=allow_pickle)
        side = _sidecar(snap)
        examples = examples or list(side.get("examples") or [])
        return Candidate(name=name or default_name, source=src, source_kind="hub", status="fetched",
                         info=info, revision=snap.name, fields={**side, **fields}, examples=examples)

    def candidates_from_manifest(self, manifest: Manifest, allow_pickle: bool = False, fetch: bool = False) -> list[Candidate]:
        out = []
        for e in manifest.entries:
            fields = dict(e.fields)
            if manifest.base_model and "base_model" not in fields:
                fields["base_model"] = manifest.base_model
            out.append(self._candidate_from_entry(e, fields, allow_pickle, fetch))
        return out

    def _candidate_from_entry(self, e: ManifestEntry, fields: dict[str, Any], allow_pickle: bool, fetch: bool) -> Candidate:
        if e.is_hub:
            return self.candidate_from_hub(e.source, e.name, allow_pickle=allow_pickle, fields=fields, fetch=fetch)
        c = self.candidate_from_path(e.source, e.name, allow_pickle=allow_pickle, fields=fields)
        want = fields.get("sha256")
        if want and c.info is not None and c.info.sha256 != want:
            raise IntegrityError(f"{c.info.weight_file}: sha256 {c.info.sha256[:12]}... does not match the manifest's "
                                 f"{str(want)[:12]}... (the file changed since the manifest was written)")
        return c

    def add_sources(self, sources: list[str] | None = None, manifest: str | Path | None = None,
                    pool: str | None = None, name: str | None = None, base_model: str | None = None,
                    tags: list[str] | None = None, description: str | None = None, source_task: str | None = None,
                    examples: list[dict[str, str]] | None = None, replace: bool = False, force: bool = False,
                    allow_pickle: bool = False, fetch: bool = False, default_pool: str | None = None) -> AddResult:
        """``scalectl pool add``: local adapter dirs, ``hf:`` ids and/or one manifest, in one transaction.

        The pool is ``pool``, else the manifest's own, else ``default_pool`` (the CLI passes ``SCALECTL_POOL``),
        else ``default``.

        Everything is inspected and validated before the first write; hub ids given directly are
        snapshotted now, hub ids in a manifest are registered as ``remote`` unless ``fetch``.
        """
        from .manifest import load_manifest

        sources = list(sources or [])
        if not sources and manifest is None:
            raise RegistryError("nothing to add: give adapter directories, hf:ORG/NAME ids, or --manifest FILE")
        if name and len(sources) + (1 if manifest else 0) != 1:
            raise RegistryError("--name applies to a single adapter; give one source")
        fields = {k: v for k, v in (("description", description), ("source_task", source_task)) if v}
        if examples:
            fields["examples"] = examples
        cands: list[Candidate] = []
        warnings: list[str] = []
        m = None
        if manifest is not None:
            m = load_manifest(manifest)
            cands += self.candidates_from_manifest(m, allow_pickle=allow_pickle, fetch=fetch)
            for u in m.unresolved:
                warnings.append(f"manifest entry {u.get('name', '?')!r} skipped: {u.get('note', 'unresolved')}")
        for src in sources:
            if is_hub_ref(src):
                cands.append(self.candidate_from_hub(src, name, allow_pickle=allow_pickle, fields=fields))
            else:
                cands.append(self.candidate_from_path(src, name, allow_pickle=allow_pickle, fields=fields))
        res = self.add(cands, pool=pool or (m.pool if m else None) or default_pool,
                       base_model=base_model or (m.base_model if m else None),
                       replace=replace, force=force, tags=tags, pool_description=m.description if m else None)
        res.warnings[:0] = warnings
        return res

    def add(self, candidates: list[Candidate], pool: str | None = None, base_model: str | None = None,
            replace: bool = False, force: bool = False, tags: list[str] | None = None,
            pool_description: str | None = None) -> AddResult:
        """Register candidates in one transaction: all of them, or (on any error) none."""
        pool = pool or DEFAULT_POOL
        if not valid_name(pool):
            raise RegistryError(f"invalid pool name {ascii(pool)}: use letters, digits, '.', '_', '-', '+'")
        warnings: list[str] = []
        seen: set[str] = set()
        for c in candidates:
            if not valid_name(c.name):
                raise RegistryError(f"invalid adapter name {ascii(c.name)}: use letters, digits, '.', '_', '-', '+'")
            if c.name in seen:
                raise RegistryError(f"adapter name {c.name!r} appears twice in this call; give distinct names")
            seen.add(c.name)
        bases = [base_model, pool_description] + [c.base_model for c in candidates]
        if not_unicode(bases):
            raise RegistryError(f"the base model or pool description {_NOT_UNICODE}")
        added: list[int] = []
        with self.transaction() as db:
            prow = next(iter(db["pools"].rows_where("name = ?", [pool])), None)
            pool_base = (prow or {}).get("base_model") or base_model
            if prow is None:
                first_base = next((c.base_model for c in candidates if c.base_model), None)
                pool_base = base_model or first_base
                db["pools"].insert({"name": pool, "base_model": pool_base, "description": pool_description,
                                    "created": _now()})
            elif pool_base and not prow.get("base_model"):
                db["pools"].update(pool, {"base_model": pool_base})
            for c in candidates:
                if c.info is not None and c.info.use_dora:
                    warnings.append(f"{c.name}: DoRA adapter registered; merging will refuse it")
                if c.info is not None and c.info.extra_tensors:
                    ex = c.info.extra_tensors
                    warnings.append(f"{c.name}: {len(ex)} tensor(s) that are not LoRA factors (modules_to_save or "
                                    f"others, e.g. {ex[0]}) are kept in its file but not composed or evaluated")
                if pool_base and c.base_model and not same_base(c.base_model, pool_base):
                    msg = f"{c.name}: base model {c.base_model!r} differs from pool {pool!r}'s base {pool_base!r}"
                    if not force:
                        raise RegistryError(msg + "; pass --force to register it anyway, or use another --pool")
                    warnings.append(msg + " (registered because of --force)")
                existing = list(db["adapters"].rows_where("pool = ? and name = ?", [pool, c.name]))
                if existing:
                    if not replace:
                        raise RegistryError(f"adapter {c.name!r} already exists in pool {pool!r}; pass --replace to overwrite it")
                    db.execute("delete from examples where adapter_id = ?", [existing[0]["id"]])
                    db.execute("delete from adapters where id = ?", [existing[0]["id"]])
                row = self._row(c, pool, tags)
                bad = [k for k, v in _decode(row).items() if not_unicode(v)] or (["examples"] if not_unicode(
                    c.examples) else [])
                if bad:
                    raise RegistryError(f"{c.name}: {', '.join(bad)} {_NOT_UNICODE}")
                aid = db["adapters"].insert(row).last_pk
                if c.examples:
                    db["examples"].insert_all(
                        [{"adapter_id": aid, "idx": i, "input": str(e["input"]), "output": str(e["output"])}
                         for i, e in enumerate(c.examples)]
                    )
                added.append(aid)
        rows = [_decode(r) for r in self.db["adapters"].rows_where(
            "id in (select value from json_each(?))", [json.dumps(added)], order_by="id")]
        return AddResult(added=rows, warnings=warnings, pool=pool)

    @staticmethod
    def _row(c: Candidate, pool: str, tags: list[str] | None) -> dict[str, Any]:
        f = c.fields
        all_tags = list(dict.fromkeys([*(f.get("tags") or []), *(tags or [])]))
        row: dict[str, Any] = {
            "pool": pool, "name": c.name, "source": c.source, "source_kind": c.source_kind, "status": c.status,
            "revision": c.revision, "source_task": f.get("source_task"), "description": f.get("description"),
            "tags": json.dumps(all_tags),  # (a TOML manifest's provenance may hold dates: written as text)
            "provenance": json.dumps(f.get("provenance"), default=str) if f.get("provenance") else None,
            "created": _now(),
        }
        i = c.info
        if i is not None:
            row.update({
                "path": str(i.path.resolve()), "base_model": i.base_model, "task_type": i.task_type,
                "r": i.r, "lora_alpha": i.lora_alpha, "rank_pattern": json.dumps(i.rank_pattern),
                "alpha_pattern": json.dumps(i.alpha_pattern), "use_rslora": int(i.use_rslora), "scaling": i.scaling,
                "use_dora": int(i.use_dora), "fan_in_fan_out": int(i.fan_in_fan_out),
                "target_modules": json.dumps(i.target_modules), "n_modules": len(i.modules),
                "n_blocks": len(i.blocks), "dtype": i.dtype, "weight_file": str(i.weight_file.resolve()),
                "sha256": i.sha256, "config_sha256": i.config_sha256, "size_bytes": i.size_bytes,
                "pickle": int(i.pickle), "verified": _now(), "verify_status": "ok",
            })
        else:  # remote: what the manifest declares
            r, alpha = f.get("r"), f.get("lora_alpha")
            rs = bool(f.get("use_rslora", False))
            row.update({
                "base_model": f.get("base_model"), "task_type": f.get("task_type"), "r": r, "lora_alpha": alpha,
                "use_rslora": int(rs), "use_dora": int(bool(f.get("use_dora", False))),
                "scaling": (alpha / (r ** 0.5 if rs else r)) if r and alpha else None,
                "target_modules": json.dumps(f.get("target_modules")) if f.get("target_modules") else None,
                "verify_status": "remote",
            })
        return row

    # -- removing, verifying

    def remove(self, name: str, pool: str | None = None) -> dict[str, Any]:
        row = self.find(name, pool)
        with self.transaction() as db:
            db.execute("delete from examples where adapter_id = ?", [row["id"]])
            db.execute("delete from adapters where id = ?", [row["id"]])
        return row

    def forget_output(self, pool: str, name: str, out: str | Path) -> None:
        """Drop the row ``pool:name`` registered from the directory ``out`` (an output whose files are about to be
        replaced, or are gone); a row of that name registered from another path is left alone."""
        path = str(Path(out).resolve())
        with self.transaction() as db:
            ids = [r["id"] for r in db.query("select id from adapters where pool = ? and name = ? and path = ?",
                                             [pool, name, path])]
            for aid in ids:
                db.execute("delete from examples where adapter_id = ?", [aid])
                db.execute("delete from adapters where id = ?", [aid])

    def verify(self, pool: str | None = None) -> list[VerifyResult]:
        """Re-hash every registered weight file; record and return the status of each."""
        results = []
        for row in self.list(pool):
            if row["status"] == "remote":
                results.append(VerifyResult(row["pool"], row["name"], "remote", "registered, not fetched"))
                continue
            wf = Path(row["weight_file"] or "")
            if not wf.is_file():
                results.append(VerifyResult(row["pool"], row["name"], "missing", f"{wf} does not exist"))
                continue
            got = sha256_file(wf)
            changed = _config_changed(row)
            if got != row["sha256"]:
                results.append(VerifyResult(row["pool"], row["name"], "modified",
                                            f"{wf}: sha256 {got[:12]}... != registered {row['sha256'][:12]}..."))
            elif changed:
                results.append(VerifyResult(row["pool"], row["name"], "modified", changed))
            else:
                results.append(VerifyResult(row["pool"], row["name"], "ok"))
        with self.transaction() as db:
            ids = {(r["pool"], r["name"]): r["id"] for r in self.list(pool)}
            now = _now()
            for v in results:
                if v.status != "remote" and (v.pool, v.name) in ids:
                    db["adapters"].update(ids[(v.pool, v.name)], {"verified": now, "verify_status": v.status})
        return results

    # -- using

    def fetch(self, name: str, pool: str | None = None, allow_pickle: bool = False) -> dict[str, Any]:
        """Fetch a ``remote`` hub adapter into the HF cache and fill in its row (checked against what was declared)."""
        row = self.find(name, pool)
        if row["status"] != "remote":
            return row
        c = self.candidate_from_hub(row["source"], row["name"], allow_pickle=allow_pickle)
        i = c.info
        assert i is not None
        for key, got in (("r", i.r), ("lora_alpha", i.lora_alpha)):
            if row.get(key) is not None and float(row[key]) != float(got):
                raise AdapterError(f"{row['source']}: fetched adapter has {key}={got}, the manifest declared {row[key]}")
        declared = row.get("target_modules")
        if declared and sorted(declared) != sorted(i.target_modules):
            raise AdapterError(f"{row['source']}: fetched adapter targets {i.target_modules}, the manifest declared {declared}")
        if row.get("base_model") and i.base_model and not same_base(row["base_model"], i.base_model):
            raise AdapterError(
                f"{row['source']}: fetched adapter's base is {i.base_model!r}, the manifest declared {row['base_model']!r}"
            )
        new = self._row(c, row["pool"], None)
        keep = {"tags", "source_task", "description", "provenance", "created"}
        upd = {k: v for k, v in new.items() if k not in keep and k not in ("pool", "name")}
        with self.transaction() as db:
            db["adapters"].update(row["id"], upd)
        return self.find(row["name"], row["pool"])

    def open_adapter(self, name: str, pool: str | None = None, allow_pickle: bool = False) -> tuple[dict[str, Any], AdapterInfo]:
        """Resolve a registered adapter for use: fetch it if remote, refuse it if its file changed."""
        row = self.find(name, pool)
        if row["status"] == "remote":
            row = self.fetch(row["name"], row["pool"], allow_pickle=allow_pickle)
        if row.get("pickle") and not allow_pickle:
            raise AdapterError(f"{row['name']}: registered from a pickle file; pass --allow-pickle to load it")
        path = Path(row["path"])
        if not path.exists():
            raise IntegrityError(f"{row['name']}: {path} no longer exists (run 'scalectl pool verify')")
        registered = Path(row["weight_file"] or "")
        if not registered.is_file():  # e.g. the safetensors file replaced by a pickle: not what was registered
            there = sorted(p.name for p in path.glob("adapter_model.*"))
            raise IntegrityError(f"{row['name']}: its registered weight file {registered} no longer exists"
                                 + (f" ({', '.join(there)} is there instead: register it again to use it)" if there
                                    else "") + "; refusing to use it")
        info = inspect_adapter(path, allow_pickle=bool(row.get("pickle")), hash_file=True)
        if row.get("config_sha256") and info.config_sha256 != row["config_sha256"]:
            raise IntegrityError(f"{row['name']}: {_config_changed(row)}; refusing to use it. Re-register with "
                                 "'scalectl pool add --replace' if the change is intended")
        if info.sha256 != row["sha256"]:
            raise IntegrityError(
                f"{row['name']}: weight file {info.weight_file} changed after registration "
                f"(sha256 {info.sha256[:12]}... != {row['sha256'][:12]}...); refusing to use it. "
                "Re-register with 'scalectl pool add --replace' if the change is intended"
            )
        return row, info

    def load_factors(self, name: str, pool: str | None = None, allow_pickle: bool = False) -> LoraFactors:
        row, info = self.open_adapter(name, pool, allow_pickle=allow_pickle)
        return load_factors(info, name=row["name"])

    # -- runs and per-query records

    def create_run(self, kind: str, method: str, config: dict[str, Any], base_model: str | None = None,
                   label: str | None = None) -> str:
        import os
        import secrets
        import socket

        from . import __version__

        run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        with self.transaction() as db:
            db["runs"].insert({"id": run_id, "kind": kind, "method": method, "label": label, "status": "running",
                               "base_model": base_model, "config": json.dumps(config, default=str), "created": _now(),
                               "scalectl_version": __version__, "host": socket.gethostname(), "pid": os.getpid()})
        return run_id

    def add_records(self, run_id: str, records: list[dict[str, Any]]) -> None:
        rows = [{**r, "run_id": run_id, "correct": int(bool(r["correct"])),
                 "extracted_correct": None if r.get("extracted_correct") is None else int(bool(r["extracted_correct"])),
                 "extra": json.dumps(r["extra"]) if r.get("extra") is not None else None} for r in records]
        with self.transaction() as db:
            db["records"].insert_all(rows, replace=True)

    RUN_COLUMNS = ("id", "kind", "method", "label", "status", "base_model", "config", "summary", "error", "created",
                   "finished", "scalectl_version")

    def _reap(self) -> None:
        """Runs left ``running`` by a process of this machine that no longer exists (killed: SIGKILL, a crash)
        become ``interrupted``; nothing else about them changes."""
        import socket

        host = socket.gethostname()
        dead = [r["id"] for r in self.db.query("select id, pid from runs where status = 'running' and host = ?", [host])
                if r["pid"] is not None and not _alive(int(r["pid"]))]
        if dead:
            with self.transaction() as db:
                for rid in dead:
                    db["runs"].update(rid, {"status": "interrupted", "finished": _now(),
                                            "error": "the process recording this run ended without finishing it"})

    def import_runs(self, runs: list[dict[str, Any]], records: dict[str, list[dict[str, Any]]]) -> None:
        """Add finished runs as another registry (a bundle) recorded them: rows and records kept as they were, in
        one transaction (all or nothing)."""
        rows = [{k: (json.dumps(r.get(k), default=str) if k in ("config", "summary") and r.get(k) is not None
                     else r.get(k)) for k in self.RUN_COLUMNS} for r in runs]  # (not host and pid: not ours)
        with self.transaction() as db:
            if rows:
                db["runs"].insert_all(rows)
            for r in runs:
                recs = [{**{k: v for k, v in x.items() if k != "run_id"}, "run_id": r["id"],
                         "extra": json.dumps(x["extra"]) if x.get("extra") is not None else None}
                        for x in records.get(r["id"], [])]
                if recs:
                    db["records"].insert_all(recs)

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any] | None = None, error: str | None = None) -> None:
        with self.transaction() as db:
            db["runs"].update(run_id, {"status": status, "summary": json.dumps(summary, default=str) if summary else None,
                                       "error": error, "finished": _now()})

    def run(self, run_id: str) -> dict[str, Any]:
        rows = list(self.db.query("select rowid as seq, * from runs where id = ? or id like ? order by id",
                                  [run_id, run_id + "%"]))
        exact = [r for r in rows if r["id"] == run_id]
        if exact:
            rows = exact
        if not rows:
            raise RegistryError(f"no run {run_id!r}; `scalectl runs list` shows the runs")
        if len(rows) > 1:
            raise RegistryError(f"run id prefix {run_id!r} matches {len(rows)} runs; give more of it")
        r = dict(rows[0])
        for k in ("config", "summary"):
            r[k] = json.loads(r[k]) if r.get(k) else None
        return r

    def runs(self, kind: str | None = None, method: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        for col, val in (("kind", kind), ("method", method), ("status", status)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        # seq (the rowid) is the insertion order: ``created`` has one-second resolution
        sql = "select rowid as seq, * from runs" + (" where " + " and ".join(where) if where else "") + " order by rowid"
        out = []
        for r in self.db.query(sql, args):
            r = dict(r)
            for k in ("config", "summary"):
                r[k] = json.loads(r[k]) if r.get(k) else None
            out.append(r)
        return out

    def records(self, run_id: str, task: str | None = None) -> list[dict[str, Any]]:
        sql = "select * from records where run_id = ?" + (" and task = ?" if task else "") + " order by task, idx"
        out = []
        for r in self.db.query(sql, [run_id] + ([task] if task else [])):
            r = dict(r)
            r["extra"] = json.loads(r["extra"]) if r.get("extra") else None
            out.append(r)
        return out
