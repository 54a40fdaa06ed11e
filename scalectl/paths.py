"""Where scalectl keeps its state: ``$SCALECTL_HOME`` or the platform's user data dir."""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "SCALECTL_HOME"


def home() -> Path:
    """The scalectl home directory (created on first use)."""
    env = os.environ.get(ENV_HOME)
    if env:
        p = Path(env).expanduser()
    else:
        import platformdirs

        p = Path(platformdirs.user_data_dir("scalectl", appauthor=False))
    p.mkdir(parents=True, exist_ok=True)
    return p


def registry_path() -> Path:
    return home() / "registry.db"


def models_dir() -> Path:
    p = home() / "models"
    p.mkdir(parents=True, exist_ok=True)
    return p
