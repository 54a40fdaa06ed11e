"""Where scalectl keeps its state: ``$SCALECTL_HOME`` or the platform's user data dir."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ScalectlError

ENV_HOME = "SCALECTL_HOME"


def home() -> Path:
    """The scalectl home directory (created on first use)."""
    env = os.environ.get(ENV_HOME)
    if env:
        p = Path(env).expanduser()
    else:
        import platformdirs

        p = Path(platformdirs.user_data_dir("scalectl", appauthor=False))
    where = f"{ENV_HOME}={env}" if env else f"the scalectl home {p}"
    try:
        p.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ScalectlError(f"{where} is not a directory (a file is in the way); set {ENV_HOME} to a directory"
                            ) from None
    except PermissionError:
        raise ScalectlError(f"cannot create {where}: permission denied; set {ENV_HOME} to a writable directory"
                            ) from None
    return p


def registry_path() -> Path:
    return home() / "registry.db"


def models_dir() -> Path:
    p = home() / "models"
    p.mkdir(parents=True, exist_ok=True)
    return p
