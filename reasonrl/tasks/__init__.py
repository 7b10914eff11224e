"""Tasks: a name in the config -> train and held-out eval Examples.

    task = load_task(TaskConfig(name="reasoning_gym:basic_arithmetic", options={"max_terms": 2}))
    task = load_task(TaskConfig(name="jsonl", path="data.jsonl", prompt_field="question"))
    task.train, task.eval                                  # list[Example], disjoint by question text

reasoning_gym:<dataset> generates train and eval with two seeds derived from task.seed; eval problems whose
question is also in train are replaced, so eval holds exactly task.eval_size unseen problems. jsonl files
are split by a hash of (task.seed, prompt): the same file and seed always give the same split.
Prompt = [system prompt, if any] + user message (question + "\\n" + task.instruction).
"""
from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from reasonrl.config import TaskConfig
from reasonrl.registry import Registry
from reasonrl.types import Example, Message

_RESERVED_OPTIONS = {"seed": "task.seed", "size": "task.train_size / task.eval_size"}
"""reasoning-gym config fields that the task sets itself."""
_EVAL_TRIES_PER_EXAMPLE = 20
"""How many candidates per wanted eval problem before giving up on finding distinct unseen ones."""


@dataclass(frozen=True)
class Task:
    name: str
    train: list[Example]
    eval: list[Example]
    """Held-out problems; no question here appears in train."""


TaskLoader = Callable[[TaskConfig], Task]
TASKS: Registry[TaskLoader] = Registry("task")


def load_task(cfg: TaskConfig) -> Task:
    """Build the task named by cfg.name ('<kind>' or '<kind>:<argument>'). Raises ValueError on bad input."""
    kind = cfg.name.partition(":")[0]
    if kind not in TASKS:
        raise ValueError(f"unknown task kind {kind!r} in task.name={cfg.name!r}; known: "
                         f"{', '.join(TASKS.names())} (e.g. 'reasoning_gym:basic_arithmetic' or 'jsonl')")
    task = TASKS.get(kind)(cfg)
    check_disjoint(task)
    return task


def check_disjoint(task: Task) -> None:
    """Raise if an eval question also appears in train (the held-out set would not be held out)."""
    seen = {prompt_key(e.prompt) for e in task.train}
    leaked = [e.id for e in task.eval if prompt_key(e.prompt) in seen]
    if leaked:
        raise ValueError(f"task {task.name!r}: {len(leaked)} eval examples also appear in train "
                         f"(first: {leaked[0]!r})")


def prompt_key(prompt: list[Message] | str) -> str:
    """A canonical string for a prompt, used to compare and hash problems."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def derive_seed(seed: int, purpose: str) -> int:
    """A stable 31-bit seed for one purpose ('train', 'eval'); Python's hash() is salted per process."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{purpose}".encode()).digest()[:4], "big") >> 1


def make_prompt(question: str, cfg: TaskConfig) -> list[Message]:
    """[system prompt if set] + the question with the instruction on its own line."""
    content = f"{question}\n{cfg.instruction}" if cfg.instruction else question
    system: list[Message] = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    return system + [{"role": "user", "content": content}]


def plain(value: Any) -> Any:
    """Tuples -> lists, recursively, so metadata survives JSON and compares equal after a round trip."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------------------
# reasoning-gym

def reasoning_gym_names() -> list[str]:
    """Every reasoning-gym dataset name (usable as task.name=reasoning_gym:<name>)."""
    from reasoning_gym.factory import DATASETS
    return sorted(DATASETS)


def _rg_config_class(dataset: str) -> type:
    from reasoning_gym.factory import DATASETS
    if dataset not in DATASETS:
        close = difflib.get_close_matches(dataset, DATASETS, n=5, cutoff=0.5)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown reasoning-gym dataset {dataset!r} in task.name{hint} "
                         f"(`reasonrl list` shows all {len(DATASETS)})")
    return DATASETS[dataset][1]


def check_rg_options(dataset: str, options: dict[str, Any]) -> None:
    """Every option must be a field of the dataset's config (and not seed/size, which the task sets)."""
    valid = [f.name for f in fields(_rg_config_class(dataset)) if f.name not in _RESERVED_OPTIONS]
    for key in options:
        if key in _RESERVED_OPTIONS:
            raise ValueError(f"task.options.{key} is set by the task; use {_RESERVED_OPTIONS[key]} instead")
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"task.options.{key} is not an option of reasoning-gym dataset {dataset!r}{hint}; "
                             f"valid options: {', '.join(valid)}")


def _rg_dataset(dataset: str, options: dict[str, Any], seed: int, size: int) -> Any:
    import reasoning_gym
    try:
        return reasoning_gym.create_dataset(dataset, seed=seed, size=size, **options)
    except (AssertionError, ValueError, TypeError) as e:
        raise ValueError(f"reasoning-gym dataset {dataset!r} rejected task.options {options}: "
                         f"{type(e).__name__}: {e}") from e


def _rg_example(entry: dict[str, Any], dataset: str, options: dict[str, Any], cfg: TaskConfig,
                split: str, index: int, source: str) -> Example:
    entry = plain(entry)
    answer = entry.get("answer")
    info = {"dataset": dataset, "config": plain(options), "entry": entry}
    return Example(id=f"{dataset}/{split}/{index}", prompt=make_prompt(entry["question"], cfg),
                   answer=None if answer is None else str(answer), task=cfg.name,
                   metadata={"reasoning_gym": info}, source=source)


@TASKS.register("reasoning_gym")
def load_reasoning_gym(cfg: TaskConfig) -> Task:
    """'reasoning_gym:<dataset>' with cfg.options as the dataset config."""
    dataset = cfg.name.partition(":")[2]
    if not dataset:
        raise ValueError(f"task.name={cfg.name!r} names no dataset; use 'reasoning_gym:<dataset>', "
                         "e.g. 'reasoning_gym:basic_arithmetic'")
    check_rg_options(dataset, cfg.options)
    train_seed, eval_seed = derive_seed(cfg.seed, "train"), derive_seed(cfg.seed, "eval")
    generator = _rg_dataset(dataset, cfg.options, train_seed, cfg.train_size)
    train = [_rg_example(generator[i], dataset, cfg.options, cfg, "train", i,
                         f"{dataset}#seed={train_seed},idx={i}") for i in range(cfg.train_size)]
    tries = _EVAL_TRIES_PER_EXAMPLE * cfg.eval_size + 100
    generator = _rg_dataset(dataset, cfg.options, eval_seed, tries)
    seen = {e.metadata["reasoning_gym"]["entry"]["question"] for e in train}
    held_out: list[Example] = []
    for i in range(tries):
        entry = generator[i]
        if entry["question"] in seen:
            continue  # already in train, or a duplicate within eval
        seen.add(entry["question"])
        held_out.append(_rg_example(entry, dataset, cfg.options, cfg, "eval", len(held_out),
                                    f"{dataset}#seed={eval_seed},idx={i}"))
        if len(held_out) == cfg.eval_size:
            return Task(name=cfg.name, train=train, eval=held_out)
    raise ValueError(f"reasoning-gym dataset {dataset!r} with options {cfg.options} gave only {len(held_out)} "
                     f"distinct problems outside train in {tries} tries, but task.eval_size={cfg.eval_size}; "
                     "lower task.eval_size or task.train_size, or widen task.options")


# ---------------------------------------------------------------------------------------------------------
# JSONL files

def _read_jsonl(path: Path, cfg: TaskConfig) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) for every non-blank line. Raises ValueError('file:line: ...') on a bad line."""
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from e
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            for key, setting in ((cfg.prompt_field, "prompt_field"), (cfg.answer_field, "answer_field")):
                if key not in record:
                    raise ValueError(f"{where}: missing field {key!r} (fields: {', '.join(record)}); "
                                     f"set task.{setting}")
            records.append((lineno, record))
    return records


def _check_messages(prompt: Any, where: str) -> list[Message]:
    ok = isinstance(prompt, list) and prompt and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in prompt)
    if not ok:
        raise ValueError(f"{where}: the prompt must be a string or a non-empty list of "
                         f"{{'role': ..., 'content': ...}} messages, got {str(prompt)[:80]}")
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def file_prompt(prompt: Any, cfg: TaskConfig, where: str) -> list[Message]:
    """A string becomes make_prompt(string). A chat keeps its messages; the system prompt is prepended when
    it has none, and the instruction is appended to its last user message."""
    if isinstance(prompt, str):
        return make_prompt(prompt, cfg)
    messages = _check_messages(prompt, where)
    if cfg.system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": cfg.system_prompt})
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if cfg.instruction and users:
        last = messages[users[-1]]
        messages[users[-1]] = {"role": "user", "content": f"{last['content']}\n{cfg.instruction}"}
    return messages


def split_by_hash(keys: list[str], eval_size: int, seed: int) -> tuple[set[str], int]:
    """The eval keys: the eval_size distinct keys with the smallest sha256(seed, key). Also the count of
    distinct keys."""
    distinct = sorted(set(keys), key=lambda k: hashlib.sha256(f"{seed}\0{k}".encode()).hexdigest())
    return set(distinct[:eval_size]), len(distinct)


@TASKS.register("jsonl")
def load_jsonl(cfg: TaskConfig) -> Task:
    """cfg.path: one JSON object per line with cfg.prompt_field and cfg.answer_field."""
    if not cfg.path:
        raise ValueError("task.name=jsonl needs task.path=<file.jsonl>")
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise ValueError(f"task.path {cfg.path!r} is not a file (resolved to {str(path.resolve())!r}); "
                         "check the path, relative paths start at the working directory")
    rows = [(lineno, record, file_prompt(record[cfg.prompt_field], cfg, f"{path}:{lineno}"))
            for lineno, record in _read_jsonl(path, cfg)]
    keys = [prompt_key(record[cfg.prompt_field]) for _, record, _ in rows]
    eval_keys, distinct = split_by_hash(keys, cfg.eval_size, cfg.seed)
    if distinct <= cfg.eval_size:
        raise ValueError(f"{path} has {distinct} distinct prompts; task.eval_size={cfg.eval_size} leaves "
                         "none for training; lower task.eval_size")
    train: list[Example] = []
    held_out: list[Example] = []
    used: set[str] = set()
    for key, (lineno, record, prompt) in zip(keys, rows):
        split = "eval" if key in eval_keys else "train"
        if split == "eval" and key in used:
            continue  # a duplicate of an eval prompt: keep it out of both splits
        used.add(key)
        out = held_out if split == "eval" else train
        if split == "train" and len(train) >= cfg.train_size:
            continue
        answer = record[cfg.answer_field]
        answer = answer if isinstance(answer, str) or answer is None else json.dumps(answer)  # 12 -> "12"
        metadata = {k: v for k, v in record.items() if k not in (cfg.prompt_field, cfg.answer_field)}
        out.append(Example(id=f"{path.stem}/{split}/{len(out)}", prompt=prompt,
                           answer=answer, task=cfg.name, metadata=metadata, source=f"{path}:{lineno}"))
    return Task(name=cfg.name, train=train, eval=held_out)
