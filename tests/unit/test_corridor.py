"""The corridor environment and task: moves, rewards, state keys, the split, and a scripted multi-turn rollout
whose tokens, masks, step ends and states feed GiGPO."""

import pytest

from reasonrl.algos import ADVANTAGES
from reasonrl.config import AlgoConfig, TaskConfig
from reasonrl.engine import Completion, SamplingParams
from reasonrl.envs import EnvContext, Environment
from reasonrl.envs.corridor import CorridorEnv, describe, parse_move
from reasonrl.rollout import rollout
from reasonrl.tasks import load_task
from reasonrl.tokenizer import ByteTokenizer
from reasonrl.types import Example, collate


def example(start: int, goal: int) -> Example:
    return Example(
        id=f"corridor-{start}-{goal}",
        prompt=[{"role": "user", "content": describe(start, goal)}],
        metadata={"start": start, "goal": goal},
    )


def test_moves_from_the_first_character():
    assert [parse_move(a, strict=False) for a in ("L", " l.", "R", "right", "", "  ")] == [-1, -1, 1, 1, 0, 0]
    assert parse_move("a", strict=False) == 1 and parse_move("b", strict=False) == -1  # ord 97 odd, 98 even
    assert parse_move("a", strict=True) == 0 and parse_move("Left", strict=True) == -1


def test_walk_rewards_reaching_the_goal_and_keys_states_by_position():
    env = CorridorEnv(EnvContext())
    assert env.reset(example(2, 4))[-1]["content"] == "You are at 2. The goal is at 4, 2 to the right"
    assert env.state_key() == "2->4"
    first = env.step("L")
    assert (first.reward, first.done, env.state_key()) == (0.0, False, "1->4")
    assert first.observation == [{"role": "user", "content": "You are at 1. The goal is at 4, 3 to the right"}]
    env.step("R"), env.step("R")
    last = env.step("r")
    assert (last.reward, last.done, last.observation, last.reward_parts) == (1.0, True, None, {"correct": 1.0})


def test_bad_options_and_examples_fail_with_a_clear_message():
    with pytest.raises(ValueError, match="strict must be true or false"):
        CorridorEnv(EnvContext(), strict="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs examples with metadata start and goal"):
        CorridorEnv(EnvContext()).reset(Example(id="x", prompt=[]))
    with pytest.raises(ValueError, match="unknown option"):
        load_task(TaskConfig(name="corridor", options={"size": 3}))
    with pytest.raises(ValueError, match="distances a non-empty list"):
        load_task(TaskConfig(name="corridor", options={"length": 4, "distances": [4]}))


def test_task_holds_every_start_goal_pair_once_with_a_held_out_quarter():
    task = load_task(TaskConfig(name="corridor", options={"length": 6, "distances": [1, 2]}, eval_size=100))
    pairs = [(e.metadata["start"], e.metadata["goal"]) for e in task.train + task.eval]
    assert len(pairs) == len(set(pairs)) == 2 * 5 + 2 * 4 and len(task.eval) == 18 // 4
    assert all(e.prompt[-1]["content"].endswith(describe(e.metadata["start"], e.metadata["goal"])) for e in task.train)


class ScriptedMoves:
    """Episode i plays scripts[i], one character per turn; turns cut at the token limit alternate with turns
    that end with EOS, so both ways a turn ends are exercised."""

    def __init__(self, scripts: list[str], eos: int) -> None:
        self.scripts, self.eos, self.turn = scripts, eos, 0

    def generate(
        self, prompts: list[list[int]], params: SamplingParams, n: int, seed: int, keep: bool = False
    ) -> list[list[Completion]]:
        live = [s for s in self.scripts if len(s) > self.turn]
        tok = ByteTokenizer()
        out = [
            Completion(tok.encode(s[self.turn]) + [self.eos] * (k % 2), [-1.0] * (1 + k % 2), k % 2 == 1)
            for k, s in enumerate(live)
        ]
        self.turn += 1
        return [out[i * n : (i + 1) * n] for i in range(len(prompts))]


def test_rollout_of_a_group_gives_turns_states_and_masks_for_gigpo():
    tok = ByteTokenizer()
    scripts = ["RR", "LRRR", "LLLL"]  # from 1 to 3: success in 2 turns, in 4 turns, failure
    env = Environment("corridor", EnvContext())
    trajectories = rollout(
        env, ScriptedMoves(scripts, tok.eos_token_id), tok, [example(1, 3)], n=3, params=SamplingParams(2), seed=0
    )
    assert [t.reward for t in trajectories] == [1.0, 1.0, 0.0]
    assert [t.step_rewards for t in trajectories] == [[0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0] * 4]
    assert trajectories[1].step_states == ["1->3", "0->3", "1->3", "2->3"]
    assert trajectories[2].info["turn_limit"] and not trajectories[0].info["turn_limit"]
    for t, script in zip(trajectories, scripts):
        sampled = [tok.decode([i]) for i, m in zip(t.tokens, t.mask) if m]
        assert "".join(sampled) == script  # only the policy's tokens are trained on (EOS decodes to "")
        assert all(t.mask[e] and tok.decode([t.tokens[e]]) in ("", script[k]) for k, e in enumerate(t.step_token_ends))
    batch = collate(trajectories, pad_id=0, group_size=3)
    ids = [batch.step_states[i][batch.step_ends[i]].tolist() for i in range(3)]
    assert ids[0] == [ids[1][0], ids[1][3]] and ids[1][0] == ids[1][2] == ids[2][0] and ids[2][1] == ids[1][1]
    adv = ADVANTAGES.get("gigpo")(batch, AlgoConfig(gamma=0.5))
    assert (adv[~batch.mask] == 0).all()
    # In state 1->3, "R" (row 0's first move, return 0.5) beats "L" (rows 1 and 2, returns 0.125 and 0).
    first = adv[batch.step_ends].split([2, 4, 4])  # per row, the advantage of each step
    assert first[0][0] > first[1][0] > first[2][0]
