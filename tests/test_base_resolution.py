"""How a command chooses and finds its base model (README, "The base model").

--base (or SCALECTL_BASE) when given, else the pool's base model, else the embedded default; the embedded
model's own hub id is the embedded copy unless ``hf:`` asks for the hub; a hub id is read from the HF cache
when it is there; a pool/base mismatch and a missing index are refused before any model loads; nothing
reaches for the network on the embedded default.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import write_bbh
from typer.testing import CliRunner

from scalectl import backbone
from scalectl.backbone import DEFAULT_BASE, choose_base, model_dir, resolve_base
from scalectl.cli import app
from scalectl.errors import BackboneError
from scalectl.index import build_index
from scalectl.registry import Registry

runner = CliRunner()
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture
def no_model_load(monkeypatch):
    """Any attempt to load (or convert) a model fails the test."""
    def boom(*a, **k):
        raise AssertionError(f"a model was loaded: {a} {k}")

    monkeypatch.setattr(backbone, "load_backbone", boom)
    monkeypatch.setattr(backbone, "ensure_embedded", boom)


@pytest.fixture
def tiny(tmp_path, llama_adapters):
    """The tiny Llama adapters registered as pool ``tiny`` (on the tiny Llama's directory) and a BBH task."""
    reg = Registry()
    reg.add_sources([str(p) for p in llama_adapters], pool="tiny")
    d = write_bbh(tmp_path / "bbh", {"tiny_tf": [{"input": f"is {i} even?", "target": "yes" if i % 2 == 0 else "no"}
                                                 for i in range(18)]})
    return reg, d


def test_the_embedded_models_hub_id_is_the_embedded_copy():
    for spec in ("smollm2-135m", HUB_ID, HUB_ID.lower(), HUB_ID + "/"):
        b = resolve_base(spec)
        assert (b.kind, b.canonical, b.embedded.alias) == ("embedded", HUB_ID, "smollm2-135m"), spec
    hub = resolve_base("hf:" + HUB_ID)  # the user asks for the hub itself
    assert (hub.kind, hub.canonical, hub.embedded) == ("hub", HUB_ID, None)
    assert resolve_base("google/flan-t5-large").kind == "hub"
    with pytest.raises(BackboneError, match="after hf: give a hub id"):
        resolve_base("hf:not-a-repo")


def test_choose_base_order():
    assert choose_base("org/explicit", "org/pool") == "org/explicit"
    assert choose_base(None, "org/pool") == "org/pool"
    assert choose_base("  ", None) == DEFAULT_BASE == choose_base(None, None)


def test_hub_id_reads_the_cache_and_offline_uncached_is_one_line(tmp_path, llama_base, monkeypatch):
    """A hub id laid out in the HF cache as huggingface_hub leaves it loads from there, offline."""
    cache = tmp_path / "hub-cache"
    rev = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--tiny-org--tiny-llama"
    shutil.copytree(llama_base, repo / "snapshots" / rev)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    b = resolve_base("tiny-org/tiny-llama")
    assert b.kind == "hub" and Path(model_dir(b)) == repo / "snapshots" / rev
    r = runner.invoke(app, ["base", "prepare", "--base", "tiny-org/tiny-llama", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["path"] == str(repo / "snapshots" / rev)
    with pytest.raises(BackboneError, match="not in the Hugging Face cache and the hub is offline"):
        model_dir(resolve_base("tiny-org/absent"))


def test_eval_defaults_base_to_the_pools(tiny):
    reg, d = tiny
    r = runner.invoke(app, ["eval", "--base-only", "--pool", "tiny", "--task", "tiny_tf", "--bbh-dir", str(d),
                            "--limit", "1", "--json"])
    assert r.exit_code == 0, r.output
    pool_base = reg.pool("tiny")["base_model"]
    assert json.loads(r.stdout)["config"]["base"] == pool_base


@pytest.mark.parametrize("how", ["flag", "env"])
def test_pool_base_mismatch_refused_before_any_model_loads(tiny, no_model_load, monkeypatch, how):
    reg, d = tiny
    args = ["eval", "--method", "ilc", "--pool", "tiny", "--task", "tiny_tf", "--bbh-dir", str(d)]
    if how == "flag":
        args += ["--base", "smollm2-135m"]
    else:
        monkeypatch.setenv("SCALECTL_BASE", "smollm2-135m")
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    assert "pool 'tiny' is on" in r.stderr and "smollm2-135m" in r.stderr
    assert reg.runs() == []


def test_missing_index_refused_before_any_model_loads(tiny, no_model_load):
    reg, d = tiny
    r = runner.invoke(app, ["eval", "--method", "ilc", "--pool", "tiny", "--task", "tiny_tf", "--bbh-dir", str(d)])
    assert r.exit_code != 0 and "index" in r.stderr and "scalectl index" in r.stderr
    assert reg.runs() == []


def test_shipped_flan_t5_manifest_uses_its_own_base(no_model_load):
    """The ilorcomp-97 pool is on google/flan-t5-large: eval on it is not run on the embedded default."""
    r = runner.invoke(app, ["pool", "add", "--manifest", str(ROOT / "registry" / "ilorcomp-97.toml")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", "--method", "ilc", "--pool", "ilorcomp-97", "--task", "bbh/navigate",
                            "--base", "smollm2-135m"])
    assert r.exit_code == 1 and "is on 'google/flan-t5-large'" in r.stderr
    r = runner.invoke(app, ["eval", "--method", "ilc", "--pool", "ilorcomp-97", "--task", "bbh/navigate"])
    assert r.exit_code != 0 and "index" in r.stderr  # the pool's own base; the missing index is refused first
    assert Registry().runs() == []


def test_compose_task_honours_base_and_env(tiny, tmp_path, monkeypatch):
    reg, d = tiny
    build_index(reg, "tiny", "balanced", embedder="hash:64")
    args = ["compose", "--merger", "lasrc", "--task", "tiny_tf", "--bbh-dir", str(d), "--steps", "8",
            "--global", "2", "--json"]
    monkeypatch.setenv("SCALECTL_POOL", "tiny")
    monkeypatch.setenv("SCALECTL_BASE", "smollm2-135m")
    r = runner.invoke(app, args + ["--out", str(tmp_path / "c1")])
    assert r.exit_code == 1 and "pool 'tiny' is on" in r.stderr, r.output
    assert not (tmp_path / "c1").exists()
    monkeypatch.delenv("SCALECTL_BASE")
    import scalectl.taskcompose as taskcompose
    from scalectl.search import search_weights

    def searched(bb, factors, support, cfg, **kw):  # the real search on the pool's base, weights kept off 0
        res = search_weights(bb, factors, support, cfg, **kw)
        assert bb.base.canonical == reg.pool("tiny")["base_model"]
        res.weights = [0.5] * len(factors)
        return res

    monkeypatch.setattr(taskcompose, "search_weights", searched)
    r = runner.invoke(app, args + ["--out", str(tmp_path / "c2")])  # the pool's base: the tiny Llama
    assert r.exit_code == 0, r.output
    assert (tmp_path / "c2" / "adapter_model.safetensors").is_file()
    assert json.loads(r.stdout)["result"]["registered"] == "tiny:c2"


def test_merge_into_base_failure_leaves_no_output(tiny, tmp_path):
    reg, _ = tiny
    n = len(reg.list(pool="tiny"))
    r = runner.invoke(app, ["compose", "--adapters", "arith,sorting", "--pool", "tiny", "--out", str(tmp_path / "o"),
                            "--merge-into-base", str(tmp_path / "m"), "--base", "smollm2-135m"])
    assert r.exit_code == 1 and "is on" in r.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "m").exists()
    assert len(Registry().list(pool="tiny")) == n
    r = runner.invoke(app, ["compose", "--adapters", "arith,sorting", "--pool", "tiny", "--out", str(tmp_path / "o"),
                            "--merge-into-base", str(tmp_path / "m")])  # no --base: the adapters' own
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m" / "config.json").is_file() and (tmp_path / "o" / "adapter_config.json").is_file()


GUARD = """
import socket, sys
attempts = open(sys.argv[1], "a")
def refuse(*a, **k):
    attempts.write(repr(a[1:] or a) + "\\n"); attempts.flush()
    raise OSError("network disabled by the test")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from scalectl.cli import app
app(sys.argv[2:], prog_name="scalectl")
"""


def _guarded_env(home: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "SCALECTL_POOL")}
    env.update(SCALECTL_HOME=str(home), HF_HOME=str(tmp_path / "hf"))
    return env


@pytest.mark.slow
def test_embedded_default_never_reaches_for_the_network(embedded_home, tmp_path):
    """With the hub *not* marked offline and every socket refused, the embedded model's commands never try it:
    its hub id, a pool recorded on that hub id (the demo pool), and the default all load the embedded copy."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(embedded_home / "models")
    log = tmp_path / "attempts.log"
    env = _guarded_env(home, tmp_path)
    runs = [["base", "prepare", "--base", HUB_ID, "--json"],
            ["pool", "add", "--manifest", str(ROOT / "registry" / "smollm2-skills.toml")],
            ["eval", "--base-only", "--pool", "smollm2-skills", "--task", "bbh/navigate", "--limit", "1", "--json"]]
    outs = []
    for args in runs:
        r = subprocess.run([sys.executable, "-c", GUARD, str(log), *args], env=env, capture_output=True, text=True,
                           timeout=600, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert json.loads(outs[0])["kind"] == "embedded"
    cfg = json.loads(outs[2])["config"]
    assert cfg["base_model"] == HUB_ID and cfg["base"] == HUB_ID
    assert not log.exists() or log.read_text() == "", log.read_text()
