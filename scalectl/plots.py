"""PNG figures for the audit and the HTML report. This is the only module that imports matplotlib.

Figures are drawn with the Agg backend on a private :class:`matplotlib.figure.Figure` (no pyplot state, no
display needed). Every function returns the PNG bytes and, given ``path``, also writes them atomically: to a
temporary file beside ``path``, then ``os.replace`` (an interrupted write never leaves a partial PNG).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Sequence

from .errors import EvalError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_DPI = 110


def _figure(width: float, height: float, ncols: int = 1):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise EvalError(f"plots need matplotlib ({e}); pip install matplotlib") from None

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` at ``path``: written to a temporary file in the same directory, then renamed into place."""
    from .fsutil import atomic_file

    path = Path(path)
    if path.is_dir():
        raise EvalError(f"{path} is a directory; give a file path")
    try:
        with atomic_file(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise EvalError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def _finish(fig, path: str | os.PathLike | None) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    data = buf.getvalue()
    if path is not None:
        write_atomic(path, data)
    return data


def calibration_png(points: Sequence[dict[str, Any]], curve: dict[str, Any], path: str | os.PathLike | None = None,
                    title: str | None = None) -> bytes:
    """Two panels: support loss vs query accuracy per (task, view) (one colour per view), and the coverage-risk
    curve of the agreement score (a step curve, with the full-coverage risk as a dashed line).

    Args:
        points: ``[{task, view, support_loss, accuracy}]`` (:func:`scalectl.audit.calibration`'s ``points``).
        curve: :func:`scalectl.audit.coverage_risk`'s result.
        path: also write the PNG here (atomically).
        title: the figure's title.
    """
    fig, (ax1, ax2) = _figure(10, 4.2, ncols=2)
    views = list(dict.fromkeys(p["view"] for p in points))
    for v in views:
        xs = [p["support_loss"] for p in points if p["view"] == v]
        ys = [100 * p["accuracy"] for p in points if p["view"] == v]
        ax1.scatter(xs, ys, label=v, s=36, alpha=0.8)
    ax1.set_xlabel("view support loss (mean cross-entropy)")
    ax1.set_ylabel("view query accuracy (%)")
    ax1.set_title("support loss vs accuracy, per (task, view)")
    if views:
        ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    pts = curve.get("points") or []
    cov = [0.0] + [100 * p["coverage"] for p in pts]
    risk = [100 * pts[0]["risk"]] + [100 * p["risk"] for p in pts] if pts else []
    if pts:
        ax2.step(cov, risk, where="pre", marker="o", markersize=3, label="agreement as confidence")
        ax2.axhline(100 * curve["full_risk"], linestyle="--", color="grey", label="risk at full coverage")
        ax2.legend(fontsize=8)
    ax2.set_xlim(0, 100)
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("coverage (% of queries answered)")
    ax2.set_ylabel("risk (% wrong among answered)")
    ax2.set_title(f"coverage-risk (AURC {100 * curve.get('aurc', float('nan')):.1f})")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def heatmap_png(names: Sequence[str], matrix: Any, path: str | os.PathLike | None = None, title: str | None = None,
                label: str = "RMS cosine") -> bytes:
    """A K x K heatmap (e.g. pairwise RMS cosine) with the names on both axes (ticks dropped above 60 names)."""
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    k = len(names)
    side = min(14.0, max(4.5, 0.32 * k + 2.5))
    fig, (ax,) = _figure(side + 1.2, side)
    im = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=max(1.0, float(np.nanmax(m)) if m.size else 1.0))
    fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    if k <= 60:
        ax.set_xticks(range(k), labels=list(names), rotation=90, fontsize=7)
        ax.set_yticks(range(k), labels=list(names), fontsize=7)
        if k <= 12:
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if m[i, j] > 0.6 else "white")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title or f"pairwise {label} ({k} adapters)")
    return _finish(fig, path)


def accuracy_png(series: Sequence[tuple[str, dict[str, float]]], path: str | os.PathLike | None = None,
                 title: str | None = None) -> bytes:
    """Grouped horizontal bars: for each task (and ``macro``), one bar per series (a run or an aggregation).

    Args:
        series: ``[(label, {task: accuracy fraction})]``; tasks missing from a series are left blank.
    """
    import numpy as np

    tasks = list(dict.fromkeys(t for _, acc in series for t in acc))
    n_s = max(1, len(series))
    height = min(30.0, max(3.0, 0.22 * len(tasks) * n_s + 1.5))
    fig, (ax,) = _figure(9, height)
    bar = 0.8 / n_s
    y = np.arange(len(tasks))
    for i, (label, acc) in enumerate(series):
        vals = [100 * acc[t] if t in acc and acc[t] is not None else np.nan for t in tasks]
        ax.barh(y + i * bar, vals, height=bar, label=label)
    ax.set_yticks(y + bar * (n_s - 1) / 2, labels=[t.removeprefix("bbh/") for t in tasks], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("normalized exact match (%)")
    ax.grid(axis="x", alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return _finish(fig, path)
