"""Multi-turn rollout: token in, token out. Sampled tokens are kept exactly, observations are appended as
untrained tokens, and every prompt the engine sees decodes to the chat template of the conversation so far."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reasonrl.engine import Completion, SamplingParams
from reasonrl.envs import ENVS, BaseEnv, EnvContext, Environment
from reasonrl.rollout import rollout
from reasonrl.tokenizer import ByteTokenizer, render, stop_token_ids
from reasonrl.types import Example, StepResult, collate

EXAMPLE = Example(id="echo/0", prompt=[{"role": "user", "content": "Say three words, one per turn."}])
BUNDLED = Path(os.environ.get("REASONRL_CACHE", Path.home() / ".cache" / "reasonrl")) / "smollm2-135m-instruct"


@ENVS.register("test_echo")
class EchoEnv(BaseEnv):
    """Answers each action with 'heard: <action>' and ends after `turns` actions; reward 1 per step."""

    default_max_turns = 5

    def __init__(self, ctx: EnvContext, turns: int = 3) -> None:
        super().__init__(ctx)
        self.turns = turns

    def step(self, action: str) -> StepResult:
        self.messages.append({"role": "assistant", "content": action})
        done = sum(m["role"] == "assistant" for m in self.messages) >= self.turns
        obs = None if done else [{"role": "user", "content": f"heard: {action}"}]
        self.messages += obs or []
        return StepResult(observation=obs, reward=1.0, done=done, reward_parts={"echo": 1.0})


class RecordingEngine:
    """Samples scripted completions (one list of ids per turn) and records the prompts it was given."""

    def __init__(self, turns: list[list[int]], finished: bool = True) -> None:
        self.turns, self.finished, self.prompts, self.calls = turns, finished, [], 0

    def generate(
        self, prompts: list[list[int]], params: SamplingParams, n: int, seed: int, keep: bool = False
    ) -> list[list[Completion]]:
        ids = self.turns[min(self.calls, len(self.turns) - 1)]
        self.calls += 1
        self.prompts.append([list(p) for p in prompts])
        return [[Completion(list(ids), [-0.5] * len(ids), self.finished) for _ in range(n)] for _ in prompts]


def tokenizers() -> list:
    out = [ByteTokenizer()]
    if (BUNDLED / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        out.append(AutoTokenizer.from_pretrained(BUNDLED))
    return out


def turn_ids(tok, word: str) -> list[int]:
    stop = sorted(stop_token_ids(tok))[0]
    ids = tok.encode(word) if isinstance(tok, ByteTokenizer) else tok.encode(word, add_special_tokens=False)
    return list(ids) + [stop]


@pytest.mark.parametrize("tok", tokenizers(), ids=lambda t: type(t).__name__)
def test_tokens_in_tokens_out_on_every_turn(tok) -> None:
    words = ["alpha", "beta", "gamma"]
    engine = RecordingEngine([turn_ids(tok, w) for w in words])
    env = Environment("test_echo", EnvContext(), max_turns=5)
    (t1, t2) = rollout(env, engine, tok, [EXAMPLE], n=2, params=SamplingParams(8), seed=0)
    assert t1.num_turns == 3 and t1.reward == 3.0 and t1.step_rewards == [1.0, 1.0, 1.0]
    conversation = list(EXAMPLE.prompt)
    for turn, word in enumerate(words):
        prompt = engine.prompts[turn][0]
        # what the policy is conditioned on decodes to exactly the chat template of the conversation so far
        decoded = tok.decode(prompt, skip_special_tokens=False) if not isinstance(tok, ByteTokenizer) else None
        if decoded is not None:
            assert decoded == render(tok, conversation, add_generation_prompt=True)
            assert tok.encode(decoded, add_special_tokens=False) == prompt  # re-tokenising changes nothing
        assert t1.tokens[: len(prompt)] == prompt
        sampled = turn_ids(tok, word)
        assert t1.tokens[len(prompt) : len(prompt) + len(sampled)] == sampled  # the sampled tokens, unchanged
        assert t1.mask[len(prompt) : len(prompt) + len(sampled)] == [True] * len(sampled)
        assert t1.step_token_ends[turn] == len(prompt) + len(sampled) - 1
        conversation += [{"role": "assistant", "content": word}, {"role": "user", "content": f"heard: {word}"}]
    # mask True exactly on sampled tokens: their count is the sum of the turns' lengths
    assert sum(t1.mask) == sum(len(turn_ids(tok, w)) for w in words)
    assert all(lp == 0.0 for lp, m in zip(t1.sampler_logp, t1.mask) if not m)
    assert all(lp == -0.5 for lp, m in zip(t1.sampler_logp, t1.mask) if m)
    assert t1.step_states[0] != t1.step_states[1] and t1.step_states == t2.step_states


def test_observation_tokens_are_never_trained_and_steps_land_on_sampled_tokens() -> None:
    tok = ByteTokenizer()
    engine = RecordingEngine([turn_ids(tok, "hi")])
    env = Environment("test_echo", EnvContext(), max_turns=5)
    trajectories = rollout(env, engine, tok, [EXAMPLE, EXAMPLE], n=2, params=SamplingParams(8), seed=0)
    batch = collate(trajectories, tok.pad_token_id, group_size=2)
    text_of = {i: tok.decode([t]) for i, t in enumerate(trajectories[0].tokens)}
    heard = [i for i in range(len(text_of)) if "".join(text_of.get(j, "") for j in range(i, i + 5)) == "heard"]
    assert heard and not any(trajectories[0].mask[i] for i in heard)
    assert batch.step_ends.sum(1).tolist() == [3, 3, 3, 3]
    assert (batch.step_ends & ~batch.mask).sum() == 0
    assert batch.step_rewards.sum(1).tolist() == [3.0] * 4
    ids = batch.step_states[batch.step_ends].view(4, 3)
    # same states across the group; turns 2 and 3 both follow "heard: hi", so they share a state
    assert (ids == ids[0]).all() and ids[0].tolist() == [1, 2, 2]


def test_turn_limit_context_limit_and_cut_turns() -> None:
    tok = ByteTokenizer()
    env = Environment("test_echo", EnvContext(options={"turns": 10}), max_turns=2)
    (t,) = rollout(env, RecordingEngine([turn_ids(tok, "x")]), tok, [EXAMPLE], n=1, params=SamplingParams(8), seed=0)
    assert t.num_turns == 2 and t.info["turn_limit"] is True
    # a turn cut at the token limit is closed with an untrained stop token before the observation
    engine = RecordingEngine([tok.encode("abc")], finished=False)
    (t,) = rollout(
        Environment("test_echo", EnvContext(options={"turns": 3})),
        engine,
        tok,
        [EXAMPLE],
        n=1,
        params=SamplingParams(3),
        seed=0,
    )
    first_end = t.step_token_ends[0]
    assert t.tokens[first_end + 1] == tok.eos_token_id and t.mask[first_end + 1] is False and t.truncated
    short = Environment("test_echo", EnvContext(options={"turns": 3}), max_context_tokens=60)
    (t,) = rollout(
        short, RecordingEngine([turn_ids(tok, "word")]), tok, [EXAMPLE], n=1, params=SamplingParams(8), seed=0
    )
    assert t.info.get("context_limit") and t.truncated and len(t.tokens) < 60


def test_reset_must_be_deterministic_within_a_group() -> None:
    counter = {"n": 0}

    @ENVS.register("test_drifting")
    class Drifting(EchoEnv):
        def reset(self, example: Example):
            counter["n"] += 1
            self.messages = [{"role": "user", "content": f"start {counter['n']}"}]
            return list(self.messages)

    with pytest.raises(ValueError, match="same prompt"):
        rollout(
            Environment("test_drifting", EnvContext()),
            RecordingEngine([[5, 2]]),
            ByteTokenizer(),
            [EXAMPLE],
            n=2,
            params=SamplingParams(4),
            seed=0,
        )
