from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers import build_llama, build_t5, make_adapter  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported: it reads this once
ROOT = Path(__file__).resolve().parent.parent
BBH = ROOT / "scalectl" / "data" / "bbh"  # the copy that ships inside the package


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """Every test gets its own scalectl home (registry) and an offline, empty HF cache."""
    monkeypatch.setenv("SCALECTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("SCALECTL_POOL", raising=False)
    monkeypatch.delenv("SCALECTL_BASE", raising=False)
    yield


@pytest.fixture(scope="session")
def llama_base(tmp_path_factory) -> Path:
    return build_llama(tmp_path_factory.mktemp("bases") / "tiny-llama")


@pytest.fixture(scope="session")
def t5_base(tmp_path_factory) -> Path:
    return build_t5(tmp_path_factory.mktemp("bases") / "tiny-t5")


@pytest.fixture(scope="session")
def llama_adapters(tmp_path_factory, llama_base) -> list[Path]:
    """Three real PEFT adapters on the tiny Llama (ranks 4, 4, 2), with example records."""
    d = tmp_path_factory.mktemp("llama_adapters")
    specs = [("arith", 4, 8, 1), ("sorting", 4, 16, 2), ("dates", 2, 4, 3)]
    return [
        make_adapter(llama_base, d / n, r=r, alpha=a, seed=s,
                     sidecar={"description": f"tiny {n} skill", "source_task": n, "tags": ["tiny"],
                              "examples": [{"input": f"{n} q{i}", "output": f"a{i}"} for i in range(3)]})
        for n, r, a, s in specs
    ]


@pytest.fixture(scope="session")
def method_adapters(tmp_path_factory, llama_base) -> list[Path]:
    """The three tiny skills at one rank (4): LoRAHub's and iLoRAComp's factor rule needs equal ranks."""
    d = tmp_path_factory.mktemp("method_adapters")
    specs = [("arith", 8, 1), ("sorting", 16, 2), ("dates", 4, 3)]
    return [
        make_adapter(llama_base, d / n, r=4, alpha=a, seed=s,
                     sidecar={"description": f"tiny {n} skill", "source_task": n, "tags": ["tiny"],
                              "examples": [{"input": f"{n} q{i}", "output": f"a{i}"} for i in range(3)]})
        for n, a, s in specs
    ]


@pytest.fixture(scope="session")
def t5_adapter(tmp_path_factory, t5_base) -> Path:
    return make_adapter(t5_base, tmp_path_factory.mktemp("t5_adapters") / "t5-skill", r=4, alpha=8, seed=5)


@pytest.fixture
def adapter_copy(tmp_path, llama_adapters):
    """A private copy of an adapter a test may damage."""
    def _copy(i: int = 0, name: str | None = None) -> Path:
        dst = tmp_path / "copies" / (name or llama_adapters[i].name)
        shutil.copytree(llama_adapters[i], dst)
        return dst
    return _copy


@pytest.fixture(scope="session")
def embedded_home(tmp_path_factory):
    """One conversion of the embedded GGUF for the whole session."""
    from scalectl.backbone import load_backbone

    home = tmp_path_factory.mktemp("embedded-home")
    old = os.environ.get("SCALECTL_HOME")
    os.environ["SCALECTL_HOME"] = str(home)
    try:
        load_backbone("smollm2-135m", device="cpu")
    finally:
        if old is None:
            os.environ.pop("SCALECTL_HOME")
        else:
            os.environ["SCALECTL_HOME"] = old
    return home
