"""A fresh clone with nothing beside it works offline: what the program needs at run time ships in the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_fresh_clone_evaluates_offline_with_nothing_beside_it(embedded_home, tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "alone" / "scalectl"
    subprocess.run(["git", "clone", "-q", "--no-local", str(ROOT), str(clone)], check=True, timeout=120)
    assert sorted(p.name for p in clone.parent.iterdir()) == ["scalectl"]  # no ../shared, nothing else
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(embedded_home / "models")  # the one-time GGUF conversion, reused
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALECTL_")}
    env.update(SCALECTL_HOME=str(home), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(clone))
    r = subprocess.run([sys.executable, "-m", "scalectl", "eval", "--base-only", "--task", "bbh/navigate", "--limit", "1",
                        "--json"], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n_queries"] == 1 and out["tasks"][0]["task"] == "bbh/navigate"
    bbh_dir = Path(out["config"]["bbh_dir"])
    assert bbh_dir == (clone / "scalectl" / "data" / "bbh").resolve()  # the clone's own code and its shipped BBH
    assert (bbh_dir / "LICENSE").is_file()
