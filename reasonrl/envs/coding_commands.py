"""The coding environment's command language: parse one command from an action text; confine paths.

    parse_command("I will look at it.\\nread utils.py")         -> Command("read", "utils.py", [])
    parse_command("write a.py\\n```python\\nx = 1\\n```")        -> Command("write", "a.py", ["x = 1\\n"])
    parse_command("hello")                                     -> CommandError(usage)
    confine(root, "../x")                                      -> CommandError("... inside the repository ...")

Commands (one per turn; the first command line of the action counts, surrounding prose is ignored):

    ls [dir]            list files                      read <path>       show a file
    write <path>        + one ``` block: the whole new content of the file
    replace <path>      + two ``` blocks: the exact old text (it must occur once), then the new text
    run tests           run the test suite              run <file.py>     run a Python script
    submit              end the episode; the tests decide the reward

Parsing is lenient: case does not matter; a leading "$", ">", "-", "*", "`" or "Action:" is skipped; paths may
be quoted or in backticks; cat/open/view mean read, create means write, edit means replace, test, tests and
pytest mean run tests, python <file> means run <file>, done and finish mean submit. A command line may stand
in a shell or unlabelled ``` block, never in a python block (that is content). Anything else gets the usage.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
_SHELL_TAGS = {"", "bash", "sh", "shell", "console", "text", "txt", "plaintext"}
ALIASES = {
    "ls": "ls",
    "dir": "ls",
    "read": "read",
    "cat": "read",
    "open": "read",
    "view": "read",
    "write": "write",
    "create": "write",
    "replace": "replace",
    "edit": "replace",
    "run": "run",
    "python": "run",
    "python3": "run",
    "test": "test",
    "tests": "test",
    "pytest": "test",
    "submit": "submit",
    "done": "submit",
    "finish": "submit",
}
USAGE = """Commands (one per reply):
  ls                 list the files
  read <path>        show a file
  write <path>       then the complete new content of the file in a ``` block
  replace <path>     then two ``` blocks: the exact old text, then the new text
  run tests          run the test suite
  run <file.py>      run a Python script
  submit             finish (the tests are run one last time and decide the reward)"""


class CommandError(ValueError):
    """A malformed command or a refused path; its message is shown to the agent."""


@dataclass(frozen=True)
class Command:
    name: str
    """ls, read, write, replace, test (run the tests), run (a script) or submit."""
    arg: str = ""
    """The path, for the commands that take one ('' for ls: the whole repository)."""
    blocks: list[str] = field(default_factory=list)
    """The ``` blocks after the command line: the new content (write); old and new text (replace)."""
    line: str = ""
    """The command line as the agent wrote it (echoed in the observation)."""


def _clean_line(line: str) -> str:
    line = line.strip()
    line = re.sub(r"^(?:[$>#*`-]+\s*|(?:action|command)\s*:\s*)+", "", line, flags=re.IGNORECASE)
    return re.sub(r"(?<=[A-Za-z0-9])\.$", "", line.rstrip("`*: ")).strip()  # "Done." -> "Done"; ".." stays


def _unquote(word: str) -> str:
    return word.strip("`'\"")


def _as_command(line: str) -> tuple[str, str] | None:
    """(name, argument) when the cleaned line is a well-formed command, else None."""
    words = [w for w in (_unquote(w) for w in line.split()) if w]
    if not words or words[0].lower() not in ALIASES:
        return None
    name, rest = ALIASES[words[0].lower()], words[1:]
    lowered = [w.lower() for w in rest]
    if name == "run" and (lowered in (["tests"], ["test"]) or "unittest" in lowered or "pytest" in lowered):
        return "test", ""
    if name in ("test", "submit") and not rest:
        return name, ""
    if name == "ls" and len(rest) <= 1:
        return "ls", rest[0] if rest else ""
    if name in ("read", "write", "replace", "run") and len(rest) == 1:
        return name, rest[0]
    return None


def _candidate_lines(text: str) -> list[tuple[int, str]]:
    """(offset just past the line, cleaned line) for each line that may hold a command: the lines outside
    ``` blocks and those inside shell or unlabelled blocks (a python block is content, never a command)."""
    content = [(m.start(), m.end()) for m in FENCE.finditer(text) if m.group(1).lower() not in _SHELL_TAGS]
    out, offset = [], 0
    for raw in text.split("\n"):
        start, offset = offset, offset + len(raw) + 1
        if raw.strip().startswith("```") or any(a <= start < b for a, b in content):
            continue
        out.append((min(offset, len(text)), _clean_line(raw)))
    return out


def parse_command(text: str) -> Command:
    """The first command in an action text. Raises CommandError with the usage when there is none."""
    malformed = ""
    for end, line in _candidate_lines(text):
        parsed = _as_command(line)
        if parsed is None:
            if not malformed and line.split() and line.split()[0].lower() in ALIASES:
                malformed = line
            continue
        name, arg = parsed
        if name not in ("write", "replace"):
            return Command(name, arg, [], line)
        later = [m.group(2) for m in FENCE.finditer(text) if m.start() >= end]
        wanted = 1 if name == "write" else 2
        if len(later) < wanted:
            what = (
                "the complete new content in a ``` block"
                if name == "write"
                else "two ``` blocks: the exact old text, then the new text"
            )
            raise CommandError(f"`{name} {arg}` needs {what} after the command line.\n\n{USAGE}")
        return Command(name, arg, later[:wanted], line)
    if malformed:
        raise CommandError(f"Could not read the command `{malformed[:80]}`.\n\n{USAGE}")
    raise CommandError(f"No command found: start a line with one of the commands.\n\n{USAGE}")


def confine(root: str, path: str) -> str:
    """The absolute path of `path` inside the repository at `root`. Refuses absolute paths, '..', '~' and
    any path through a symbolic link, so nothing outside root can be read or written."""
    path = path.strip()
    if any(ord(c) < 32 for c in path) or len(path) > 255:
        raise CommandError(f"{path[:60]!r}: not a usable file name (control characters, or over 255 characters)")
    if not path or path in (".", "./"):
        return root
    if path.startswith(("/", "~", "\\")) or re.match(r"^[A-Za-z]:", path):
        raise CommandError(f"{path!r}: give a path relative to the repository (e.g. `read {os.path.basename(path)}`)")
    parts = [p for p in PurePosixPath(path.replace("\\", "/")).parts if p != "."]
    if ".." in parts:
        raise CommandError(f"{path!r}: '..' is not allowed; every file is inside the repository")
    current = root
    for part in parts:
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise CommandError(f"{path!r}: symbolic links are not followed")
    real_root = os.path.realpath(root)
    if os.path.commonpath([os.path.realpath(current), real_root]) != real_root:
        raise CommandError(f"{path!r} is outside the repository")
    return current
