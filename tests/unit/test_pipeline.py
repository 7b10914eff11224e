"""The from-scratch pipeline's parts: the arithmetic task, pretraining text and a short pretraining run, and how
the RL stage starts from the SFT result."""

import json

import pytest

from reasonrl.config import LoraConfig, ModelConfig, TaskConfig, load_config
from reasonrl.model import load_policy
from reasonrl.pipeline import format_stages, rl_start, stage_table
from reasonrl.pretrain import pretrain, pretraining_lines
from reasonrl.tasks import load_task
from reasonrl.tasks.arithmetic import addition_facts, worked_solution
from reasonrl.tokenizer import ByteTokenizer


def test_arithmetic_task_is_split_and_solved_step_by_step():
    task = load_task(TaskConfig(name="arithmetic", options={"terms": 2, "max_value": 5}, train_size=40, eval_size=6))
    questions = [e.prompt[-1]["content"].splitlines()[0] for e in task.train]
    assert len(task.eval) == 6 and len(task.train) == 40 and len(set(questions)) == 30  # 36 sums: 6 + 30, repeats
    assert not set(questions) & {e.prompt[-1]["content"].splitlines()[0] for e in task.eval}
    assert worked_solution([3, 5, 9]) == "3+5=8\n8+9=17"
    facts = addition_facts({"terms": 3, "max_value": 9})
    assert len(facts) == 19 * 10 and "18+9=27" in facts
    with pytest.raises(ValueError, match="are not options of task arithmetic"):
        load_task(TaskConfig(name="arithmetic", options={"digits": 2}))
    with pytest.raises(ValueError, match="has 36 distinct problems"):
        load_task(TaskConfig(name="arithmetic", options={"terms": 2, "max_value": 5}, eval_size=36))


def test_pretraining_text_is_the_task_facts_or_a_file(tmp_path):
    cfg = load_config(None, ["task.name=arithmetic", "task.options={terms: 2, max_value: 3}"])
    lines = pretraining_lines(cfg)
    assert set(lines) == set(addition_facts({"terms": 2, "max_value": 3})) and len(lines) == 16 * 64
    with pytest.raises(ValueError, match="pretrain.text=arithmetic generates the facts of task.name=arithmetic"):
        pretraining_lines(load_config(None, []))
    text = tmp_path / "corpus.txt"
    text.write_text("one\n\ntwo\n")
    assert pretraining_lines(load_config(None, [f"pretrain.text={text}"])) == ["one", "two"]
    with pytest.raises(ValueError, match="neither 'arithmetic' nor a text file"):
        pretraining_lines(load_config(None, [f"pretrain.text={tmp_path / 'none.txt'}"]))


def test_pretraining_lowers_the_loss_and_saves_a_model_that_model_path_loads(tmp_path):
    cfg = load_config(
        None,
        [
            "task.name=arithmetic",
            "task.options={terms: 2, max_value: 3}",
            "threads=1",
            "pretrain.steps=40",
            "pretrain.batch_size=8",
            "pretrain.seq_len=32",
            "pretrain.hidden_size=32",
            "pretrain.lr=0.01",
        ],
    )
    model_dir = pretrain(cfg, tmp_path / "pretrain", quiet=True)
    losses = [
        json.loads(x)["pretrain/loss"] for x in (tmp_path / "pretrain" / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(losses) == 40 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0, losses
    model, tok = load_policy(ModelConfig(path=str(model_dir), dtype="float32"), LoraConfig(enabled=False))
    assert isinstance(tok, ByteTokenizer) and model.config.hidden_size == 32


def test_rl_starts_from_the_sft_model_or_continues_its_adapter(tmp_path):
    (tmp_path / "full" / "model").mkdir(parents=True)
    (tmp_path / "lora" / "adapter").mkdir(parents=True)
    base = tmp_path / "pretrain" / "model"
    assert rl_start(tmp_path / "full", base) == {"path": str(tmp_path / "full" / "model"), "adapter": None}
    assert rl_start(tmp_path / "lora", base) == {"path": str(base), "adapter": str(tmp_path / "lora" / "adapter")}


def test_stage_table_reads_the_accuracy_after_each_stage():
    def result(acc):
        return {
            "accuracy": acc,
            "accuracy_ci": [acc - 0.1, acc + 0.1],
            "mean_reward": acc,
            "mean_length": 9.0,
            "problems": 10,
            "samples_per_problem": 2,
            "greedy": {"accuracy": acc + 0.25},
        }

    paired = {"problems": 10, "mean_diff": 0.2, "ci_low": 0.1, "ci_high": 0.3, "better": 4, "worse": 1}
    greedy = {**paired, "mean_diff": -0.1, "ci_low": -0.2, "ci_high": 0.0, "better": 1, "worse": 2}
    table = stage_table(
        {"task": "arithmetic", "before": result(0.1), "after": result(0.3), "paired": paired},
        {"before": result(0.3), "after": result(0.5), "paired": paired, "paired_greedy": greedy},
        {"pretrain": 1.0, "sft": 2.0, "rl": 3.0},
    )
    assert [(s["stage"], s["accuracy"], s["greedy"], s["wall_s"]) for s in table["stages"]] == [
        ("pretrain", 0.1, 0.35, 1.0),
        ("sft", 0.3, 0.55, 2.0),
        ("rl", 0.5, 0.75, 3.0),
    ]
    text = format_stages(table)
    assert "rl vs sft: accuracy change +0.200" in text and "pretrain       0.100" in text
    assert "rl vs sft: greedy accuracy change -0.100 [-0.200, +0.000]" in text and "sft vs pretrain: greedy" not in text
    assert next(line for line in text.splitlines() if line.startswith("rl ")).split()[4] == "0.750"  # greedy


def test_without_pretraining_sft_starts_from_the_recipe_model_and_rl_continues_its_adapter(tmp_path):
    from reasonrl.pipeline import pipeline
    from tests.helpers import tiny_overrides

    cfg = load_config(None, tiny_overrides(tmp_path, "pretrain.steps=0", "sft.steps=2", "steps=2"))
    root = pipeline(cfg, quiet=True)
    assert not (root / "pretrain").exists() and (root / "sft" / "adapter").is_dir()
    rl = load_config(root / "rl" / "config.yaml", [])
    assert rl.model.path == "tiny:llama" and rl.model.adapter == str(root / "sft" / "adapter")
    result = json.loads((root / "pipeline.json").read_text())
    assert [s["stage"] for s in result["stages"]] == ["base", "sft", "rl"] and "sft_vs_base" in result["paired"]
    with pytest.raises(ValueError, match="pretrain.steps must be >= 0"):
        load_config(None, ["pretrain.steps=-1"])
