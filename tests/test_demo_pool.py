"""The shipped demo pool (registry/smollm2-skills) and `scalectl demo` end to end on the embedded default."""

from __future__ import annotations

import json

import pytest
import tomllib
from conftest import ROOT
from typer.testing import CliRunner

from scalectl.cli import app
from scalectl.registry import Registry
from scalectl.tasks import skills

runner = CliRunner()
MANIFEST = ROOT / "registry" / "smollm2-skills.toml"


def test_demo_pool_manifest_is_complete_and_small():
    data = tomllib.loads(MANIFEST.read_text())
    entries = data["adapters"]
    assert len(entries) >= 96
    for e in entries:  # every adapter's skill is a table skill or a variant of table skills, and its tags say which
        skill = skills.get_skill(e["provenance"]["skill"])
        assert set(skill.family_tags(e["provenance"]["seed"])) <= set(e["tags"]), e["name"]
    kinds = [next(t for t in e["tags"] if t.startswith("kind:")) for e in entries]
    for kind in ("kind:skill", "kind:template", "kind:mixture", "kind:distractor"):
        assert kinds.count(kind) >= 10, (kind, kinds.count(kind))
    assert sum(e["provenance"]["seed"] != 0 for e in entries) >= 3  # seed repeats
    total = 0
    for e in entries:
        d = MANIFEST.parent / e["source"]
        cfg = json.loads((d / "adapter_config.json").read_text())
        assert cfg["r"] <= 8 and sorted(cfg["target_modules"]) == ["q_proj", "v_proj"]
        assert cfg["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
        cmd = e["provenance"]["command"]
        assert f"--skill {e['provenance']['skill']}" in cmd and f"--steps {e['provenance']['steps']}" in cmd
        assert f"--seed {e['provenance']['seed']}" in cmd
        total += sum(f.stat().st_size for f in d.iterdir())
    assert total < 100 * 2**20, f"demo pool is {total / 2**20:.1f} MiB"
    shipped = sum(f.stat().st_size for f in (ROOT / "registry").rglob("*") if f.is_file())
    assert shipped < 110 * 2**20, f"registry/ is {shipped / 2**20:.1f} MiB"


def test_the_training_script_plans_the_pool_it_ships():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_demo_pool.py"), "--list"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    names = {e["name"] for e in tomllib.loads(MANIFEST.read_text())["adapters"]}
    planned = {line.split()[1] for line in out}
    assert len(out) == len(planned) >= 96 and planned == names
    assert all(line.startswith("trained ") for line in out)  # nothing left to train: the script would skip all


def test_demo_pool_registers_with_sha256_checked(tmp_path):
    reg = Registry()
    res = reg.add_sources(manifest=MANIFEST)
    assert res.pool == "smollm2-skills" and len(res.added) >= 24
    rows = reg.list(pool="smollm2-skills")
    assert all(r["dtype"] == "bfloat16" and r["r"] <= 8 for r in rows)
    row = reg.find("smollm2-skills:boolean-expressions")
    assert row["examples"] and row["description"] and "scalectl-trained" in row["tags"]
    # a manifest whose sha256 no longer matches the file is refused, and nothing lands
    bad = tmp_path / "bad.toml"
    text = MANIFEST.read_text().replace('source = "smollm2-skills/', f'source = "{MANIFEST.parent}/smollm2-skills/')
    first_sha = tomllib.loads(text)["adapters"][0]["sha256"]
    bad.write_text(text.replace(first_sha, "0" * 64, 1))
    r = runner.invoke(app, ["pool", "add", "--manifest", str(bad), "--pool", "other"])
    assert r.exit_code == 3 and "does not match the manifest" in r.stderr
    assert not Registry().list(pool="other")


@pytest.mark.slow
def test_demo_end_to_end(embedded_home, monkeypatch):
    monkeypatch.setenv("SCALECTL_HOME", str(embedded_home))
    r = runner.invoke(app, ["demo", "--limit", "4", "--steps", "3", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["limit"] == 4 and len(out["tasks"]) == 3 and len(out["adapters"]) >= 24
    reg = Registry()
    assert out["methods"] == {"zero-shot": "zero-shot", "linear": "ilc", "lasrc": "lasrc"}
    for key, method in out["methods"].items():
        run = reg.run(out["runs"][key])
        assert run["status"] == "done" and run["method"] == method
        assert len(reg.records(run["id"])) == 12
    for t in out["tasks"]:
        for m in ("linear", "lasrc"):
            f = t[f"{m}_flips"]
            assert f["i2c"] + f["c2i"] + f["unchanged"] == 4
            assert t[m] - t["zero-shot"] == pytest.approx((f["i2c"] - f["c2i"]) / 4)
    # the table form
    r = runner.invoke(app, ["demo", "--limit", "2", "--uniform"])
    assert r.exit_code == 0, r.output
    flat = " ".join(r.stdout.split())
    assert "flips" in flat and "macro" in flat and "first 2 queries per task" in flat
