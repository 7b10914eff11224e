"""code_repos: small Python repositories with a bug report and a failing test suite, for the coding env.

    reasonrl train recipes/coding_agent.yaml      # task.name=code_repos, env.name=coding

One Example per repository directory (reasonrl/data/code_repos/<name>/, or the directories under task.path):
the files of the repository plus a task.json that the agent never sees:

    {"issue": "what is wrong, as a user would report it",
     "test_files": ["test_x.py"],          # unittest files; every test method in them counts for the reward
     "split": "train" | "eval"}            # the held-out repositories (task.options.eval_repos overrides)

Example.metadata holds the repository (files: path -> text), the test files and the test ids found in them
(file, class, method), so the environment needs nothing else. The prompt shows the issue, the file list and
the command language (envs/coding_commands.py). The built-in set is 6 repositories: 4 to train on, 2 held
out (html_escape, dates). task.options: eval_repos (a list of names to hold out instead).
"""

from __future__ import annotations

import json
from pathlib import Path

from reasonrl.config import TaskConfig
from reasonrl.envs.coding_commands import USAGE
from reasonrl.envs.coding_harness import find_tests
from reasonrl.tasks import TASKS, Task, task_options
from reasonrl.types import Example, Message

CODE_REPOS = Path(__file__).parents[1] / "data" / "code_repos"
_SKIP = {"task.json"}


def read_files(directory: Path) -> dict[str, str]:
    """path (relative, '/'-separated) -> text of every file of a repository, task.json and caches left out."""
    files = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if path.is_symlink():
            raise ValueError(f"{path}: task repositories may not contain symbolic links; replace it by a file")
        if not path.is_file() or relative in _SKIP or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        files[relative] = path.read_text(encoding="utf-8")
    return files


def task_prompt(
    issue: str, files: dict[str, str], test_files: list[str], tests: int, system_prompt: str | None
) -> list[Message]:
    listing = "\n".join(f"  {name}" for name in files)
    text = (
        f"Fix the issue below in a small Python repository.\n\nIssue: {issue}\n\nFiles:\n{listing}\n\n"
        f"The tests in {', '.join(test_files)} ({tests} tests) decide your reward; changes to the test files "
        f"are ignored when scoring. The turns are limited.\n\n{USAGE}"
    )
    system: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return system + [{"role": "user", "content": text}]


def read_repo(directory: Path, system_prompt: str | None = None) -> tuple[Example, str]:
    """The Example of one repository directory, and its split ('train' or 'eval')."""
    spec_path = directory / "task.json"
    try:
        spec = json.loads(spec_path.read_text())
        issue, test_files = spec["issue"], list(spec["test_files"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{spec_path}: needs a JSON object with 'issue' and 'test_files' ({e})") from e
    files = read_files(directory)
    missing = [t for t in test_files if t not in files]
    if missing or not test_files:
        raise ValueError(f"{spec_path}: test_files {missing or test_files} are not files of the repository")
    tests = [t for path in test_files for t in find_tests(files[path], path)]
    if not tests:
        raise ValueError(f"{spec_path}: no unittest test methods (test_*) in {test_files}")
    split = spec.get("split", "train")
    if split not in ("train", "eval"):
        raise ValueError(f"{spec_path}: split={split!r} must be 'train' or 'eval'")
    example = Example(
        id=f"code_repos/{directory.name}",
        prompt=task_prompt(issue, files, test_files, len(tests), system_prompt),
        task="code_repos",
        source=str(spec_path),
        metadata={"repo": directory.name, "files": files, "test_files": test_files, "tests": tests},
    )
    return example, split


@TASKS.register("code_repos")
@task_options(eval_repos=(None, "names of the repositories to hold out (None: the built-in held-out ones)"))
def load_code_repos(cfg: TaskConfig) -> Task:
    """Every repository under task.path (default: the built-in ones), split by task.json or eval_repos."""
    root = Path(cfg.path) if cfg.path else CODE_REPOS
    unknown = set(cfg.options) - {"eval_repos"}
    if unknown:
        raise ValueError(f"task code_repos has no option(s) {sorted(unknown)}; the only one is eval_repos")
    directories = sorted(p for p in root.iterdir() if (p / "task.json").is_file()) if root.is_dir() else []
    if not directories:
        raise ValueError(f"task.path={str(root)!r} holds no repositories (directories with a task.json)")
    repos = [read_repo(d, cfg.system_prompt) for d in directories]
    names = [e.metadata["repo"] for e, _ in repos]
    held_out = cfg.options.get("eval_repos")
    if held_out is not None:
        if not isinstance(held_out, list) or set(held_out) - set(names) or set(held_out) >= set(names):
            raise ValueError(f"task.options.eval_repos={held_out!r} must list some (not all) of {names}")
    held = set(held_out) if held_out is not None else {e.metadata["repo"] for e, split in repos if split == "eval"}
    train = [e for e, _ in repos if e.metadata["repo"] not in held]
    eval_ = [e for e, _ in repos if e.metadata["repo"] in held]
    return Task(name=cfg.name, train=train[: cfg.train_size], eval=eval_[: cfg.eval_size])
