"""Every command README.md shows in a ```sh block is run, as written, in README order.

README.md is read when the tests are collected (every pytest run), so this file follows its edits.

How a README block becomes commands (``readme_commands``):

- every fenced ```sh (or ```bash / ```shell) block; ``\\``-newline continuations are joined the way the shell
  joins them (the backslash and the newline vanish, nothing else); ``#`` comments and blank lines are dropped;
- ``;`` and ``&&`` separate commands; `` | `` (a bar between spaces) separates alternative commands the README
  lists on one line (``scalectl runs list | runs show RUN``): an alternative that starts with a scalectl
  sub-command is that sub-command of ``scalectl``; one that does not would be a real pipe and is refused;
- ``[...]`` optional parts are included (each command runs in its fullest form), and a word with ``|``
  inside it (``--method lasrc|lorahub|logo``, ``--variant facts|math``) expands into one command per
  alternative;
- each command keeps the README line it starts on; a line that is not a scalectl command must match the
  ``NOT_RUN`` table (which says who runs it instead), or the fast test fails naming the line.

Then, for each scalectl command, three explicit tables:

1. ``SUBSTITUTIONS``: README placeholders -> real values of this test's world (demo adapters, pools, run ids
   created by earlier commands, a hub id laid out in a temporary HF cache, temporary output paths, the rest
   of a ``...`` command). Whatever still looks like a placeholder afterwards (``...``, ``[x]``, ``<x>``, an
   ALL-CAPS word, ``a,b``, ``path/to``, an output outside the temporary directory) FAILS, naming the README
   line: a new README command is never silently untested.
2. ``SHRINKS``: small limits for what would be slow on two CPU cores (one task and one query per eval,
   2-step searches over 3 + 2 candidates, ...). Nothing else about a command is changed.
3. ``EXPECTED_FAIL``: commands that cannot succeed offline on this machine; they must exit non-zero with
   exactly one line on stderr.

The commands run in-process (``CliRunner().invoke(app, args)``, as the other CLI tests do; ``_Group.main``
turns a bare ``--ray`` into ``--ray=local`` there too), in one fresh
``SCALECTL_HOME`` whose ``models/`` is the session's converted embedded backbone (``embedded_home``), with
``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE`` = the temporary cache; no SCALECTL_POOL of the test's own: the
README's ``export`` lines set the environment of every later command, as in the reader's shell (its first block
exports ``SCALECTL_POOL=smollm2-skills``). The working directory is a temporary one holding symlinks to the
repository's top level, so relative inputs resolve and default outputs never land in the working tree. A command
with ``--ray`` runs as its own process (``python -m scalectl``, Ray's state is process-global) with its own
``RAY_TMPDIR``. Before the first command, what `make demo` leaves behind and the README's
first block assumes: the demo pool registered (unless the README's own commands register it) and indexed.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest
import tomllib
from conftest import ROOT
from typer.testing import CliRunner

README = ROOT / "README.md"
DEMO_MANIFEST = "registry/smollm2-skills.toml"
DEMO_POOL = "smollm2-skills"
DEMO_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the demo adapters' base_model_name_or_path
ADAPTERS = ["grid-return", "grid-position", "boolean-expressions"]  # `a,b,c`: demo adapters near bbh/navigate
ADAPTER_DIRS = ["registry/smollm2-skills/word-sorting", "registry/smollm2-skills/date-arithmetic"]
HUB_ID = "scalectl-readme/object-counting-copy"  # `hf:ORG/NAME`: laid out in the temporary HF cache
HUB_SOURCE = "registry/smollm2-skills/object-counting"  # ... holding a copy of this demo adapter
HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"
ONE_TASK = "bbh/navigate"
SUITES = {"bbh", "bbh-8"}
OUT_FLAGS = ("--out", "-o", "--merge-into-base", "--csv", "--png", "--html", "--markdown")
TAIL = 2500  # characters of stdout / stderr shown when a command fails
runner = CliRunner()


# ================================================================ parsing README.md


@dataclass
class Cmd:
    line: int  # README line the command starts on
    written: str  # the README's logical line (continuations joined, comment dropped)
    form: str  # this command: one alternative, brackets unwrapped, alternatives expanded
    kind: str = "scalectl"  # "scalectl" or "not-run"
    reason: str = ""  # for "not-run": who runs it instead
    problems: list[str] = field(default_factory=list)
    variant: str = ""  # the alternative chosen from an `a|b` word, if any

    @property
    def id(self) -> str:
        words = [w for w in self.form.split() if not w.startswith("-") and w != "..."][1:3]
        words += [self.variant] if self.variant else []
        return f"L{self.line:03d}-" + "-".join(dict.fromkeys(re.sub(r"[^\w.+-]", "_", w) for w in words))

    def where(self) -> str:
        return f"README.md line {self.line}: `{self.form}`" + (f" (from `{self.written}`)" if self.form != self.written else "")


def _scan(s: str, stop: Callable[[str, int], int]) -> list[str]:
    """Split ``s`` where ``stop(s, i)`` returns a separator length > 0, outside single/double quotes."""
    out, cur, quote, i = [], "", None, 0
    while i < len(s):
        c = s[i]
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif (n := stop(s, i)) > 0:
            out.append(cur)
            cur, i = "", i + n
            continue
        cur += c
        i += 1
    return out + [cur]


def strip_comment(line: str) -> str:
    """Drop a shell comment: ``#`` at the start of a word, outside quotes."""
    return _scan(line, lambda s, i: len(s) - i if s[i] == "#" and (i == 0 or s[i - 1].isspace()) else 0)[0]


def sh_blocks(text: str) -> list[list[tuple[int, str]]]:
    """The bodies of the ```sh / ```bash / ```shell blocks, as (README line, line) pairs."""
    blocks, body, lang = [], None, None
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*```\s*([\w+-]*)", line)
        if body is None:
            if m:
                body, lang = [], m.group(1).lower()
        elif m and not m.group(1):
            if lang in ("sh", "bash", "shell"):
                blocks.append(body)
            body = None
        else:
            body.append((n, line))
    if body is not None and lang in ("sh", "bash", "shell"):
        blocks.append(body)  # an unclosed fence (README mid-edit): its lines still count
    return blocks


def logical_lines(body: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Join ``\\``-newline continuations (as the shell does), drop comments and blank lines."""
    out, buf, start = [], "", None
    for n, raw in body:
        line = strip_comment(raw).rstrip()
        if start is None:
            start = n
        if line.endswith("\\") and not raw.rstrip().endswith("\\\\"):
            buf += line[:-1]
            continue
        buf += line
        if buf.strip():
            out.append((start, buf.strip()))
        buf, start = "", None
    if buf.strip():
        out.append((start, buf.strip()))
    return out


def _cli_words() -> set[str]:
    import typer.main

    from scalectl.cli import app

    return set(typer.main.get_command(app).commands)


def expand(text: str) -> list[tuple[str, str]]:
    """One logical line -> its commands (``;``/``&&``, `` | `` alternatives, ``[...]``, ``a|b`` words)."""
    subs = _cli_words()
    out = []
    for part in _scan(text, lambda s, i: 1 if s[i] == ";" else 2 if s.startswith("&&", i) else 0):
        alts = _scan(part, lambda s, i: 1 if s[i] == "|" and 0 < i < len(s) - 1 and s[i - 1] == " " == s[i + 1] else 0)
        for k, alt in enumerate(a.strip() for a in alts):
            if not alt:
                continue
            if k > 0 and alt.split()[0] in subs:
                alt = "scalectl " + alt  # `scalectl runs list | runs show RUN`: alternatives, not a pipe
            elif k > 0:
                alt = "| " + alt  # a real pipe: classified (and refused) below
            alt = re.sub(r"(?<!\S)\[", "", alt)
            alt = re.sub(r"\](?!\S)", "", alt)
            words = alt.split()
            alt_words = [i for i, w in enumerate(words) if "|" in w and not w.startswith("|")]
            choices = [w.split("|") if i in alt_words else [w] for i, w in enumerate(words)]
            out += [(" ".join(c), ",".join(c[i] for i in alt_words)) for c in itertools.product(*choices)]
    return out


# Lines that are not scalectl commands, and who runs them instead.
NOT_RUN: list[tuple[str, str]] = [
    (r"^make demo\b", "`make demo` = the install below + `scalectl demo`: tests/test_demo_pool.py::test_demo_end_to_end "
                      "runs the demo (small limits); the install is the venv this test runs in"),
    (r"^make test\b", "run by CI itself: .ci/run runs `make test`"),
    (r"^make bench\b", "benchmarks: not a test"),
    (r"^python3? -m venv\b", "set-up: creates the venv this test runs in"),
    (r"^(\S*/)?pip3? install\b", "set-up: installs packages (nothing may download in a test); this test runs in the result"),
    (r"^(\S*/)?python3? benchmarks/", "benchmarks: not a test"),
    (r"^bash examples/", "examples: tests/test_examples.py runs them"),
]
_COVERED_BY = {"examples: tests/test_examples.py runs them": ROOT / "tests" / "test_examples.py"}


def classify(c: Cmd) -> Cmd:
    words = c.form.split()
    env = list(itertools.takewhile(lambda w: re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", w), words))
    first = words[len(env)] if len(words) > len(env) else ""
    if first == "scalectl":
        return c
    if re.fullmatch(r"export( [A-Z_][A-Z0-9_]*=\S*)+", c.form):
        c.kind = "export"  # sets the environment of every later command, as in the reader's shell
        return c
    c.kind = "not-run"
    for pat, why in NOT_RUN:
        if re.search(pat, c.form):
            c.reason = why
            dep = _COVERED_BY.get(why)
            if dep is not None and not dep.exists():
                c.problems.append(f"NOT_RUN says '{why}', but {dep.relative_to(ROOT)} does not exist")
            return c
    c.problems.append("neither a scalectl command nor in the NOT_RUN table of tests/test_readme.py "
                      "(add it there with who runs it, or make it a scalectl command)")
    return c


def readme_commands(text: str | None = None) -> list[Cmd]:
    text = README.read_text() if text is None else text
    cmds = []
    for body in sh_blocks(text):
        for line, written in logical_lines(body):
            for form, variant in expand(written):
                cmds.append(classify(Cmd(line, written, form, variant=variant)))
    return cmds


# ================================================================ the world the commands run in


class World:
    """Values for the substitution table; the real one lives in a temporary directory (see ``world``)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.home = tmp / "home"
        self.hub_cache = tmp / "hf" / "hub"
        self.outs = tmp / "outs"
        self.cwd = tmp / "cwd"  # the working directory: the repository's top level, symlinked (see `world`)
        self.ray_tmp: str | None = None  # RAY_TMPDIR of the --ray processes (short: Ray's socket paths)
        self._n = 0
        self.exports: dict[str, str] = {}  # what README `export` lines set, for every later command

    def env(self) -> dict[str, str]:
        return {"SCALECTL_HOME": str(self.home), "HF_HUB_OFFLINE": "1", "HF_HOME": str(self.tmp / "hf"),
                "HF_HUB_CACHE": str(self.hub_cache),
                **({"RAY_TMPDIR": self.ray_tmp} if self.ray_tmp else {}), **self.exports}

    def out_path(self, written: str) -> str:
        """A fresh temporary path per output (two README commands both write `composed/`)."""
        self._n += 1
        name = Path(written.rstrip("/")).name or "out"
        return str(self.outs / f"{self._n:02d}-{name}") + ("/" if written.endswith("/") else "")

    def _runs(self) -> list[dict]:
        from scalectl.registry import Registry

        reg = Registry()
        try:
            return reg.runs(kind="eval", status="done")
        finally:
            reg.close()

    def run_id(self) -> str:
        runs = [r for r in self._runs() if r["method"] != "zero-shot" and not r["method"].startswith("scale-")]
        if not runs:
            raise LookupError("RUN: no finished composition run yet (did an earlier eval command fail?)")
        return runs[-1]["id"]

    def baseline_run_id(self) -> str:
        runs = [r for r in self._runs() if r["method"] == "zero-shot"]
        if not runs:
            raise LookupError("BASELINE_RUN: no finished zero-shot run yet (did `eval --base-only` fail?)")
        return runs[-1]["id"]


class DryWorld(World):
    """For the fast test: the same table, with stand-ins for what only exists once commands have run."""

    def run_id(self) -> str:
        return "20250101-000000-aaaaaa"

    def baseline_run_id(self) -> str:
        return "20250101-000000-bbbbbb"


class ReadmeError(AssertionError):
    """A README command the harness cannot run as written; the message names the README line."""


def check(ok: object, msg: str) -> None:
    if not ok:
        raise ReadmeError(msg)


@dataclass
class Sub:
    pattern: str
    repl: Callable[[World, re.Match], str]
    why: str


# 1. README placeholders -> this world's values, applied in this order to the command text.
SUBSTITUTIONS: list[Sub] = [
    Sub(r"(?<=\bpool add )path/to/adapter_dir another_dir\b", lambda w, m: " ".join(ADAPTER_DIRS),
        "two directories of PEFT adapters: demo adapters straight from registry/smollm2-skills/ "
        "(registered again in --pool mypool, so they are not duplicates of the demo pool's)"),
    Sub(r"\bhf:ORG/NAME\b", lambda w, m: f"hf:{HUB_ID}",
        f"a hub id: {HUB_ID} is laid out in the temporary HF_HUB_CACHE (huggingface_hub's layout, refs/main + "
        f"snapshots/<commit>/), a copy of {HUB_SOURCE}; it lands in the pool SCALECTL_POOL names (README: the demo pool)"),
    Sub(r"(?<=--pool )mypool\b", lambda w, m: "mypool",
        "kept: a new pool, created by the `pool add` that names it"),
    Sub(r"(?<=--pool )P\b", lambda w, m: DEMO_POOL, "a pool: the demo pool, registered and indexed by then"),
    Sub(r"(?<=--base )MODEL\b", lambda w, m: DEMO_BASE, "a base model: the demo adapters' base, as recorded"),
    Sub(r"(?<=--tag )T\b", lambda w, m: "qa", "a tag: the one the README's first `pool add` attaches"),
    Sub(r"(?<=--adapters )[a-z](?:,[a-z])+(?![\w,])", lambda w, m: ",".join(ADAPTERS[: m.group(0).count(",") + 1]),
        f"K adapter names (`a,b,c`, `a,b`): the first K of {','.join(ADAPTERS)} (demo adapters)"),
    Sub(r"\b(pool (?:show|inspect|remove)) NAME\b", lambda w, m: f"{m.group(1)} {HUB_ID.split('/')[1]}",
        "an adapter name: the one `pool add hf:ORG/NAME` registered (so `pool remove NAME` takes away nothing "
        "that a later command uses)"),
    Sub(r"\bBASELINE_RUN\b", lambda w, m: w.baseline_run_id(),
        "a baseline run id: the latest finished zero-shot run (every eval runs on the same query: see SHRINKS)"),
    Sub(r"\bRUN\b", lambda w, m: w.run_id(),
        "a run id: the latest finished eval run that is not zero-shot and not a derived scale-* run"),
    Sub(r"(?<=--weights )\.\.\.", lambda w, m: "0.5,0.3,0.2",
        "one weight per adapter of `a,b,c` (the weights the compose example uses)"),
    Sub(r"(?<=--runs )\.\.\.", lambda w, m: "lasrc,scale", "run selection: method names (their latest done runs)"),
    Sub(r"^(scalectl eval) \.\.\.(?= )", lambda w, m: f"{m.group(1)} --method ilc --task bbh --pool {DEMO_POOL}",
        "`eval ... --ray ADDRESS`: the rest of the command shown on the line above it"),
    Sub(r"^(scalectl eval .*) \.\.\.$", lambda w, m: f"{m.group(1)} --task bbh-8 --pool {DEMO_POOL}",
        "`eval --method X ...`: the rest the full forms of that block spell out (`--task bbh-8 --pool P`)"),
    Sub(r"^(scalectl compose .*) \.\.\.$", lambda w, m: f"{m.group(1)} --out composed/",
        "`compose ... `: its required rest, an output directory (made temporary by the next entry)"),
    Sub(r"(?<!\S)(--out|-o|--merge-into-base|--csv|--png|--html|--markdown)( +|=)(?![/~$])(\S+)",
        lambda w, m: f"{m.group(1)}{m.group(2)}{w.out_path(m.group(3))}",
        "every relative output path (composed/, c2/, full-model/, out.csv, cal.png, bundle/, report.html, "
        "docs/results.md, ...) -> a fresh temporary path: never the working tree (docs/results.md is the repo's)"),
    Sub(r"(?<!\S)SCALECTL_HOME=\S*", lambda w, m: f"SCALECTL_HOME={w.home}", "SCALECTL_HOME=...: this test's home"),
]


def substitute(form: str, w: World) -> str:
    for s in SUBSTITUTIONS:
        form = re.sub(s.pattern, lambda m, s=s: s.repl(w, m), form)
    return form


def leftovers(args: list[str], w: World) -> list[str]:
    """What still looks like a placeholder after substitution: each is a failure naming the README line."""
    bad = []
    for i, a in enumerate(args):
        if "..." in a:
            bad.append(f"`{a}`: a `...` the SUBSTITUTIONS table does not fill")
        if re.search(r"[\[\]<>|]", a):
            bad.append(f"`{a}`: a bracketed or alternative placeholder")
        if "path/to" in a:
            bad.append(f"`{a}`: a path/to placeholder")
        caps = [p for p in re.split(r"[/:,=]", a) if re.fullmatch(r"[A-Z][A-Z0-9_]*", p)]
        if caps:
            bad.append(f"`{a}`: ALL-CAPS placeholder {caps[0]!r} not in the SUBSTITUTIONS table")
        if not a.startswith("-") and re.fullmatch(r"[a-z](,[a-z])*", a):
            bad.append(f"`{a}`: a single-letter placeholder not in the SUBSTITUTIONS table")
        flag, _, val = a.partition("=")
        if flag in OUT_FLAGS:
            val = val or (args[i + 1] if i + 1 < len(args) else "")
            if not Path(val).is_absolute() or w.tmp.resolve() not in Path(val).resolve().parents:
                bad.append(f"output `{val}` of {flag} would be written outside the temporary directory")
    return bad


# 2. Small limits for two CPU cores: (command path, when, edits, why). Edits set an option (replacing its value
# when the command gives one, appending it otherwise); a callable value gets the command's value (or None).
@dataclass
class Shrink:
    path: tuple[str, ...]
    edits: list[tuple[str, str | Callable[[str | None], str | None]]]
    why: str
    when: Callable[[list[str]], bool] = lambda a: True


def _opt(args: list[str], *flags: str) -> str | None:
    for i, a in enumerate(args):
        for f in flags:
            if a == f and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(f + "="):
                return a[len(f) + 1:]
    return None


def _method(args: list[str]) -> str | None:
    return _opt(args, "--method", "-m")


def _ray(args: list[str]) -> str | None:
    """--ray's value; a bare --ray (last, or before another option) is `local`, as ``_Group.main`` reads it."""
    for i, a in enumerate(args):
        if a == "--ray":
            return "local" if i + 1 == len(args) or args[i + 1].startswith("-") else args[i + 1].strip().lower()
        if a.startswith("--ray="):
            return a[6:].strip().lower() or "local"
    return None


def _local_ray(args: list[str]) -> bool:
    return _ray(args) in ("", "local")


def one_task(cur: str | None) -> str | None:
    """A suite, a task list, or nothing (the default is a suite) -> one task; one task stays."""
    return ONE_TASK if cur is None or cur in SUITES or "," in cur else None


def two_seeds(cur: str | None) -> str | None:
    return None if cur is None or cur.count(",") < 2 else ",".join(cur.split(",")[:2])


SHRINKS: list[Shrink] = [
    Shrink(("eval",), [("--task|-t", one_task), ("--limit", "1")],
           f"every eval on one task and its first query ({ONE_TASK}); suites (bbh-8, bbh) and task lists become it, "
           "so every run is over the same query and the audits compare them"),
    Shrink(("eval",), [("--steps", "2"), ("--global", "3"), ("--local", "2")],
           "weight searches of 2 steps over 3 global + 2 local candidates (method.md: 40, 20, 20)",
           when=lambda a: _method(a) not in (None, "zero-shot")),
    Shrink(("eval",), [("--seeds", two_seeds)], "an SDP seed sweep over its first two seeds (each seed is a SCALE run "
           "of 3 views; README: 4 seeds)"),
    Shrink(("eval",), [("--lorahub-k", "3")], "lorahub: 3 random candidates (20)", when=lambda a: _method(a) == "lorahub"),
    Shrink(("eval",), [("--ray-workers", "2")], "a local Ray instance of 2 workers (default: every core)",
           when=_local_ray),
    Shrink(("compose",), [("--steps", "2"), ("--global", "3")], "--task: a 2-step search over 3 candidates",
           when=lambda a: _opt(a, "--task", "-t") is not None),
    Shrink(("report",), [("--tasks|-t", one_task), ("--limit", "1")],
           f"--markdown: one task ({ONE_TASK}), its first query (not --from: rendering a bundle runs nothing)",
           when=lambda a: _opt(a, "--markdown") is not None and _opt(a, "--from") is None),
    Shrink(("report",), [("--rows", "zero-shot,logo")],
           "--markdown: only the rows without a weight search (report has no --steps: every other row searches 40 "
           "steps per support cluster, minutes per task on two cores)",
           when=lambda a: _opt(a, "--markdown") is not None and "--no-run" not in a and _opt(a, "--from") is None),
    Shrink(("report",), [("--ray-workers", "2")], "a local Ray instance of 2 workers", when=_local_ray),
    Shrink(("probe", "two-hop"), [("--steps", "2"), ("--people", "4"), ("--groups", "2")],
           "a world of 4 people in 2 groups, 2 training steps per adapter (README: 24, 6, 80; 547 s each)"),
    Shrink(("pool", "train"), [("--steps", "2"), ("--heldout", "4")], "2 steps, 4 held-out examples (60, 32)",
           when=lambda a: "--list" not in a),
    Shrink(("demo",), [("--limit", "2"), ("--steps", "2")], "2 queries per task, 2-step searches (60, 40)"),
    Shrink(("base", "generate"), [("--max-new-tokens|-n", "4")], "at most 4 new tokens"),
]


def command_path(args: list[str]) -> tuple[str, ...]:
    import typer.main

    from scalectl.cli import app

    grp, path, i = typer.main.get_command(app), [], 0
    while i < len(args):
        a = args[i]
        if a == "--home":
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        sub = getattr(grp, "commands", {}).get(a)
        if sub is None:
            break
        path.append(a)
        grp = sub
        i += 1
    return tuple(path)


def _set(args: list[str], flags: str, value: str) -> list[str]:
    """Set option ``flags`` (``--long|-s``): replace the value where the command gives one, else append it."""
    for i, a in enumerate(args):
        for flag in flags.split("|"):
            if a == flag and i + 1 < len(args):
                return args[: i + 1] + [value] + args[i + 2:]
            if a.startswith(flag + "="):
                return args[:i] + [f"{flag}={value}"] + args[i + 1:]
    return args + [flags.split("|")[0], value]


def shrink(args: list[str]) -> tuple[list[str], list[str]]:
    path, notes = command_path(args), []
    for s in SHRINKS:
        if path[: len(s.path)] != s.path or not s.when(args):
            continue
        before = list(args)
        for flag, value in s.edits:
            if callable(value):  # computed from the value the command gives (None: none); None = leave it
                value = value(_opt(args, *flag.split("|")))
            if value is not None:
                args = _set(args, flag, value)
        if args != before:
            notes.append(s.why)
    return args, notes


# 3. Commands that cannot succeed offline on this machine: (predicate on the final argv, why). Each must exit
# non-zero with exactly one stderr line.
EXPECTED_FAIL: list[tuple[Callable[[list[str]], bool], str]] = [
    (lambda a: command_path(a) == ("pool", "fetch"),
     "pool fetch: the remote rows' hub ids are not in the (temporary, empty) HF cache and HF_HUB_OFFLINE=1"),
    (lambda a: _ray(a) == "auto",
     "--ray auto: no Ray cluster runs on this machine"),
    (lambda a: (_ray(a) or "").startswith("ray://"),
     "--ray ray://head:10001: there is no host `head` (and no network)"),
    (lambda a: any(x.startswith("hf:") and x != f"hf:{HUB_ID}" for x in a),
     "a hub id that is not in the temporary HF cache, offline"),
]


def expected_failure(args: list[str]) -> str | None:
    return next((why for pred, why in EXPECTED_FAIL if pred(args)), None)


def prepare(c: Cmd, w: World) -> tuple[list[str], dict[str, str], list[str]]:
    """(argv after `scalectl`, env prefix, shrink notes); raises AssertionError naming the README line."""
    check(not c.problems, f"{c.where()}: " + "; ".join(c.problems))
    try:
        text = substitute(c.form, w)
    except LookupError as e:
        raise ReadmeError(f"{c.where()}: {e}") from None
    words = shlex.split(text)
    if c.kind == "export":
        env = dict(x.split("=", 1) for x in words[1:])
        bad = leftovers(list(env.values()), w)
        check(not bad, f"{c.where()}: unknown placeholder(s) after substitution: " + "; ".join(bad))
        return [], env, []
    env = dict(x.split("=", 1) for x in itertools.takewhile(lambda x: re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", x), words))
    args = words[len(env):]
    check(args[:1] == ["scalectl"], f"{c.where()}: not a scalectl command after substitution: `{text}`")
    args = args[1:]
    bad = leftovers(args, w)
    check(not bad, f"{c.where()}: unknown placeholder(s) after substitution (`scalectl {shlex.join(args)}`): "
          + "; ".join(bad))
    args, notes = shrink(args)
    return args, env, notes


# ================================================================ the fast tests (no model)


def test_parser_on_a_snippet():
    text = "\n".join([
        "prose", "```sh", "scalectl a --x 1 \\", "  --y 2   # why", "# a comment", "",
        "scalectl pool list [--pool P] | pool show NAME; scalectl index --view v|w", "make test",
        "scalectl report --tasks a,\\", "b,\\", "c", "```", "```python", "scalectl nope", "```",
    ])
    got = [(c.line, c.form, c.kind) for c in readme_commands(text)]
    assert got == [
        (3, "scalectl a --x 1 --y 2", "scalectl"),
        (7, "scalectl pool list --pool P", "scalectl"),
        (7, "scalectl pool show NAME", "scalectl"),
        (7, "scalectl index --view v", "scalectl"),
        (7, "scalectl index --view w", "scalectl"),
        (8, "make test", "not-run"),
        (9, "scalectl report --tasks a,b,c", "scalectl"),
    ]
    pipe = readme_commands("```sh\nscalectl pool list --json | jq .\n```\n")
    assert [c.kind for c in readme_commands("```sh\nexport SCALECTL_POOL=x\n```\n")] == ["export"]
    assert pipe[1].problems and "NOT_RUN" in pipe[1].problems[0]


def test_every_readme_command_is_classified_and_substituted(tmp_path):
    """Fast: every README command is either run below (all its placeholders known) or in NOT_RUN with a reason."""
    cmds = readme_commands()
    assert any(c.kind == "scalectl" for c in cmds), "no scalectl command found in README.md's ```sh blocks"
    w, errors = DryWorld(tmp_path), []
    for c in cmds:
        try:
            if c.kind in ("scalectl", "export"):
                prepare(c, w)
            else:
                check(not c.problems, f"{c.where()}: " + "; ".join(c.problems))
        except ReadmeError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


def test_world_values_exist():
    names = {a["name"] for a in tomllib.loads((ROOT / DEMO_MANIFEST).read_text())["adapters"]}
    assert set(ADAPTERS) <= names and HUB_ID.split("/")[1] not in names
    assert all((ROOT / d / "adapter_model.safetensors").is_file() for d in ADAPTER_DIRS + [HUB_SOURCE])


def test_substitution_and_shrink_examples(tmp_path):
    w = DryWorld(tmp_path)
    c = Cmd(1, "x", "scalectl eval --method ilc --task bbh-8 --pool P --view balanced --steps 40")
    args, _, notes = prepare(c, w)
    assert args == ["eval", "--method", "ilc", "--task", ONE_TASK, "--pool", DEMO_POOL, "--view", "balanced",
                    "--steps", "2", "--limit", "1", "--global", "3", "--local", "2"] and len(notes) == 2
    args, _, _ = prepare(Cmd(2, "x", "scalectl compose --merger ties --adapters a,b --out c3/ --merge-into-base full/"), w)
    assert args[4] == "grid-return,grid-position" and all(Path(args[i]).is_relative_to(tmp_path) for i in (6, 8))
    with pytest.raises(AssertionError, match="line 3.*ALL-CAPS placeholder 'THING'"):
        prepare(Cmd(3, "x", "scalectl pool show THING"), w)
    with pytest.raises(AssertionError, match="line 4.*outside the temporary directory"):
        prepare(Cmd(4, "x", "scalectl audit export --out /elsewhere"), w)
    args, _, _ = prepare(Cmd(5, "x", "scalectl eval --method scale --seeds 42,52 --task bbh-8 --pool P --ray"), w)
    assert "--ray" in args and _ray(args) == "local" and _opt(args, "--ray-workers") == "2"  # `--ray` alone, as written
    assert expected_failure(["eval", "--ray", "auto"]) and not expected_failure(["eval", "--ray"])


# ================================================================ the slow test: every command, in order

try:
    _CMDS = [c for c in readme_commands() if c.kind in ("scalectl", "export")]
except Exception as e:  # README.md unreadable mid-edit: one failing item says so
    _CMDS = [Cmd(0, "README.md", "scalectl ?", problems=[f"cannot parse README.md: {e!r}"])]
_ids: dict[str, int] = {}


def _unique(c: Cmd) -> str:
    _ids[c.id] = _ids.get(c.id, 0) + 1
    return c.id if _ids[c.id] == 1 else f"{c.id}-{_ids[c.id]}"


_PARAMS = [pytest.param(c, id=_unique(c)) for c in _CMDS]
# What `make demo` leaves behind, which the README's first commands assume ("once `make demo` has run, or after
# `scalectl pool add --manifest registry/smollm2-skills.toml` and `scalectl index --view balanced`"): the demo
# pool, registered (unless the README's own commands register it) and indexed.
PRELUDE = ([] if any(re.search(r"\bpool add\b.*--manifest[ =]" + re.escape(DEMO_MANIFEST), c.form) for c in _CMDS)
           else [["pool", "add", "--manifest", DEMO_MANIFEST]]) + [["index", "--view", "balanced", "--pool", DEMO_POOL]]


# Ray keeps process-global state (a local instance, a failed Ray Client connection leaves client mode half set up,
# and the next local ray.init() then fails), so a command with --ray runs as its own process, as a user runs it.
# Ray Client's connection timeouts (5 s growing to 30 s; read when ray is imported) are 1 s there, so an
# unreachable ray:// address fails in seconds.
# RAY_TMPDIR is the test's own, so no other Ray instance's address file (`ray start` elsewhere) is joined.
RAY_PROCESS_ENV = {"RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "1", "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "1"}


def foreign_ray() -> list[str]:
    """GCS addresses of Ray instances running on this machine (other people's: ours run in subprocesses and end)."""
    from ray._private.services import find_gcs_addresses

    return sorted(find_gcs_addresses())


def _invoke(args: list[str]):
    from scalectl.cli import app

    t0 = time.perf_counter()
    if _ray(args) is not None:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        p = subprocess.run([sys.executable, "-m", "scalectl", *args], cwd=os.getcwd(), env={**env, **RAY_PROCESS_ENV},
                           capture_output=True, text=True, timeout=1200)
        r = SimpleNamespace(exit_code=p.returncode, stdout=p.stdout, stderr=p.stderr, exc_info=None, exception=None,
                            output=p.stdout + p.stderr)
        return r, time.perf_counter() - t0
    try:
        return runner.invoke(app, args), time.perf_counter() - t0
    finally:
        ray = sys.modules.get("ray")  # a separate process would leave no Ray instance behind
        if ray is not None and getattr(ray, "is_initialized", lambda: False)():
            ray.shutdown()


def _tail(s: str) -> str:
    s = (s or "").rstrip()
    return s if len(s) <= TAIL else "..." + s[-TAIL:]


def _report(c: Cmd, args: list[str], notes: list[str], r, secs: float) -> str:
    exc = ""
    if r.exc_info and not isinstance(r.exception, SystemExit):
        exc = "\n--- exception\n" + _tail("".join(traceback.format_exception(*r.exc_info)))
    return (f"{c.where()}\n--- ran: scalectl {shlex.join(args)}  ({secs:.1f} s)"
            + (f"\n--- shrunk: {'; '.join(notes)}" if notes else "")
            + f"\n--- exit code {r.exit_code}\n--- stdout\n{_tail(r.stdout)}\n--- stderr\n{_tail(r.stderr)}{exc}")


@pytest.fixture(scope="module")
def world(embedded_home, tmp_path_factory):
    w = World(tmp_path_factory.mktemp("readme"))
    w.home.mkdir(parents=True)
    (w.home / "models").symlink_to(embedded_home / "models")  # the one-time GGUF conversion, reused
    repo = w.hub_cache / ("models--" + HUB_ID.replace("/", "--"))
    shutil.copytree(ROOT / HUB_SOURCE, repo / "snapshots" / HUB_COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(HUB_COMMIT)
    w.outs.mkdir()
    # Commands run in a directory of their own whose entries are the repository's top level, symlinked: the
    # README's relative inputs (registry/...) resolve, and what a command writes to a default relative path
    # (`compose --task` writes ./composed-MERGER-TASK/) lands here, not in the working tree.
    w.cwd.mkdir()
    for entry in ROOT.iterdir():
        if not entry.name.startswith(".") and entry.name not in ("scalectl", "scalectl.egg-info"):
            (w.cwd / entry.name).symlink_to(entry)
    w.ray_tmp = tempfile.mkdtemp(prefix="ray-readme-", dir="/tmp")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in w.env().items():
            mp.setenv(k, v)
        mp.chdir(w.cwd)
        for args in PRELUDE:
            r, _ = _invoke(args)
            assert r.exit_code == 0, f"prelude `scalectl {shlex.join(args)}` failed:\n{r.output}"
    yield w
    shutil.rmtree(w.ray_tmp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("cmd", _PARAMS)
def test_readme_command(cmd: Cmd, world: World, monkeypatch):
    for k, v in world.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(world.cwd)  # the README's relative paths (registry/...) are the repository's (symlinked)
    args, env, notes = prepare(cmd, world)
    if cmd.kind == "export":
        world.exports.update(env)
        return
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    why = expected_failure(args)
    if why is not None and _ray(args) == "auto" and (others := foreign_ray()):
        pytest.skip(f"{cmd.where()}: another Ray instance runs on this machine ({', '.join(others)}); `--ray auto` "
                    "would join it (Ray's legacy auto-detection scans processes), so its offline failure is not testable now")
    r, secs = _invoke(args)
    if why is None:
        assert r.exit_code == 0, _report(cmd, args, notes, r, secs)
    else:
        err = r.stderr
        assert r.exit_code != 0, f"expected to fail offline ({why}) but exited 0: update EXPECTED_FAIL\n" + \
            _report(cmd, args, notes, r, secs)
        assert err.endswith("\n") and err.count("\n") == 1 and err.strip(), \
            f"expected exactly one stderr line ({why})\n" + _report(cmd, args, notes, r, secs)
