"""BBH loading, suites, support split, normalization and the extractor (docs/method.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import BBH
from helpers import write_bbh

from scalectl.errors import TaskError
from scalectl.tasks import bbh


def test_bbh27_support_and_queries_match_method_md():
    tasks = bbh.load_tasks("bbh", BBH)
    assert len(tasks) == 27
    assert sum(len(t.support) for t in tasks) == 135
    assert sum(len(t.queries) for t in tasks) == 6376  # method.md: 6,511 - 135
    for t in tasks:
        raw = json.loads(t.path.read_text())["examples"]
        assert [e.input for e in t.support] == [r["input"] for r in raw[10:15]]
        assert [e.index for e in t.queries] == [i for i in range(len(raw)) if not 10 <= i < 15]


def test_task_names_and_suites():
    assert bbh.resolve("bbh/navigate", BBH) == ["navigate"]
    assert bbh.resolve("navigate", BBH) == ["navigate"]
    assert bbh.resolve("bbh/navigate,navigate,bbh/snarks", BBH) == ["navigate", "snarks"]
    eight = bbh.resolve("bbh-8", BBH)
    assert len(eight) == 8 and eight == bbh.SUITES["bbh-8"]
    assert len(bbh.resolve("bbh", BBH)) == 27


def test_unknown_task_has_did_you_mean_and_list():
    with pytest.raises(TaskError) as e:
        bbh.resolve("bbh/navgate", BBH)
    msg = str(e.value)
    assert "did you mean bbh/navigate" in msg and "bbh/word_sorting" in msg and "bbh-8" in msg
    with pytest.raises(TaskError, match="known:"):
        bbh.resolve("bbh-9", BBH)


def _write(d, name, examples):
    write_bbh(d, {name: examples})


def test_malformed_files_name_file_and_entry(tmp_path):
    d = tmp_path / "bbh"
    good = [{"input": f"q{i}", "target": "A"} for i in range(20)]
    _write(d, "ok", good)
    (d / "broken.json").write_text('{"examples": [{"input": "x", "target": ')
    with pytest.raises(TaskError, match=r"broken\.json: not valid JSON .*line 1"):
        bbh.load_tasks("bbh/broken", d)
    _write(d, "noentry", good[:3] + [{"input": "x"}] + good[4:])
    with pytest.raises(TaskError, match=r"noentry\.json: entry 3 must be an object"):
        bbh.load_tasks("noentry", d)
    _write(d, "empty_target", good[:5] + [{"input": "x", "target": ""}] + good[6:])
    with pytest.raises(TaskError, match=r"empty_target\.json: entry 5 has an empty"):
        bbh.load_tasks("empty_target", d)
    (d / "notlist.json").write_text('{"items": []}')
    with pytest.raises(TaskError, match="examples"):
        bbh.load_tasks("notlist", d)
    assert len(bbh.load_tasks("ok", d)[0].queries) == 15


def test_too_few_examples_for_offset_plus_support(tmp_path):
    d = tmp_path / "bbh"
    _write(d, "small", [{"input": f"q{i}", "target": "A"} for i in range(15)])
    with pytest.raises(TaskError, match=r"15 examples, but the support set needs examples\[10:15\]"):
        bbh.load_tasks("small", d)
    assert len(bbh.load_tasks("small", d, support_offset=0, support_size=5)[0].queries) == 10


def test_bbh_dir_resolution(tmp_path, monkeypatch):
    d = tmp_path / "mine"
    _write(d, "t", [{"input": f"q{i}", "target": "A"} for i in range(20)])
    monkeypatch.setenv("SCALECTL_BBH_DIR", str(d))
    assert bbh.bbh_dir() == d.resolve()
    other = tmp_path / "other"
    _write(other, "u", [{"input": f"q{i}", "target": "A"} for i in range(20)])
    assert bbh.bbh_dir(other) == other.resolve()  # --bbh-dir beats the env var
    monkeypatch.setenv("SCALECTL_BBH_DIR", str(tmp_path / "nope"))
    with pytest.raises(TaskError, match="SCALECTL_BBH_DIR .* is not a directory of BBH"):
        bbh.bbh_dir()


@pytest.mark.parametrize("pred,ref,ok", [
    ("(A)", "(A)", True), (" (a). ", "(A)", True), ("True.", "True", True), ("true", "False", False),
    ("valid", "invalid", False), ("3.", "3", True), ("(A) because", "(A)", False), ("1.5", "15", True),
])
def test_normalized_exact_match_is_method_md(pred, ref, ok):
    # str(x).strip().lower().replace(".", "") on both sides, nothing else ("1.5" == "15" by that rule)
    assert bbh.exact_match(pred, ref) is ok
    assert bbh.normalize(pred) == str(pred).strip().lower().replace(".", "")


def test_extractor_is_separate_and_simple():
    assert bbh.extract_answer("The answer is (C), clearly.", option_task=True) == "(C)"
    assert bbh.extract_answer("B) because", option_task=True) == "(B)"
    assert bbh.extract_answer("\n  Yes it is\nNo", option_task=False) == "Yes it is"
    assert bbh.extract_answer("", option_task=True) == ""


def test_shipped_copy_is_the_default(monkeypatch):
    """With no --bbh-dir, SCALECTL_BBH_DIR or $SCALECTL_HOME/bbh, the copy inside the package is used."""
    monkeypatch.delenv("SCALECTL_BBH_DIR", raising=False)
    d = bbh.bbh_dir()
    assert d == bbh.shipped_dir().resolve() and d.is_relative_to(Path(bbh.__file__).resolve().parents[1])
    assert (d / "LICENSE").is_file() and "MIT" in (d / "LICENSE").read_text()
    assert len(bbh.available(d)) == 27
