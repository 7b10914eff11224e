"""Local data: JSONL, JSON, CSV, Parquet files and Hugging Face datasets, with a field mapping.

    task.name=jsonl   task.path=data.jsonl   one JSON object per line
    task.name=json    task.path=data.json    a JSON array of objects
    task.name=csv     task.path=data.csv     a header row, then one record per row (values are strings)
    task.name=parquet task.path=data.parquet (needs pyarrow)
    task.name=hf      task.path=<save_to_disk directory | dataset name or data directory in the local cache>
                      task.options: {split: train, name: <config>}   (needs `pip install datasets`)

Each record needs task.prompt_field (a string, or a list of chat messages) and task.answer_field, which may
be missing when the record has task.tests_field (unit tests for code_tests). Other fields are kept in
Example.metadata (tests under "tests"). Every record is read and checked before any Example is built: a bad
one raises one ValueError naming the file, the line or row, and the field.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reasonrl.config import TaskConfig
from reasonrl.rewards.code_harness import split_tests
from reasonrl.tasks import (
    ANSWER_INSTRUCTION,
    CODE_INSTRUCTION,
    TASKS,
    Task,
    instruction,
    make_prompt,
    prompt_key,
    task_options,
)
from reasonrl.types import Example, Message

Row = tuple[str, dict[str, Any]]
"""(where, record): where is 'data.jsonl:12', 'data.csv:row 3 (line 4)', 'data.json[5]' ..."""


def read_jsonl(path: Path) -> list[Row]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append((f"{path}:{lineno}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from e
    return rows


def read_json(path: Path) -> list[Row]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from e
    if not isinstance(data, list):
        raise ValueError(
            f"{path}: expected a JSON array of records at the top level, got {type(data).__name__} "
            "(for one object per line use task.name=jsonl)"
        )
    return [(f"{path}[{i}]", record) for i, record in enumerate(data)]


def read_csv(path: Path) -> list[Row]:
    rows = []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for i, record in enumerate(reader, start=1):
            if None in record:
                raise ValueError(
                    f"{path}:row {i} (line {reader.line_num}): more values than the header has "
                    f"columns ({', '.join(reader.fieldnames or [])})"
                )
            rows.append(
                (f"{path}:row {i} (line {reader.line_num})", {k: v for k, v in record.items() if v is not None})
            )
    return rows


def read_parquet(path: Path) -> list[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ValueError("task.name=parquet needs pyarrow: `pip install pyarrow` (or convert the file to JSONL)") from e
    return [(f"{path}:row {i}", record) for i, record in enumerate(pq.read_table(path).to_pylist(), start=1)]


def read_hf(path: str, options: dict[str, Any]) -> list[Row]:
    """A save_to_disk directory, else load_dataset(path) from the local cache (HF_HUB_OFFLINE=1 keeps it
    offline; `make` sets it). options: split (default train), name (the dataset config)."""
    try:
        import datasets
    except ImportError as e:
        raise ValueError(
            "task.name=hf needs the datasets library: `pip install datasets` (or export the data "
            "to JSONL and use task.name=jsonl)"
        ) from e
    unknown = set(options) - {"split", "name"}
    if unknown:
        raise ValueError(f"task.options {sorted(unknown)} are not hf options; use split and name")
    split = options.get("split", "train")
    local = Path(path).expanduser()
    if (local / "dataset_info.json").is_file() or (local / "dataset_dict.json").is_file():
        data = datasets.load_from_disk(str(local))
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise ValueError(f"{path} has splits {', '.join(data)}; set task.options.split to one of them")
            data = data[split]
    else:
        try:
            data = datasets.load_dataset(path, options.get("name"), split=split)
        except Exception as e:
            raise ValueError(
                f"cannot load Hugging Face dataset {path!r} (split {split!r}) from a local "
                f"directory or the cache: {type(e).__name__}: {e}"
            ) from e
    return [(f"{path}[{split}]:row {i}", record) for i, record in enumerate(data, start=1)]


def _messages(prompt: Any, where: str, field: str) -> list[Message]:
    ok = (
        isinstance(prompt, list)
        and prompt
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt
        )
    )
    if not ok:
        raise ValueError(
            f"{where}: field {field!r} must be a string or a non-empty list of "
            f"{{'role': ..., 'content': ...}} messages, got {str(prompt)[:80]}"
        )
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def file_prompt(prompt: Any, cfg: TaskConfig, where: str, default_instruction: str) -> list[Message]:
    """A string becomes make_prompt(string). A chat keeps its messages; the system prompt is prepended when
    it has none, and the instruction is appended to its last user message."""
    if isinstance(prompt, str):
        return make_prompt(prompt, cfg, default_instruction)
    messages = _messages(prompt, where, cfg.prompt_field)
    if cfg.system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": cfg.system_prompt})
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    text = instruction(cfg, default_instruction)
    if text and users:
        last = messages[users[-1]]
        messages[users[-1]] = {"role": "user", "content": f"{last['content']}\n{text}"}
    return messages


def check_tests(tests: Any, where: str, field: str) -> None:
    """Tests are a non-empty list of strings, or a source string with at least one top-level assert."""
    if isinstance(tests, list) and tests and all(isinstance(t, str) for t in tests):
        return
    if isinstance(tests, str):
        try:
            if split_tests(tests)[1]:
                return
        except SyntaxError as e:
            raise ValueError(f"{where}: field {field!r} is not valid Python (line {e.lineno}: {e.msg})") from e
    raise ValueError(
        f"{where}: field {field!r} must be a non-empty list of test snippets or Python source with "
        f"at least one top-level assert, got {str(tests)[:80]!r}"
    )


def check_record(where: str, record: Any, cfg: TaskConfig) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object (a record with fields), got {type(record).__name__}")
    fields = ", ".join(record)
    if cfg.prompt_field not in record:
        raise ValueError(f"{where}: missing field {cfg.prompt_field!r} (fields: {fields}); set task.prompt_field")
    if cfg.answer_field not in record and cfg.tests_field not in record:
        raise ValueError(
            f"{where}: missing field {cfg.answer_field!r} (fields: {fields}); set task.answer_field "
            f"(or give unit tests in task.tests_field={cfg.tests_field!r})"
        )
    if cfg.tests_field in record:
        check_tests(record[cfg.tests_field], where, cfg.tests_field)


def split_by_hash(keys: list[str], eval_size: int, seed: int) -> tuple[set[str], int]:
    """The eval keys: the eval_size distinct keys with the smallest sha256(seed, key). Also the count of
    distinct keys."""
    distinct = sorted(set(keys), key=lambda k: hashlib.sha256(f"{seed}\0{k}".encode()).hexdigest())
    return set(distinct[:eval_size]), len(distinct)


def make_example(where: str, record: dict[str, Any], prompt: list[Message], cfg: TaskConfig, id: str) -> Example:
    answer = record.get(cfg.answer_field)
    answer = answer if isinstance(answer, str) or answer is None else json.dumps(answer)  # 12 -> "12"
    metadata = {k: v for k, v in record.items() if k not in (cfg.prompt_field, cfg.answer_field, cfg.tests_field)}
    if cfg.tests_field in record:
        metadata["tests"] = record[cfg.tests_field]
    return Example(id=id, prompt=prompt, answer=answer, task=cfg.name, metadata=metadata, source=where)


def build_task(rows: list[Row], cfg: TaskConfig, label: str, stem: str) -> Task:
    """Check every row, then split by prompt hash: eval gets cfg.eval_size distinct prompts (each once), train
    the rest (at most cfg.train_size; repeats kept); a prompt is never in both splits."""
    for where, record in rows:
        check_record(where, record, cfg)
    prompts = [
        file_prompt(
            record[cfg.prompt_field], cfg, where, CODE_INSTRUCTION if cfg.tests_field in record else ANSWER_INSTRUCTION
        )
        for where, record in rows
    ]
    keys = [prompt_key(record[cfg.prompt_field]) for _, record in rows]
    eval_keys, distinct = split_by_hash(keys, cfg.eval_size, cfg.seed)
    if distinct <= cfg.eval_size:
        raise ValueError(
            f"{label} has {distinct} distinct prompts; task.eval_size={cfg.eval_size} leaves "
            "none for training; lower task.eval_size"
        )
    train: list[Example] = []
    held_out: list[Example] = []
    used: set[str] = set()
    for key, (where, record), prompt in zip(keys, rows, prompts):
        split = "eval" if key in eval_keys else "train"
        if (split == "eval" and key in used) or (split == "train" and len(train) >= cfg.train_size):
            continue  # a repeat of an eval prompt (eval holds each once), or train is full
        used.add(key)
        out = held_out if split == "eval" else train
        out.append(make_example(where, record, prompt, cfg, f"{stem}/{split}/{len(out)}"))
    return Task(name=cfg.name, train=train, eval=held_out)


def _file_loader(reader: Callable[[Path], list[Row]]) -> Callable[[TaskConfig], Task]:
    def load(cfg: TaskConfig) -> Task:
        if not cfg.path:
            raise ValueError(f"task.name={cfg.name} needs task.path=<file>")
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise ValueError(
                f"task.path {cfg.path!r} is not a file (resolved to {str(path.resolve())!r}); "
                "check the path, relative paths start at the working directory"
            )
        if cfg.options:
            raise ValueError(f"task.options {cfg.options} do nothing for task.name={cfg.name}; remove them")
        return build_task(reader(path), cfg, str(path), path.stem)

    load.__doc__ = (
        f"Problems from a {reader.__name__.removeprefix('read_')} file at task.path (fields: "
        "task.prompt_field, task.answer_field, task.tests_field), split by a hash of the prompt."
    )
    return load


for _kind, _reader in (("jsonl", read_jsonl), ("json", read_json), ("csv", read_csv), ("parquet", read_parquet)):
    TASKS.register(_kind)(_file_loader(_reader))


@TASKS.register("hf")
@task_options(split=("train", "the dataset split to read"), name=(None, "the dataset's config name"))
def load_hf(cfg: TaskConfig) -> Task:
    """A Hugging Face dataset from a local directory or the local cache (see read_hf)."""
    if not cfg.path:
        raise ValueError("task.name=hf needs task.path=<save_to_disk directory or dataset name>")
    return build_task(read_hf(cfg.path, cfg.options), cfg, cfg.path, Path(cfg.path).name or "hf")
