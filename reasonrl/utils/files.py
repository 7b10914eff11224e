"""Safe writes into places two processes can share (the model cache, a run directory).

Every file or directory is written under a unique temporary name beside its target and renamed into place,
so a reader sees the old version or the new one, never half of one. Where two writers could meet, an advisory
lock (flock) serialises them: the kernel drops it when its holder exits, however it exits, so a killed process
never holds a lock forever.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to path through a unique temporary file in the same directory and an atomic rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temp_dir_for(target: Path) -> Path:
    """A fresh, unique directory beside target (same filesystem, so it can be renamed onto it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))


def publish_dir(tmp: Path, target: Path) -> None:
    """Move a finished directory onto target, replacing what was there; a crash leaves one or the other."""
    if target.exists():
        old = temp_dir_for(target)
        os.replace(target, old / target.name)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def write_dir_atomically(target: Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a fresh temporary directory, then rename it onto target."""
    tmp = temp_dir_for(target)
    try:
        write(tmp)
        publish_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def remove_stale_temps(target: Path) -> None:
    """Temporary directories and files left beside target by killed writers (call while holding its lock)."""
    for p in target.parent.glob(f".{target.name}.*.tmp"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


class Busy(Exception):
    """The lock is held by another live process (its pid, if it wrote one)."""

    def __init__(self, path: Path, pid: int | None):
        super().__init__(f"{path} is locked by process {pid}")
        self.path, self.pid = path, pid


def _holder(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


@contextmanager
def file_lock(
    path: Path, wait: bool = True, on_wait: Callable[[int | None], None] | None = None, remove: bool = False
) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing; it records the holder's pid).

    wait=False raises Busy at once when another process holds it; wait=True blocks, calling on_wait(pid)
    first so the waiting process can say what it waits for. remove=True deletes the lock file on release
    (safe: a process that locked a file that was then removed sees that and locks the new one)."""
    path = Path(path)
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the directory was removed just now (an empty runs/ of a refused run)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            if not wait:
                os.close(fd)
                raise Busy(path, _holder(path)) from None
            if on_wait is not None:
                on_wait(_holder(path))
                on_wait = None
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file we locked: lock the current one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        if remove:
            Path(path).unlink(missing_ok=True)
        else:
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases the lock
