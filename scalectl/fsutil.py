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
from typing import Callable, Iterator

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


class StaleTemporaryWarning(UserWarning):
    """A temporary left beside an output by a killed process, removed now (the CLI prints it)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(target: Path) -> list[Path]:
    """Remove the temporaries (``.NAME.tmp-PID-*``, ``.NAME.old-PID``) that processes no longer alive left beside
    ``target``; returns what was removed."""
    import re
    import warnings

    removed = []
    pat = re.compile(rf"^\.{re.escape(target.name)}\.(?:tmp|old)-(\d+)(?:-.*)?$")
    for p in target.parent.iterdir() if target.parent.is_dir() else []:
        m = pat.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            if ".old-" in p.name and not target.exists():  # killed between moving the old output away and the new in
                os.replace(p, target)
                warnings.warn(f"restored {target} from {p}, which a killed writer had moved away",
                              StaleTemporaryWarning, stacklevel=3)
                continue
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
            warnings.warn(f"removed {p}, left by a process that was killed while writing {target}",
                          StaleTemporaryWarning, stacklevel=3)
    return removed


@contextlib.contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """An exclusive lock on ``target`` for one writer (a ``.NAME.wlock`` file beside it, removed after; callers may
    hold their own ``.NAME.lock`` around it, as the embedded model's one-time conversion does)."""
    import fcntl

    lock = target.with_name(f".{target.name}.wlock")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, file_mode())
    except OSError as e:
        raise ScalectlError(f"cannot write {target}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ScalectlError(f"another scalectl is writing {target} now; wait for it or choose another output"
                                ) from None
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool = False, before_replace: Callable[[], None] | None = None,
               after_replace: Callable[[], None] | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success rename it into place.

    One writer at a time (an exclusive lock on the target); ``overwrite`` is checked again at the rename, so a
    directory that appeared meanwhile is never replaced without it. On any exception (KeyboardInterrupt
    included) the temporary directory is removed, so no partial output is ever visible at ``target``; the
    temporaries a killed writer left beside it are removed (and reported) by the next write.

    ``before_replace`` and ``after_replace`` run with the lock held, right before and right after the new directory
    is renamed into place (a registry row of the output dropped before its files change, and written after them):
    a failure or a signal in ``after_replace`` removes the output again, so it stays only once both succeeded.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise ScalectlError(f"output directory {target} exists; pass --overwrite to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ScalectlError(f"cannot write {target}: {target.parent} is not a directory") from None
    except PermissionError:
        raise ScalectlError(f"cannot write {target}: permission denied in {target.parent}") from None
    with _exclusive(target):
        clean_stale(target)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
        except OSError as e:  # a name too long for the file system, a read-only directory, ...
            raise ScalectlError(f"cannot write {target}: {e.strerror or e}") from None
        placed = False
        try:
            os.chmod(tmp, dir_mode())  # mkdtemp makes it private; the output is an ordinary directory
            yield tmp
            # writers inside may have made private files: the usual modes, before anything is visible at target
            apply_umask_modes(tmp)
            if target.exists() and not overwrite:  # appeared while we wrote
                raise ScalectlError(f"output directory {target} appeared while writing; pass --overwrite to replace it")
            if before_replace is not None:
                before_replace()
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
                os.replace(tmp, target)
                placed = True
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
                placed = True
            if after_replace is not None:
                after_replace()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if placed and after_replace is not None:  # in place, but what had to follow it did not happen
                shutil.rmtree(target, ignore_errors=True)
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
