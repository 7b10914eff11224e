"""coding: a long-horizon software-engineering environment in the spirit of SkyRL-v0 / SWE-Gym.

    env.name=coding  task.name=code_repos        (recipes/coding_agent.yaml)

An episode is one small repository with a bug report and a failing unittest suite (tasks/code_repos.py).
reset copies the repository into a fresh temporary directory and shows the issue, the file list and the
command language; each step runs one command of the action text (envs/coding_commands.py: ls, read, write,
replace, run tests, run <file.py>, submit) and answers with its output, truncated to output_chars. The
episode ends on submit or at the turn limit; then the tests run once more, with the original test files
restored, and decide the reward:

    reward = 1 if every test passes else 0                 (partial_credit=False, SWE-bench's "resolved")
    reward = tests passed / tests                           (partial_credit=True)

Both are logged as reward parts `correct` and `tests`. Intermediate steps get 0, so the per-step rewards are
[0, ..., 0, R]. An episode cut by env.max_context_tokens ends with reward 0 (it was never scored).

Safety: file commands act on the copy only (no absolute paths, no '..', no path through a symbolic link;
max_file_kb per file, max_repo_kb and max_files per repository). Code (the tests, scripts) only ever runs in
reasonrl/sandbox.py, on a copy of the files handed to it: with root on Linux, no network, a read-only
filesystem outside a size-limited tmpfs, an unused uid, its own pid namespace; everywhere, CPU, memory,
file-size and process limits and a wall-clock timeout after which everything it started is killed. What a
program writes stays in its sandbox; only write and replace change the repository. close() removes the copy.

Options (env.options): partial_credit, timeout_s (per sandboxed command), test_timeout_s (per test),
memory_mb, max_processes, output_chars, max_file_kb, max_repo_kb, max_files, workers (episodes stepped at once).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reasonrl.envs import ENVS, BaseEnv, EnvContext
from reasonrl.envs.coding_commands import Command, CommandError, confine, parse_command
from reasonrl.envs.coding_harness import find_tests
from reasonrl.sandbox import Limits, SandboxError, SandboxResult, run
from reasonrl.types import Example, Message, StepResult

_HARNESS = Path(__file__).with_name("coding_harness.py")
_HARNESS_NAME, _SPEC_NAME = "_reasonrl_harness.py", "_reasonrl_tests.json"
_SANDBOX_PATH = re.compile(r"/[^\s\"']*?reasonrl-sandbox-[^/\s\"']+/(?:work/)?")  # its random directory
_SIGNALS = {9: "killed (SIGKILL)", 24: "killed: CPU time limit", 25: "killed: file size limit"}
OPTIONS = (
    "partial_credit",
    "timeout_s",
    "test_timeout_s",
    "memory_mb",
    "max_processes",
    "output_chars",
    "max_file_kb",
    "max_repo_kb",
    "max_files",
    "workers",
)


def truncate(text: str, limit: int) -> str:
    """text, or its head and tail around a note of how much was cut."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return f"{text[:head]}\n[... {len(text) - limit} characters cut ...]\n{text[len(text) - (limit - head) :]}"


@ENVS.register("coding")
class CodingEnv(BaseEnv):
    """One episode on one repository; see the module docstring."""

    default_max_turns = 12

    def __init__(
        self,
        ctx: EnvContext,
        partial_credit: bool = False,
        timeout_s: float = 10.0,
        test_timeout_s: float = 3.0,
        memory_mb: int = 512,
        max_processes: int = 16,
        output_chars: int = 2500,
        max_file_kb: int = 64,
        max_repo_kb: int = 512,
        max_files: int = 64,
        workers: int = 4,
        **unknown: object,
    ) -> None:
        super().__init__(ctx)
        if unknown:
            raise ValueError(f"env coding has no option(s) {sorted(unknown)}; known: {', '.join(OPTIONS)}")
        for name, value in (
            ("test_timeout_s", test_timeout_s),
            ("output_chars", output_chars),
            ("max_file_kb", max_file_kb),
            ("max_repo_kb", max_repo_kb),
            ("max_files", max_files),
            ("workers", workers),
        ):
            if not value > 0:
                raise ValueError(f"env.options.{name} must be > 0, got {value}")
        self.limits = Limits(
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            max_processes=max_processes,
            output_bytes=max(4 * output_chars, 1 << 14),
        )
        self.partial_credit, self.test_timeout_s, self.output_chars = bool(partial_credit), test_timeout_s, output_chars
        self.max_file_bytes, self.max_repo_bytes, self.max_files = max_file_kb << 10, max_repo_kb << 10, max_files
        self.workers = workers
        self.root: str | None = None
        self.turn = 0
        self.last = ""

    # -- episode -----------------------------------------------------------------------------------------
    def reset(self, example: Example) -> list[Message]:
        files = example.metadata.get("files")
        if not isinstance(files, dict) or not example.metadata.get("tests"):
            raise ValueError(
                f"example {example.id!r}: the coding environment needs metadata 'files' and 'tests' "
                "(use task.name=code_repos)"
            )
        self.close()
        self.example, self.messages, self.turn = example, list(example.prompt), 0
        self.root = tempfile.mkdtemp(prefix="reasonrl-coding-")
        try:
            for path, text in files.items():
                self._write(path, text)
        except BaseException:
            self.close()
            raise
        self.last = example.prompt[-1]["content"] if example.prompt else ""
        return list(example.prompt)

    def step(self, action: str) -> StepResult:
        if self.root is None or self.example is None:
            raise RuntimeError("step() before reset()")
        self.turn += 1
        action = action.encode("utf-8", "replace").decode("utf-8")  # lone surrogates cannot be written to files
        command: Command | None = None
        try:
            command = parse_command(action)
            output = getattr(self, f"_do_{command.name}")(command)
        except CommandError as e:
            output = str(e)
        text = output if command is None else f"$ {command.line}\n{output}".rstrip()
        self.messages += [{"role": "assistant", "content": action}, {"role": "user", "content": text}]
        self.last = text
        submitted = command is not None and command.name == "submit"
        info = {"commands": [command.name if command else "invalid"]}
        if not submitted and self.turn < self.ctx.max_turns:
            return StepResult(observation=[{"role": "user", "content": text}], reward=0.0, done=False, info=info)
        return self._final(info | {"submitted": submitted})

    def state_key(self) -> str:
        """A hash of the repository's files and the last observation: identical states, identical keys."""
        digest = hashlib.sha1()
        for path, text in sorted(self.files().items()):
            digest.update(f"{len(path)}:{path}{len(text)}:{text}".encode())
        digest.update(self.last.encode())
        return digest.hexdigest()[:16]

    def close(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    @classmethod
    def step_batch(cls, envs: list[BaseEnv], actions: list[str]) -> list[StepResult]:
        """Step the episodes in parallel threads (each command waits on its own sandbox process)."""
        workers = min(getattr(envs[0], "workers", 1), len(envs))
        if workers <= 1:
            return [env.step(action) for env, action in zip(envs, actions)]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda pair: pair[0].step(pair[1]), zip(envs, actions)))

    # -- the repository ----------------------------------------------------------------------------------
    def files(self) -> dict[str, str]:
        """path -> text of every regular file of the copy (symbolic links are skipped)."""
        out: dict[str, str] = {}
        if self.root is None:
            return out
        for directory, dirs, names in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(directory, d)))
            for name in sorted(names):
                full = os.path.join(directory, name)
                if os.path.isfile(full) and not os.path.islink(full):
                    with open(full, encoding="utf-8", errors="replace") as f:
                        out[os.path.relpath(full, self.root).replace(os.sep, "/")] = f.read()
        return out

    def _write(self, path: str, text: str) -> str:
        assert self.root is not None
        full = confine(self.root, path)
        if full == self.root or os.path.isdir(full):
            raise CommandError(f"{path!r} is a directory; give a file name")
        size = len(text.encode())
        if size > self.max_file_bytes:
            raise CommandError(f"{path!r}: {size} bytes is over the limit of {self.max_file_bytes} bytes per file")
        files = self.files()
        relative = os.path.relpath(full, self.root).replace(os.sep, "/")
        others = sum(len(t.encode()) for p, t in files.items() if p != relative)
        if others + size > self.max_repo_bytes or (relative not in files and len(files) >= self.max_files):
            raise CommandError(
                f"the repository may hold at most {self.max_files} files and "
                f"{self.max_repo_bytes} bytes; {path!r} does not fit"
            )
        try:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            confine(self.root, path)  # the directories just made are real directories inside the copy
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:  # a file where a directory should be, a name too long, ...
            raise CommandError(f"cannot write {path!r}: {e.strerror or e}") from e
        return relative

    def _read_file(self, path: str) -> str:
        assert self.root is not None
        full = confine(self.root, path)
        if not os.path.isfile(full):
            hint = "it is a directory; use `ls`" if os.path.isdir(full) else "no such file; use `ls`"
            raise CommandError(f"cannot read {path!r}: {hint}")
        try:
            with open(full, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError as e:
            raise CommandError(f"cannot read {path!r}: {e.strerror or e}") from e

    # -- commands (one method per command name; see coding_commands.py) ---------------------------------
    def _do_ls(self, command: Command) -> str:
        assert self.root is not None
        base = os.path.relpath(confine(self.root, command.arg), self.root).replace(os.sep, "/")
        prefix = "" if base == "." else base.rstrip("/") + "/"
        listing = [f"{p}  ({len(t.encode())} bytes)" for p, t in self.files().items() if p.startswith(prefix)]
        if not listing:
            raise CommandError(f"no files under {command.arg!r}")
        return "\n".join(listing)

    def _do_read(self, command: Command) -> str:
        text = truncate(self._read_file(command.arg), self.output_chars)
        return f"```\n{text}{'' if text.endswith(chr(10)) else chr(10)}```"

    def _do_write(self, command: Command) -> str:
        path = self._write(command.arg, command.blocks[0])
        return f"Wrote {path} ({command.blocks[0].count(chr(10))} lines)."

    def _do_replace(self, command: Command) -> str:
        # A ``` block always ends with a newline; it is not part of the text to match (old may be part of a line).
        old, new = (block[:-1] if block.endswith("\n") else block for block in command.blocks)
        text = self._read_file(command.arg)
        count = text.count(old) if old.strip() else 0
        if count != 1:
            why = (
                "the old text is empty"
                if not old.strip()
                else "the old text was not found (it must match exactly, indentation included)"
                if count == 0
                else f"the old text occurs {count} times; include more lines so it occurs once"
            )
            raise CommandError(f"replace {command.arg}: {why}. Nothing was changed.")
        self._write(command.arg, text.replace(old, new))
        return f"Replaced {old.count(chr(10)) or 1} line(s) in {command.arg}."

    def _do_test(self, command: Command) -> str:
        assert self.example is not None
        files = self.files()
        tests = []
        try:
            for path in self.example.metadata["test_files"]:
                tests += find_tests(files.get(path, ""), path)
        except SyntaxError:
            tests = self.example.metadata["tests"]  # the runner reports the syntax error on each test
        try:
            return self._run_tests(files, tests)[0]
        except SandboxError as e:
            return f"[sandbox error: {e}]"

    def _do_run(self, command: Command) -> str:
        assert self.root is not None
        path = os.path.relpath(confine(self.root, command.arg), self.root).replace(os.sep, "/")
        if not path.endswith(".py") or path not in self.files():
            raise CommandError(f"run {command.arg}: give a .py file of the repository (`ls` lists them)")
        try:
            result = run(["{python}", "-E", "-s", path], self.files(), self.limits)
        except SandboxError as e:
            return f"[sandbox error: {e}]"
        output = (_clean(result.stdout + result.stderr) + _status(result, self.limits)).strip()
        return truncate(output or "(no output)", self.output_chars)

    def _do_submit(self, command: Command) -> str:
        return "Submitted."

    # -- tests and the reward ----------------------------------------------------------------------------
    def _run_tests(self, files: dict[str, str], tests: list[list[str]]) -> tuple[str, list[bool]]:
        """Run tests ([file, class, method]) on files in a fresh sandbox: (readable output, passed per test)."""
        nonce = secrets.token_hex(16)
        spec = json.dumps({"tests": tests, "test_timeout_s": self.test_timeout_s})
        sandbox_files = {**files, _HARNESS_NAME: _HARNESS.read_text(), _SPEC_NAME: spec}
        result = run(["{python}", "-I", "-S", _HARNESS_NAME], sandbox_files, self.limits, stdin=f"{nonce}\n".encode())
        passed: dict[int, bool] = {}
        shown = []
        for line in (result.stdout + result.stderr).splitlines():
            fields = line.split(" ")
            if len(fields) == 3 and fields[0] == nonce and fields[1].isdigit():
                passed.setdefault(int(fields[1]), fields[2] == "1")
            else:
                shown.append(line)
        output = truncate(_clean("\n".join(shown)) + _status(result, self.limits, tests_run=True), self.output_chars)
        return output, [passed.get(i, False) for i in range(len(tests))]

    def _final(self, info: dict) -> StepResult:
        """Score the repository with the original test files restored; end the episode."""
        assert self.example is not None
        meta = self.example.metadata
        files = {**self.files(), **{path: meta["files"][path] for path in meta["test_files"]}}
        try:
            _, passed = self._run_tests(files, meta["tests"])
        except SandboxError as e:
            return StepResult(observation=None, reward=float("nan"), done=True, info=info | {"errors": [str(e)]})
        fraction = sum(passed) / len(passed)
        correct = float(all(passed))
        return StepResult(
            observation=None,
            reward=fraction if self.partial_credit else correct,
            done=True,
            reward_parts={"correct": correct, "tests": fraction},
            info=info | {"tests_passed": sum(passed), "tests_total": len(passed)},
        )


def _clean(text: str) -> str:
    """Sandbox output without the sandbox's random directory, so identical runs read identically."""
    return _SANDBOX_PATH.sub("", text)


def _status(result: SandboxResult, limits: Limits, tests_run: bool = False) -> str:
    if result.timed_out:
        return f"\n[stopped: ran longer than {limits.timeout_s:g} s]"
    if result.returncode > 128:
        return f"\n[{_SIGNALS.get(result.returncode - 128, f'killed by signal {result.returncode - 128}')}]"
    if result.returncode != 0 and not tests_run:
        return f"\n[exit code {result.returncode}]"
    return ""
