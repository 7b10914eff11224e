"""The child side of reasonrl.sandbox: sets up the isolation, then execs the untrusted program.

Run by sandbox.run() as `python -I -S sandbox_boot.py <spec.json> <error fd>`; standard library only (it
must not import reasonrl or anything slow). Steps, in the "namespaces" mode (root on Linux):

    unshare(mount, network, pid, ipc, uts) -> fork: the child is pid 1 of the new pid namespace
    child: tmpfs over the sandbox root; the program's files on a size-limited tmpfs `work/`; the interpreter's
           prefix bind-mounted at `python/`; a fresh /proc; every other mount remounted read-only;
           rlimits; setgroups/setgid/setuid to an unused uid; no_new_privs; chdir work/; execve
    boot:  waits for pid 1 and exits with its status (128 + signal when it was killed)

When pid 1 exits, or boot dies (PR_SET_PDEATHSIG), the kernel kills every process left in the namespace.
The "rlimits" mode skips the namespaces and the uid change: rlimits, a fresh directory and a process group.
A setup failure is written to the error fd (closed on a successful exec) and the boot exits 125.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
_CLONE_NEWPID, _CLONE_NEWNET = 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
_SETUP_FAILED = 125

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (elsewhere the parent's process-group kill has to do)."""
    if not sys.platform.startswith("linux"):
        return
    _check(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(_SETUP_FAILED)


def _mount_points() -> list[str]:
    """Mount points from /proc/self/mountinfo (field 5; spaces are escaped as \\040)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].encode().decode("unicode_escape") for line in f]
    return list(dict.fromkeys(points))


def _setup_namespaces(spec: dict) -> tuple[str, str]:
    """Mounts (see the module docstring). Returns (work directory, interpreter path) inside the sandbox."""
    root, limits = spec["root"], spec["limits"]
    work, prefix = os.path.join(root, "work"), os.path.join(root, "python")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")
    os.mkdir(work)
    os.mkdir(prefix)
    uid = spec["uid"]
    _mount("tmpfs", work, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={limits['disk_mb']}m,mode=0700,uid={uid},gid={uid}")
    _mount(sys.base_prefix, prefix, None, _MS_BIND | _MS_REC)
    _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    for point in _mount_points():
        if point != work:
            # Best effort per mount (a few pseudo-filesystems refuse); the uid change covers what is left.
            _libc.mount(None, point.encode(), None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY, None)
    executable = os.path.realpath(sys._base_executable)  # type: ignore[attr-defined]
    relative = os.path.relpath(executable, os.path.realpath(sys.base_prefix))
    python = os.path.join(prefix, relative) if not relative.startswith("..") else executable
    return work, python


def _write_files(work: str, files: dict[str, str], uid: int | None) -> None:
    for name, content in files.items():
        path = os.path.join(work, name)
        if os.path.dirname(name):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
        if uid is not None:
            os.chown(path, uid, uid)


def _set_limits(limits: dict) -> None:
    mb = 1 << 20
    for which, value in (
        (resource.RLIMIT_CPU, limits["cpu_s"]),
        (resource.RLIMIT_AS, limits["memory_mb"] * mb),
        (resource.RLIMIT_FSIZE, limits["file_size_mb"] * mb),
        (resource.RLIMIT_NPROC, limits["max_processes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_CORE, 0),
    ):
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            if sys.platform.startswith("linux"):
                raise
            # macOS refuses some limits (RLIMIT_AS among them): keep the others


def _child(spec: dict, error_fd: int) -> None:
    """pid 1 of the sandbox: set up, then exec the program (never returns)."""
    _die_with_parent()
    namespaces = spec["mode"] == "namespaces"
    if namespaces:
        work, python = _setup_namespaces(spec)
    else:
        work, python = os.path.join(spec["root"], "work"), sys.executable
        os.mkdir(work, 0o700)
    _write_files(work, spec["files"], spec["uid"] if namespaces else None)
    argv = [python if a == "{python}" else a for a in spec["argv"]]
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": work,
        "TMPDIR": work,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }
    if namespaces:
        env["LD_LIBRARY_PATH"] = os.path.join(os.path.dirname(os.path.dirname(python)), "lib")
    _set_limits(spec["limits"])
    if namespaces:
        os.setgroups([])
        os.setgid(spec["uid"])
        os.setuid(spec["uid"])
    if sys.platform.startswith("linux"):
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    os.chdir(work)
    os.set_inheritable(error_fd, False)  # closes on exec: the parent reads EOF, meaning "started"
    os.execve(argv[0], argv, env)


def _wait(pid: int) -> int:
    """Wait for pid; its exit code, or 128 + the signal that killed it."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def main(spec_path: str, error_fd: int) -> int:
    try:
        with open(spec_path) as f:
            spec = json.load(f)
        _die_with_parent()
        if spec["mode"] == "namespaces":
            _check(
                _libc.unshare(_CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID | _CLONE_NEWIPC | _CLONE_NEWUTS), "unshare"
            )
        pid = os.fork()
    except BaseException as e:
        os.write(error_fd, f"sandbox setup failed: {type(e).__name__}: {e}".encode())
        return _SETUP_FAILED
    if pid == 0:
        try:
            _child(spec, error_fd)
        except BaseException as e:
            os.write(error_fd, f"sandbox setup failed: {type(e).__name__}: {e}".encode())
        os._exit(_SETUP_FAILED)
    os.close(error_fd)
    return _wait(pid)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
