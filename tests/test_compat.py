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
