"""`reasonrl list` reads an index (reasonrl/registry_index.json) instead of importing every registry."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reasonrl.cli import main
from reasonrl.listing import INDEX, build_index

ROOT = Path(__file__).parents[2]


def test_the_index_matches_the_live_registries():
    assert json.loads(INDEX.read_text()) == build_index(), (
        "reasonrl/registry_index.json is out of date: run `python -m reasonrl.listing --write`"
    )


def test_list_imports_neither_torch_nor_the_registries():
    code = (
        "import sys; from reasonrl.cli import main; main(['list']); main(['list', '--options', 'code_tests']); "
        "print(sorted(m for m in ('torch', 'transformers', 'reasonrl.rewards', 'reasonrl.algos') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_options_of_a_reward_an_environment_and_a_reasoning_gym_dataset(capsys):
    main(["list", "--options", "code_tests"])
    out = capsys.readouterr().out
    assert "options go in rewards.options.code_tests" in out and "test_timeout_s  float  default 3.0" in out
    main(["list", "--options", "reasoning_gym:basic_arithmetic"])
    out = capsys.readouterr().out
    assert "task.options" in out and "max_terms" in out and "seed" not in out.split("\n", 1)[1]
    main(["list", "--options", "sokoban"])
    assert "environment" in capsys.readouterr().out
    main(["list", "losses"])
    assert "ppo_clip" in capsys.readouterr().out


def test_an_unknown_name_gets_one_line_with_a_suggestion(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["list", "--options", "code_test"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: no registered name 'code_test'; did you mean")


def test_options_of_tasks_and_algorithms_are_the_config_keys_they_read(capsys):
    from reasonrl.algos import ADVANTAGES
    from reasonrl.config import AlgoConfig
    from reasonrl.listing import cfg_reads
    from reasonrl.tasks import TASKS
    from reasonrl.tasks.sokoban import _OPTIONS

    assert cfg_reads(ADVANTAGES.get("gae")) == ["gamma", "lam"]
    assert cfg_reads(ADVANTAGES.get("dr_grpo")) == []  # no std, no eps: it reads nothing
    assert {"scale_by_std", "gamma", "gigpo_omega"} <= set(cfg_reads(ADVANTAGES.get("gigpo")))  # through helpers
    algo_fields = set(AlgoConfig.__dataclass_fields__)
    for name in ADVANTAGES.names():
        assert set(cfg_reads(ADVANTAGES.get(name))) <= algo_fields | {"kl", "loss"}, name
    assert set(TASKS.get("sokoban").task_options) == set(_OPTIONS)  # what it accepts is what it lists
    main(["list", "--options", "grpo"])
    out = capsys.readouterr().out
    assert "with algo.advantage=grpo" in out and "algo.scale_by_std  bool   default True" in out
    main(["list", "--options", "cispo"])
    out = capsys.readouterr().out
    assert (
        "(policy loss)" in out and "algo.loss.clip_high  float  default 5.0" in out and "  algo.loss.name " not in out
    )
    main(["list", "--options", "arithmetic"])
    out = capsys.readouterr().out
    assert "options go in task.options" in out and "terms      int  default 3" in out
    main(["list", "--options", "hf"])
    out = capsys.readouterr().out
    assert "split  str  default 'train'" in out and "engine.hf.merge_lora" in out  # the task and the engine


def test_a_kind_narrows_the_options_and_a_closed_pipe_is_quiet(capsys):
    main(["list", "tasks", "--options", "sokoban"])
    out = capsys.readouterr().out
    assert "sokoban (task)" in out and "(environment)" not in out
    with pytest.raises(SystemExit) as exit_info:
        main(["list", "tasks", "--options", "ppo_clip"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "it is one of the losses: reasonrl list losses --options ppo_clip" in err
    done = subprocess.run(  # `true` exits at once: every write of `reasonrl list` meets a closed pipe
        f"{sys.executable} -m reasonrl.cli list | true",
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
