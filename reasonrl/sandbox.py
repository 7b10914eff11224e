"""Run untrusted programs (model-written code) in a separate, limited, disposable process.

    result = run(["{python}", "main.py"], files={"main.py": "print(1 + 1)"}, limits=Limits(timeout_s=5))
    result.returncode, result.stdout, result.timed_out     # 0, "2\\n", False

Two isolation modes, picked once per process by isolation_mode() (override: REASONRL_SANDBOX=rlimits):

  namespaces  (Linux, run as root) new mount, network, pid, ipc and uts namespaces; no network at all (only
              a down loopback); every mount read-only except a size-limited tmpfs working directory, which
              is also HOME and TMPDIR; a fresh /proc that shows only the sandbox's processes; an unused uid
              (so root's files are unreadable and RLIMIT_NPROC counts only this sandbox); no_new_privs; and
              when the program's pid 1 exits or is killed, the kernel kills everything it started.
  rlimits     (anything else) a fresh temporary directory as cwd, HOME and TMPDIR, the rlimits below, its
              own session, and SIGKILL to its process group afterwards. Not enforced here: network, writes
              outside the directory, and a child that calls setsid() to leave the process group.

Both modes: RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_FSIZE (file size, stdout/stderr included), RLIMIT_NPROC
(processes; not enforced for root in the rlimits mode), RLIMIT_NOFILE, no core dumps, a wall-clock timeout,
and output capped at Limits.output_bytes. "{python}" in argv is the interpreter inside the sandbox
(standard library only in the namespaces mode).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_BOOT = str(Path(__file__).with_name("sandbox_boot.py"))
MODES = ("namespaces", "rlimits")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run."""

    timeout_s: float = 10.0
    """Wall-clock limit; the whole sandbox is SIGKILLed at the deadline."""
    cpu_s: int | None = None
    """CPU seconds (RLIMIT_CPU); None: the wall-clock timeout rounded up, plus 1."""
    memory_mb: int = 512
    """Address space per process (RLIMIT_AS)."""
    file_size_mb: int = 16
    """Largest file a process may write (RLIMIT_FSIZE); stdout and stderr count."""
    max_processes: int = 16
    """Processes and threads (RLIMIT_NPROC)."""
    open_files: int = 256
    """Open file descriptors (RLIMIT_NOFILE)."""
    disk_mb: int = 64
    """Size of the working directory's tmpfs (namespaces mode)."""
    output_bytes: int = 1 << 16
    """Characters of stdout and of stderr kept in the result."""

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "file_size_mb", "max_processes", "open_files", "disk_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"sandbox limit {name} must be > 0, got {getattr(self, name)}")

    def rlimits(self) -> dict[str, int]:
        cpu = self.cpu_s if self.cpu_s is not None else math.ceil(self.timeout_s) + 1
        return {
            "cpu_s": cpu,
            "memory_mb": self.memory_mb,
            "file_size_mb": self.file_size_mb,
            "max_processes": self.max_processes,
            "open_files": self.open_files,
            "disk_mb": self.disk_mb,
        }


@dataclass(frozen=True)
class SandboxResult:
    returncode: int
    """Exit code; 128 + N when signal N ended it (SIGXCPU 24: CPU limit, SIGXFSZ 25: file size, SIGKILL 9)."""
    stdout: str
    stderr: str
    timed_out: bool
    """True when the wall-clock timeout killed it."""
    seconds: float
    mode: str
    """The isolation mode it ran under."""


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not a failure of the program)."""


def _read(file: object, limit: int) -> str:
    file.seek(0)  # type: ignore[attr-defined]
    return file.read(limit).decode("utf-8", errors="replace")  # type: ignore[attr-defined]


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the boot's process group (it leads its own session) and reap the boot."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _wait(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Wait up to timeout_s for proc to exit; True when it did. Uses a pidfd where the kernel has them, since
    Popen.wait(timeout) polls with sleeps of up to 50 ms."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        return bool(select.select([fd], [], [], timeout_s)[0])
    finally:
        os.close(fd)


def sandbox_uids() -> tuple[int, int]:
    """The range of unused uids a namespaced sandbox runs as (one drawn at random per call): 1e6..2e6, or the
    upper half of what /proc/self/uid_map allows inside a user-namespaced container (65536 uids, say)."""
    try:
        with open("/proc/self/uid_map") as f:
            top = max(int(inside) + int(count) for inside, _, count in (line.split() for line in f))
    except (OSError, ValueError):
        top = 65536
    return (1_000_000, 2_000_000) if top > 2_000_000 else (top // 2, top - 3)  # below nobody (65534)


def _spec(mode: str, root: str, argv: list[str], files: dict[str, str], limits: Limits) -> dict:
    for name in files:
        if os.path.isabs(name) or ".." in Path(name).parts:
            raise ValueError(f"sandbox file name {name!r} must be a relative path inside the working directory")
    low, high = sandbox_uids()
    return {
        "mode": mode,
        "root": root,
        "argv": argv,
        "files": files,
        "limits": limits.rlimits(),
        "uid": low + secrets.randbelow(high - low),
    }


def run(
    argv: list[str],
    files: dict[str, str] | None = None,
    limits: Limits = Limits(),
    stdin: bytes = b"",
    mode: str | None = None,
) -> SandboxResult:
    """Run argv (e.g. ["{python}", "main.py"]) in a fresh sandbox holding `files`; see the module docstring.

    Returns after the program ends or its timeout passes; nothing it started is left running (namespaces
    mode). Raises SandboxError when the sandbox cannot be set up."""
    mode = mode or isolation_mode()
    if mode not in MODES:
        raise ValueError(f"sandbox mode {mode!r} is not one of {', '.join(MODES)}")
    root = tempfile.mkdtemp(prefix="reasonrl-sandbox-")
    try:
        spec_path = os.path.join(root, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(_spec(mode, root, list(argv), dict(files or {}), limits), f)
        return _run_boot(spec_path, stdin, limits, mode)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_boot(spec_path: str, stdin: bytes, limits: Limits, mode: str) -> SandboxResult:
    read_fd, write_fd = os.pipe()
    with tempfile.TemporaryFile() as inp, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        inp.write(stdin)
        inp.seek(0)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", _BOOT, spec_path, str(write_fd)],
                stdin=inp,
                stdout=out,
                stderr=err,
                pass_fds=(write_fd,),
                start_new_session=True,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        finally:
            os.close(write_fd)
        try:
            timed_out = not _wait(proc, limits.timeout_s)
        finally:
            _kill_group(proc)  # also after a normal exit: no leftover children in the process group
        seconds = time.monotonic() - start
        with os.fdopen(read_fd, "rb") as errors:
            setup_error = errors.read().decode(errors="replace")
        if setup_error:
            raise SandboxError(setup_error)
        return SandboxResult(
            returncode=proc.returncode,
            stdout=_read(out, limits.output_bytes),
            stderr=_read(err, limits.output_bytes),
            timed_out=timed_out,
            seconds=seconds,
            mode=mode,
        )


@functools.cache
def isolation_mode() -> str:
    """'namespaces' when this machine allows them (Linux, root, and a probe run succeeds), else 'rlimits'.

    REASONRL_SANDBOX=rlimits (or namespaces) forces a mode. Probed once per process (about 0.1 s)."""
    forced = os.environ.get("REASONRL_SANDBOX")
    if forced:
        if forced not in MODES:
            raise ValueError(f"REASONRL_SANDBOX={forced!r} is not one of {', '.join(MODES)}; unset it or pick one")
        return forced
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "rlimits"
    try:
        probe = run(["{python}", "-c", "import socket"], limits=Limits(timeout_s=20), mode="namespaces")
    except (SandboxError, OSError) as e:
        logger.warning("sandbox: namespaces unavailable (%s); using rlimits only", e)
        return "rlimits"
    if probe.returncode != 0:
        logger.warning(
            "sandbox: namespaced probe exited %d (%s); using rlimits only",
            probe.returncode,
            probe.stderr.strip()[-300:],
        )
        return "rlimits"
    return "namespaces"


def describe(limits: Limits = Limits()) -> dict[str, object]:
    """What the sandbox enforces on this machine, for logs and docs."""
    return {"mode": isolation_mode(), **asdict(limits)}
