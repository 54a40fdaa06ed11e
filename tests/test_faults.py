"""Fault injection: ``pool add``, ``compose`` and ``eval`` killed (SIGKILL, SIGINT) at seeded random points, and
writers racing each other. After every fault the registry is intact (``PRAGMA integrity_check``), every row's files
exist and ``pool verify`` passes, a ``pool add`` left all of its rows or none, the next write of a killed compose's
output cleans (and reports) what the killed one left, and a killed eval's run reads "interrupted", never "running".

The commands run as real processes (``python -m scalectl``); the kill times are drawn from ``random.Random(seed)``
over the duration of an unkilled run of the same command, so a failure names its seed, signal and delay."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import write_bbh
from typer.testing import CliRunner

from scalectl.cli import app

runner = CliRunner()
PY = [sys.executable, "-m", "scalectl"]
SIGNALS = (signal.SIGKILL, signal.SIGINT)
N_POINTS = 8  # kill points per command in the default run; the slow sweeps take more


# ---------------------------------------------------------------- plumbing


@pytest.fixture
def home() -> Path:
    return Path(os.environ["SCALECTL_HOME"])  # the autouse fixture's home: the subprocesses get it too


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _run(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(PY + [str(a) for a in args], env=_env(), capture_output=True, text=True, timeout=timeout)


def _timed(args: list[str]) -> float:
    """How long an unkilled run of ``args`` takes (it must succeed): the window the kill times are drawn from."""
    t0 = time.monotonic()
    r = _run(args)
    assert r.returncode == 0, r.stderr
    return time.monotonic() - t0


def _killed(args: list[str], delay: float | Callable[[], bool], sig: int) -> tuple[int, str]:
    """Start ``args``, send ``sig`` after ``delay`` seconds, or once ``delay()`` is true (polled), unless it
    finished first; wait; (exit status, stderr)."""
    p = subprocess.Popen(PY + [str(a) for a in args], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    if callable(delay):
        while p.poll() is None and not delay():
            time.sleep(0.02)
        if p.poll() is None:
            p.send_signal(sig)
    else:
        try:
            p.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            p.send_signal(sig)
    _, err = p.communicate(timeout=180)
    return p.returncode, err


def _note(where: str, rc: int, err: str, *more) -> None:
    """With SCALECTL_FAULTS_VERBOSE=1 (and pytest -s): each kill point's outcome, to see what a sweep reached."""
    if os.environ.get("SCALECTL_FAULTS_VERBOSE"):
        last = (err.strip().splitlines() or [""])[-1][:90]
        print(f"{where}: exit {rc}; {last!r}", *more)


def _interrupt_is_quiet(rc: int, err: str, where: str) -> None:
    """What a SIGINT prints. Reaching scalectl's commands it is one ``error: interrupted`` line (exit 130), or
    nothing more (typer's own exit 130 while it parses the command line); a traceback only ever comes from the
    interpreter still importing scalectl (every scalectl frame an import or the entry point), never from its code.
    A SIGINT landing in a finalizer is dropped by Python ("Exception ignored in: ..."): the command goes on."""
    err = re.sub(r"Exception ignored in[^\n]*\n(?:[ T][^\n]*\n)*?KeyboardInterrupt[^\n]*\n?", "", err)
    if "Traceback" in err:
        importing = False  # outermost first: a scalectl function is only allowed below a scalectl import
        for file, fn in re.findall(r'File "[^"]*/scalectl/([^"]+)", line \d+, in (\S+)', err):
            importing = importing or (fn == "<module>" and file != "__main__.py")
            assert importing or fn in ("<module>", "main"), (where, err)
        assert err.rstrip().endswith("KeyboardInterrupt"), (where, err)
        return
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) <= 1, (where, err)
    if errors:
        # 130, or (now and then, CPython's doing) a death by SIGINT after the line: a shell shows $? 130 for both
        assert rc in (130, -signal.SIGINT) and errors[0] == "error: interrupted; nothing was left half-written", (
            where, rc, err)
        assert err.splitlines()[-1] == errors[0], (where, err)


def _registry_rows(home: Path) -> list[dict]:
    """The registry file is intact and every adapter row's files exist; its adapter rows."""
    db = home / "registry.db"
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        con.row_factory = sqlite3.Row
        if not con.execute("select 1 from sqlite_master where name = 'adapters'").fetchone():
            return []
        rows = [dict(r) for r in con.execute("select * from adapters")]
        orphans = con.execute("select count(*) from examples where adapter_id not in (select id from adapters)")
        assert orphans.fetchone()[0] == 0
    finally:
        con.close()
    for r in rows:
        if r["status"] != "remote":
            assert Path(r["path"]).is_dir() and Path(r["weight_file"]).is_file(), r
    return rows


def _verify_ok(pool: str | None = None) -> None:
    r = runner.invoke(app, ["pool", "verify", "--json"] + (["--pool", pool] if pool else []))
    assert r.exit_code == 0, r.output
    assert all(v["status"] in ("ok", "remote") for v in json.loads(r.stdout))


def _running_runs(home: Path) -> int:
    """How many run rows say ``running`` (0 while the registry or its runs table is not there yet)."""
    db = home / "registry.db"
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        if not con.execute("select 1 from sqlite_master where name = 'runs'").fetchone():
            return 0
        return con.execute("select count(*) from runs where status = 'running'").fetchone()[0]
    except sqlite3.OperationalError:  # locked or mid-creation: not yet
        return 0
    finally:
        con.close()


def _consistent(home: Path, pool: str | None = None) -> list[dict]:
    rows = _registry_rows(home)
    _verify_ok(pool)
    return rows


def _copies(tmp_path: Path, src: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        dst = tmp_path / "copies" / f"c{i:02d}"
        shutil.copytree(src, dst)
        out.append(dst)
    return out


def _temporaries(out: Path) -> list[Path]:
    """What a writer keeps beside ``out`` while it writes: ``.NAME.tmp-*``, ``.NAME.old-*``, ``.NAME.wlock``."""
    return sorted(p for p in out.parent.glob(f".{out.name}.*") if re.match(rf"\.{re.escape(out.name)}\.(tmp-|old-|wlock$)",
                                                                              p.name))


def _complete_adapter(out: Path) -> str:
    """``out`` is one whole PEFT adapter: config and weights read back, the weights load; their sha256."""
    from safetensors.torch import load_file

    from scalectl.adapters import inspect_adapter

    info = inspect_adapter(out)
    assert load_file(str(out / "adapter_model.safetensors"))
    assert (out / "scalectl.json").is_file() and (out / "scalectl_provenance.json").is_file()
    return info.sha256


def _points(seed: int, n: int, window: float) -> list[tuple[int, int, float]]:
    """n kill points (index, signal, delay): the signals alternate, the delays uniform over the window (+10%)."""
    rng = random.Random(seed)
    return [(i, SIGNALS[i % 2], rng.uniform(0.0, window * 1.1)) for i in range(n)]


# ---------------------------------------------------------------- killed pool add


def _sweep_pool_add(home: Path, tmp_path: Path, src: Path, n: int, seed: int, n_copies: int = 30) -> None:
    copies = _copies(tmp_path, src, n_copies)
    manifest = tmp_path / "pool.json"
    manifest.write_text(json.dumps({"adapters": [{"source": str(c), "tags": ["copy"], "source_task": "t"}
                                                 for c in copies]}))

    def args(i: int, pool: str) -> list[str]:
        if i % 4 < 2:
            return ["pool", "add", *copies, "--pool", pool]
        return ["pool", "add", "--manifest", manifest, "--pool", pool]

    window = max(_timed(args(0, "unkilled-dirs")), _timed(args(2, "unkilled-manifest")))
    for i, sig, delay in _points(seed, n, window):
        pool = f"k{i}"
        where = f"seed={seed} point={i} {signal.Signals(sig).name} after {delay:.3f}s ({args(i, pool)[2]})"
        rc, err = _killed(args(i, pool), delay, sig)
        rows = [r for r in _consistent(home) if r["pool"] == pool]
        _note(where, rc, err, f"rows={len(rows)}")
        assert len(rows) in (0, n_copies), (where, len(rows))  # all or nothing
        if rc == 0 or f"registered {n_copies} adapter(s)" in err:
            assert len(rows) == n_copies, where
        if sig == signal.SIGINT:
            _interrupt_is_quiet(rc, err, where)
            if "error: interrupted" in err and not rows:
                assert "registered" not in err, where
        _verify_ok(pool)
    # the killed calls left nothing in the way: the same pools can be added now, completely
    r = runner.invoke(app, ["pool", "add", "--manifest", str(manifest), "--pool", "after"])
    assert r.exit_code == 0, r.output
    assert len([r for r in _consistent(home) if r["pool"] == "after"]) == n_copies


def test_killed_pool_add_is_all_or_nothing(home, tmp_path, llama_adapters):
    _sweep_pool_add(home, tmp_path, llama_adapters[0], N_POINTS, seed=20240611)


@pytest.mark.slow
def test_killed_pool_add_is_all_or_nothing_many_points(home, tmp_path, llama_adapters):
    _sweep_pool_add(home, tmp_path, llama_adapters[1], 30, seed=7, n_copies=40)


# ---------------------------------------------------------------- killed compose


def _pool_of_two(llama_adapters) -> str:
    r = runner.invoke(app, ["pool", "add", str(llama_adapters[0]), str(llama_adapters[1]), "--pool", "P"])
    assert r.exit_code == 0, r.output
    return f"{llama_adapters[0].name},{llama_adapters[1].name}"


def _sweep_compose(home: Path, tmp_path: Path, llama_adapters, n: int, seed: int) -> None:
    names = _pool_of_two(llama_adapters)

    def args(out: Path) -> list[str]:
        return ["compose", "--adapters", names, "--pool", "P", "--out", out]

    window = _timed(args(tmp_path / "unkilled"))
    for i, sig, delay in _points(seed, n, window):
        out = tmp_path / "outs" / f"c{i}"
        again = i % 3 == 2  # every third point kills an --overwrite of an output registered before
        if again:
            assert runner.invoke(app, args(out)).exit_code == 0
        where = f"seed={seed} point={i} {signal.Signals(sig).name} after {delay:.3f}s overwrite={again}"
        rc, err = _killed(args(out) + (["--overwrite", "--weights", "0.2,0.8"] if again else []), delay, sig)
        if sig == signal.SIGINT:
            _interrupt_is_quiet(rc, err, where)
        rows = [r for r in _consistent(home, "P") if r["pool"] == "P" and r["name"] == out.name]
        if out.exists():  # never a half-written output: a whole adapter or nothing
            sha = _complete_adapter(out)
            assert not rows or rows[0]["sha256"] == sha, where  # a row describes the files that are there
        if rows:
            assert out.is_dir() and Path(rows[0]["path"]) == out.resolve(), where
        if rc == 0:
            assert rows and out.is_dir(), where
        if sig == signal.SIGINT and "error: interrupted" in err and not again:
            assert not out.exists() or rows, (where, "an interrupted compose left an unregistered output")
        left = _temporaries(out)
        _note(where, rc, err, f"out={out.exists()} row={bool(rows)} left={[t.name for t in left]}")
        # the next command that writes this output cleans what the killed one left, and says so
        r = runner.invoke(app, args(out) + ["--overwrite"])
        assert r.exit_code == 0, (where, r.output)
        assert _temporaries(out) == [], (where, left, _temporaries(out))
        for t in left:
            if ".wlock" not in t.name:
                assert (f"removed {t}" in r.stderr) or (f"from {t}" in r.stderr), (where, t, r.stderr)
        _complete_adapter(out)
        rows = [r for r in _consistent(home, "P") if r["pool"] == "P" and r["name"] == out.name]
        assert len(rows) == 1, where


def test_killed_compose_leaves_a_whole_output_or_none(home, tmp_path, llama_adapters):
    _sweep_compose(home, tmp_path, llama_adapters, N_POINTS, seed=31337)


@pytest.mark.slow
def test_killed_compose_many_points(home, tmp_path, llama_adapters):
    _sweep_compose(home, tmp_path, llama_adapters, 20, seed=99)


def test_a_kill_inside_the_write_is_cleaned_by_the_next_write(home, tmp_path, llama_adapters):
    """Deterministic: SIGKILL while the temporary directory is half-written (inside the lock); while the old output
    has been moved aside and the new one is not yet in place; and once the new one is in place but not yet
    registered. No row ever describes files that are not there; the next compose cleans, restores, reports."""
    names = _pool_of_two(llama_adapters)
    out = tmp_path / "o"
    for hook in ("write_safetensors", "replace", "register"):
        code = (
            "import os, signal, sys\n"
            "import scalectl.adapters as ad, scalectl.fsutil as fs, scalectl.registry as rg\n"
            f"hook = {hook!r}\n"
            "if hook == 'write_safetensors':\n"
            "    orig = ad.write_safetensors\n"
            "    def w(path, *a, **k):\n"
            "        orig(path, *a, **k); path.write_bytes(path.read_bytes()[:100]); os.kill(os.getpid(), 9)\n"
            "    ad.write_safetensors = w\n"
            "elif hook == 'replace':\n"
            "    real = os.replace\n"
            "    def rep(a, b):\n"
            "        real(a, b)\n"
            "        if '.old-' in str(b): os.kill(os.getpid(), 9)\n"
            "    fs.os.replace = rep\n"
            "else:\n"
            "    rg.Registry.add_sources = lambda *a, **k: os.kill(os.getpid(), 9)\n"
            "from scalectl.cli import app\n"
            "app(sys.argv[1:], prog_name='scalectl')\n")
        args = ["compose", "--adapters", names, "--pool", "P", "--out", str(out), "--overwrite"]
        p = subprocess.run([sys.executable, "-c", code, *args], env=_env(), capture_output=True, text=True, timeout=180)
        assert p.returncode == -9, p.stderr
        left = _temporaries(out)
        rows = [x for x in _consistent(home, "P") if x["name"] == out.name]  # no row of files that are not there
        if hook == "write_safetensors":  # the first write: nothing in place
            assert not out.exists() and any(".tmp-" in t.name for t in left), left
        elif hook == "replace":  # the old output is aside, the new one not yet in place
            assert not out.exists() and {t.name.split("-")[0] for t in left} >= {".o.tmp", ".o.old"}, left
            assert rows == []
        else:  # in place, whole, not registered
            assert rows == [] and _complete_adapter(out) and not [t for t in left if ".wlock" not in t.name]
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        assert _temporaries(out) == []
        for t in left:
            if ".tmp-" in t.name:
                assert f"removed {t}" in r.stderr, r.stderr
            if ".old-" in t.name:
                assert f"restored {out} from {t}" in r.stderr, r.stderr
        _complete_adapter(out)
        assert [x for x in _consistent(home, "P") if x["name"] == out.name]


def test_an_interrupted_overwrite_leaves_no_row_without_files(home, tmp_path, llama_adapters, monkeypatch):
    """Ctrl-C (or any error) after an --overwrite replaced a registered output but before it was registered again:
    the output is removed, and so is the row that described the files it replaced (no row without its files)."""
    import scalectl.registry as registry
    from scalectl.registry import Registry

    names = _pool_of_two(llama_adapters)
    out = tmp_path / "mine"
    ok = ["compose", "--adapters", names, "--pool", "P", "--out", str(out)]
    assert runner.invoke(app, ok).exit_code == 0
    assert Registry().find("mine", "P")["path"] == str(out.resolve())

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(registry.Registry, "add_sources", interrupted)
        r = runner.invoke(app, ok + ["--overwrite", "--weights", "0.2,0.8"])
    assert r.exit_code == 130 and r.stderr == "error: interrupted; nothing was left half-written\n", r.stderr
    assert not out.exists()
    assert [x for x in _consistent(home, "P") if x["name"] == "mine"] == []
    assert runner.invoke(app, ok).exit_code == 0 and _consistent(home, "P")



def test_an_interrupt_python_wrapped_is_the_same_one_line(home, tmp_path, llama_adapters, monkeypatch):
    """Ctrl-C landing in a class body's ``__set_name__`` (torch imports lazily, inside a command) reaches scalectl
    as a RuntimeError caused by the KeyboardInterrupt (Python 3.11): still one line, exit 130; an error that no
    interrupt caused still propagates as itself."""
    import scalectl.registry as registry

    class Hook:
        def __set_name__(self, owner, name):
            raise KeyboardInterrupt

    def wrapped(*a, **k):
        try:
            type("Late", (), {"hook": Hook()})  # what an import creating a class does
        except KeyboardInterrupt as e:  # Python >= 3.12 lets it through unwrapped: wrap it as 3.11 does
            raise RuntimeError("Error calling __set_name__") from e

    def plain(*a, **k):
        raise RuntimeError("not an interrupt")

    ok = ["compose", "--adapters", _pool_of_two(llama_adapters), "--pool", "P", "--out", str(tmp_path / "mine")]
    with monkeypatch.context() as m:
        m.setattr(registry.Registry, "add_sources", wrapped)
        r = runner.invoke(app, ok)
    assert r.exit_code == 130 and r.stderr == "error: interrupted; nothing was left half-written\n", r.stderr
    assert not (tmp_path / "mine").exists()
    with monkeypatch.context() as m:
        m.setattr(registry.Registry, "add_sources", plain)
        r = runner.invoke(app, ok)
    assert isinstance(r.exception, RuntimeError) and str(r.exception) == "not an interrupt"


# ---------------------------------------------------------------- killed eval


def _sweep_eval(home: Path, tmp_path: Path, llama_base: Path, n: int, seed: int, timed: bool = True) -> None:
    """n kill points drawn over the window; with ``timed``, two more (each signal) sent once the run's row exists."""
    bbh = write_bbh(tmp_path / "bbh", {
        "tiny_tf": [{"input": f"t{i} and f{i % 3}", "target": "True" if i % 2 else "False"} for i in range(18)],
        "tiny_yn": [{"input": f"is {i} even?", "target": "yes" if i % 2 == 0 else "no"} for i in range(17)]})
    args = ["eval", "--base-only", "--task", "bbh/tiny_tf,tiny_yn", "--bbh-dir", bbh, "--base", llama_base,
            "--limit", "4", "--json"]
    window = _timed(args)
    seen = {x["id"] for x in json.loads(runner.invoke(app, ["runs", "list", "--json"]).stdout)}  # the unkilled run
    assert len(seen) == 1
    recorded = 0

    def recorded_now() -> Callable[[], bool]:  # a new row says running: a kill now must leave it interrupted
        before = _running_runs(home)
        return lambda: _running_runs(home) > before

    points = _points(seed, n, window) + ([(n + k, sig, None) for k, sig in enumerate(SIGNALS)] if timed else [])
    for i, sig, delay in points:
        delay = recorded_now() if delay is None else delay
        at = "once the run was recorded" if callable(delay) else f"after {delay:.3f}s"
        where = f"seed={seed} point={i} {signal.Signals(sig).name} {at}"
        rc, err = _killed(args, delay, sig)
        if sig == signal.SIGINT:
            _interrupt_is_quiet(rc, err, where)
        _registry_rows(home)
        r = runner.invoke(app, ["runs", "list", "--json"])
        assert r.exit_code == 0, r.output
        runs = json.loads(r.stdout)
        assert not [x for x in runs if x["status"] == "running"], (where, runs)
        new = [x for x in runs if x["id"] not in seen]
        seen |= {x["id"] for x in runs}
        _note(where, rc, err, [x["status"] for x in new])
        assert len(new) <= 1, where
        recorded += len(new)
        for run in new:
            if sig == signal.SIGKILL and rc == -9:
                assert run["status"] in ("interrupted", "done"), (where, run["status"])
            assert run["status"] != "failed", (where, run["error"])
            if run["status"] == "interrupted":  # killed: found dead later; Ctrl-C: closed by the run itself
                assert ("ended without finishing" in run["error"] if sig == signal.SIGKILL
                        else run["error"].startswith("KeyboardInterrupt")), (where, run["error"])
            if run["status"] == "done":  # a finished run has all of its records
                recs = runner.invoke(app, ["runs", "show", run["id"], "--json"])
                assert len(json.loads(recs.stdout)["records"]) == run["summary"]["n_queries"] == 8, where
            if rc == 0:
                assert run["status"] == "done", where
    assert recorded >= (len(SIGNALS) if timed else 0), "a kill point after the run was recorded left no run row"


def test_killed_eval_reads_interrupted_not_running(home, tmp_path, llama_base):
    _sweep_eval(home, tmp_path, llama_base, N_POINTS, seed=4242)


def test_an_eval_stopped_after_its_first_task_keeps_that_task(home, tmp_path, llama_base):
    """Deterministic: the signal arrives right after the first task's records were written. SIGKILL: the run reads
    "interrupted" from then on; SIGINT: one line, exit 130, the run "interrupted" by itself. Both keep the
    finished task's records, and only them."""
    bbh = write_bbh(tmp_path / "bbh", {
        "tiny_tf": [{"input": f"t{i} and f{i % 3}", "target": "True" if i % 2 else "False"} for i in range(18)],
        "tiny_yn": [{"input": f"is {i} even?", "target": "yes" if i % 2 == 0 else "no"} for i in range(17)]})
    args = ["eval", "--base-only", "--task", "bbh/tiny_tf,tiny_yn", "--bbh-dir", str(bbh), "--base", str(llama_base),
            "--limit", "4"]
    for sig, status in ((signal.SIGKILL, "interrupted"), (signal.SIGINT, "interrupted")):
        code = ("import os, sys\n"
                "import scalectl.registry as rg\n"
                "orig = rg.Registry.add_records\n"
                "def first(self, *a, **k):\n"
                # SIGINT is Ctrl-C's KeyboardInterrupt, raised right here (a signal sent to oneself is delivered at
                # the interpreter's next check, which a finalizer can swallow: that made this test flaky)
                + (f"    orig(self, *a, **k); os.kill(os.getpid(), {int(sig)})\n" if sig == signal.SIGKILL
                   else "    orig(self, *a, **k); raise KeyboardInterrupt\n") +
                "rg.Registry.add_records = first\n"
                "from scalectl.cli import app\n"
                "app(sys.argv[1:], prog_name='scalectl')\n")
        p = subprocess.run([sys.executable, "-c", code, *args], env=_env(), capture_output=True, text=True, timeout=180)
        if sig == signal.SIGKILL:
            assert p.returncode == -9, p.stderr
        else:
            assert p.returncode == 130 and p.stderr.splitlines()[-1] == (
                "error: interrupted; nothing was left half-written"), p.stderr
        runs = json.loads(runner.invoke(app, ["runs", "list", "--json"]).stdout)
        run = runs[-1]
        assert run["status"] == status, run
        if sig == signal.SIGINT:
            assert run["error"].startswith("KeyboardInterrupt"), run["error"]
        shown = json.loads(runner.invoke(app, ["runs", "show", run["id"], "--json"]).stdout)
        assert {r["task"] for r in shown["records"]} == {"bbh/tiny_tf"} and len(shown["records"]) == 4
        _registry_rows(home)


@pytest.mark.slow
def test_killed_eval_many_points(home, tmp_path, llama_base):
    _sweep_eval(home, tmp_path, llama_base, 12, seed=5, timed=False)  # the timed points: the default run's


# ---------------------------------------------------------------- races


_HOLD = (  # a compose that stops inside its write (holding the output's lock) until a go-file appears
    "import sys, time\n"
    "from pathlib import Path\n"
    "import scalectl.adapters as ad\n"
    "inside, go = Path(sys.argv[1]), Path(sys.argv[2])\n"
    "orig = ad.write_safetensors\n"
    "def held(*a, **k):\n"
    "    inside.write_text('x')\n"
    "    t = time.monotonic()\n"
    "    while not go.exists() and time.monotonic() - t < 120: time.sleep(0.02)\n"
    "    return orig(*a, **k)\n"
    "ad.write_safetensors = held\n"
    "from scalectl.cli import app\n"
    "app(sys.argv[3:], prog_name='scalectl')\n")


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_two_writers_of_one_compose_output(home, tmp_path, llama_adapters):
    """The second writer of an --out fails at once with one line; the first lands whole and registered."""
    names = _pool_of_two(llama_adapters)
    refs = {}
    for w in ("0.3,0.7", "0.7,0.3"):
        ref = tmp_path / f"ref-{w}"
        assert runner.invoke(app, ["compose", "--adapters", names, "--pool", "P", "--weights", w, "--out", str(ref),
                                   "--no-register"]).exit_code == 0
        refs[w] = _sha(ref / "adapter_model.safetensors")
    assert len(set(refs.values())) == 2
    out = tmp_path / "shared"
    for first, second, extra in (("0.3,0.7", "0.7,0.3", []), ("0.7,0.3", "0.3,0.7", ["--overwrite"])):
        inside, go = tmp_path / f"inside-{first}", tmp_path / f"go-{first}"
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD, str(inside), str(go), "compose", "--adapters", names, "--pool", "P",
             "--weights", first, "--out", str(out), *extra], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        try:
            t = time.monotonic()
            while not inside.exists():
                assert holder.poll() is None, holder.communicate()
                assert time.monotonic() - t < 120
                time.sleep(0.05)
            r = _run(["compose", "--adapters", names, "--pool", "P", "--weights", second, "--out", out, "--overwrite"])
            assert r.returncode == 1, (r.returncode, r.stderr)
            assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
            assert "another scalectl is writing" in r.stderr, r.stderr
        finally:
            go.write_text("go")
            _, herr = holder.communicate(timeout=180)
        assert holder.returncode == 0, herr
        assert _complete_adapter(out) and _sha(out / "adapter_model.safetensors") == refs[first]
        assert _temporaries(out) == []
        rows = [x for x in _consistent(home, "P") if x["name"] == "shared"]
        assert len(rows) == 1 and rows[0]["sha256"] == refs[first]


def test_racing_composes_leave_one_whole_output(home, tmp_path, llama_adapters):
    """Several composes to one --out at once: each succeeds or fails with one line, and what is left is exactly one
    of their outputs, registered with its own hash."""
    names = _pool_of_two(llama_adapters)
    weights = ["0.1,0.9", "0.5,0.5", "0.9,0.1"]
    refs = set()
    for w in weights:
        ref = tmp_path / f"ref-{w}"
        assert runner.invoke(app, ["compose", "--adapters", names, "--pool", "P", "--weights", w, "--out", str(ref),
                                   "--no-register"]).exit_code == 0
        refs.add(_sha(ref / "adapter_model.safetensors"))
    out = tmp_path / "raced"
    for _ in range(2):
        procs = [subprocess.Popen(PY + ["compose", "--adapters", names, "--pool", "P", "--weights", w, "--out",
                                        str(out), "--overwrite"], env=_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for w in weights]
        results = [(p.wait(timeout=180), p.communicate()[1]) for p in procs]
        assert any(rc == 0 for rc, _ in results), results
        for rc, err in results:
            if rc != 0:
                assert rc == 1 and err.count("\n") == 1 and err.startswith("error: "), (rc, err)
                assert "another scalectl is writing" in err or "already registered" in err, err
        assert _sha(out / "adapter_model.safetensors") in refs
        _complete_adapter(out)
        assert _temporaries(out) == []
        rows = [x for x in _consistent(home, "P") if x["name"] == "raced"]
        assert len(rows) == 1 and rows[0]["sha256"] == _sha(out / "adapter_model.safetensors")


def test_pool_add_racing_pool_verify(home, tmp_path, llama_adapters):
    """``pool add`` of many adapters while ``pool verify`` re-hashes the registry (from a registry that does not
    exist yet, then from a populated one): both succeed, or one fails with one line; the registry stays whole."""
    copies = _copies(tmp_path, llama_adapters[2], 30)
    rng = random.Random(8)
    for rnd in range(3):
        pool = f"race{rnd}"
        add = subprocess.Popen(PY + ["pool", "add", *map(str, copies), "--pool", pool], env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.0, 0.4))
        ver = subprocess.Popen(PY + ["pool", "verify"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        for p in (add, ver):
            p.wait(timeout=180)
            err = p.communicate()[1]
            _note(f"round {rnd} {p.args[4]}", p.returncode, err)
            if p.returncode != 0:
                assert err.count("\n") == 1 and err.startswith("error: "), (p.args[4], p.returncode, err)
        rows = [r for r in _consistent(home) if r["pool"] == pool]
        assert len(rows) == (30 if add.returncode == 0 else 0)


@pytest.mark.parametrize("stop", ["KeyboardInterrupt", "RuntimeError('wrapped') from KeyboardInterrupt()"])
def test_ctrl_c_while_the_cli_imports_is_one_line(stop):
    """Ctrl-C before any command started (Python still importing typer, rich and the CLI): one line, exit 130,
    also when Python wrapped it (a RuntimeError caused by it, as from a class body's ``__set_name__``)."""
    code = ("import sys\n"
            "class Stop:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'scalectl.cli':\n"
            f"            raise {stop}\n"
            "sys.meta_path.insert(0, Stop())\n"
            "sys.argv = ['scalectl', 'pool', 'list']\n"
            "from scalectl.entry import main\n"
            "main()\n")
    p = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 130 and p.stderr == "error: interrupted; nothing was left half-written\n", p.stderr
