"""The ``scalectl`` command line: one Typer sub-app per command group.

Commands parse their options, call one library function, and hand the result to
:mod:`scalectl.report`. Library errors (``ScalectlError``) become one red line on
stderr and a non-zero exit; heavy imports stay inside the commands so ``--help`` is fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from typer.core import TyperGroup

from .. import __version__
from ..entry import INTERRUPTED, from_interrupt
from ..errors import ScalectlError

OPTIONAL_VALUE = {"--ray": "local"}  # options whose value may be left out: ``--ray`` alone means ``--ray local``


def optional_values(args: list[str]) -> list[str]:
    """``--ray`` followed by nothing or by another option becomes ``--ray=local`` (click has no optional values)."""
    out = []
    for i, a in enumerate(args):
        if a == "--":
            return out + args[i:]
        if a in OPTIONAL_VALUE and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out.append(f"{a}={OPTIONAL_VALUE[a]}")
        else:
            out.append(a)
    return out


def _say_warnings(seen) -> None:
    """What the library reported on the way (stale temporaries it cleaned): one line each on stderr; any other
    warning is shown as Python would have shown it."""
    import warnings

    from .. import report
    from ..fsutil import StaleTemporaryWarning

    for w in seen:
        if issubclass(w.category, StaleTemporaryWarning):
            report.warn(str(w.message))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


class _Group(TyperGroup):
    """Turns library errors into one-line messages with the error's exit code."""

    def main(self, args=None, *a, **kw):
        import sys

        _narrow()  # --wide holds for one invocation (CliRunner runs many in one process)
        try:
            return super().main(optional_values(list(sys.argv[1:] if args is None else args)), *a, **kw)
        finally:
            _narrow()

    def invoke(self, ctx: click.Context):
        import warnings

        from ..fsutil import StaleTemporaryWarning

        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always", StaleTemporaryWarning)
                try:
                    return super().invoke(ctx)
                finally:
                    _say_warnings(seen)
        except ScalectlError as e:
            from .. import report

            # messages are plain text (report.error prints them as such): "pip install 'scalectl[ray]'" or a path
            # with [brackets] is not rich markup
            report.error(str(e))
            raise typer.Exit(e.exit_code) from None
        except OSError as e:  # the file system: a name too long, a read-only directory, a full disk, ...
            from .. import report

            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            report.error(f"{e.strerror or e}{where}")
            raise typer.Exit(1) from None
        except RecursionError:
            from .. import report

            report.error("an input is nested too deeply to read (JSON or TOML nested hundreds of levels)")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            from .. import report

            report.error(INTERRUPTED)
            raise typer.Exit(130) from None
        except Exception as e:
            if not from_interrupt(e):
                raise
            from .. import report

            # Ctrl-C landing inside an import machinery hook: Python 3.11 wraps it ("Error calling __set_name__
            # ... RuntimeError", caused by the KeyboardInterrupt), yet it is the same Ctrl-C
            report.error(INTERRUPTED)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_Group,
    name="scalectl",
    help="Reuse pools of LoRA adapters: register, index, retrieve, compose, evaluate and audit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scalectl {__version__}")
        raise typer.Exit()


def _wide(value: bool) -> bool:
    if value:  # a command's own --wide (default False) must not undo `scalectl --wide`
        from .. import report

        report.set_wide(True)
    return value


def _narrow() -> None:
    import sys

    if "scalectl.report" in sys.modules:  # not imported yet: nothing to reset (and no rich import for --help)
        sys.modules["scalectl.report"].set_wide(False)


# --wide: on the app (`scalectl --wide pool list`) and on the listing commands (`scalectl pool list --wide`)
WideOpt = Annotated[bool, typer.Option("--wide", callback=_wide,
                                       help="Tables show every column, nothing cut (also SCALECTL_WIDE=1).")]


@app.callback()
def _main(
    home: Annotated[Optional[Path], typer.Option("--home", envvar="SCALECTL_HOME",
                                                 help="State directory (registry, converted models).")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
    wide: WideOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", envvar="SCALECTL_VERBOSE",
                                          help="Show the model libraries' own progress bars and notices.")] = False,
) -> None:
    if home is not None:
        os.environ["SCALECTL_HOME"] = str(home)
    if verbose:
        os.environ["SCALECTL_VERBOSE"] = "1"


from . import audit as _audit  # noqa: E402
from . import base as _base  # noqa: E402
from . import compose as _compose  # noqa: E402
from . import demo as _demo  # noqa: E402
from . import eval as _eval  # noqa: E402
from . import index as _index  # noqa: E402
from . import pool as _pool  # noqa: E402
from . import probe as _probe  # noqa: E402
from . import report_cmd as _report_cmd  # noqa: E402
from . import retrieve as _retrieve  # noqa: E402
from . import runs as _runs  # noqa: E402

app.add_typer(_pool.app, name="pool")
app.add_typer(_base.app, name="base")
app.add_typer(_runs.app, name="runs")
app.add_typer(_probe.app, name="probe")
app.add_typer(_audit.app, name="audit")
app.command("eval")(_eval.eval_cmd)
app.command("index")(_index.index_cmd)
app.command("retrieve")(_retrieve.retrieve_cmd)
app.command("compose")(_compose.compose)
app.command("demo")(_demo.demo)
app.command("report")(_report_cmd.report_cmd)

