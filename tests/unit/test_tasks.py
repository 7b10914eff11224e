"""Tasks: reasoning-gym generation (held-out eval, options) and JSONL files (split, errors)."""

from __future__ import annotations

import csv
import dataclasses
import json
import pickle
from pathlib import Path

import pytest

from reasonrl.config import TaskConfig
from reasonrl.rewards import REWARDS
from reasonrl.tasks import ANSWER_INSTRUCTION, CODE_INSTRUCTION, TASKS, load_task


def rg(**kwargs: object) -> TaskConfig:
    defaults: dict[str, object] = {"name": "reasoning_gym:basic_arithmetic", "train_size": 50, "eval_size": 20}
    return TaskConfig(**(defaults | kwargs))  # type: ignore[arg-type]


def questions(examples: list) -> list[str]:
    return [e.metadata["reasoning_gym"]["entry"]["question"] for e in examples]


def test_registry_kinds() -> None:
    assert TASKS.names() == [
        "arithmetic",
        "code",
        "code_repos",
        "corridor",
        "csv",
        "gymnasium",
        "hf",
        "json",
        "jsonl",
        "parquet",
        "reasoning_gym",
        "sokoban",
    ]


def test_reasoning_gym_disjoint_and_deterministic() -> None:
    task = load_task(rg())
    assert len(task.train) == 50 and len(task.eval) == 20
    assert not set(questions(task.train)) & set(questions(task.eval))
    assert len(set(questions(task.eval))) == 20
    again = load_task(rg())
    assert again.train == task.train and again.eval == task.eval
    other = load_task(rg(seed=1))
    assert questions(other.train) != questions(task.train)
    first = task.train[0]
    assert first.id == "basic_arithmetic/train/0" and task.eval[0].id == "basic_arithmetic/eval/0"
    assert first.task == "reasoning_gym:basic_arithmetic" and first.source.startswith("basic_arithmetic#seed=")
    assert first.prompt[-1]["role"] == "user" and first.prompt[-1]["content"].endswith("Answer: <answer>")
    assert json.loads(json.dumps(first.metadata)) == first.metadata
    assert pickle.loads(pickle.dumps(first)) == first


def test_reasoning_gym_eval_replaces_train_duplicates() -> None:
    # 1-digit a+b has 100 distinct problems: many eval candidates repeat train ones and must be replaced.
    cfg = rg(
        options={
            "min_terms": 2,
            "max_terms": 2,
            "min_digits": 1,
            "max_digits": 1,
            "operators": ["+"],
            "allow_negation": False,
            "allow_parentheses": False,
        },
        train_size=60,
        eval_size=20,
    )
    task = load_task(cfg)
    assert len(task.eval) == 20 and not set(questions(task.train)) & set(questions(task.eval))
    with pytest.raises(ValueError, match="distinct problems outside train"):
        load_task(rg(options=cfg.options, train_size=200, eval_size=90))


def test_reasoning_gym_options_and_scoring() -> None:
    task = load_task(rg(options={"max_terms": 2, "max_digits": 1}, system_prompt="Be brief.", instruction=""))
    entry = task.train[0].metadata["reasoning_gym"]
    assert entry["config"] == {"max_terms": 2, "max_digits": 1}
    assert all(e.metadata["reasoning_gym"]["entry"]["metadata"]["num_terms"] == 2 for e in task.train)
    assert task.train[0].prompt[0] == {"role": "system", "content": "Be brief."}
    assert task.train[0].prompt[1]["content"] == entry["entry"]["question"]
    correct = REWARDS.get("correct")
    assert correct(f"Answer: {task.train[0].answer}", task.train[0]) == 1.0


def test_reasoning_gym_errors() -> None:
    with pytest.raises(ValueError, match=r"max_term\b.*did you mean 'max_terms'.*valid options: min_terms"):
        load_task(rg(options={"max_term": 2}))
    with pytest.raises(ValueError, match="use task.seed"):
        load_task(rg(options={"seed": 2}))
    with pytest.raises(ValueError, match="rejected task.options"):
        load_task(rg(options={"min_terms": 5, "max_terms": 2}))
    with pytest.raises(ValueError, match="unknown reasoning-gym dataset 'basic_arithmetc'.*basic_arithmetic"):
        load_task(rg(name="reasoning_gym:basic_arithmetc"))
    with pytest.raises(ValueError, match="unknown task kind 'xlsx'"):
        load_task(rg(name="xlsx"))


def write_jsonl(path: Path, rows: list[object]) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_jsonl_split(tmp_path: Path) -> None:
    rows = [{"prompt": f"What is {i}+1?", "answer": i + 1, "level": i % 3} for i in range(30)]
    rows.append({"prompt": [{"role": "user", "content": "Chat question?"}], "answer": "yes"})
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    cfg = TaskConfig(name="jsonl", path=path, eval_size=5, train_size=100, system_prompt="sys")
    task = load_task(cfg)
    assert len(task.eval) == 5 and len(task.train) == 26
    assert load_task(cfg) == task
    assert {e.prompt[-1]["content"] for e in task.eval}.isdisjoint(e.prompt[-1]["content"] for e in task.train)
    assert load_task(TaskConfig(name="jsonl", path=path, eval_size=5, seed=7)).eval != task.eval
    assert len(load_task(TaskConfig(name="jsonl", path=path, eval_size=5, train_size=10)).train) == 10
    by_source = {e.source: e for e in task.train + task.eval}
    first = by_source[f"{path}:1"]
    assert first.answer == "1" and first.metadata == {"level": 0} and first.prompt[0]["content"] == "sys"
    assert first.prompt[1]["content"] == "What is 0+1?\n" + ANSWER_INSTRUCTION
    chat = by_source[f"{path}:31"]
    assert [m["role"] for m in chat.prompt] == ["system", "user"]
    assert chat.prompt[1]["content"].startswith("Chat question?\n")


def test_jsonl_duplicate_prompts_never_leak(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i % 10}", "answer": "a"} for i in range(40)]
    task = load_task(TaskConfig(name="jsonl", path=write_jsonl(tmp_path / "d.jsonl", rows), eval_size=3))
    assert len(task.eval) == 3 and len(task.train) == 28


def test_jsonl_errors(tmp_path: Path) -> None:
    good = {"prompt": "q", "answer": "a"}
    bad_json = write_jsonl(tmp_path / "data.jsonl", [good] * 11 + ['{"prompt": "q", answer: 1}'])
    with pytest.raises(ValueError, match=r"/data\.jsonl:12: invalid JSON \("):
        load_task(TaskConfig(name="jsonl", path=bad_json))
    missing = write_jsonl(tmp_path / "m.jsonl", [good, {"prompt": "q", "solution": "a"}])
    with pytest.raises(
        ValueError,
        match=r"m\.jsonl:2: missing field 'answer' \(fields: prompt, solution\); "
        r"set task\.answer_field",
    ):
        load_task(TaskConfig(name="jsonl", path=missing))
    with pytest.raises(ValueError, match="is not a file"):
        load_task(TaskConfig(name="jsonl", path=str(tmp_path / "nope.jsonl")))
    small = write_jsonl(tmp_path / "s.jsonl", [good, good])
    with pytest.raises(ValueError, match="1 distinct prompts"):
        load_task(TaskConfig(name="jsonl", path=small, eval_size=1))


# ---------------------------------------------------------------------------------------------------------
# JSON, CSV, Parquet, Hugging Face datasets; field mapping; few-shot; the built-in code task

RECORDS = [{"question": f"What is {i}+1?", "solution": i + 1, "level": str(i % 3)} for i in range(20)]


def mapped(name: str, path: Path, **kwargs: object) -> TaskConfig:
    return TaskConfig(
        name=name, path=str(path), prompt_field="question", answer_field="solution", eval_size=4, **kwargs
    )  # type: ignore[arg-type]


def same_split(a, b) -> bool:
    return [e.prompt for e in a.train] == [e.prompt for e in b.train] and [e.prompt for e in a.eval] == [
        e.prompt for e in b.eval
    ]


def test_json_csv_parquet_hf_give_the_same_task(tmp_path: Path) -> None:
    jsonl = load_task(mapped("jsonl", Path(write_jsonl(tmp_path / "d.jsonl", RECORDS))))
    (tmp_path / "d.json").write_text(json.dumps(RECORDS))
    assert same_split(load_task(mapped("json", tmp_path / "d.json")), jsonl)
    with (tmp_path / "d.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["question", "solution", "level"])
        writer.writeheader()
        writer.writerows(RECORDS)
    from_csv = load_task(mapped("csv", tmp_path / "d.csv"))
    assert same_split(from_csv, jsonl) and from_csv.train[0].answer == jsonl.train[0].answer
    assert from_csv.train[0].source.startswith(f"{tmp_path / 'd.csv'}:row ")
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow

    pq.write_table(pyarrow.Table.from_pylist(RECORDS), tmp_path / "d.parquet")
    assert same_split(load_task(mapped("parquet", tmp_path / "d.parquet")), jsonl)
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(RECORDS).save_to_disk(str(tmp_path / "ds"))
    assert same_split(load_task(mapped("hf", tmp_path / "ds")), jsonl)
    datasets.DatasetDict({"test": datasets.Dataset.from_list(RECORDS)}).save_to_disk(str(tmp_path / "dd"))
    assert same_split(load_task(mapped("hf", tmp_path / "dd", options={"split": "test"})), jsonl)
    with pytest.raises(ValueError, match="has splits test; set task.options.split"):
        load_task(mapped("hf", tmp_path / "dd"))


def test_file_errors_name_the_file_row_and_field(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps(RECORDS[:5] + [{"question": "q"}]))
    with pytest.raises(ValueError, match=r"bad\.json\[5\]: missing field 'solution' \(fields: question\)"):
        load_task(mapped("json", tmp_path / "bad.json"))
    (tmp_path / "obj.json").write_text(json.dumps({"rows": RECORDS}))
    with pytest.raises(ValueError, match="expected a JSON array"):
        load_task(mapped("json", tmp_path / "obj.json"))
    (tmp_path / "bad.csv").write_text("question,solution\nq1,1\nq2,2,extra\n")
    with pytest.raises(ValueError, match=r"bad\.csv:row 2 \(line 3\): more values than the header"):
        load_task(mapped("csv", tmp_path / "bad.csv"))
    rows = [{"prompt": f"p{i}", "tests": ["assert True"]} for i in range(6)] + [{"prompt": "p", "tests": "x = 1"}]
    with pytest.raises(ValueError, match=r"t\.jsonl:7: field 'tests' must be a non-empty list"):
        load_task(TaskConfig(name="jsonl", path=write_jsonl(tmp_path / "t.jsonl", rows), eval_size=2))
    rows[-1] = {"prompt": "p", "tests": "assert (("}
    with pytest.raises(ValueError, match=r"t\.jsonl:7: field 'tests' is not valid Python"):
        load_task(TaskConfig(name="jsonl", path=write_jsonl(tmp_path / "t.jsonl", rows), eval_size=2))
    with pytest.raises(ValueError, match="do nothing for task.name=jsonl"):
        load_task(TaskConfig(name="jsonl", path=write_jsonl(tmp_path / "t.jsonl", rows[:6]), options={"x": 1}))


def test_tests_field_makes_the_answer_optional(tmp_path: Path) -> None:
    rows = [{"task": f"Write f{i}.", "checks": [f"assert f{i}() == {i}"]} for i in range(8)]
    cfg = TaskConfig(
        name="jsonl",
        path=write_jsonl(tmp_path / "c.jsonl", rows),
        prompt_field="task",
        tests_field="checks",
        eval_size=2,
    )
    task = load_task(cfg)
    checks = {row["task"]: row["checks"] for row in rows}
    for example in task.train + task.eval:
        question = example.prompt[-1]["content"].split("\n")[0]
        assert example.answer is None and example.metadata == {"tests": checks[question]}
        assert example.prompt[-1]["content"].endswith(CODE_INSTRUCTION)


def test_few_shot_comes_from_train_only_and_is_deterministic(tmp_path: Path) -> None:
    cfg = mapped("jsonl", Path(write_jsonl(tmp_path / "d.jsonl", RECORDS)), few_shot=2, system_prompt="sys")
    task = load_task(cfg)
    assert load_task(cfg) == task
    plain_task = load_task(dataclasses.replace(cfg, few_shot=0))
    train_questions = {e.prompt[-1]["content"] for e in plain_task.train}
    for example in task.train + task.eval:
        roles = [m["role"] for m in example.prompt]
        assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
        shots = [example.prompt[1]["content"], example.prompt[3]["content"]]
        assert set(shots) <= train_questions and example.prompt[-1]["content"] not in shots
        assert example.prompt[2]["content"].startswith("Answer: ")
    assert [e.prompt[-1] for e in task.eval] == [e.prompt[-1] for e in plain_task.eval]
    with pytest.raises(ValueError, match="few_shot=20 needs more than 20"):
        load_task(dataclasses.replace(cfg, few_shot=20))


def test_builtin_code_task() -> None:
    task = load_task(TaskConfig(name="code", few_shot=1))
    assert len(task.train) + len(task.eval) == 36 and len(task.eval) == 9
    example = task.train[0]
    assert example.metadata["tests"] and example.metadata["solution"] and example.answer is None
    assert example.prompt[-1]["content"].endswith(CODE_INSTRUCTION)
    assert example.prompt[1]["content"].startswith("```python\n")  # the shot shows a reference solution


def test_every_reference_solution_passes_its_tests_in_the_sandbox() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from reasonrl.rewards.code import run_tests
    from reasonrl.sandbox import Limits
    from reasonrl.tasks.code import CODE_TASKS

    records = [json.loads(line) for line in CODE_TASKS.read_text().splitlines()]
    for record in records:  # the tests are not vacuous: each calls the function the prompt asks for
        name = record["prompt"].split("`")[1].split("(")[0]
        assert all(f"{name}(" in test for test in record["tests"]), record["id"]
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda r: run_tests(r["solution"], r["tests"], Limits(timeout_s=20)), records))
    failures = [(r["id"], report.results) for r, report in zip(records, reports) if report.passed != report.total]
    assert not failures
