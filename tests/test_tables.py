"""Every table fits 80 columns readably for a demo-like home (the shipped demo pool, the two shipped FLAN-T5 pools with
long names and descriptions, a tiny pool of real adapters, and model-free runs), uses a wider terminal's width,
shows every column with ``--wide``, and leaves ``--json`` as it was."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import test_audit as A  # noqa: E402  (tests/ is on sys.path: conftest puts it there)
import test_audit_more as M  # noqa: E402
from typer.testing import CliRunner

from scalectl import report
from scalectl.cli import app
from scalectl.registry import Registry

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "registry"
DEMO_POOL = "smollm2-skills"
W = 80
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
TASKS = ["bbh/boolean_expressions", "bbh/logical_deduction_three_objects", "bbh/navigate", "bbh/date_understanding"]
LONG_NAME = "dbpedia_14_given_a_list_of_category_what_does_the_title_belong_to"  # the longest shipped adapter name
# `pool list --json` keys, as they were before tables learnt to fit
ADAPTER_KEYS = ["pool", "name", "source", "source_kind", "status", "path", "revision", "base_model", "task_type", "r",
                "lora_alpha", "rank_pattern", "alpha_pattern", "use_rslora", "scaling", "use_dora", "fan_in_fan_out",
                "target_modules", "n_modules", "n_blocks", "dtype", "weight_file", "sha256", "size_bytes", "pickle",
                "source_task", "description", "tags", "provenance", "created", "verified", "verify_status", "config_sha256"]


def _correct(seed: int, n: int = 6) -> dict[str, list[int]]:
    return {t: [(i * 7 + j * 3 + seed) % 3 == 0 for i in range(n)] for j, t in enumerate(TASKS)}


@pytest.fixture(scope="module")
def home(tmp_path_factory, llama_adapters):
    """The demo-like home, built once: 96 + 196 + 96 + 3 adapters, an index, and runs of every kind the audit reads."""
    from scalectl.index import build_index

    d = tmp_path_factory.mktemp("demo-like")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCALECTL_HOME", str(d / "home"))
        reg = Registry()
        reg.add_sources(manifest=SHIPPED / f"{DEMO_POOL}.toml")
        reg.add_sources(manifest=SHIPPED / "lorahub-flan-t5-large-196.toml")
        reg.add_sources(manifest=SHIPPED / "ilorcomp-97.toml")
        reg.add_sources([str(p) for p in llama_adapters], pool="tiny", tags=["tiny", "synthetic", "char-tokenizer"],
                        description="A tiny adapter on a two-layer Llama with a character tokenizer, made by the tests "
                                    "to have real PEFT weights without downloading anything")
        build_index(reg, "tiny", "balanced", embedder="hash:64")
        runs = {"zero-shot": A.make_run(reg, "zero-shot", _correct(0), label="demo"),
                "ilc": A.make_run(reg, "ilc", _correct(1), label="demo")}
        runs["seeds"] = [A.make_run(reg, "lasrc", _correct(s), seed=s, label="demo") for s in (1, 2, 3)]
        runs["failed"] = A.make_run(reg, "lmix-fr", _correct(1), status="failed")
        runs["ablations"] = [M.make_run(reg, "lasrc", _correct(k), config=M._composition(sw), label="ablation")
                             for k, sw in enumerate([None, "no_norm_rescale", "no_guard", "fixed_alpha"])]
        rekey = {"bbh/t1": "bbh/logical_deduction_three_objects", "bbh/t2": "bbh/boolean_expressions"}
        runs["scale"] = M.make_scale(reg, data={rekey[t]: q for t, q in M.SCALE_DATA.items()},
                                     losses={rekey[t]: v for t, v in M.LOSSES.items()}, label="demo")
    bbh = d / "bbh"
    bbh.mkdir()
    ex = [{"input": f"sorting q{i % 3} take {i} steps to the left and then {i + 1} to the right",
           "target": "Yes" if i % 2 else "No"} for i in range(20)]
    (bbh / "navigate.json").write_text(json.dumps({"examples": ex}))
    return SimpleNamespace(path=d / "home", runs=runs, bbh=bbh, out=d)


@pytest.fixture
def at(home, monkeypatch):
    """Point SCALECTL_HOME at the demo-like home; ``at(*args, columns=80)`` runs the CLI and returns stdout."""
    monkeypatch.setenv("SCALECTL_HOME", str(home.path))
    monkeypatch.delenv("SCALECTL_WIDE", raising=False)

    def run(*args, columns: int | None = W, env: dict | None = None, code: int = 0) -> str:
        r = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": None if columns is None else str(columns), **(env or {})})
        assert r.exit_code == code, f"{args}: exit {r.exit_code}\n{r.stdout}\n{r.stderr}\n{r.exception!r}"
        return r.stdout
    return run


def fits(out: str, width: int = W) -> list[str]:
    lines = out.splitlines()
    assert lines, "no output"
    over = [ln for ln in lines if len(ln) > width]
    assert not over, f"{len(over)} line(s) wider than {width}:\n" + "\n".join(over[:5]) + "\n---\n" + out[:3000]
    return lines


def ids_whole(out: str) -> None:
    """No run id split across lines or cut: every token that starts like one is a whole run id."""
    for ln in out.splitlines():
        for tok in re.findall(r"\d{8}-[\w…-]*", ln):
            assert RUN_ID.fullmatch(tok), (tok, ln)


def table_rows(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith("│")]


def headers(out: str) -> str:
    """The header cells of every table in ``out``, joined (a header may wrap over several lines)."""
    cells: dict[int, list[str]] = {}
    for ln in out.splitlines():
        if ln.startswith("┃"):
            for i, c in enumerate(ln.strip("┃").split("┃")):
                cells.setdefault(i, []).append(c.strip())
    return " | ".join(" ".join(w for w in ws if w) for ws in cells.values())


# ---------------------------------------------------------------- the layout rules on their own


def test_layout_drops_low_priority_first_and_cuts_ids_last():
    from scalectl.report import Col, layout

    cols = [Col("run", "run", 0, "id"), Col("n", "queries", 3), Col("d", "description", 2, "text"), Col("m", "EM %", 1)]
    cells = [["20250101-120000-abcdef", "250", "a long free-text description " * 3, "40.5"]]
    assert layout(cols, cells, 200) == ([0, 1, 2, 3], {0: 22, 1: 7, 2: 87, 3: 4})  # fits: natural widths
    shown, widths = layout(cols, cells, 60)  # queries (priority 3) goes; the text wraps into what is left
    assert shown == [0, 2, 3] and widths[0] == 22 and widths[3] == 4 and sum(widths.values()) + 10 == 60
    shown, widths = layout(cols, cells, 45)  # the text goes too; queries fits again
    assert shown == [0, 1, 3] and widths[0] == 22
    shown, widths = layout(cols, cells, 24)  # only the essential column is left, and it alone is too wide: cut
    assert shown == [0] and widths[0] == 20
    named = [Col("name", "name", 0, "id", min_width=10), Col("s", "status", 1)]
    assert layout(named, [["x" * 30, "remote"]], 30) == ([0, 1], {0: 17, 1: 6})  # cut to keep status


# ---------------------------------------------------------------- every table-printing command at 80 columns


def commands(home) -> list[list[str]]:
    r = home.runs
    return [
        ["pool", "list"], ["pool", "list", "--pool", DEMO_POOL], ["pool", "list", "--pool", "lorahub-196"],
        ["pool", "pools"], ["pool", "show", f"{DEMO_POOL}:adjective-order"], ["pool", "show", f"ilorcomp-97:{LONG_NAME}"],
        ["pool", "verify", "--pool", DEMO_POOL], ["pool", "verify", "--pool", "ilorcomp-97"], ["pool", "train", "--list"],
        ["pool", "inspect", "tiny:arith"],
        ["runs", "list"], ["runs", "show", r["seeds"][0], "--records"], ["runs", "compare", r["ilc"], r["zero-shot"]],
        ["audit", "paired", "--baseline", "zero-shot", "--per-task", "--samples", "200"],
        ["audit", "paired", "--baseline", r["zero-shot"], "--runs", ",".join([r["ilc"], *r["seeds"]]), "--samples", "200"],
        ["audit", "seeds", "--method", "lasrc", "--label", "demo"], ["audit", "views", "--run", r["scale"]],
        ["audit", "ablations"], ["audit", "calibration", "--run", r["scale"]], ["audit", "compat", "--pool", "tiny"],
        ["audit", "errors", "--run", r["scale"]],
        ["compose", "--list"], ["index", "--list"],
        ["retrieve", "--task", "bbh/navigate", "--pool", "tiny", "--bbh-dir", str(home.bbh), "--global", "3", "--local", "2"],
    ]


def test_every_command_fits_80_columns(home, at):
    for args in commands(home):
        out = at(*args)
        fits(out)
        ids_whole(out)


def test_export_and_html_report_fit(home, at, tmp_path):
    r = home.runs
    out = at("audit", "export", "--out", tmp_path / "bundle", "--runs", f"{r['zero-shot']},{r['ilc']}")
    fits(out)
    ids_whole(out)
    fits(at("report", "--html", tmp_path / "report.html", "--runs", f"{r['zero-shot']},{r['ilc']}"))


def test_pool_list_is_one_line_per_adapter(home, at):
    rows = Registry(home.path / "registry.db").list()
    out = at("pool", "list")
    lines = fits(out)
    assert len(table_rows(out)) == len(rows)  # one line per adapter
    assert len(lines) <= len(rows) + 12
    demo = [x["name"] for x in rows if x["pool"] == DEMO_POOL]
    assert len(demo) == 96
    for name in demo:
        hits = [ln for ln in lines if re.search(rf"│ {re.escape(name)}\s+│", ln)]
        assert len(hits) == 1, (name, hits)
    assert "--wide" in out  # the footnote: which columns are not shown and how to see them
    # only the demo pool: names and the essential columns whole
    out = at("pool", "list", "--pool", DEMO_POOL)
    assert len(table_rows(out)) == 96
    for h in ("pool", "name", "status"):
        assert f" {h} " in out.splitlines()[2] or f" {h} " in out, h


def test_run_ids_and_task_names_are_whole(home, at):
    r = home.runs
    out = at("runs", "list")
    fits(out)
    ids_whole(out)
    done = json.loads(at("runs", "list", "--json"))
    for x in done:
        assert sum(x["id"] in ln for ln in out.splitlines()) == 1, x["id"]
    out = at("runs", "show", r["seeds"][0])
    for t in TASKS:
        assert t.split("/")[1] in out, t
    out = at("audit", "paired", "--baseline", "zero-shot", "--per-task", "--samples", "200")
    ids_whole(out)
    for t in ("boolean_expressions", "logical_deduction_three_objects", "navigate", "date_understanding"):
        assert re.search(rf"│ (bbh/)?{t}\s", out), t
    assert r["zero-shot"] in out
    out = at("audit", "views", "--run", r["scale"])
    assert "logical_deduction_three_objects" in out and "boolean_expressions" in out


def test_wide_shows_every_column(home, at):
    hidden = ("base model", "targets", "blocks", "tags")
    narrow = at("pool", "list", "--pool", DEMO_POOL)
    assert not any(h in headers(narrow) for h in hidden)
    said = re.search(r"hidden columns: ([a-z ,]+);", " ".join(narrow.split()))
    assert said and set(hidden) <= {c.strip() for c in said.group(1).split(",")} and "--wide" in narrow
    for args, env in ((["pool", "list", "--wide"], None), (["--wide", "pool", "list"], None),
                      (["pool", "list"], {"SCALECTL_WIDE": "1"})):
        out = at(*args, env=env)
        assert headers(out) == "pool | name | status | base model | r | alpha | targets | blocks | size | tags", args
        assert LONG_NAME in out and "…" not in out
        assert "HuggingFaceTB/SmolLM2-135M-Instruct" in out and "q_proj,v_proj" in out
        assert len(table_rows(out)) == len(Registry(home.path / "registry.db").list())  # no cell folded
    assert "created" not in headers(at("runs", "list"))
    runs_w = at("runs", "list", "--wide")
    assert headers(runs_w) == headers(at("--wide", "runs", "list")) == \
        "run | method | label | status | tasks | queries | macro EM % | created"
    ids_whole(runs_w)
    paired = headers(at("audit", "paired", "--baseline", "zero-shot", "--samples", "200", "--wide"))
    assert paired == "method | run | label | macro EM % | delta (points) | flips +i2c/-c2i/=same | W/L/T | p | 95% CI (points)"
    narrow = headers(at("audit", "paired", "--baseline", "zero-shot", "--samples", "200"))
    assert narrow.startswith("method | run | macro EM % | delta (points)") and "CI" in narrow


def test_json_is_unchanged(home, at):
    reg = Registry(home.path / "registry.db")
    want = json.dumps([{k: v for k, v in r.items() if k != "id"} for r in reg.list()], indent=2, default=str) + "\n"
    for columns, env in ((W, None), (300, None), (None, None), (W, {"SCALECTL_WIDE": "1"})):
        assert at("pool", "list", "--json", columns=columns, env=env) == want
        assert at("--wide", "pool", "list", "--json", columns=columns, env=env) == want
    assert list(json.loads(want)[0]) == ADAPTER_KEYS
    runs = at("runs", "list", "--json")
    assert at("--wide", "runs", "list", "--json", columns=300) == runs == json.dumps(reg.runs(), indent=2, default=str) + "\n"


def test_width_follows_the_terminal_and_columns(home, at, monkeypatch):
    out = at("pool", "list", "--pool", DEMO_POOL, columns=160)
    widest = max(map(len, fits(out, 160)))
    assert 80 < widest <= 160 and "base model" in out  # a wider COLUMNS: more columns
    fits(at("pool", "list", columns=None))  # not a terminal and no COLUMNS: 80 columns
    # a terminal 132 columns wide
    import os

    monkeypatch.setattr(type(report.console), "is_terminal", property(lambda self: True))
    monkeypatch.setattr(os, "get_terminal_size", lambda *a: os.terminal_size((132, 40)))
    out = at("pool", "list", "--pool", DEMO_POOL, columns=None)
    widest = max(map(len, fits(out, 132)))
    assert 80 < widest <= 132


# ---------------------------------------------------------------- report.* functions called with realistic data


@pytest.fixture
def printed(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(W))
    monkeypatch.delenv("SCALECTL_WIDE", raising=False)

    def grab(fn, *args, width: int = W) -> str:
        capsys.readouterr()
        fn(*args)
        out = capsys.readouterr().out
        fits(out, width)
        ids_whole(out)
        return out
    return grab


def _demo_res() -> dict:
    tasks = [{"task": t, "n": 60, "zero-shot": 0.45, "linear": 0.5 + i / 100, "lasrc": 0.55, "zero-shot_extracted": 0.4,
              "linear_flips": {"i2c": 12, "c2i": 9, "unchanged": 39}, "lasrc_flips": {"i2c": 10, "c2i": 4, "unchanged": 46}}
             for i, t in enumerate(TASKS)]
    return {"base": {"spec": "smollm2-135m", "canonical": "HuggingFaceTB/SmolLM2-135M-Instruct", "device": "cpu"},
            "pool": DEMO_POOL, "adapters": [f"a{i}" for i in range(28)],
            "weights": "retrieved per task (balanced view), weights searched on 5 support examples (40 steps)",
            "limit": 60, "methods": {"zero-shot": "zero-shot", "linear": "ilc", "lasrc": "lasrc"}, "tasks": tasks,
            "macro": {"zero-shot": 0.45, "linear": 0.515, "lasrc": 0.55},
            "flips_total": {"linear": {"i2c": 48, "c2i": 36, "unchanged": 156},
                            "lasrc": {"i2c": 40, "c2i": 16, "unchanged": 184}},
            "runs": {"zero-shot": "20250101-120000-abcdef", "linear": "20250101-120100-123456",
                     "lasrc": "20250101-120200-fedcba"},
            "seconds": {"total": 312.0}, "registered": [], "registry": "/home/user/.local/share/scalectl/registry.db"}


def test_demo_table(printed, monkeypatch):
    out = printed(report.demo_result, _demo_res(), ["linear", "lasrc"])
    assert len(table_rows(out)) == len(TASKS) + 1  # one line per task and the macro average
    for t in ("boolean_expressions", "logical_deduction_three_objects", "date_understanding"):
        assert t in out, t
    assert "bbh/boolea" not in out.replace("bbh/boolean_expressions", "")
    assert headers(out).startswith("task | zero-shot | ilc (linear) | linear flips | lasrc")
    monkeypatch.setenv("SCALECTL_WIDE", "1")
    wide = printed(report.demo_result, _demo_res(), ["linear", "lasrc"], width=200)
    assert headers(wide) == "task | n | zero-shot | ilc (linear) | linear flips | lasrc | lasrc flips"
    assert "bbh/logical_deduction_three_objects" in wide and len(table_rows(wide)) == len(TASKS) + 1


def test_eval_train_compose_tables(printed):
    from scalectl.compose import ComposeResult
    from scalectl.evaluate import EvalResult, TaskScore
    from scalectl.train import TrainResult

    res = EvalResult(run_id="20250101-120000-abcdef", method="lasrc", label="demo",
                     tasks=[TaskScore(t, 250, 101, 0.404, 0.512, 123.4567) for t in TASKS], macro_accuracy=0.404,
                     macro_extracted=0.512, n_queries=1000, decode_seconds=493.8, compose_seconds=12.0, limit=None)
    out = printed(report.eval_result, res)
    assert "logical_deduction_three_objects" in out and "20250101-120000-abcdef" in out and "macro average" in out
    assert len([ln for ln in table_rows(out) if "logical_deduction" in ln]) == 1
    tr = TrainResult(name="logical-deduction-three-objects-skill", pool=DEMO_POOL, path="/tmp/x", skill="ordering-constraints",
                     steps=60, best_step=50, heldout_loss_base=3.2, heldout_loss_best=0.4, heldout_em_base=0.0,
                     heldout_em_best=0.6, seconds=80.0, seconds_per_step=1.3, device="cpu",
                     curve=[{"step": s, "train_loss": 3.0 / (s + 1), "heldout_loss": 3.1 / (s + 1)} for s in range(0, 61, 10)])
    printed(report.train_result, tr)
    blocks = [{"block": f"model.layers.{i}", "coefficients": [0.5, -0.25, 0.125, 0.3333, 0.1, 0.2, -0.7, 0.05],
               "overlap": 0.12345, "alpha": 0.5, "retained": 0.98765, "guarded": False} for i in range(30)]
    cr = ComposeResult(out="composed-lasrc-logical_deduction_three_objects", merged_model=None, merger="lasrc", params={},
                       weights=[0.5] * 8, blocks=blocks, exact=False, rank=8, max_rel_error=0.01, seconds=1.234,
                       registered=None, provenance={})
    out = printed(report.compose_result, cr)
    assert "model.layers.29" in out


def test_probe_and_base_tables(home, at, monkeypatch, llama_base):
    from scalectl import probe
    from scalectl.probe import ProbeResult

    rows = [{"condition": c, "hop1": 0.9, "hop2": 0.85, "two_hop": 0.1} for c in
            ("base model", "first-hop adapter alone", "second-hop adapter alone", "linear merge (ilc)",
             "dynamic selection (logo)", "union adapter (trained on both; upper bound)")]
    fake = ProbeResult(variant="facts", rows=rows, verdict="composition does not integrate", integrated=False,
                       adapters={"hop1": "probe-facts-hop1", "hop2": "probe-facts-hop2"}, seconds=12.0,
                       world={"two_hop_questions": 24})
    monkeypatch.setattr(probe, "run_two_hop", lambda *a, **k: fake)
    out = at("probe", "two-hop")
    fits(out)
    assert "union adapter" in out
    fits(at("base", "prepare", "--base", llama_base))


def test_block_coefficients_are_summarized_at_80_columns():
    """A 20-candidate composition prints one short line per block (the largest coefficients by input number)."""
    from scalectl.report import coefficient_summary

    assert coefficient_summary([0.998] + [0.0] * 18 + [-1.002]) == "#1 +0.998, #20 -1.002, 18 of 20 zero"
    assert coefficient_summary([1.0, 0, 0.5, -0.25, 0.1, 0.2, 0.3]) == \
        "#1 +1.000, #3 +0.500, #4 -0.250, #7 +0.300, +2 more, 1 of 7 zero"
    assert coefficient_summary([0.0, 0.0]) == "all 2 zero"
