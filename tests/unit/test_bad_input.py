"""Every command against a table of bad inputs: one `error:` line that names the file (and the line, where
there is one), a non-zero exit, no traceback, and nothing written."""

import os
from pathlib import Path

import pytest

from reasonrl.cli import main
from tests.helpers import tiny_overrides, toy_task

RECIPE_COMMANDS = ["train", "sft", "pipeline", "eval"]


def bad_recipes(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a bad recipe file, what its error line must contain besides the path)."""
    cases = {
        "yaml_syntax": ("model:\n  path: [unclosed\nsteps: 3\n", ":3: YAML syntax error"),
        "tab_indent": ("model:\n\tpath: x\n", ":2: YAML syntax error"),
        "wrong_type": ("lora:\n  rank: big\n", "lora.rank: expected int"),
        "not_a_mapping": ("- steps: 3\n", "a recipe must be a YAML mapping"),
        "unknown_key": ("stepz: 3\n", "unknown config key 'stepz'"),
        "empty": ("", "is empty"),
        "only_comments": ("# nothing here\n", "is empty"),
    }
    out = {}
    for name, (text, message) in cases.items():
        path = tmp / f"{name}.yaml"
        path.write_text(text)
        out[name] = (path, message)
    binary = tmp / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    out["binary"] = (binary, "not a text file")
    folder = tmp / "folder.yaml"
    folder.mkdir()
    out["directory"] = (folder, "is a directory, not a file")
    out["missing"] = (tmp / "missing.yaml", "not found")
    if os.geteuid() != 0:  # root reads any file: no unreadable file to test with
        locked = tmp / "locked.yaml"
        locked.write_text("steps: 3\n")
        locked.chmod(0)
        out["unreadable"] = (locked, "cannot read it")
    return out


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def check_one_error_line(code: int, err: str, *needles: str) -> None:
    assert code not in (0, None), err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("command", RECIPE_COMMANDS)
@pytest.mark.parametrize(
    "case",
    [
        "yaml_syntax",
        "tab_indent",
        "wrong_type",
        "not_a_mapping",
        "unknown_key",
        "empty",
        "only_comments",
        "binary",
        "directory",
        "missing",
        "unreadable",
    ],
)
def test_a_bad_recipe(capsys, tmp_path, command, case):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    recipes = bad_recipes(inputs)
    if case not in recipes:
        pytest.skip("running as root: every file is readable")
    path, message = recipes[case]
    before = files_under(tmp_path)
    code, err = run_cli(capsys, command, str(path), f"output_dir={tmp_path / 'runs'}")
    check_one_error_line(code, err, str(path), message)
    assert files_under(tmp_path) == before, "a rejected command wrote something"


@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_data_file_with_one_bad_line_deep_inside(capsys, tmp_path, command):
    lines = toy_task(tmp_path, n=60).read_text().splitlines()
    lines[46] = '{"prompt": "say 46", "answer": 46'
    data = tmp_path / "deep.jsonl"
    data.write_text("\n".join(lines) + "\n")
    before = files_under(tmp_path)
    code, err = run_cli(capsys, command, *tiny_overrides(tmp_path, f"task.path={data}"))
    check_one_error_line(code, err, f"{data}:47:")
    assert files_under(tmp_path) - before <= {tmp_path / "toy.jsonl"}


@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_data_path_that_is_a_directory(capsys, tmp_path, command):
    folder = tmp_path / "data"
    folder.mkdir()
    code, err = run_cli(capsys, command, *tiny_overrides(tmp_path, f"task.path={folder}"))
    check_one_error_line(code, err, str(folder))
    assert not (tmp_path / "runs").exists()


def half_written_run(tmp: Path, kind: str) -> Path:
    run = tmp / "runs" / kind
    run.mkdir(parents=True)
    if kind == "no_config":
        (run / "metrics.jsonl").write_text('{"step": 0}\n')
    elif kind == "torn_config":
        (run / "config.yaml").write_text("model:\n  path: tiny:llama\n  dtype: [float")
    elif kind == "missing":
        run.rmdir()
    return run  # "empty": a directory and nothing in it


RUN_DIR_COMMANDS = {
    "train": lambda run: ["train", "--resume", str(run)],
    "sft": lambda run: ["sft", "--resume", str(run)],
    "eval": lambda run: ["eval", "--run", str(run)],
    "report": lambda run: ["report", str(run)],
}


@pytest.mark.parametrize("command", sorted(RUN_DIR_COMMANDS))
@pytest.mark.parametrize("kind", ["missing", "empty", "no_config", "torn_config"])
def test_a_missing_or_half_written_run_directory(capsys, tmp_path, command, kind):
    run = half_written_run(tmp_path, kind)
    if command == "report" and kind in ("no_config", "torn_config"):
        main(RUN_DIR_COMMANDS[command](run))  # a report shows what is there and notes what is wrong
        page = (run / "report.html").read_text()
        assert ("no config.yaml" if kind == "no_config" else "config.yaml") in page
        return
    before = files_under(tmp_path)
    code, err = run_cli(capsys, *RUN_DIR_COMMANDS[command](run))
    check_one_error_line(code, err, str(run))
    assert files_under(tmp_path) == before, "a rejected command wrote something"


def test_bad_values_on_the_command_line(capsys, tmp_path):
    for override, message in [
        ("steps=-1", "steps"),
        ("optim.lr=fast", "optim.lr"),
        ("rewards.components=[1, 2", "rewards.components"),
    ]:
        code, err = run_cli(capsys, "train", *tiny_overrides(tmp_path, override))
        check_one_error_line(code, err, message)
    assert not (tmp_path / "runs").exists()
