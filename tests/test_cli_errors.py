"""A CLI error is one line on stderr, printed as written: no blank line before it, no rich markup eaten."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from scalectl.cli import app

runner = CliRunner()


def _one_line(r, code: int = 1) -> str:
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.endswith("\n"), repr(r.stderr)  # exactly one line, nothing blank
    assert r.stderr.startswith("error: "), repr(r.stderr)
    return r.stderr


def test_eval_unknown_task_is_exactly_one_stderr_line():
    err = _one_line(runner.invoke(app, ["eval", "--task", "bbh/nosuchtask", "--base-only"]))
    assert "unknown task 'bbh/nosuchtask'" in err


def test_compose_unknown_adapter_is_exactly_one_stderr_line(tmp_path):
    err = _one_line(runner.invoke(app, ["compose", "--adapters", "nope1,nope2", "--out", str(tmp_path / "o")]))
    assert "no adapter named 'nope1'" in err


def test_error_text_in_brackets_is_not_taken_for_markup():
    # "[b]" is a rich tag; "pip install 'scalectl[ray]'" in the Ray Client error lost its "[ray]" the same way
    err = _one_line(runner.invoke(app, ["eval", "--method", "scale", "--seeds", "a[b]c"]))
    assert "got 'a[b]c'" in err


def test_user_text_is_never_markup(adapter_copy, tmp_path):
    """A tag, description or target like "[/x]" is shown as written by every command, never parsed as markup
    (a closing tag with nothing open used to crash rich after the row was committed)."""
    hostile = "[/x] [bold]b[/bold] [link=file:///etc]l[/link]"
    src = adapter_copy(0, name="odd")
    r = runner.invoke(app, ["pool", "add", str(src), "--pool", "p", "--tag", "[/x]", "--description", hostile])
    assert r.exit_code == 0, r.output
    for args in (["pool", "list", "--pool", "p"], ["pool", "show", "odd", "--pool", "p"], ["pool", "pools"],
                 ["pool", "list", "--pool", "p", "--wide"], ["pool", "inspect", "odd", "--pool", "p"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, (args, r.output)
        assert "MarkupError" not in r.output
    import json

    shown = runner.invoke(app, ["pool", "show", "odd", "--pool", "p", "--json"])
    assert json.loads(shown.stdout)["description"] == hostile
    err = _one_line(runner.invoke(app, ["compose", "--adapters", "[/x],odd", "--pool", "p", "--out", str(tmp_path / "o")]))
    assert "'[/x]'" in err


def test_a_registry_from_a_newer_scalectl_is_refused():
    import sqlite3

    from scalectl.registry import Registry

    reg = Registry()
    reg.db["_migrations"].insert({"name": "999_from_the_future", "applied": "2031-01-01"})
    path = reg.path
    reg.close()
    err = _one_line(runner.invoke(app, ["pool", "list"]))
    assert "written by a newer scalectl" in err and "999_from_the_future" in err and "upgrade scalectl" in err
    assert sqlite3.connect(path).execute("select count(*) from _migrations where name like '999%'").fetchone() == (1,)


def test_look_alike_names_are_refused(adapter_copy):
    src = adapter_copy(0, name="plain")
    for name in ("plain\n", "plain\t", "pl\u0430in", " plain"):  # a trailing newline, a tab, a Cyrillic a, a space
        err = _one_line(runner.invoke(app, ["pool", "add", str(src), "--pool", "p", "--name", name]))
        assert "name" in err
    for pool in ("p\n", "p\u0456"):
        _one_line(runner.invoke(app, ["pool", "add", str(src), "--pool", pool]))
    assert runner.invoke(app, ["pool", "add", str(src), "--pool", "p", "--name", "plain"]).exit_code == 0


def test_an_edited_adapter_config_is_caught_like_edited_weights(adapter_copy, tmp_path):
    """lora_alpha 8 -> 800 after registration is a 100x update: pool verify and every use refuse it."""
    import json

    src = adapter_copy(0, name="cfg")
    assert runner.invoke(app, ["pool", "add", str(src), "--pool", "p"]).exit_code == 0
    assert runner.invoke(app, ["pool", "verify", "--pool", "p"]).exit_code == 0
    cfg = json.loads((src / "adapter_config.json").read_text())
    cfg["lora_alpha"] = cfg["lora_alpha"] * 100
    (src / "adapter_config.json").write_text(json.dumps(cfg))
    r = runner.invoke(app, ["pool", "verify", "--pool", "p", "--json"])
    assert r.exit_code == 3 and "adapter_config.json changed after registration" in r.stdout
    err = _one_line(runner.invoke(app, ["pool", "inspect", "cfg", "--pool", "p"]), code=3)
    assert "adapter_config.json changed after registration" in err
    err = _one_line(runner.invoke(app, ["compose", "--adapters", "cfg", "--pool", "p", "--out", str(tmp_path / "o")]),
                    code=3)
    assert "refusing to use it" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("field,value", [("lora_alpha", float("nan")), ("lora_alpha", float("inf")),
                                         ("r", float("nan")), ("r", 2.5), ("rank_pattern", {"q_proj": "x"}),
                                         ("alpha_pattern", {"q_proj": float("inf")}), ("rank_pattern", [1, 2])])
def test_non_finite_or_malformed_config_numbers_are_refused(adapter_copy, field, value):
    import json

    src = adapter_copy(0, name="bad")
    cfg = json.loads((src / "adapter_config.json").read_text())
    cfg[field] = value
    (src / "adapter_config.json").write_text(json.dumps(cfg))  # json writes NaN and Infinity as PEFT would read them
    err = _one_line(runner.invoke(app, ["pool", "add", str(src), "--pool", "p"]))
    assert f"'{field}'" in err
    from scalectl.registry import Registry

    assert Registry().list(pool="p") == []


def test_overflowing_weights_write_nothing(adapter_copy, tmp_path):
    for i in (0, 1):
        assert runner.invoke(app, ["pool", "add", str(adapter_copy(i)), "--pool", "p"]).exit_code == 0
    names = ",".join(r["name"] for r in __import__("scalectl.registry", fromlist=["Registry"]).Registry().list(pool="p"))
    err = _one_line(runner.invoke(app, ["compose", "--adapters", names, "--pool", "p", "--weights", "1e300,1e300",
                                        "--merger", "ties", "--out", str(tmp_path / "o")]))
    assert "NaN or infinite" in err and not (tmp_path / "o").exists()


def test_overlapping_safetensors_ranges_are_refused_at_pool_add(adapter_copy):
    import json
    import struct

    src = adapter_copy(0, name="overlap")
    wf = src / "adapter_model.safetensors"
    raw = wf.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    keys = [k for k in header if k != "__metadata__"]
    a, b = header[keys[0]], header[keys[1]]
    if a["data_offsets"][1] - a["data_offsets"][0] == b["data_offsets"][1] - b["data_offsets"][0]:
        b["data_offsets"] = list(a["data_offsets"])  # two tensors on the same bytes
    else:
        header[keys[0]]["shape"] = [float(x) for x in a["shape"]]  # non-integer shape
    new = json.dumps(header).encode()
    wf.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])
    err = _one_line(runner.invoke(app, ["pool", "add", str(src), "--pool", "p"]))
    assert "corrupt safetensors" in err


def test_the_same_composition_has_the_same_bytes(adapter_copy, tmp_path):
    """Composing the same inputs twice (in two processes) writes identical files, so the registry's sha256 and the
    search cache keyed on it repeat; and the written file loads with safetensors and PEFT's key layout."""
    import hashlib
    import subprocess
    import sys

    from safetensors.torch import load_file

    for i in (0, 1):
        assert runner.invoke(app, ["pool", "add", str(adapter_copy(i)), "--pool", "p"]).exit_code == 0
    from scalectl.registry import Registry

    names = ",".join(r["name"] for r in Registry().list(pool="p"))
    digests = []
    for k in range(2):
        out = tmp_path / f"c{k}"
        r = subprocess.run([sys.executable, "-m", "scalectl", "compose", "--adapters", names, "--pool", "p",
                            "--merger", "lasrc", "--out", str(out), "--no-register"], capture_output=True, text=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": str(k + 1)})
        assert r.returncode == 0, r.stderr
        digests.append(hashlib.sha256((out / "adapter_model.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    t = load_file(str(tmp_path / "c0" / "adapter_model.safetensors"))
    assert t and all(k.startswith("base_model.model.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in t)


def test_a_killed_run_shows_as_interrupted_not_running():
    import subprocess
    import sys

    from scalectl.registry import Registry

    code = ("from scalectl.registry import Registry; import os, signal; r = Registry(); "
            "print(r.create_run('eval', 'zero-shot', {'tasks': []}), flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == -9
    run_id = p.stdout.strip()
    run = Registry().run(run_id)
    assert run["status"] == "interrupted" and "ended without finishing" in run["error"]
    live = Registry().create_run("eval", "zero-shot", {"tasks": []})  # this process is alive: it stays running
    assert Registry().run(live)["status"] == "running"


def _pool_of_two(adapter_copy):
    for i in (0, 1):
        assert runner.invoke(app, ["pool", "add", str(adapter_copy(i)), "--pool", "p"]).exit_code == 0
    from scalectl.registry import Registry

    return ",".join(r["name"] for r in Registry().list(pool="p"))


def test_two_writers_of_one_output_never_mix(adapter_copy, tmp_path):
    """While one compose holds an output, a second one to the same --out is refused at once, even with --overwrite."""
    from scalectl.fsutil import atomic_dir

    names = _pool_of_two(adapter_copy)
    out = tmp_path / "shared"
    with atomic_dir(out) as tmp:  # the first writer, mid-write
        (tmp / "partial").write_text("x")
        err = _one_line(runner.invoke(app, ["compose", "--adapters", names, "--pool", "p", "--out", str(out),
                                            "--overwrite", "--no-register"]))
        assert "another scalectl is writing" in err
    assert (out / "partial").is_file() and not list(tmp_path.glob(".shared.*"))  # the first one landed; no leftovers


def test_stale_temporaries_of_a_killed_writer_are_cleaned_and_reported(adapter_copy, tmp_path):
    import subprocess
    import sys

    names = _pool_of_two(adapter_copy)
    out = tmp_path / "c"
    code = ("import os, signal; from scalectl.fsutil import atomic_dir\n"
            f"with atomic_dir({str(out)!r}) as t:\n    (t / 'half').write_text('x'); os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    left = list(tmp_path.glob(".c.tmp-*"))
    assert len(left) == 1 and not out.exists()
    r = runner.invoke(app, ["compose", "--adapters", names, "--pool", "p", "--out", str(out), "--no-register"])
    assert r.exit_code == 0, r.output
    assert f"removed {left[0]}" in r.stderr and not left[0].exists() and (out / "adapter_config.json").is_file()


def test_outputs_that_cannot_be_written_are_one_line(adapter_copy, tmp_path):
    names = _pool_of_two(adapter_copy)
    (tmp_path / "afile").write_text("x")
    for out, why in ((tmp_path / "afile" / "c", "is not a directory"), (tmp_path / ("n" * 260), "File name too long")):
        err = _one_line(runner.invoke(app, ["compose", "--adapters", names, "--pool", "p", "--out", str(out),
                                            "--no-register"]))
        assert why in err, err


def test_a_garbage_registry_or_home_is_one_line(tmp_path, monkeypatch):
    home = tmp_path / "h"
    home.mkdir()
    (home / "registry.db").write_bytes(b"this is not sqlite" * 100)
    monkeypatch.setenv("SCALECTL_HOME", str(home))
    err = _one_line(runner.invoke(app, ["pool", "list"]))
    assert "registry" in err
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("SCALECTL_HOME", str(tmp_path / "afile"))
    err = _one_line(runner.invoke(app, ["pool", "list"]))
    assert "afile is not a directory" in err and "set SCALECTL_HOME" in err, err


def test_compose_never_touches_a_row_it_did_not_create(adapter_copy, tmp_path, monkeypatch):
    from scalectl.registry import Registry

    names = _pool_of_two(adapter_copy)
    first = names.split(",")[0]
    before = Registry().find(first, "p")
    out = tmp_path / "new" / first  # an output directory named like a registered adapter
    err = _one_line(runner.invoke(app, ["compose", "--adapters", names, "--pool", "p", "--out", str(out), "--overwrite"]))
    assert "already registered" in err and "--replace" in err and not out.exists()
    assert Registry().find(first, "p")["path"] == before["path"]
    err = _one_line(runner.invoke(app, ["compose", "--adapters", names, "--pool", "p", "--out", str(tmp_path / "c"),
                                        "--name", "bad name"]))
    assert "invalid adapter name" in err and not (tmp_path / "c").exists()
    # its own row is rewritten by --overwrite; a failure (or Ctrl-C) before registering removes the output
    ok = ["compose", "--adapters", names, "--pool", "p", "--out", str(tmp_path / "mine")]
    assert runner.invoke(app, ok).exit_code == 0
    assert runner.invoke(app, ok + ["--overwrite"]).exit_code == 0
    import scalectl.registry as registry

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(registry.Registry, "add_sources", interrupted)
    r = runner.invoke(app, ["compose", "--adapters", names, "--pool", "p", "--out", str(tmp_path / "late")])
    assert r.exit_code == 130 and not (tmp_path / "late").exists()


@pytest.mark.parametrize("line,field", [('tags = "qa"', "tags"), ("r = 8.5", "r"), ('lora_alpha = "16"', "lora_alpha"),
                                        ("use_rslora = 1", "use_rslora"), ('sha256 = "abc"', "sha256")])
def test_wrong_manifest_types_are_one_line(adapter_copy, tmp_path, line, field):
    src = adapter_copy(0, name="m")
    m = tmp_path / "pool.toml"
    m.write_text(f'pool = "p"\n[[adapters]]\nsource = "{src}"\n{line}\n')
    err = _one_line(runner.invoke(app, ["pool", "add", "--manifest", str(m)]))
    assert f"'{field}' must be" in err


def test_a_non_utf8_manifest_is_one_line(tmp_path):
    m = tmp_path / "pool.toml"
    m.write_bytes(b'pool = "p"\n# \xff\xfe\n')
    assert "not UTF-8" in _one_line(runner.invoke(app, ["pool", "add", "--manifest", str(m)]))


def test_a_swapped_in_pickle_is_an_integrity_error_even_with_allow_pickle(adapter_copy, tmp_path):
    import torch
    from safetensors.torch import load_file

    src = adapter_copy(0, name="swap")
    assert runner.invoke(app, ["pool", "add", str(src), "--pool", "p"]).exit_code == 0
    t = load_file(str(src / "adapter_model.safetensors"))
    (src / "adapter_model.safetensors").unlink()
    torch.save(t, src / "adapter_model.bin")
    for extra in ([], ["--allow-pickle"]):
        err = _one_line(runner.invoke(app, ["compose", "--adapters", "swap", "--pool", "p", "--out",
                                            str(tmp_path / "o"), *extra]), code=3)
        assert "no longer exists" in err and "adapter_model.bin is there instead" in err and "--allow-pickle" not in err
