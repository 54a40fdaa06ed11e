"""Every script in examples/ runs as a user runs it (a subprocess, from another directory), with small
limits, offline, in a fresh SCALECTL_HOME, so the examples cannot rot.

The home reuses the embedded model conversion of the session (``embedded_home``: its ``models/`` is
linked in) so no test pays the GGUF conversion again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEMO = ROOT / "registry" / "smollm2-skills"
HUB_ID = "example-org/skill-adapter"  # an invented hub id, served from a local HF cache only
TIMEOUT = 900


@pytest.fixture
def user(tmp_path, request):
    """(cwd, env, home) for one example: a fresh home holding the session's converted model, an
    empty offline HF cache, the venv's scalectl and python first on PATH, no pool preset."""
    home = tmp_path / "home"  # the same home conftest's autouse fixture names, so Registry() reads it too
    home.mkdir()
    if "embedded_home" in request.fixturenames:
        os.symlink(request.getfixturevalue("embedded_home") / "models", home / "models")
    cwd = tmp_path / "work"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("SCALECTL_POOL", "SCALECTL_BASE", "SCALECTL_BBH_DIR", "HF_HUB_CACHE", "SCALECTL")}
    env.update(SCALECTL_HOME=str(home), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
               PYTHON=sys.executable, COLUMNS="120")
    return cwd, env, home


def run(cmd: list[str], cwd: Path, env: dict[str, str], **extra: str) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env={**env, **extra}, capture_output=True, text=True, timeout=TIMEOUT)
    return p


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, f"exit {p.returncode}\n--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-4000:]}"
    return p.stdout


def registry(home: Path):
    from scalectl.registry import Registry

    return Registry(home / "registry.db")


def hub_cache(root: Path, repo_id: str, adapter: Path) -> str:
    """Lay out ``adapter`` in an HF hub cache as huggingface_hub leaves a download: content-addressed
    blobs, a snapshot of symlinks named by the commit, and refs/main holding that commit."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snap = repo / "snapshots" / commit
    for d in (repo / "blobs", repo / "refs", snap):
        d.mkdir(parents=True)
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        data = (adapter / f).read_bytes()
        blob = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / blob).write_bytes(data)
        os.symlink(os.path.join("..", "..", "blobs", blob), snap / f)
    (repo / "refs" / "main").write_text(commit)  # no newline: huggingface_hub reads the file as is
    return commit


def em_lines(out: str) -> dict[str, float]:
    """'<label> EM 50.0%' lines the examples print -> {label: EM}."""
    return {m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"^(?:\d\. )?\s*(.+?)\s+EM\s+([\d.]+)%", out, re.M)}


@pytest.mark.slow
def test_compose_and_eval(user, embedded_home):
    cwd, env, home = user
    out = ok(run(["bash", str(EXAMPLES / "compose_and_eval.sh")], cwd, env, LIMIT="2", STEPS="2", GLOBAL="5"))
    em = em_lines(out)
    assert set(em) == {"composed (navigate-lasrc)", "base model"}, out
    adapter = cwd / "composed" / "navigate-lasrc"
    for f in ("adapter_config.json", "adapter_model.safetensors", "scalectl_provenance.json"):
        assert (adapter / f).is_file(), f
    assert json.loads((adapter / "scalectl_provenance.json").read_text())["operator"] == "lasrc"
    reg = registry(home)
    row = reg.find("navigate-lasrc", "smollm2-skills")
    assert Path(row["path"]).resolve() == adapter.resolve()
    assert len(reg.list(pool="smollm2-skills")) == 97  # the 96 shipped adapters and the composition
    runs = {r["method"]: r for r in reg.runs(kind="eval", status="done")}
    assert set(runs) == {"linear", "zero-shot"}
    assert runs["linear"]["summary"]["n_queries"] == 2
    assert abs(runs["linear"]["summary"]["macro_accuracy"] * 100 - em["composed (navigate-lasrc)"]) < 0.051


@pytest.mark.slow
def test_audit_two_methods(user, embedded_home):
    cwd, env, home = user
    out = ok(run(["bash", str(EXAMPLES / "audit_two_methods.sh")], cwd, env, TASKS="bbh/navigate", LIMIT="2",
                 STEPS="2", GLOBAL="2", LOCAL="2", SAMPLES="500"))
    assert "paired audit vs ilc" in out
    audit = json.loads((cwd / "audit-paired.json").read_text())
    assert audit["baseline"]["method"] == "ilc"
    rows = {r["method"]: r for r in audit["results"]}
    assert set(rows) == {"lasrc", "zero-shot"}
    for r in rows.values():
        assert r["n_queries"] == 2
        assert r["i2c"] + r["c2i"] + r["unchanged"] == r["n_queries"]
        assert 0.0 <= r["p"] <= 1.0 and r["ci_low"] <= r["ci_high"]
    assert re.search(r"^  lasrc\s+delta [+-][\d.]+ pts, flips \+\d+/-\d+/=\d+ of 2", out, re.M), out


@pytest.mark.slow
def test_library(user, embedded_home):
    cwd, env, home = user
    out = ok(run([sys.executable, str(EXAMPLES / "library.py"), "--limit", "2", "--steps", "2", "--global", "4"], cwd, env))
    for step in range(1, 7):
        assert re.search(rf"^{step}\. ", out, re.M), f"step {step} missing\n{out}"
    em = em_lines(out)
    assert set(em) == {"composed (navigate-lasrc-py)", "base model"}, out
    assert all(0.0 <= v <= 100.0 for v in em.values())
    assert (cwd / "composed" / "navigate-lasrc-py" / "adapter_model.safetensors").is_file()
    row = registry(home).find("navigate-lasrc-py", "smollm2-skills")
    assert row["status"] == "local"


@pytest.mark.slow
def test_bring_your_own(user, embedded_home, tmp_path):
    cwd, env, home = user
    cache = tmp_path / "hf" / "hub"
    commit = hub_cache(cache, HUB_ID, DEMO / "object-counting")
    mine = tmp_path / "my-adapters"
    dirs = [shutil.copytree(DEMO / n, mine / n) for n in ("date-arithmetic", "word-sorting")]
    out = ok(run(["bash", str(EXAMPLES / "bring_your_own.sh")], cwd, env, HF_HUB_CACHE=str(cache),
                 ADAPTER_DIRS=" ".join(map(str, dirs)), HUB_ID=f"hf:{HUB_ID}", LIMIT="1"))
    assert "registered: date-arithmetic,word-sorting" in out
    assert "registered: skill-adapter (from hf:example-org/skill-adapter)" in out
    reg = registry(home)
    hub = reg.find("skill-adapter", "mine")
    assert (hub["source"], hub["status"], hub["revision"]) == (f"hf:{HUB_ID}", "fetched", commit)
    assert Path(hub["path"]) == cache / "models--example-org--skill-adapter" / "snapshots" / commit
    assert {r["name"] for r in reg.list(pool="mine")} == {"date-arithmetic", "word-sorting", "skill-adapter", "mine-ties"}
    assert all(v.status == "ok" for v in reg.verify(pool="mine"))
    prov = json.loads((cwd / "composed" / "mine-ties" / "scalectl_provenance.json").read_text())
    assert prov["operator"] == "ties"
    assert [i["name"] for i in prov["inputs"]] == ["skill-adapter", "date-arithmetic"]
    runs = reg.runs(kind="eval", status="done")
    assert len(runs) == 1 and runs[0]["summary"]["n_queries"] == 1


def test_bring_your_own_uncached_hub_id_fails_cleanly(user, tmp_path):
    """Offline, a hub id the cache does not hold stops the script with scalectl's one-line error."""
    cwd, env, home = user
    p = run(["bash", str(EXAMPLES / "bring_your_own.sh")], cwd, env, HF_HUB_CACHE=str(tmp_path / "empty-cache"),
            HUB_ID="hf:example-org/not-cached", LIMIT="0")
    assert p.returncode != 0
    assert "not in the local HF cache" in p.stderr, p.stderr
    assert "== 3/6" not in p.stdout
