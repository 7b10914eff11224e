"""reasonrl rm: Bradley-Terry reward-model training from preference pairs, loaded as is by the reward_model reward."""

import json

import pytest
import torch

from reasonrl.cli import main
from reasonrl.rm import bradley_terry_loss, read_pairs, split
from tests.helpers import tiny_hf_checkpoint

WORDS = ["[PAD]", "[UNK]", "good", "bad", "answer", "is", "."] + [f"q{i}" for i in range(40)]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A random Llama causal LM and a word-level tokenizer, saved like a Hugging Face checkpoint."""
    return tiny_hf_checkpoint(tmp_path_factory.mktemp("lm"), WORDS, "causal", hidden=32)


def write_prefs(path, n=40):
    """People preferred the answer that says 'good' (a rule a reward model can learn and must generalise)."""
    rows = [
        {"prompt": f"q{i}", "chosen": f"answer is good {'.' * (i % 3)}", "rejected": f"answer is bad {'.' * (i % 2)}"}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bradley_terry_loss_by_hand():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    expected = (-torch.log(torch.sigmoid(torch.tensor(2.0))) - torch.log(torch.sigmoid(torch.tensor(-1.0)))) / 2
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected.item())
    with_margin = (-torch.log(torch.sigmoid(torch.tensor(1.5))) - torch.log(torch.sigmoid(torch.tensor(-1.5)))) / 2
    assert bradley_terry_loss(chosen, rejected, margin=0.5).item() == pytest.approx(with_margin.item())
    assert torch.isfinite(bradley_terry_loss(torch.tensor([-1e4]), torch.tensor([1e4])))


def test_bad_preference_files_name_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": ""}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: missing or empty 'chosen'"):
        read_pairs(path)
    path.write_text("not json\n")
    with pytest.raises(ValueError, match=r"p.jsonl:1: not JSON"):
        read_pairs(path)
    path.write_text('{"prompt": 3, "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:1: 'prompt' must be"):
        read_pairs(path)


def test_split_keeps_each_prompt_on_one_side(tmp_path):
    pairs = read_pairs(write_prefs(tmp_path / "p.jsonl")) * 2
    train, test = split(pairs, 0.25)
    assert {p.prompt[0]["content"] for p in train}.isdisjoint({p.prompt[0]["content"] for p in test})
    assert len(train) + len(test) == 80 and 0 < len(test) < 40


def test_a_reward_model_learns_held_out_preferences_and_the_reward_loads_it(tiny_lm, tmp_path, capsys):
    prefs = write_prefs(tmp_path / "prefs.jsonl")
    args = [
        "recipes/quickstart.yaml",
        f"model.path={tiny_lm}",
        "model.dtype=float32",
        f"rm.pairs={prefs}",
        "rm.epochs=6",
        "rm.eval_share=0.3",
        "optim.lr=0.01",
        "lora.rank=4",
        f"output_dir={tmp_path}",
        "name=rm",
        "threads=1",
    ]
    main(["rm", *args, "--quiet"])
    run_dir = tmp_path / "rm"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["after"]["accuracy"] >= 0.9 and summary["after"]["gap"] > summary["before"]["gap"] + 0.5
    assert "held-out pair accuracy" in capsys.readouterr().out
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and "eval/pair_accuracy" in rows[-1] and rows[-1]["step"] == summary["steps"]

    from reasonrl.config import RewardConfig
    from reasonrl.rewards.compose import RewardComposer
    from reasonrl.types import Example

    composer = RewardComposer(
        RewardConfig(components={"reward_model": 1.0}, options={"reward_model": {"path": str(run_dir / "model")}})
    )
    try:
        example = Example(id="x", prompt=[{"role": "user", "content": "q39"}], answer=None)
        good, bad = composer.score(["answer is good", "answer is bad"], [example, example])
        assert good.total > bad.total
    finally:
        composer.close()
    with pytest.raises(SystemExit):  # the directory exists: refused without --overwrite
        main(["rm", *args, "--quiet"])
