"""Views, embedders and the embedding index (``scalectl index``): storage, incremental rebuilds, errors.

Everything here uses the deterministic ``hash:DIM`` embedder; the real MiniLM default is
exercised once, in tests/test_retrieve.py (marked slow).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

from scalectl import paths
from scalectl.cli import app
from scalectl.errors import RegistryError, RetrievalError
from scalectl.index import (
    DEFAULT_EMBEDDER,
    build_index,
    canonical_embedder,
    embed_texts,
    index_status,
    list_indexes,
    load_index,
)
from scalectl.registry import Registry
from scalectl.retrieve import retrieve
from scalectl.views import MAX_EXAMPLES, VIEWS, common_prefix, get_view

runner = CliRunner()
EMB = "hash:64"


@pytest.fixture
def reg(llama_adapters) -> Registry:
    r = Registry()
    r.add_sources([str(p) for p in llama_adapters], pool="tiny")
    return r


def rows(view: str = "balanced") -> list[dict]:
    db = sqlite3.connect(paths.registry_path())
    db.row_factory = sqlite3.Row
    try:
        return [dict(x) for x in db.execute("select * from embeddings where view = ? order by name", [view])]
    finally:
        db.close()


# ---------------------------------------------------------------- views


def test_views_recipes_and_caps():
    row = {"name": "ws", "description": "Sort words  alphabetically.", "source_task": "word_sorting",
           "examples": [{"input": f"in{i}", "output": f"out{i}"} for i in range(8)]}
    r, b, q = (VIEWS[v].adapter_text(row) for v in ("retrieval", "balanced", "qa"))
    assert "Sort words alphabetically." in r and "word sorting" in r and "in0" in r and "out0" not in r
    assert "Sort words alphabetically." in b and "in0 -> out0" in b
    assert "Sort" not in q and "word sorting" not in q and "in0 -> out0" in q
    for text in (r, b, q):  # only the first MAX_EXAMPLES examples
        assert f"in{MAX_EXAMPLES - 1}" in text and f"in{MAX_EXAMPLES}" not in text
    long = {"name": "x", "description": "d " * 5000, "examples": [{"input": "y" * 5000 + " tail", "output": "z"}] * 5}
    assert all("tail" in v.adapter_text(long) for v in VIEWS.values())  # nothing cut at a fixed length
    assert VIEWS["qa"].adapter_text({"name": "bare-adapter", "examples": []}) == "bare-adapter"  # never empty
    ex = {"input": "Sort: b a", "target": "a b"}
    assert VIEWS["retrieval"].support_text(ex) == "Sort: b a"
    assert VIEWS["balanced"].support_text(ex) == VIEWS["qa"].support_text(ex) == "Sort: b a -> a b"


def test_unknown_view_did_you_mean():
    with pytest.raises(RetrievalError, match=r"did you mean retrieval\?.*known: retrieval, balanced, qa"):
        get_view("retreival")


# ---------------------------------------------------------------- embedders


def test_embedders_names_and_hash_vectors(tmp_path):
    assert canonical_embedder(None) == canonical_embedder("minilm") == canonical_embedder("all-MiniLM-L6-v2") == DEFAULT_EMBEDDER
    assert canonical_embedder("hash:32") == "hash:32" and canonical_embedder(str(tmp_path)) == str(tmp_path.resolve())
    assert canonical_embedder("org/some-model") == "org/some-model"
    for bad in ("hash:0", "hash:x", "./no/such/dir"):
        with pytest.raises(RetrievalError):
            canonical_embedder(bad)
    v = embed_texts(["sort these words", "sort these words", "add two numbers", ""], "hash:128")
    assert v.shape == (4, 128) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v[:3], axis=1), 1.0, atol=1e-6) and not v[3].any()
    assert np.array_equal(v[0], v[1]) and np.array_equal(v[0], embed_texts(["Sort these WORDS"], "hash:128")[0])
    assert float(v[0] @ v[2]) < 0.9


# ---------------------------------------------------------------- the index


def test_build_stores_float32_blobs(reg):
    s = build_index(reg, "tiny", "balanced", embedder=EMB)
    assert (s["embedded"], s["unchanged"], s["removed"], s["dim"], s["embedder"]) == (3, 0, 0, 64, EMB)
    got = rows()
    assert [r["name"] for r in got] == ["arith", "dates", "sorting"]
    for r in got:
        assert (r["pool"], r["view"], r["recipe"], r["embedder"], r["dim"]) == ("tiny", "balanced", "balanced", EMB, 64)
        assert isinstance(r["vector"], bytes) and len(r["vector"]) == 64 * 4
        vec = np.frombuffer(r["vector"], dtype="<f4")
        assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5
        text = VIEWS["balanced"].adapter_text(reg.find(r["name"], "tiny"))
        assert r["text_hash"] == hashlib.sha256(text.encode()).hexdigest()
        assert np.array_equal(vec, embed_texts([text], EMB)[0])
    names, matrix, embedder, dim = load_index(reg, "tiny", "balanced")
    assert names == ["arith", "sorting", "dates"] and matrix.shape == (3, 64) and matrix.dtype == np.float32
    assert (embedder, dim) == (EMB, 64)


def test_incremental_rebuilds(reg, llama_adapters):
    build_index(reg, "tiny", "balanced", embedder=EMB)
    s = build_index(reg, "tiny", "balanced")  # no embedder: the index's own (no MiniLM load)
    assert (s["embedded"], s["unchanged"], s["embedder"]) == (0, 3, EMB)
    # re-registered unchanged (new adapter id): kept, not re-embedded
    reg.add_sources([str(llama_adapters[1])], pool="tiny", replace=True)
    assert load_index(reg, "tiny", "balanced").names == ["arith", "dates", "sorting"]  # still served meanwhile
    assert index_status(reg, "tiny", "balanced")["missing"] == []
    assert build_index(reg, "tiny", "balanced")["embedded"] == 0
    before = {r["name"]: r["vector"] for r in rows()}
    # a new description: exactly that adapter is re-embedded
    reg.add_sources([str(llama_adapters[1])], pool="tiny", replace=True, description="orders a list of words")
    assert index_status(reg, "tiny", "balanced")["changed"] == ["sorting"]
    s = build_index(reg, "tiny", "balanced")
    assert (s["embedded"], s["unchanged"], s["removed"]) == (1, 2, 0)
    after = {r["name"]: r["vector"] for r in rows()}
    assert after["sorting"] != before["sorting"] and after["arith"] == before["arith"]
    # --force re-embeds everything, to the same vectors
    s = build_index(reg, "tiny", "balanced", force=True)
    assert (s["embedded"], s["unchanged"]) == (3, 0) and {r["name"]: r["vector"] for r in rows()} == after


def test_removed_adapter_row_deleted(reg):
    build_index(reg, "tiny", "balanced", embedder=EMB)
    reg.remove("dates", "tiny")
    assert load_index(reg, "tiny", "balanced").names == ["arith", "sorting"]  # never served, even before a rebuild
    s = build_index(reg, "tiny", "balanced")
    assert (s["embedded"], s["unchanged"], s["removed"]) == (0, 2, 1)
    assert [r["name"] for r in rows()] == ["arith", "sorting"]


def test_new_embedder_only_when_asked(reg):
    build_index(reg, "tiny", "balanced", embedder=EMB)
    with pytest.raises(RetrievalError, match=r"built with hash:64, not hash:32; run `scalectl index --view balanced "
                                             r"--embedder hash:32 --pool tiny`"):
        load_index(reg, "tiny", "balanced", embedder="hash:32")
    s = build_index(reg, "tiny", "balanced", embedder="hash:32")
    assert (s["embedded"], s["dim"]) == (3, 32) and {r["dim"] for r in rows()} == {32}
    assert load_index(reg, "tiny", "balanced", embedder="hash:32").dim == 32


def test_missing_index_and_unknown_names(reg):
    build_index(reg, "tiny", "balanced", embedder=EMB)
    with pytest.raises(RetrievalError, match=r"no 'qa' index for pool 'tiny'; run `scalectl index --view qa --pool tiny`"):
        load_index(reg, "tiny", "qa")
    with pytest.raises(RetrievalError, match=r"unknown view 'balancd'; did you mean balanced"):
        build_index(reg, "tiny", "balancd", embedder=EMB)
    with pytest.raises(RetrievalError, match="unknown view"):
        load_index(reg, "tiny", "balancd")
    with pytest.raises(RegistryError, match="no pool named 'tiyn'; did you mean tiny"):
        build_index(reg, "tiyn", "balanced", embedder=EMB)


def test_custom_view_recipe(reg):
    s = build_index(reg, "tiny", "mine", embedder=EMB, recipe="qa")
    assert (s["recipe"], s["embedded"]) == ("qa", 3) and {r["recipe"] for r in rows("mine")} == {"qa"}
    assert build_index(reg, "tiny", "mine")["unchanged"] == 3  # the stored recipe is reused
    qa = build_index(reg, "tiny", "qa", embedder=EMB)
    assert qa["embedded"] == 3
    assert [r["vector"] for r in rows("mine")] == [r["vector"] for r in rows("qa")]
    assert build_index(reg, "tiny", "mine", recipe="retrieval")["embedded"] == 3  # another recipe: new texts
    with pytest.raises(RetrievalError, match="built-in view"):
        build_index(reg, "tiny", "balanced", recipe="qa")
    with pytest.raises(RetrievalError, match="unknown view 'qq'"):
        build_index(reg, "tiny", "mine", recipe="qq")
    assert {(x["view"], x["recipe"], x["vectors"]) for x in list_indexes(reg)} == {("mine", "retrieval", 3), ("qa", "qa", 3)}


# ---------------------------------------------------------------- CLI


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_index(reg):
    r = invoke("index", "--view", "balanced", "--pool", "tiny", "--embedder", EMB, "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["embedded"], out["adapters"], out["dim"], out["embedder"]) == (3, 3, 64, EMB)
    r = invoke("index", "--view", "balanced", "--pool", "tiny")
    assert r.exit_code == 0 and "unchanged" in r.stdout, r.stderr
    r = invoke("index", "--list", "--json")
    assert r.exit_code == 0
    lst = json.loads(r.stdout)
    assert [v["view"] for v in lst["views"]] == ["retrieval", "balanced", "qa"]
    assert lst["indexes"][0]["pool"] == "tiny" and lst["indexes"][0]["vectors"] == 3
    r = invoke("index", "--list")
    assert r.exit_code == 0 and "retrieval" in r.stdout
    for args, msg in ((("index",), "give --view"),
                      (("index", "--view", "qa", "--pool", "tiny", "--embedder", "hash:0"), "hash:DIM"),
                      (("index", "--view", "balanced", "--pool", "nope"), "no pool named 'nope'")):
        r = invoke(*args)
        err = r.stderr.strip()
        assert r.exit_code == 1 and err.startswith("error:") and "\n" not in err and msg in err, (r.exit_code, err)


def test_compositions_written_into_the_pool_are_not_candidates(reg, tmp_path):
    """`compose` registers its output in the inputs' pool; the index (and so retrieval) leaves it out."""
    from scalectl.compose import compose

    compose(reg, ["arith", "sorting"], [0.5, 0.5], "linear", out=tmp_path / "mix", pool="tiny")
    assert "mix" in {a["name"] for a in reg.list(pool="tiny")}
    s = build_index(reg, "tiny", "balanced", embedder=EMB)
    assert s["adapters"] == 3 and "mix" not in {r["name"] for r in rows()}


def test_common_prefix_of_task_inputs():
    pre = "Answer questions about causal attribution. " * 10
    texts = [pre + "How would a typical person answer: did Tom cause it?", pre + "Did the wind   break it?",
             pre + "How would you answer: did the fire start it?"]
    assert common_prefix(texts) == pre.strip() + " "  # whitespace collapsed, ended at a word boundary
    assert common_prefix(["How would one", "How would two"]) == "How would "
    assert common_prefix(["sort: b a", "sorted c d"]) == ""  # never inside a word
    assert common_prefix(["same", "same"]) == "" and common_prefix(["only one"]) == ""  # never empties a text
    assert common_prefix(texts, min_words=200) == "" and common_prefix(texts, min_words=50) == pre.strip() + " "


def test_retrieval_strips_a_shared_preamble(llama_adapters):
    reg = Registry()
    reg.add_sources([str(p) for p in llama_adapters], pool="tiny")
    build_index(reg, "tiny", "balanced", embedder="hash:64")
    pre = "The following is a long shared instruction that every example of this task repeats word for word. " * 8
    sup = [{"input": pre + f"add {i} and 2", "target": str(i + 2)} for i in range(3)]
    qs = [{"id": "q", "input": pre + "add 5 and 2"}]
    r = retrieve(reg, "tiny", "balanced", sup, qs, n_global=2, n_local=2)
    assert r.stripped_prefix == pre.strip() + " add "  # what every input shares, up to the part that differs
    assert r.to_dict()["stripped_prefix"]["chars"] == len(r.stripped_prefix)
