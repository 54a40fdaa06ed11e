"""Property tests (hypothesis) of ``scalectl pool add`` on hostile input: whatever adapter_config.json, safetensors
header or manifest it is given, it either registers cleanly (exit 0, and ``pool verify`` then passes) or fails with
exactly one line on stderr and a non-zero exit; never a traceback, and never a row (or a pool) left behind by a
failed call.

Every example registers into a pool of its own (hypothesis runs all the examples of a test in one home), built from
a fresh copy of a real tiny PEFT adapter whose config or weight file is then overwritten. The runs are derandomized
(the same examples every run); set ``SCALECTL_HYPOTHESIS_RANDOM=1`` to explore new ones, and
``SCALECTL_HYPOTHESIS_EXAMPLES=N`` for N examples a test instead of 60."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import os
import re
import shutil
import sqlite3
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from scalectl.cli import app

runner = CliRunner()
_serial = itertools.count()

PROPS = settings(max_examples=int(os.environ.get("SCALECTL_HYPOTHESIS_EXAMPLES", 60)), deadline=None, database=None,
                 derandomize=not os.environ.get("SCALECTL_HYPOTHESIS_RANDOM"),
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                        HealthCheck.data_too_large, HealthCheck.filter_too_much])


# ---------------------------------------------------------------- what any JSON can hold

HUGE = [10 ** 400, -(10 ** 400), 2 ** 63, 2 ** 64, 2 ** 64 - 1, -(2 ** 63) - 1, 10 ** 20]
ODD_TEXT = ["", " ", "q_proj", "v_proj", "model.layers.0.self_attn.q_proj", ".*", "(", ")", "[", "a{2,1}", "*",
            "(?P<x", "\\", "\ud800", "\udfff", "[/x]", "[bold]b", "\x00", "\n", "LORA", "lora", "IA3", "nan", "1e999",
            "true", "ÿ", "ａ"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(HUGE), st.floats(),  # floats: NaN, +-inf included
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1e308, 5e-324, 2.5, 4.0]),
    st.text(max_size=12), st.sampled_from(ODD_TEXT))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=6) | st.sampled_from(ODD_TEXT), kids, max_size=4),
                           max_leaves=12)


# ---------------------------------------------------------------- the property


def _state(home: Path) -> tuple:
    """Everything a failed ``pool add`` must leave as it was: pools and adapter/example rows."""
    db = home / "registry.db"
    if not db.exists():
        return ((), (), 0)
    con = sqlite3.connect(db)
    try:
        pools = tuple(con.execute("select name, base_model from pools order by name"))
        rows = tuple(con.execute("select pool, name, sha256, config_sha256 from adapters order by id"))
        n_ex = con.execute("select count(*) from examples").fetchone()[0]
    finally:
        con.close()
    return (pools, rows, n_ex)


def _one_line_failure(r) -> None:
    assert r.exit_code != 0
    assert r.stderr.count("\n") == 1 and r.stderr.endswith("\n"), repr(r.stderr)
    assert r.stderr.startswith("error: "), repr(r.stderr)


def _event(r) -> None:
    """What happened, for ``--hypothesis-show-statistics``: registered, or the error with paths and values cut."""
    from hypothesis import event

    msg = re.sub(r"\S*/\S*|\b[apm]\d+\b|\d+", "#", r.stderr.strip().removeprefix("error: "))
    msg = re.split(r"(?:, got|: expected| \(| is )", re.sub(r"^(?:#:? )+", "", msg), maxsplit=1)[0][:60]
    try:
        event("registered" if r.exit_code == 0 else msg)
    except Exception:  # noqa: BLE001 - outside a hypothesis test (the plain tests below)
        pass


def _clean_or_one_line(args: list[str], pool: str) -> object:
    """Run ``pool add``: a clean registration into ``pool`` (verified), or one line and an unchanged registry."""
    home = Path(os.environ["SCALECTL_HOME"])
    before = _state(home)
    r = runner.invoke(app, args)
    # CliRunner catches what would have been a traceback: anything but the CLI's own exit is a bug
    assert r.exception is None or isinstance(r.exception, SystemExit), (args, repr(r.exception), r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    after = _state(home)
    _event(r)
    if r.exit_code == 0:
        new_rows = [x for x in after[1] if x not in before[1]]
        assert new_rows and all(x[0] == pool for x in new_rows), (new_rows, pool)
        v = runner.invoke(app, ["pool", "verify", "--pool", pool, "--json"])
        assert v.exit_code == 0, v.output
        assert {x["status"] for x in json.loads(v.stdout)} <= {"ok", "remote"}
        # and using it is clean too: the factors load, or one line says why not
        for name in {x[1] for x in new_rows if x[0] == pool}:
            u = runner.invoke(app, ["pool", "inspect", name, "--pool", pool])
            assert u.exception is None or isinstance(u.exception, SystemExit), repr(u.exception)
            if u.exit_code != 0:
                _one_line_failure(u)
    else:
        _one_line_failure(r)
        assert after == before, "a failed pool add changed the registry"
    return r


def _fresh(tmp_path: Path, src: Path) -> tuple[Path, str]:
    """A fresh copy of ``src`` with a name of its own, and a fresh pool name."""
    k = next(_serial)
    dst = tmp_path / "ex" / f"a{k}"
    shutil.copytree(src, dst)
    return dst, f"p{k}"


# ---------------------------------------------------------------- (a) adapter_config.json

CONFIG_FIELDS = ["r", "lora_alpha", "rank_pattern", "alpha_pattern", "target_modules", "peft_type", "use_rslora",
                 "use_dora", "fan_in_fan_out", "base_model_name_or_path", "task_type", "modules_to_save", "bias",
                 "lora_dropout", "layers_to_transform"]
numbers = st.one_of(st.sampled_from(HUGE), st.floats(), st.integers(-3, 10 ** 6),
                    st.sampled_from([4, 8, 4.0, 8.0, 2.5, 0, -4, True, False, "4", None, 2 ** 63 - 1]))
patterns = st.dictionaries(st.sampled_from(ODD_TEXT) | st.text(max_size=8), numbers, max_size=3)
flags = st.one_of(st.booleans(), st.none(), json_values)
# the fields scalectl reads, each present about half the time, with values from valid to hostile; then any others
config_fields = st.fixed_dictionaries({}, optional={
    "r": numbers | json_values, "lora_alpha": numbers | json_values, "rank_pattern": patterns | json_values,
    "alpha_pattern": patterns | json_values, "use_rslora": flags, "use_dora": flags, "fan_in_fan_out": flags,
    "peft_type": st.sampled_from(["LORA", "lora", "IA3", "LoRA ", None]) | json_values,
    "target_modules": st.sampled_from([["q_proj"], "all-linear", [], None]) | json_values,
    "base_model_name_or_path": json_values, "task_type": json_values})
config_edits = st.builds(lambda a, b: {**b, **a}, config_fields,
                         st.dictionaries(st.sampled_from(CONFIG_FIELDS) | st.text(max_size=6), json_values, max_size=2))
rarely = st.sampled_from([False] * 7 + [True])  # an example in eight (and False is what it shrinks to)


@PROPS
@given(edits=config_edits, drop=st.sets(st.sampled_from(CONFIG_FIELDS), max_size=2),
       whole=st.tuples(rarely, json_values), deep=st.tuples(rarely, st.integers(50, 5000)))
def test_any_adapter_config_is_registered_cleanly_or_refused_in_one_line(tmp_path, llama_adapters, edits, drop,
                                                                         whole, deep):
    src, pool = _fresh(tmp_path, llama_adapters[0])
    cfg_path = src / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    for k in drop:
        cfg.pop(k, None)
    cfg.update(edits)
    if whole[0]:
        cfg = whole[1]  # not an object, or an object without any of PEFT's fields
    if deep[0] and isinstance(cfg, dict):
        cfg["nested"] = "DEEP"
    text = json.dumps(cfg)  # NaN and Infinity as Python (and PEFT) read them back
    if deep[0] and '"DEEP"' in text:
        text = text.replace('"DEEP"', "[" * deep[1] + "]" * deep[1], 1)
    cfg_path.write_text(text)
    _clean_or_one_line(["pool", "add", str(src), "--pool", pool], pool)


sidecars = st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["side-name", "bad name", "", "x\n"]) | json_values,
    "description": st.text(max_size=10) | json_values, "source_task": st.text(max_size=5) | json_values,
    "tags": st.lists(st.text(max_size=5) | st.sampled_from(ODD_TEXT), max_size=3) | json_values,
    "examples": st.lists(st.fixed_dictionaries({"input": st.text(max_size=5) | json_values,
                                                "output": st.text(max_size=5) | json_values}), max_size=2) | json_values,
    "provenance": json_values}))


@PROPS
@given(sidecar=sidecars)
def test_any_sidecar_is_registered_cleanly_or_refused_in_one_line(tmp_path, llama_adapters, sidecar):
    """The optional scalectl.json beside the adapter (description, tags, examples) is user input too."""
    src, pool = _fresh(tmp_path, llama_adapters[1])
    (src / "scalectl.json").write_text(json.dumps(sidecar))
    _clean_or_one_line(["pool", "add", str(src), "--pool", pool], pool)


# ---------------------------------------------------------------- (b) safetensors headers


def _split(wf: Path) -> tuple[int, dict, bytes]:
    raw = wf.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return n, json.loads(raw[8:8 + n]), raw[8 + n:]


dims = st.one_of(st.integers(-5, 64), st.sampled_from(HUGE), st.floats(), st.booleans(), st.text(max_size=2))
shapes = st.one_of(json_values, st.lists(dims, max_size=3))
offsets = st.one_of(json_values, st.lists(st.one_of(st.integers(-100, 5000), st.sampled_from(HUGE), st.floats(),
                                                    st.booleans()), max_size=3))
DTYPES = ["F32", "F16", "BF16", "F64", "I8", "U8", "I64", "BOOL", "F8_E4M3", "f32", "F33", ""]
dtypes = st.one_of(st.sampled_from(DTYPES), json_values)
entry_edits = st.lists(st.one_of(
    st.tuples(st.integers(0, 20), st.just("dtype"), dtypes), st.tuples(st.integers(0, 20), st.just("shape"), shapes),
    st.tuples(st.integers(0, 20), st.just("data_offsets"), offsets),
    st.tuples(st.integers(0, 20), st.sampled_from(["entry", "drop", "copy_offsets", "rename"]), json_values)),
    max_size=3)


@PROPS
@given(edits=entry_edits, metadata=st.tuples(rarely, json_values),
       extra=st.dictionaries(st.text(max_size=20) | st.sampled_from(ODD_TEXT), json_values, max_size=2),
       declared=st.tuples(rarely, st.integers(-16, 16) | st.integers(0, 2 ** 64 - 1)),
       truncate=st.tuples(rarely, st.floats(0.0, 1.0)), raw_header=st.tuples(rarely, st.binary(max_size=40)),
       deep=st.tuples(rarely, st.integers(100, 5000)))
def test_any_safetensors_header_is_registered_cleanly_or_refused_in_one_line(tmp_path, llama_adapters, edits,
                                                                             metadata, extra, declared, truncate,
                                                                             raw_header, deep):
    src, pool = _fresh(tmp_path, llama_adapters[0])
    wf = src / "adapter_model.safetensors"
    n, header, data = _split(wf)
    keys = [k for k in header if k != "__metadata__"]
    for i, what, value in edits:
        key = keys[i % len(keys)]
        if key not in header:
            continue
        if what == "entry":
            header[key] = value
        elif what == "drop":
            header.pop(key)
        elif what == "rename":  # the same tensor under another (LoRA-looking or not) name
            header[key.replace("lora_A" if "lora_A" in key else "lora_B", str(value)[:12])] = header.pop(key)
        elif what == "copy_offsets":  # another tensor's bytes: overlapping ranges
            other = header.get(keys[(i + 1) % len(keys)])
            if isinstance(header[key], dict) and isinstance(other, dict):
                header[key]["data_offsets"] = other.get("data_offsets")
        elif isinstance(header[key], dict):
            header[key][what] = value
    if metadata[0]:
        header["__metadata__"] = metadata[1]
    header.update(extra)
    body = json.dumps(header).encode("utf-8", "surrogatepass")
    if deep[0]:
        body = body[:-1] + b', "deep": ' + b"[" * deep[1] + b"]" * deep[1] + b"}"
    if raw_header[0]:
        body = raw_header[1]
    d = declared[1]
    length = len(body) if not declared[0] else (len(body) + d if -16 <= d <= 16 else d)
    blob = struct.pack("<Q", max(length, 0)) + body + data
    if truncate[0]:
        blob = blob[:int(len(blob) * truncate[1])]
    wf.write_bytes(blob)
    _clean_or_one_line(["pool", "add", str(src), "--pool", pool], pool)


MODULES = ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj", "lm_head", "model.embed_tokens",
           "decoder.block.0.layer.0.SelfAttention.q", "x", "\ud800", "[/x]", "a..b", ""]
KINDS = ["lora_A", "lora_B", "lora_embedding_A", "lora_magnitude_vector", "lora_C", "weight"]


@st.composite
def consistent_files(draw) -> tuple[dict, bytes]:
    """A structurally valid safetensors file (offsets back to back, every byte accounted for) whose tensors are any
    names, dtypes and shapes, often as A/B pairs of one module: what is left to refuse is what they mean (ranks,
    pairs, empty or huge dimensions)."""
    tensors = []
    for _ in range(draw(st.integers(1, 3))):
        module = draw(st.sampled_from(MODULES) | st.text(max_size=8))
        dims = st.sampled_from([1, 2, 16, 32, 40]) | st.integers(0, 40) | st.sampled_from([2 ** 40, 2 ** 63, 2 ** 64])
        if not draw(rarely):  # mostly a LoRA pair: A (r x d_in), B (d_out x r)
            r, d_in, d_out = draw(st.integers(1, 8) | st.sampled_from([0, 2 ** 40])), draw(dims), draw(dims)
            tensors += [(f"base_model.model.{module}.lora_A.weight", [r, d_in]),
                        (f"base_model.model.{module}.lora_B.weight", [d_out, r])]
        else:
            key = draw(st.sampled_from([f"base_model.model.{module}.{k}.weight" for k in KINDS]
                                       + [f"{module}.{k}.default.weight" for k in KINDS] + [module]))
            tensors.append((key, draw(st.lists(dims, max_size=3))))
    header, offset = {}, 0
    for key, shape in tensors:
        dtype = draw(st.sampled_from(DTYPES[:8]))
        size = {"F64": 8, "I64": 8, "F32": 4, "F16": 2, "BF16": 2}.get(dtype, 1)
        if math.prod(shape) * size > 1 << 16:
            shape[-1] = 0  # a huge dimension beside an empty one: no bytes at all
        nbytes = math.prod(shape) * size
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    return header, b"\0" * offset


@PROPS
@given(f=consistent_files(), r=st.sampled_from([4, 2, 1, 8, 2 ** 40, 2 ** 63 - 1]), pattern=st.booleans())
def test_any_well_formed_safetensors_file_is_registered_cleanly_or_refused(tmp_path, llama_adapters, f, r, pattern):
    src, pool = _fresh(tmp_path, llama_adapters[0])
    header, data = f
    body = json.dumps(header).encode()
    (src / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(body)) + body + data)
    cfg = json.loads((src / "adapter_config.json").read_text())
    cfg["r"] = r
    if pattern:  # every module its own rank, whatever the file says
        cfg["rank_pattern"] = {re.escape(k.split(".lora_A.")[0].removeprefix("base_model.model.")): v["shape"][0]
                               for k, v in header.items() if ".lora_A." in k and v["shape"] and v["shape"][0]}
    (src / "adapter_config.json").write_text(json.dumps(cfg))
    _clean_or_one_line(["pool", "add", str(src), "--pool", pool], pool)


def test_the_unchanged_copies_register(tmp_path, llama_adapters):
    """The generators' starting point is a valid adapter: with no edits it registers (the property is not vacuous)."""
    src, pool = _fresh(tmp_path, llama_adapters[0])
    assert _clean_or_one_line(["pool", "add", str(src), "--pool", pool], pool).exit_code == 0


# ---------------------------------------------------------------- (c) manifests

ENTRY_FIELDS = ["name", "source", "source_task", "description", "tags", "examples", "examples_file", "r",
                "lora_alpha", "target_modules", "base_model", "task_type", "use_rslora", "use_dora", "note",
                "provenance", "sha256"]
toml_values = st.recursive(
    st.one_of(scalars, st.datetimes(), st.dates(), st.times(),
              st.datetimes(timezones=st.just(dt.timezone.utc))),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3), max_leaves=8)
good_values = {  # values a field accepts, so that some manifests register
    "tags": st.just(["x", "y"]), "description": st.just("d"), "source_task": st.just("t"), "note": st.just("n"),
    "examples": st.just([{"input": "i", "output": "o"}]), "r": st.just(4), "lora_alpha": st.just(8),
    "use_rslora": st.booleans(), "provenance": st.just({"by": "hand"}), "target_modules": st.just(["q_proj"]),
}
field_values = st.one_of(toml_values, *good_values.values())


@st.composite
def manifests(draw, sources: list[str]) -> tuple[dict, str]:
    plain = draw(st.booleans())  # half the manifests have well-formed entries: their other fields are then reached

    def entry(i: int) -> object:
        if plain:
            return {"source": sources[i], **{k: draw(v) for k, v in good_values.items() if draw(rarely)}}
        if draw(st.integers(0, 9)) == 0:
            return draw(st.one_of(st.just(sources[i]), toml_values))  # a bare string (a path), or anything
        e = {"source": sources[i] if draw(st.integers(0, 5)) else draw(toml_values)}
        for k in draw(st.lists(st.sampled_from(ENTRY_FIELDS + ["unknown_key", "Name", "weights"]), max_size=4,
                               unique=True)):
            if k != "source":
                e[k] = draw(good_values[k]) if k in good_values and draw(st.booleans()) else draw(field_values)
        return e

    data: dict = {"adapters": [entry(i) for i in range(draw(st.integers(1, len(sources))))]}
    if draw(rarely):
        data["adapters"] = draw(toml_values)
    for k in draw(st.lists(st.sampled_from(["pool", "base_model", "description", "defaults", "unresolved", "extra",
                                            "version"]), max_size=3, unique=True)):
        if k in ("pool", "description") and draw(st.booleans()):
            data[k] = draw(st.sampled_from(["ok-pool", "bad pool", "", "d"]))
        elif k == "defaults" and draw(st.booleans()):
            data[k] = {f: draw(field_values) for f in draw(st.lists(st.sampled_from(ENTRY_FIELDS), max_size=2,
                                                                     unique=True))}
        elif k == "unresolved" and draw(st.booleans()):
            data[k] = draw(st.lists(st.dictionaries(st.sampled_from(["name", "note"]), toml_values), max_size=2))
        else:
            data[k] = draw(toml_values)
    return data, draw(st.sampled_from(["toml", "json", "txt"]))


def _serialize(data: dict, fmt: str, sources: list[str]) -> bytes:
    if fmt == "txt":
        return ("\n".join(sources[:2]) + "\n# a comment\n").encode()
    if fmt == "toml":
        import tomli_w

        try:
            return tomli_w.dumps(data).encode("utf-8", "surrogatepass")
        except (TypeError, ValueError):
            pass  # not representable in TOML (None, NaN in keys, ...): written as JSON instead
    return json.dumps(data, default=str).encode("utf-8", "surrogatepass")


@PROPS
@given(data=st.data(), garble=st.tuples(rarely, st.floats(0, 1), st.binary(min_size=1, max_size=4)),
       deep=st.tuples(rarely, st.integers(100, 5000)), cli_pool=st.booleans())
def test_any_manifest_is_registered_cleanly_or_refused_in_one_line(tmp_path, llama_adapters, data, garble, deep,
                                                                   cli_pool):
    srcs = [_fresh(tmp_path, llama_adapters[i % 3])[0] for i in range(3)]
    pool = f"m{next(_serial)}"
    sources = [str(s) for s in srcs]
    manifest, fmt = data.draw(manifests(sources))
    if not cli_pool:
        manifest["pool"] = pool  # the manifest names its own pool
    text = _serialize(manifest, fmt, sources)
    suffix = fmt if fmt == "txt" or not text.lstrip().startswith(b"{") else "json"
    if deep[0] and suffix != "txt":  # nested hundreds (thousands) of levels deep
        nest = b"[" * deep[1] + b"]" * deep[1]
        text = text + b"\ndeep = " + nest + b"\n" if suffix == "toml" else text.rstrip()[:-1] + b', "deep": ' + nest + b"}"
    if garble[0]:  # bytes that are not UTF-8 (or just noise) somewhere in the file
        _, at, junk = garble
        i = int(len(text) * at)
        text = text[:i] + junk + text[i:]
    mf = tmp_path / f"manifest-{pool}.{suffix}"
    mf.write_bytes(text)
    args = ["pool", "add", "--manifest", str(mf)] + (["--pool", pool] if cli_pool or suffix == "txt" else [])
    r = _clean_or_one_line(args, pool)
    assert r.exit_code == 0 or "Traceback" not in r.stderr


@pytest.mark.parametrize("depth", [50, 900, 5000])
def test_deeply_nested_json_everywhere_is_one_line(tmp_path, llama_adapters, depth):
    """A config, a header and a manifest nested ``depth`` levels deep: clean, or one line (never RecursionError)."""
    src, pool = _fresh(tmp_path, llama_adapters[2])
    cfg = json.loads((src / "adapter_config.json").read_text())
    (src / "adapter_config.json").write_text(json.dumps(cfg)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}")
    _clean_or_one_line(["pool", "add", str(src), "--pool", pool], pool)
    src, pool = _fresh(tmp_path, llama_adapters[2])
    n, header, data = _split(src / "adapter_model.safetensors")
    body = json.dumps(header)[:-1].encode() + b', "x": ' + b'{"k": ' * depth + b"1" + b"}" * depth + b"}"
    (src / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(body)) + body + data)
    _clean_or_one_line(["pool", "add", str(src), "--pool", pool], pool)
    src, pool = _fresh(tmp_path, llama_adapters[2])
    for suffix in ("json", "toml"):
        mf = tmp_path / f"deep-{depth}.{suffix}"
        nest = "[" * depth + "]" * depth
        mf.write_text(json.dumps({"adapters": [{"source": str(src), "provenance": {"x": "N"}}]}).replace('"N"', nest)
                      if suffix == "json" else f'[[adapters]]\nsource = "{src}"\nprovenance = {{x = {nest}}}\n')
        _clean_or_one_line(["pool", "add", "--manifest", str(mf), "--pool", f"{pool}{suffix}"], f"{pool}{suffix}")
