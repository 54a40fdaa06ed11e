"""`scalectl pool ...` end to end through Typer's CliRunner: exit codes, --json, the registry's contents."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import make_adapter
from typer.testing import CliRunner

from scalectl import paths
from scalectl.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args: str):
    r = run(*args)
    assert r.exit_code == 0, f"exit {r.exit_code}\nstdout: {r.stdout}\nstderr: {r.stderr}\n{r.exception!r}"
    return r


def js(*args: str):
    return json.loads(ok(*args, "--json").stdout)


def registry_dump() -> dict:
    db = sqlite3.connect(paths.registry_path())
    try:
        return {t: db.execute(f"select * from {t} order by 1").fetchall() for t in ("pools", "adapters", "examples")}
    finally:
        db.close()


def assert_one_line_error(r, code: int = 1, match: str = ""):
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err.startswith("error:") and "\n" not in err, err
    assert match.lower() in err.lower(), err


def hub_cache(repo_id: str, src: Path) -> Path:
    """Lay ``src``'s files out as the HF cache has them after a snapshot_download of ``repo_id``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = Path(os.environ["HF_HOME"]) / "hub" / ("models--" + repo_id.replace("/", "--"))
    snap = root / "snapshots" / commit
    shutil.copytree(src, snap)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return snap


# ---------------------------------------------------------------- the happy paths


def test_add_list_show_remove(llama_adapters, llama_base):
    out = js("pool", "add", *llama_adapters, "--pool", "tiny", "--tag", "fixture")
    assert [a["name"] for a in out["added"]] == ["arith", "sorting", "dates"]
    rows = js("pool", "list")
    assert len(rows) == 3
    a = {r["name"]: r for r in rows}["dates"]
    assert a["r"] == 2 and a["lora_alpha"] == 4 and a["scaling"] == 2.0 and a["use_dora"] is False
    assert a["target_modules"] == ["q_proj", "v_proj"] and a["n_modules"] == 4 and a["n_blocks"] == 2
    assert a["base_model"] == str(llama_base) and a["task_type"] == "CAUSAL_LM" and a["dtype"] == "float32"
    assert a["sha256"] and a["size_bytes"] == (llama_adapters[2] / "adapter_model.safetensors").stat().st_size
    assert a["source_task"] == "dates" and a["description"] == "tiny dates skill"
    assert a["tags"] == ["tiny", "fixture"] and a["status"] == "local" and a["created"]
    show = js("pool", "show", "dates")
    assert show["examples"][0] == {"input": "dates q0", "output": "a0"} and len(show["examples"]) == 3
    assert js("pool", "list", "--tag", "nope") == []
    assert len(js("pool", "list", "--base", str(llama_base))) == 3
    assert js("pool", "list", "--base", "google/flan-t5-large") == []
    assert js("pool", "pools")[0] == {"name": "tiny", "base_model": str(llama_base), "description": None,
                                      "created": js("pool", "pools")[0]["created"], "adapters": 3}
    ok("pool", "remove", "tiny:sorting")
    assert [r["name"] for r in js("pool", "list")] == ["arith", "dates"]
    assert registry_dump()["examples"] and all(e[1] != 2 for e in registry_dump()["examples"])
    r = ok("pool", "list")
    assert "arith" in r.stdout and "dates" in r.stdout  # the rich table


def test_pool_path_and_migrations(tmp_path):
    r = ok("pool", "path")
    assert r.stdout.strip() == str(tmp_path / "home" / "registry.db")
    ok("pool", "list")  # first open runs the migrations
    db = sqlite3.connect(r.stdout.strip())
    assert [x[0] for x in db.execute("select name from _migrations")] == \
        ["001_initial", "002_runs", "003_embeddings", "004_config_sha256", "005_run_owner"]


def test_inspect_loads_factors(llama_adapters):
    ok("pool", "add", llama_adapters[0])
    out = js("pool", "inspect", "arith")
    assert [b["block"] for b in out["blocks"]] == ["layer.0", "layer.1"]
    assert all(b["delta_norm"] > 0 and b["rank"] == 8 for b in out["blocks"])


def test_manifest_toml_json_and_text(tmp_path, llama_adapters):
    man = tmp_path / "m"
    man.mkdir()
    for p in llama_adapters:
        shutil.copytree(p, man / p.name)
    (man / "pool.toml").write_text(
        'pool = "skills"\ndescription = "tiny skills"\n[defaults]\ntags = ["m"]\n'
        '[[adapters]]\nname = "a1"\nsource = "arith"\nsource_task = "arithmetic"\n'
        'examples = [{input = "1+1", output = "2"}]\n'
        '[[adapters]]\nsource = "./sorting"\n'
    )
    out = js("pool", "add", "--manifest", man / "pool.toml")
    assert out["pool"] == "skills" and [a["name"] for a in out["added"]] == ["a1", "sorting"]
    assert js("pool", "show", "a1")["examples"] == [{"input": "1+1", "output": "2"}]
    assert js("pool", "show", "a1")["source_task"] == "arithmetic"
    (man / "pool.json").write_text(json.dumps([{"source": "dates", "name": "d"}]))
    assert js("pool", "add", "--manifest", man / "pool.json", "--pool", "skills")["added"][0]["name"] == "d"
    (man / "ids.txt").write_text("# hub ids\nlorahub/flan_t5_large-x\nhf:lorahub/flan_t5_large-y  # comment\n")
    out = js("pool", "add", "--manifest", man / "ids.txt", "--pool", "hub")
    assert [(a["name"], a["status"], a["source"]) for a in out["added"]] == [
        ("flan_t5_large-x", "remote", "hf:lorahub/flan_t5_large-x"),
        ("flan_t5_large-y", "remote", "hf:lorahub/flan_t5_large-y")]


def test_shipped_manifests_register_remote_rows():
    root = Path(__file__).resolve().parent.parent / "registry"
    out = js("pool", "add", "--manifest", root / "lorahub-flan-t5-large-196.toml")
    assert out["pool"] == "lorahub-196" and len(out["added"]) == 196
    a = out["added"][0]
    assert (a["status"], a["r"], a["lora_alpha"], a["target_modules"], a["base_model"]) == (
        "remote", 16, 32.0, ["q", "v"], "google/flan-t5-large")
    assert a["scaling"] == 2.0 and a["sha256"] is None
    out = js("pool", "add", "--manifest", root / "ilorcomp-97.toml")
    assert len(out["added"]) == 96 and any("lora_race_middle" in w for w in out["warnings"])
    v = js("pool", "verify")
    assert {x["status"] for x in v} == {"remote"}


def test_hub_id_from_offline_cache(llama_adapters):
    snap = hub_cache("someorg/tiny-arith", llama_adapters[0])
    out = js("pool", "add", "hf:someorg/tiny-arith", "--pool", "hubpool")
    a = out["added"][0]
    assert (a["name"], a["source"], a["status"], a["path"]) == ("tiny-arith", "hf:someorg/tiny-arith", "fetched", str(snap))
    assert a["sha256"] and a["examples"] if "examples" in a else True
    r = run("pool", "add", "hf:someorg/not-cached", "--pool", "hubpool")
    assert_one_line_error(r, match="not in the local HF cache")


def test_remote_row_fetched_on_first_use(tmp_path, t5_adapter):
    hub_cache("lorahub/flan_t5_large-tiny", t5_adapter)
    (tmp_path / "m.toml").write_text(
        '[defaults]\nr = 4\nlora_alpha = 8\ntarget_modules = ["q", "v"]\n'
        '[[adapters]]\nsource = "hf:lorahub/flan_t5_large-tiny"\n')
    assert js("pool", "add", "--manifest", tmp_path / "m.toml")["added"][0]["status"] == "remote"
    out = js("pool", "inspect", "flan_t5_large-tiny")  # first use fetches
    assert len(out["blocks"]) == 4
    row = js("pool", "show", "flan_t5_large-tiny")
    assert row["status"] == "fetched" and row["sha256"] and row["n_blocks"] == 4
    # a manifest that declared the wrong rank is caught at fetch time
    (tmp_path / "bad.toml").write_text('[[adapters]]\nname = "wrong"\nsource = "hf:lorahub/flan_t5_large-tiny"\nr = 16\n')
    ok("pool", "add", "--manifest", tmp_path / "bad.toml")
    assert_one_line_error(run("pool", "fetch", "wrong"), match="declared 16")


def test_pickle_allowed_only_with_flag(tmp_path, llama_adapters):
    from safetensors.torch import load_file

    d = tmp_path / "pk"
    d.mkdir()
    shutil.copy(llama_adapters[0] / "adapter_config.json", d)
    torch.save(load_file(str(llama_adapters[0] / "adapter_model.safetensors")), d / "adapter_model.bin")
    assert_one_line_error(run("pool", "add", d), match="--allow-pickle")
    a = js("pool", "add", d, "--allow-pickle")["added"][0]
    assert a["pickle"] is True and a["weight_file"].endswith("adapter_model.bin")
    assert_one_line_error(run("pool", "inspect", "pk"), match="--allow-pickle")
    assert js("pool", "inspect", "pk", "--allow-pickle")["blocks"]


def test_dora_recorded(tmp_path, llama_base):
    d = make_adapter(llama_base, tmp_path / "dora", use_dora=True)
    r = run("pool", "add", d, "--json")
    assert r.exit_code == 0 and "DoRA" in r.stderr
    assert json.loads(r.stdout)["added"][0]["use_dora"] is True


# ---------------------------------------------------------------- bad input: one line, non-zero, registry unchanged


@pytest.fixture
def seeded(llama_adapters):
    ok("pool", "add", llama_adapters[0])
    return registry_dump()


def _damage(kind: str, d: Path):
    cfg, st = d / "adapter_config.json", d / "adapter_model.safetensors"
    if kind == "missing-config":
        cfg.unlink()
    elif kind == "garbled-config":
        cfg.write_text('{"r": 4, "lora_alpha": ')
    elif kind == "truncated":
        st.write_bytes(st.read_bytes()[:-64])
    elif kind == "corrupt":
        b = bytearray(st.read_bytes())
        b[8:20] = b"#" * 12  # garble the header JSON
        st.write_bytes(bytes(b))
    elif kind == "rank":
        c = json.loads(cfg.read_text())
        c["r"] = 3
        cfg.write_text(json.dumps(c))


@pytest.mark.parametrize("kind,match", [
    ("missing-config", "missing adapter_config.json"),
    ("garbled-config", "not valid JSON"),
    ("truncated", "truncated"),
    ("corrupt", "corrupt"),
    ("rank", "contradict the declared rank"),
])
def test_bad_adapter_files(seeded, adapter_copy, kind, match):
    d = adapter_copy(1, f"bad-{kind}")
    _damage(kind, d)
    assert_one_line_error(run("pool", "add", d), match=match)
    assert registry_dump() == seeded


def test_batch_is_all_or_nothing(seeded, adapter_copy):
    good, bad = adapter_copy(1, "good"), adapter_copy(2, "bad")
    _damage("truncated", bad)
    assert_one_line_error(run("pool", "add", good, bad), match="truncated")
    assert registry_dump() == seeded


def test_missing_path(seeded, tmp_path):
    assert_one_line_error(run("pool", "add", tmp_path / "does-not-exist"), match="no such file")
    assert registry_dump() == seeded


def test_duplicate_name_needs_replace(seeded, llama_adapters, adapter_copy):
    assert_one_line_error(run("pool", "add", llama_adapters[0]), match="--replace")
    assert registry_dump() == seeded
    d = adapter_copy(1, "arith")  # another adapter under the same name
    out = js("pool", "add", d, "--replace")
    assert out["added"][0]["r"] == 4 and out["added"][0]["lora_alpha"] == 16
    assert len(js("pool", "list")) == 1


def test_base_mismatch_refused_unless_forced(seeded, t5_adapter):
    assert_one_line_error(run("pool", "add", t5_adapter), match="differs from pool")
    assert registry_dump() == seeded
    r = run("pool", "add", t5_adapter, "--force", "--json")
    assert r.exit_code == 0 and "warning" in r.stderr and "--force" in r.stderr
    assert len(js("pool", "list")) == 2


def test_bad_manifest(seeded, tmp_path):
    (tmp_path / "m.toml").write_text("[[adapters]]\nname = 3\n")
    assert_one_line_error(run("pool", "add", "--manifest", tmp_path / "m.toml"), match="no 'source'")
    (tmp_path / "m2.toml").write_text("adapters = [")
    assert_one_line_error(run("pool", "add", "--manifest", tmp_path / "m2.toml"), match="invalid TOML")
    assert registry_dump() == seeded


def test_modified_file_reported_and_refused(adapter_copy):
    d = adapter_copy(0, "victim")
    ok("pool", "add", d)
    assert js("pool", "verify")[0]["status"] == "ok"
    st = d / "adapter_model.safetensors"
    b = bytearray(st.read_bytes())
    b[-4:] = b"\x00\x00\x80\x7f"  # same size, valid header, different (inf) last value
    st.write_bytes(bytes(b))
    r = run("pool", "verify", "--json")
    assert r.exit_code == 3 and json.loads(r.stdout)[0]["status"] == "modified"
    assert "victim" in r.stderr
    assert js("pool", "show", "victim")["verify_status"] == "modified"
    assert_one_line_error(run("pool", "inspect", "victim"), code=3, match="changed after registration")
    st.unlink()
    assert run("pool", "verify").exit_code == 3


def test_unknown_adapter_did_you_mean(seeded):
    assert_one_line_error(run("pool", "show", "arth"), match="did you mean arith")


def test_two_processes_lose_no_rows(tmp_path, llama_adapters):
    """Two `pool add` processes writing at once: every row lands."""
    dirs = []
    for i in range(12):
        d = tmp_path / "many" / f"ad{i:02d}"
        shutil.copytree(llama_adapters[i % 3], d)
        dirs.append(d)
    env = {**os.environ}
    cmd = [sys.executable, "-m", "scalectl", "pool", "add", "--pool", "conc"]
    procs = [subprocess.Popen(cmd + [str(d) for d in dirs[k::2]], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for k in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert sorted(r["name"] for r in js("pool", "list", "--pool", "conc")) == [f"ad{i:02d}" for i in range(12)]
    assert len(registry_dump()["examples"]) == 36


def test_many_openers_of_a_new_registry(tmp_path):
    """Several connections creating the same fresh registry at once all open it.

    SQLite refuses the switch to WAL with "database is locked" without waiting
    when another connection is opening the new file; without the retry this
    failed in about 1 of 12 rounds of 6 openers (and once in CI's `pool add` race).
    """
    import threading

    from scalectl.registry import Registry

    errors: list[str] = []

    def open_it(path: Path, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            Registry(path).close()
        except Exception as e:  # collected and asserted below
            errors.append(repr(e))

    for k in range(60):
        barrier = threading.Barrier(6)
        threads = [threading.Thread(target=open_it, args=(tmp_path / f"r{k}.db", barrier)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert Registry(tmp_path / "r0.db").db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_manifest_pool_comes_before_the_env_default(monkeypatch):
    """With SCALECTL_POOL set (as the README's tour does), a manifest still lands in its own pool; --pool overrides it."""
    from conftest import ROOT

    from scalectl.registry import Registry

    monkeypatch.setenv("SCALECTL_POOL", "smollm2-skills")
    r = runner.invoke(app, ["pool", "add", "--manifest", str(ROOT / "registry" / "lorahub-flan-t5-large-196.toml")])
    assert r.exit_code == 0, r.output
    assert {p["name"]: p["adapters"] for p in Registry().pools()} == {"lorahub-196": 196}
    r = runner.invoke(app, ["pool", "add", "--manifest", str(ROOT / "registry" / "ilorcomp-97.toml"), "--pool", "mine"])
    assert r.exit_code == 0, r.output
    assert "mine" in {p["name"] for p in Registry().pools()}
