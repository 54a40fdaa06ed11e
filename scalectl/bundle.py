"""Replication bundles: finished runs with every query record, as two files anyone can recompute from.

``records.jsonl.gz``: every record of the runs, one JSON object a line with its ``run_id`` (gzip written with
no timestamp, so the same runs give the same bytes). ``runs.json.gz``: ``{"scalectl_version", "records": {file, n,
sha256 of the uncompressed lines}, "pools": {name: {adapters, ranks}}, "runs": [each run's row: id, kind,
method, label, status, base model, config, summary, finished, ...]}``.

:func:`export` writes one (``scalectl audit export``), :func:`read` reads and verifies one, :func:`load_into`
adds its runs to a registry (``scalectl audit import``: the runs already there are kept, so a long sweep
resumes from a committed bundle), and :func:`open_registry` builds a throwaway registry from a bundle alone
(``scalectl report --markdown PAGE --from BUNDLE`` renders the results page with no registry of one's own).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .errors import EvalError

RECORDS_FILE = "records.jsonl.gz"
RUNS_FILE = "runs.json.gz"
LEGACY_RECORDS = "records.jsonl"  # bundles written before they were compressed
LEGACY_RUNS = "runs.json"


def _gzip(data: bytes) -> bytes:
    """gzip with no timestamp and no file name: the same bytes in, the same bytes out."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)
    return buf.getvalue()


@dataclass
class Bundle:
    path: Path
    runs: list[dict[str, Any]]
    records: dict[str, list[dict[str, Any]]]  # run id -> its records, in order
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def _pool_summary(reg, pools: set[str]) -> dict[str, dict[str, Any]]:
    from .index import candidate_rows

    out = {}
    for p in sorted(pools):
        rows = candidate_rows(reg, p)
        out[p] = {"adapters": len(rows), "ranks": sorted({int(r["r"]) for r in rows if r.get("r")})}
    return out


def export(reg, runs: list[dict[str, Any]], out_dir: str | Path, force: bool = False) -> dict[str, Any]:
    """Write the bundle of ``runs`` (registry rows, all finished) to ``out_dir``, atomically.

    Raises:
        EvalError: no runs, a run still running, an existing non-empty ``out_dir`` without ``force``.
    """
    from . import __version__
    from .fsutil import atomic_dir
    from .runid import config_of

    out = Path(out_dir)
    if not runs:
        raise EvalError("no done runs to export")
    running = [r for r in runs if r["status"] == "running"]
    if running:
        raise EvalError(f"run {running[0]['id']} ({running[0]['method']}) is still running; export it when it is done "
                        "or failed")
    if out.exists() and not out.is_dir():
        raise EvalError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise EvalError(f"{out} exists and is not empty; pass --force to replace it")
    h = hashlib.sha256()
    counts = []
    lines = []
    for r in runs:
        recs = reg.records(r["id"])
        counts.append(len(recs))
        for rec in recs:
            line = (json.dumps({"run_id": r["id"], **{k: v for k, v in rec.items() if k != "run_id"}},
                               ensure_ascii=False, default=str) + "\n").encode("utf-8")
            h.update(line)
            lines.append(line)
    pools = {p for r in runs if (p := config_of(r).pool)}
    meta = {"scalectl_version": __version__,
            "records": {"file": RECORDS_FILE, "n": sum(counts), "sha256": h.hexdigest()},
            "pools": _pool_summary(reg, pools),
            "runs": [{**r, "n_records": n} for r, n in zip(runs, counts)]}
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / RECORDS_FILE).write_bytes(_gzip(b"".join(lines)))
        (tmp / RUNS_FILE).write_bytes(_gzip((json.dumps(meta, indent=1, default=str, ensure_ascii=False)
                                             + "\n").encode("utf-8")))
    return {"out": str(out), "n_records": sum(counts), "records_sha256": h.hexdigest(),
            "runs": [{"run": r["id"], "method": r["method"], "label": r.get("label"), "status": r["status"], "n_records": n}
                     for r, n in zip(runs, counts)]}


def read(path: str | Path) -> Bundle:
    """A bundle read back and verified (record count and sha256 against ``runs.json``)."""
    p = Path(path)
    meta_file = p / RUNS_FILE if (p / RUNS_FILE).is_file() else p / LEGACY_RUNS
    if not meta_file.is_file():
        raise EvalError(f"{p} is not a bundle: it has no {RUNS_FILE} (`scalectl audit export --out DIR` writes one)")
    try:
        raw_meta = meta_file.read_bytes()
        meta = json.loads(gzip.decompress(raw_meta) if meta_file.suffix == ".gz" else raw_meta)
    except (ValueError, UnicodeDecodeError, OSError, EOFError) as e:
        raise EvalError(f"{meta_file} is not valid (gzipped) JSON: {e}") from None
    rec_file = p / (meta.get("records") or {}).get("file", RECORDS_FILE)
    if not rec_file.is_file() and (p / LEGACY_RECORDS).is_file():
        rec_file = p / LEGACY_RECORDS
    try:
        raw = gzip.decompress(rec_file.read_bytes()) if rec_file.suffix == ".gz" else rec_file.read_bytes()
    except (OSError, EOFError) as e:
        raise EvalError(f"{rec_file} cannot be read: {e}") from None
    want = meta.get("records") or {}
    if want.get("sha256") and hashlib.sha256(raw).hexdigest() != want["sha256"]:
        raise EvalError(f"{rec_file} does not match the sha256 in {RUNS_FILE}: the bundle was altered or truncated")
    records: dict[str, list[dict[str, Any]]] = {r["id"]: [] for r in meta.get("runs") or []}
    for line in raw.decode("utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("run_id") not in records:
            raise EvalError(f"{rec_file} has a record of run {rec.get('run_id')!r}, which {RUNS_FILE} does not list")
        records[rec["run_id"]].append(rec)
    if want.get("n") is not None and sum(map(len, records.values())) != want["n"]:
        raise EvalError(f"{rec_file} has {sum(map(len, records.values()))} records, {RUNS_FILE} says {want['n']}")
    runs = [{k: v for k, v in r.items() if k != "n_records"} for r in meta.get("runs") or []]
    return Bundle(path=p, runs=runs, records=records, pools=meta.get("pools") or {}, meta=meta)


def load_into(reg, bundle: Bundle) -> dict[str, int]:
    """Add the bundle's runs (with their records) to ``reg``; runs already there (same id) are left as they are."""
    have = {r["id"] for r in reg.runs()}
    new = [r for r in bundle.runs if r["id"] not in have]
    reg.import_runs(new, {r["id"]: bundle.records.get(r["id"], []) for r in new})
    return {"imported": len(new), "kept": len(bundle.runs) - len(new)}


def open_registry(bundle: Bundle, directory: str | Path):
    """A registry in ``directory`` holding only the bundle's runs (for rendering from the bundle alone)."""
    from .registry import Registry

    reg = Registry(Path(directory) / "registry.db")
    load_into(reg, bundle)
    return reg


def select_runs(reg, specs: Sequence[str]) -> list[dict[str, Any]]:
    """The registry rows of ``specs`` (ids, prefixes, labels, method names, selectors); empty: every done run."""
    from .audit import resolve_run

    if not specs:
        return reg.runs(status="done")
    runs: list[dict[str, Any]] = []
    for s in specs:
        r, _ = resolve_run(reg, s)
        if r["id"] not in {x["id"] for x in runs}:
            runs.append(r)
    return runs
