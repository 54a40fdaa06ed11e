"""Pairwise RMS cosine from factors equals the dense computation."""

from __future__ import annotations

import numpy as np
import pytest

from scalectl.compat import pairwise_cosines
from scalectl.registry import Registry


def test_rms_cosine_matches_dense(llama_adapters):
    reg = Registry()
    reg.add_sources([str(p) for p in llama_adapters], pool="tiny")
    fs = [reg.load_factors(n, "tiny") for n in ("arith", "sorting", "dates")]
    c = pairwise_cosines(fs)
    for i in range(3):
        assert c.rms_cosine[i, i] == pytest.approx(1.0)
        for j in range(3):
            cs = []
            for m in fs[0].modules:
                a, b = fs[i].delta(m).flatten().double(), fs[j].delta(m).flatten().double()
                cs.append(float(a @ b / (a.norm() * b.norm())))
            assert c.rms_cosine[i, j] == pytest.approx(np.sqrt(np.mean(np.square(cs))), abs=1e-6)
            assert c.mean_cosine[i, j] == pytest.approx(np.mean(cs), abs=1e-6)
    assert len(c.pairs()) == 3 and c.pairs()[0]["rms_cosine"] >= c.pairs()[-1]["rms_cosine"]


def test_duplicate_adapter_has_cosine_one(llama_adapters, adapter_copy):
    reg = Registry()
    reg.add_sources([str(llama_adapters[0]), str(adapter_copy(0, "arith-copy"))], pool="dup")
    c = pairwise_cosines([reg.load_factors(n, "dup") for n in ("arith", "arith-copy")])
    assert c.rms_cosine[0, 1] == pytest.approx(1.0, abs=1e-6)


def _fam(kind, skills, template="plain", seed=0):
    from scalectl.compat import Family

    return Family.from_tags([f"kind:{kind}", *(f"skill:{s}" for s in skills), f"template:{template}", f"seed:{seed}",
                             "other-tag"])


def test_family_relations_from_tags():
    from scalectl.compat import Family, relation

    base, qa, seed1 = _fam("skill", ["a"]), _fam("template", ["a"], "qa"), _fam("skill", ["a"], seed=1)
    mix, mix2, other, dis = _fam("mixture", ["a", "b"]), _fam("mixture", ["a", "c"]), _fam("skill", ["b"]), _fam(
        "distractor", ["z"])
    assert base.skills == frozenset({"a"}) and mix.skills == frozenset({"a", "b"}) and qa.template == "qa"
    assert relation(base, seed1) == "seed repeat" and relation(seed1, base) == "seed repeat"
    assert relation(base, qa) == relation(qa, seed1) == "other template"
    assert relation(mix, base) == relation(other, mix) == "mixture and its part"
    assert relation(mix, mix2) == "mixtures sharing a skill"
    assert relation(dis, base) == relation(mix, dis) == "with a distractor"
    assert relation(base, other) == relation(mix2, other) == "unrelated skills"
    assert Family.from_tags(["tiny"]) is None and Family.from_tags(["kind:skill"]) is None
    # what the skill table writes is what Family reads
    from scalectl.tasks.skills import get_skill

    f = Family.from_tags(get_skill("grid-return+grid-position").family_tags(3))
    assert f == Family("mixture", frozenset({"grid-return", "grid-position"}), "plain", "3")
    assert Family.from_tags(get_skill("word-sorting.qa").family_tags(0)).template == "qa"
    assert Family.from_tags(get_skill("caesar-shift").family_tags(0)).kind == "distractor"


def test_compat_families_groups_and_summarizes(llama_adapters, adapter_copy):
    from scalectl.audit import compat
    from scalectl.errors import EvalError

    reg = Registry()
    tags = {"arith": ["kind:skill", "skill:arith", "seed:0"], "sorting": ["kind:template", "skill:sorting",
            "template:qa"], "dates": ["kind:distractor", "skill:dates"]}
    for p in llama_adapters:
        reg.add_sources([str(p)], pool="fam", tags=tags[p.name])
    reg.add_sources([str(adapter_copy(0, "arith-s1"))], pool="fam", tags=["kind:skill", "skill:arith", "seed:1"])
    res = compat(reg, "fam", families=True)
    assert res["names"] == ["arith", "arith-s1", "sorting", "dates"]  # by family; the distractor last
    rel = {r["relation"]: r for r in res["families"]["relations"]}
    assert list(rel) == ["seed repeat", "with a distractor", "unrelated skills"]
    assert rel["seed repeat"]["pairs"] == 1 and rel["seed repeat"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert rel["with a distractor"]["pairs"] == 3 and rel["unrelated skills"]["pairs"] == 2
    k = res["names"]
    assert rel["unrelated skills"]["max"] == pytest.approx(max(res["rms_cosine"][k.index("arith")][k.index("sorting")],
                                                               res["rms_cosine"][k.index("arith-s1")][k.index("sorting")]))
    assert res["families"]["family"]["sorting"] == {"kind": "template", "skills": ["sorting"], "template": "qa",
                                                    "seed": "0"}
    reg.add_sources([str(adapter_copy(1, "untagged"))], pool="fam")
    res2 = compat(reg, "fam", families=True)
    assert res2["names"] == res["names"] and any("without family tags (kind:, skill:) left out: untagged" in n
                                                 for n in res2["notes"])
    reg.add_sources([str(adapter_copy(2, "other"))], pool="bare")
    reg.add_sources([str(llama_adapters[0])], pool="bare", tags=["kind:skill", "skill:arith"])
    with pytest.raises(EvalError, match="1 adapter.s. with family tags"):
        compat(reg, "bare", families=True)
