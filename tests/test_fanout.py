"""`--ray`: the (task x method x view x seed) jobs on a local Ray instance with 2 workers, records written by the
driver, results identical to the serial run."""

from __future__ import annotations

import json

import pytest
from helpers import write_two_task_bbh
from typer.testing import CliRunner

from scalectl.cli import app, optional_values
from scalectl.evaluate import run_eval
from scalectl.index import build_index
from scalectl.methods import MethodConfig
from scalectl.registry import Registry
from scalectl.search import SearchConfig

ray = pytest.importorskip("ray")
runner = CliRunner()
EMB = "hash:64"


@pytest.fixture
def world(tmp_path, method_adapters, monkeypatch):
    # every search is computed, not read back from the on-disk cache, so "identical" is tested for real
    monkeypatch.setenv("SCALECTL_SEARCH_CACHE", "0")  # (in-process searches live in one run's context only)
    d = write_two_task_bbh(tmp_path / "bbh")
    reg = Registry()
    reg.add_sources([str(p) for p in method_adapters], pool="tiny")
    for v in ("balanced", "qa"):
        build_index(reg, "tiny", v, embedder=EMB)
    yield reg, d
    if ray.is_initialized():
        ray.shutdown()


def _cfgs():
    s = SearchConfig(steps=4)
    return [MethodConfig(method="ilc", n_global=2, n_local=2, search=s),
            MethodConfig(method="scale", n_global=2, n_local=2, search=s, views=["balanced", "qa"], sdp_seed=42),
            MethodConfig(method="scale", n_global=2, n_local=2, search=s, views=["balanced", "qa"], sdp_seed=52)]


def _view(reg, run_id):
    return {(r["task"], r["query_id"]): (r["raw_output"], r["correct"], json.dumps(r["extra"], sort_keys=True))
            for r in reg.records(run_id)}


def test_ray_fanout_matches_serial(world, llama_base):
    from scalectl.backbone import load_backbone
    from scalectl.evaluate import RunRequest
    from scalectl.fanout import run_specs

    reg, d = world
    bb = load_backbone(str(llama_base), device="cpu")
    serial = [run_eval("mix_a,mix_b", reg=reg, bb=bb, pool="tiny", method=c, bbh_dir=str(d), limit=5, label="serial")
              for c in _cfgs()]
    specs = [RunRequest(tasks="mix_a,mix_b", method=c, pool="tiny", limit=5, label="ray", base=str(llama_base),
                     bbh_dir=str(d), device="cpu") for c in _cfgs()]
    fanned = run_specs(specs, address="local", num_cpus=2, reg=reg)
    assert ray.cluster_resources()["CPU"] == 2
    for s, f in zip(serial, fanned):
        assert f.method == s.method and [t.task for t in f.tasks] == [t.task for t in s.tasks]
        assert [(t.n, t.correct) for t in f.tasks] == [(t.n, t.correct) for t in s.tasks]
        assert _view(reg, f.run_id) == _view(reg, s.run_id)  # every output, score, path, weight and view loss
        run = reg.run(f.run_id)
        assert run["status"] == "done" and run["label"] == "ray"
        fo = run["summary"]["fanout"]
        assert fo["engine"] == "ray" and fo["cpus"] == 2
        assert fo["jobs"] == (2 * 2 if f.method == "scale" else 2)  # task x view
    # SCALE's derived aggregations come from the driver's records too
    for s, f in zip(serial[1:], fanned[1:]):
        for how in ("uniform", "oracle"):
            a = reg.run(s.config["derived_runs"][how])["summary"]["macro_accuracy"]
            b = reg.run(f.config["derived_runs"][how])["summary"]["macro_accuracy"]
            assert a == b
    # the two SDP seeds are different jobs with different masks
    g42 = reg.run(fanned[1].run_id)["summary"]["plans"]["bbh/mix_a"]["views"]["balanced"]["groups"]
    g52 = reg.run(fanned[2].run_id)["summary"]["plans"]["bbh/mix_a"]["views"]["balanced"]["groups"]
    assert {g["params"]["sdp.seed"] for g in g42} == {42} and {g["params"]["sdp.seed"] for g in g52} == {52}


def test_eval_cli_ray_and_optional_address(world, llama_base):
    reg, d = world
    assert optional_values(["eval", "--ray", "--json"]) == ["eval", "--ray=local", "--json"]
    assert optional_values(["eval", "--ray"]) == ["eval", "--ray=local"]
    assert optional_values(["eval", "--ray", "auto", "-t", "x"]) == ["eval", "--ray", "auto", "-t", "x"]
    common = ["eval", "--task", "mix_a", "--pool", "tiny", "--base", str(llama_base), "--bbh-dir", str(d), "--limit", "4",
              "--device", "cpu", "--method", "ilc", "--global", "2", "--local", "2", "--steps", "3", "--json"]
    r1 = runner.invoke(app, common)
    assert r1.exit_code == 0, r1.output
    r2 = runner.invoke(app, common + ["--ray", "--ray-workers", "2"])  # --ray alone: a local instance
    assert r2.exit_code == 0, r2.output
    a, b = json.loads(r1.stdout), json.loads(r2.stdout)
    assert [(t["n"], t["correct"]) for t in a["tasks"]] == [(t["n"], t["correct"]) for t in b["tasks"]]
    assert _view(reg, a["run_id"]) == _view(reg, b["run_id"])
    # bad input still fails with one line before anything is fanned out
    bad = runner.invoke(app, common[:-1] + ["--method", "nope", "--ray", "local"])
    assert bad.exit_code != 0 and "unknown method" in bad.output


def test_ray_missing_is_one_clear_error_before_any_run(world, llama_base, monkeypatch):
    import sys

    from scalectl.errors import ScalectlError
    from scalectl.evaluate import RunRequest
    from scalectl.fanout import run_specs

    reg, d = world
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    n = len(reg.runs())
    with pytest.raises(ScalectlError, match="--ray needs the ray package"):
        run_specs([RunRequest(tasks="mix_a", base_only=True, base=str(llama_base), bbh_dir=str(d), device="cpu")], reg=reg)
    assert len(reg.runs()) == n


def test_ray_client_without_grpc_is_one_clear_error_before_any_run(tmp_path, llama_base, monkeypatch):
    """A plain `pip install ray` has no grpcio: `--ray ray://...` says which extra brings it, and records nothing."""
    import sys

    d = write_two_task_bbh(tmp_path / "bbh")
    reg = Registry()
    monkeypatch.setitem(sys.modules, "grpc", None)  # import grpc -> ImportError, as without ray[client]
    r = runner.invoke(app, ["eval", "--task", "mix_a", "--base-only", "--base", str(llama_base), "--bbh-dir", str(d),
                            "--limit", "2", "--device", "cpu", "--ray", "ray://127.0.0.1:10001"])
    assert r.exit_code == 1, (r.stdout, r.stderr)
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "pip install 'scalectl[ray]'" in err and "ray://127.0.0.1:10001" in err
    assert "reinstall" not in err
    assert reg.runs() == []
    assert not ray.is_initialized()
