"""Gating, option checks, the length reward, and the batched reward_model on a tiny random model."""

from __future__ import annotations

from pathlib import Path

import pytest

from reasonrl.config import RewardConfig
from reasonrl.rewards import REWARDS
from reasonrl.rewards.compose import Gate, RewardComposer, parse_gates
from reasonrl.rewards.shaping import overlong_penalty, target_shaping
from reasonrl.types import Example
from tests.helpers import tiny_hf_checkpoint

EXAMPLE = Example(
    id="r/0",
    prompt=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 6*7?"}],
    answer="42",
)


def test_gates_count_a_component_only_when_its_gate_passes() -> None:
    cfg = RewardConfig(components={"correct": 1.0, "format": 0.5}, gates={"format": "correct"}, workers=1)
    with RewardComposer(cfg) as composer:
        right, wrong = composer.score(["Answer: 42", "Answer: 41"], [EXAMPLE, EXAMPLE])
    assert right.total == 1.5 and right.gated == []
    assert wrong.parts == {"correct": 0.0, "format": 1.0} and wrong.total == 0.0 and wrong.gated == ["format"]


def test_gate_syntax_and_errors() -> None:
    cfg = RewardConfig(
        components={"correct": 1.0, "format": 0.1, "numeric": 1.0},
        gates={"format": "correct>=0.5", "numeric": "correct > 0"},
    )
    assert parse_gates(cfg) == {"format": Gate("correct", 0.5, False), "numeric": Gate("correct", 0.0, True)}
    assert Gate("correct", 0.5).is_open({"correct": 0.5}) and not Gate("correct", 0.0, True).is_open({"correct": 0.0})
    assert not Gate("correct").is_open({"correct": None})
    for gates in ({"format": "corect"}, {"steps": "correct"}, {"format": "correct>=x"}, {"format": "format"}):
        with pytest.raises(ValueError, match="rewards.gates"):
            RewardComposer(RewardConfig(components={"correct": 1.0, "format": 0.1}, gates=gates))


def test_option_values_are_checked_when_the_composer_is_built() -> None:
    with pytest.raises(ValueError, match="needs max_length"):
        RewardComposer(RewardConfig(components={"length": 1.0}))
    with pytest.raises(ValueError, match="credit='some'"):
        RewardComposer(RewardConfig(components={"steps": 1.0}, options={"steps": {"credit": "some"}}))
    with pytest.raises(ValueError, match="not a Hugging Face model directory"):
        RewardComposer(RewardConfig(components={"reward_model": 1.0}, options={"reward_model": {"path": "/nope"}}))
    with pytest.raises(ValueError, match="missing a required argument: 'path'"):
        RewardComposer(RewardConfig(components={"reward_model": 1.0}))


def test_length_shaping() -> None:
    assert [overlong_penalty(n, 100, 20) for n in (50, 80, 90, 100, 101)] == [0.0, 0.0, -0.5, -1.0, -1.0]
    assert [target_shaping(n, 10, 5) for n in (10, 12, 15, 30)] == [1.0, pytest.approx(0.6), 0.0, 0.0]
    length = REWARDS.get("length")
    assert length("x" * 90, EXAMPLE, max_length=100, cache=20) == -0.5
    assert length("one two three", EXAMPLE, unit="words", target=3) == 1.0
    assert length("x" * 90, EXAMPLE, max_length=100, cache=20, target=90) == 0.5


def test_length_in_tokens(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    length = REWARDS.get("length")
    assert length("a b, c", EXAMPLE, unit="tokens", tokenizer=str(tmp_path), target=4) == 1.0
    with pytest.raises(ValueError, match="needs tokenizer"):
        length.check_options(unit="tokens", target=4)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def tiny_reward_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random Llama sequence classifier (num_labels=1) and a word-level tokenizer, saved like a checkpoint."""
    words = ["[PAD]", "[UNK]", "what", "is", "6", "*", "7", "?", "42", "41", "be", "brief", ".", "answer", ":"]
    return str(tiny_hf_checkpoint(tmp_path_factory.mktemp("rm"), words, "classifier", num_labels=1))


def test_reward_model_scores_in_batches(tiny_reward_model: str) -> None:
    from reasonrl.rewards import reward_model as rm

    rm.load.cache_clear()
    completions = ["answer : 42", "answer : 41", "42", "what is 6 * 7 ? 42", "41 41 41"]
    examples = [EXAMPLE] * len(completions)
    scores = rm.reward_model(completions, examples, path=tiny_reward_model, batch_size=2)
    assert len(scores) == 5 and all(isinstance(s, float) for s in scores) and len(set(scores)) > 1
    one_batch = rm.reward_model(completions, examples, path=tiny_reward_model, batch_size=8)
    assert one_batch == pytest.approx(scores, abs=1e-5)  # padding does not change a score
    assert rm.load.cache_info().currsize == 1  # loaded once, reused


def test_reward_model_is_loaded_lazily_in_the_trainer_process(tiny_reward_model: str) -> None:
    from reasonrl.rewards import reward_model as rm

    rm.load.cache_clear()
    cfg = RewardConfig(
        components={"correct": 1.0, "reward_model": 0.5},
        options={"reward_model": {"path": tiny_reward_model}},
        workers=1,
    )
    with RewardComposer(cfg) as composer:
        assert rm.load.cache_info().currsize == 0 and list(composer.batched) == ["reward_model"]
        scored = composer.score(["answer : 42", "answer : 41"], [EXAMPLE, EXAMPLE])
        assert rm.load.cache_info().currsize == 1
    direct = rm.reward_model(["answer : 42", "answer : 41"], [EXAMPLE] * 2, path=tiny_reward_model)
    assert [s.parts["reward_model"] for s in scored] == pytest.approx(direct)
    assert scored[0].total == pytest.approx(1.0 + 0.5 * direct[0])


def test_batched_reward_failure_follows_on_error(tiny_reward_model: str) -> None:
    cfg = RewardConfig(
        components={"reward_model": 1.0},
        workers=1,
        max_failure_share=1.0,
        options={"reward_model": {"path": tiny_reward_model, "label": 3}},
    )
    with RewardComposer(cfg) as composer:
        scored = composer.score(["answer : 42"], [EXAMPLE])
    assert scored[0].total == 0.0 and "IndexError" in scored[0].errors[0]
