"""Atomic file and directory writes: write beside the target, then rename.

Everything written gets the permissions a plain ``open(path, "w")`` / ``os.mkdir`` would give under the
process's umask (0o666 & ~umask for files, 0o777 & ~umask for directories), not the private 0600/0700 of
``tempfile.mkstemp``/``mkdtemp`` or of libraries that write through their own temporary files (safetensors'
``save_file``): shared storage (a Ray cluster's ``SCALECTL_HOME``) relies on the group/other bits.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import ScalectlError


def _umask_by_swapping() -> int:
    old = os.umask(0o077)
    os.umask(old)
    return old


def _proc_umask() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


# Where /proc/self/status has no "Umask:" line (not Linux, or a kernel before 4.7) the umask is read once, here, at
# import: os.umask() can only be read by setting it, which is racy against other threads creating files.
_IMPORT_UMASK = _umask_by_swapping() if _proc_umask() is None else 0o022


def current_umask() -> int:
    """The process's umask, read without changing it: /proc/self/status's ``Umask:`` line (thread-safe, and the
    current one), else the umask at import."""
    u = _proc_umask()
    return _IMPORT_UMASK if u is None else u


def file_mode() -> int:
    """What ``open(path, "w")`` gives a new file: 0o666 & ~umask (0644 under umask 022, 0664 under 002)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """What ``os.mkdir`` gives a new directory: 0o777 & ~umask (0755 under umask 022, 0775 under 002)."""
    return 0o777 & ~current_umask()


def apply_umask_modes(root: str | os.PathLike) -> None:
    """Give ``root`` (a directory we just wrote) and everything under it the usual modes: directories
    :func:`dir_mode`, files :func:`file_mode` (executable ones 0o777 & ~umask). Links are left alone."""
    dm, fm = dir_mode(), file_mode()
    xm = dm  # an executable file keeps its x bits, as the umask allows them
    os.chmod(root, dm)
    for here, dirs, files in os.walk(root):
        for d in dirs:
            p = os.path.join(here, d)
            if not os.path.islink(p):
                os.chmod(p, dm)
        for n in files:
            p = os.path.join(here, n)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                want = xm if st.st_mode & 0o111 else fm
                if stat.S_IMODE(st.st_mode) != want:
                    os.chmod(p, want)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success rename it into place.

    On any exception (KeyboardInterrupt included) the temporary directory is removed,
    so no partial output is ever visible at ``target``.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise ScalectlError(f"output directory {target} exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, dir_mode())  # mkdtemp makes it private; the output is an ordinary directory
        yield tmp
        # writers inside may have made private files (safetensors' save_file writes 0600): the usual modes, before
        # anything is visible at target
        apply_umask_modes(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """Open a temporary file beside ``target``; rename it into place when the block succeeds.

    ``kwargs`` go to :func:`open` (``encoding``, ``newline``)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())  # mkstemp makes it private; the output is an ordinary file (as open() makes it)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
