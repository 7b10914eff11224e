"""Agent environments (tool_math, sokoban, gymnasium and skyrl_gym adapters) through the multi-turn rollout:
the token-in/token-out invariant on every turn (sampled tokens unchanged with mask True, observation tokens
mask False, decode(tokens) == the chat template's rendering of the conversation), for the byte tokenizer and
the real SmolLM2 tokenizer; Sokoban boards always solvable; calculator safety."""

from __future__ import annotations

import functools
import itertools
import random
from pathlib import Path
from typing import Any

import pytest

from reasonrl.config import RewardConfig, TaskConfig
from reasonrl.engine import Completion, SamplingParams
from reasonrl.envs import EnvContext, Environment
from reasonrl.envs.sokoban import MOVES, move, parse, parse_move, render
from reasonrl.envs.tools import calculate, CalculatorError, run_python
from reasonrl.rewards.compose import RewardComposer
from reasonrl.rollout import rollout
from reasonrl.tasks import load_task
from reasonrl.tasks.sokoban import generate
from reasonrl.tokenizer import ByteTokenizer, render as render_chat, stop_texts, stop_token_ids
from reasonrl.types import Example, Trajectory, collate

SMOLLM2 = Path.home() / ".cache" / "reasonrl" / "smollm2-135m-instruct"
QUESTION = Example(
    id="q1", prompt=[{"role": "user", "content": "What is 12*(3+4)? End with Answer: <n>"}], answer="84", task="toy"
)


@functools.cache
def smollm2_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(SMOLLM2)


@pytest.fixture(params=["byte", "smollm2"])
def tokenizer(request):
    if request.param == "byte":
        return ByteTokenizer()
    if not SMOLLM2.exists():
        pytest.skip("the bundled SmolLM2 is not converted (scripts/setup.sh does it)")
    return smollm2_tokenizer()


def encode(tokenizer: Any, text: str) -> list[int]:
    ids = (
        tokenizer.encode(text)
        if isinstance(tokenizer, ByteTokenizer)
        else tokenizer.encode(text, add_special_tokens=False)
    )
    return list(ids) + [tokenizer.eos_token_id]


class TurnEngine:
    """Answers turn k of every episode with script[k] (the last entry repeats); a later `rest` engine, if given,
    samples the turns after the script."""

    def __init__(self, tokenizer: Any, script: list[str], rest: Any = None, finished: bool = True) -> None:
        self.turns = [encode(tokenizer, text)[: None if finished else -1] for text in script]
        self.rest, self.calls, self.finished = rest, 0, finished

    def generate(
        self, prompts: list[list[int]], params: SamplingParams, n: int, seed: int, keep: bool = False
    ) -> list[list[Completion]]:
        turn, self.calls = self.calls, self.calls + 1
        if self.rest is not None and turn >= len(self.turns):
            return self.rest.generate(prompts, params, n, seed)
        ids = self.turns[min(turn, len(self.turns) - 1)]
        return [[Completion(list(ids), [-0.5] * len(ids), self.finished) for _ in range(n)] for _ in prompts]


def segments(t: Trajectory) -> list[tuple[int, int]]:
    """(start, end) of each run of mask-True tokens (one per policy turn), end exclusive."""
    out: list[tuple[int, int]] = []
    for i, trained in enumerate(t.mask):
        if trained and (i == 0 or not t.mask[i - 1]):
            out.append((i, i + 1))
        elif trained:
            out[-1] = (out[-1][0], i + 1)
    return out


def check_token_in_token_out(
    environment: Environment, tokenizer: Any, t: Trajectory, script: list[list[int]] | None = None
) -> list[dict]:
    """Replay the episode's actions (decoded from its trained tokens) through a fresh environment and compare the
    rendered conversation with the decoded tokens. Returns the conversation."""
    spans = segments(t)
    turns = [t.tokens[a:b] for a, b in spans]
    assert len(turns) == t.num_turns == len(t.step_rewards)
    assert len(t.tokens) == len(t.mask) == len(t.sampler_logp)
    assert all(lp == 0.0 for lp, trained in zip(t.sampler_logp, t.mask) if not trained)
    if script is not None:
        assert turns == script[: len(turns)]  # the sampled tokens, unchanged, each turn with its stop token
    if t.num_turns > 1:
        assert t.step_token_ends == [b - 1 for _, b in spans]  # each step ends on its turn's last sampled token
    env = environment.make()
    messages = env.reset(t.example)
    for k, ids in enumerate(turns):
        text = tokenizer.decode(ids, skip_special_tokens=True)
        messages.append({"role": "assistant", "content": text})
        result = env.step(text)
        if k + 1 < len(turns):
            assert not result.done
            messages += result.observation or []
    env.close()
    rendered = render_chat(tokenizer, messages, add_generation_prompt=False)
    base = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "MARK"}]
    tail = render_chat(tokenizer, base, add_generation_prompt=False).split("MARK", 1)[1]
    if t.tokens[-1] in stop_token_ids(tokenizer):
        tail = next((tail[len(s) :] for s in stop_texts(tokenizer) if tail.startswith(s)), tail)
    assert tokenizer.decode(t.tokens, skip_special_tokens=False) + tail == rendered
    return messages


def untrained_text(tokenizer: Any, t: Trajectory) -> tuple[str, str]:
    trained = [x for x, m in zip(t.tokens, t.mask) if m]
    other = [x for x, m in zip(t.tokens, t.mask) if not m]
    return tokenizer.decode(trained, skip_special_tokens=True), tokenizer.decode(other, skip_special_tokens=True)


def run(
    env_name: str,
    examples: list[Example],
    engine: Any,
    tokenizer: Any,
    n: int = 2,
    max_turns: int | None = None,
    options: dict | None = None,
    rewards: bool = False,
    max_new_tokens: int = 48,
) -> tuple[Environment, list[Trajectory]]:
    composer = RewardComposer(RewardConfig(components={"correct": 1.0}, workers=1)) if rewards else None
    environment = Environment(env_name, EnvContext(rewards=composer, options=options or {}), max_turns)
    try:
        trajectories = rollout(
            environment, engine, tokenizer, examples, n=n, params=SamplingParams(max_new_tokens), seed=0
        )
    except BaseException:
        environment.close()
        raise
    return environment, trajectories


# --- tool_math -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression, value",
    [
        ("12*(3+4)", 84),
        ("2^10", 1024),
        ("7/2", 3.5),
        ("-3**2", -9),
        ("17 // 5 + 17 % 5", 5),
        ("sqrt(16) + abs(-2)", 6.0),
        ("round(2.567, 2)", 2.57),
        ("max(3, 9, 4) =", 9),
        ("6 × 7", 42),
    ],
)
def test_calculator_values(expression: str, value: float) -> None:
    assert calculate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "x + 1",
        "(1).real",
        "[1, 2][0]",
        "'a' * 3",
        "9**9**9",
        "10**101",
        "2**100000",
        "1e308 * 10",
        "1/0",
        "5 % 0",
        "lambda: 1",
        "open('f')",
        "True + 1",
        "(" * 150 + "1" + ")" * 150,
        "1" * 400,
        "",
        "sqrt(-1)",
        "(-8) ** 0.5",
    ],
)
def test_calculator_refuses_names_attributes_huge_and_bad_input(expression: str) -> None:
    with pytest.raises(CalculatorError):
        calculate(expression)


def test_python_tool_runs_sandboxed_with_errors_and_timeouts() -> None:
    assert run_python("print(6 * 7)", 5.0, 256) == "42"
    assert run_python("```python\nprint(sum(range(5)))\n```", 5.0, 256) == "10"
    assert run_python("1/0", 5.0, 256).endswith("ZeroDivisionError: division by zero")
    assert run_python("x = 1", 5.0, 256).startswith("(no output")
    assert run_python("while True: pass", 1.0, 256) == "error: timed out after 1 s"


def test_tool_math_token_in_token_out(tokenizer: Any) -> None:
    script = [
        "Let me compute. <calculator>12*(3+4)</calculator>",
        "Check: <python>print(6*14)</python>",
        "Both give 84.\nAnswer: 84",
    ]
    engine = TurnEngine(tokenizer, script)
    environment, trajectories = run("tool_math", [QUESTION], engine, tokenizer, n=2, rewards=True)
    try:
        for t in trajectories:
            messages = check_token_in_token_out(environment, tokenizer, t, engine.turns)
            assert messages[0]["role"] == "system" and "<calculator>" in messages[0]["content"]
            assert [m["content"] for m in messages[1:] if m["role"] == "user" and "<result>" in m["content"]] == [
                "<result>\n84\n</result>",
                "<result>\n84\n</result>",
            ]
            assert t.step_rewards == [0.0, 0.0, 1.0] and t.reward == 1.0 and t.num_turns == 3
            assert t.reward_parts["correct"] == 1.0 and t.reward_parts["tool_calls"] == 2.0
            trained, untrained = untrained_text(tokenizer, t)
            assert "<result>" in untrained and "<result>" not in trained  # tool output is never trained on
        assert trajectories[0].step_states[0] == trajectories[1].step_states[0]  # same prompt, same state
    finally:
        environment.close()


def test_tool_math_last_turn_is_scored_as_the_answer() -> None:
    tok = ByteTokenizer()
    environment, (t,) = run(
        "tool_math",
        [QUESTION],
        TurnEngine(tok, ["<calculator>1+1</calculator>"]),
        tok,
        n=1,
        max_turns=2,
        rewards=True,
        options={"tools": ["calculator"], "format_bonus": 0.1, "demonstration": True},
    )
    try:
        messages = check_token_in_token_out(environment, tok, t)
        assert [m["role"] for m in messages[:6]] == ["system", "user", "assistant", "user", "assistant", "user"]
        assert messages[2]["content"] == "<calculator>23 * 4 + 7</calculator>"
        assert "python" not in messages[0]["content"]
        assert t.num_turns == 2 and t.step_rewards == [pytest.approx(0.1), 0.0]
        assert t.reward_parts["correct"] == 0.0  # a score even though the episode never answered
    finally:
        environment.close()


def test_tool_math_rejects_bad_options() -> None:
    composer = RewardComposer(RewardConfig(workers=1))
    try:
        with pytest.raises(ValueError, match="tools"):
            Environment("tool_math", EnvContext(rewards=composer, options={"tools": ["shell"]}))
    finally:
        composer.close()


# --- sokoban -------------------------------------------------------------------------------------------------


def sokoban_example(size: int = 5, seed: int = 3) -> Example:
    task = load_task(TaskConfig(name="sokoban", options={"size": size}, train_size=4, eval_size=2, seed=seed))
    return task.train[0]


def test_generated_boards_are_solvable_and_solutions_replay() -> None:
    rng = random.Random(0)
    made = 0
    for height, width, boxes, walls in [(5, 5, 1, 0), (6, 6, 1, 2), (6, 7, 2, 1), (7, 7, 2, 3)]:
        for _ in range(60):
            out = generate(rng, height, width, boxes, walls, min_moves=1)
            if out is None:
                continue
            board, solution = out
            made += 1
            assert parse(render(board)) == board and not board.solved()
            if len(solution) <= 5:  # optimal: no shorter move sequence solves it (exhaustive search)
                assert not any(
                    solves(board, seq) for k in range(len(solution)) for seq in itertools.product(MOVES, repeat=k)
                )
            for direction in solution:
                board, moved = move(board, direction)
                assert moved
            assert board.solved()
    assert made > 100


def solves(board: Any, moves: tuple[str, ...]) -> bool:
    for direction in moves:
        board, _ = move(board, direction)
    return board.solved()


def test_solver_moves_give_reward_one_through_the_rollout(tokenizer: Any) -> None:
    example = sokoban_example()
    solution = example.metadata["sokoban"]["solution"]
    script = [f"I will go {d}.\nAnswer: {d}" for d in solution]
    engine = TurnEngine(tokenizer, script)
    environment, trajectories = run("sokoban", [example], engine, tokenizer, n=2)
    for t in trajectories:
        check_token_in_token_out(environment, tokenizer, t, engine.turns)
        assert t.reward == 1.0 and t.reward_parts["correct"] == 1.0 and t.num_turns == len(solution)
        assert t.step_rewards == [0.0] * (len(solution) - 1) + [1.0]
        assert t.step_states[0] == example.metadata["sokoban"]["board"]  # the state key is the board itself
        _, untrained = untrained_text(tokenizer, t)
        assert untrained.count("moves left") == len(solution) - 1
    assert trajectories[0].step_states == trajectories[1].step_states
    batch = collate(trajectories, 0, 2)
    ids = batch.step_states[batch.step_ends].view(2, -1)  # (G, steps)
    assert ids[0].tolist() == ids[1].tolist() and len(set(ids[0].tolist())) == len(solution)


def test_sokoban_invalid_moves_walls_and_turn_limit() -> None:
    tok = ByteTokenizer()
    example = sokoban_example()
    environment, (t,) = run(
        "sokoban",
        [example],
        TurnEngine(tok, ["hmm", "I think left. no: Answer: U"]),
        tok,
        n=1,
        max_turns=3,
        options={"invalid_penalty": 0.2},
    )
    check_token_in_token_out(environment, tok, t)
    assert t.num_turns == 3 and t.step_rewards[0] == pytest.approx(-0.2) and t.reward_parts["invalid"] == 1.0
    assert t.reward_parts["correct"] == 0.0 and t.info["turn_limit"] is False  # the env ended it at its budget
    assert parse_move("left? right? Answer: **down**") == "down" and parse_move("go Left now") == "left"
    assert parse_move("no direction") is None and parse_move("Answer: r") == "right"


def test_sokoban_task_options_and_split() -> None:
    task = load_task(TaskConfig(name="sokoban", options={"size": 6, "eval": {"size": 7}}, train_size=30, eval_size=10))
    assert all(len(e.metadata["sokoban"]["board"].split("\n")) == 7 for e in task.eval)
    assert len({e.metadata["sokoban"]["board"] for e in task.eval}) == 10
    with pytest.raises(ValueError, match="not a sokoban option"):
        load_task(TaskConfig(name="sokoban", options={"sise": 6}))
    with pytest.raises(ValueError, match="size"):
        load_task(TaskConfig(name="sokoban", options={"size": 4}))
    with pytest.raises(ValueError, match="distinct eval boards"):
        load_task(
            TaskConfig(name="sokoban", options={"size": 5, "min_moves": 1, "max_moves": 1}, train_size=5, eval_size=50)
        )


# --- gymnasium and skyrl-gym adapters ------------------------------------------------------------------------


class CounterEnv:
    """A text Gymnasium-style environment: move a counter to its target with 'inc' / 'dec'."""

    def __init__(self, limit: int = 6) -> None:
        self.limit = limit

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        rng = random.Random(seed)
        self.value, self.target, self.steps = rng.sample(range(10), 2) + [0]
        return self.show(), {}

    def show(self) -> str:
        return f"Counter: {self.value}. Target: {self.target}. Reply inc or dec."

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        words = [w for w in action.lower().replace(".", " ").split() if w in ("inc", "dec")]
        self.steps += 1
        if words:
            self.value += 1 if words[-1] == "inc" else -1
        done = self.value == self.target
        return self.show(), float(done), done, self.steps >= self.limit and not done, {"is_success": done}

    def close(self) -> None:
        pass


def counter_script(example: Example) -> list[str]:
    obs = example.metadata["gymnasium"]["observation"]
    value, target = int(obs.split()[1].rstrip(".")), int(obs.split()[3].rstrip("."))
    return ["inc" if target > value else "dec"] * abs(target - value)


def test_gymnasium_task_and_adapter(tokenizer: Any) -> None:
    task = load_task(
        TaskConfig(name=f"gymnasium:{__name__}:CounterEnv", options={"limit": 12}, train_size=6, eval_size=4)
    )
    example = task.train[0]
    engine = TurnEngine(tokenizer, counter_script(example))
    environment, trajectories = run("gymnasium", [example], engine, tokenizer, n=2)
    for t in trajectories:
        check_token_in_token_out(environment, tokenizer, t, engine.turns)
        assert t.reward == 1.0 and t.reward_parts["correct"] == 1.0 and t.num_turns == len(engine.turns)
    assert len({e.prompt[-1]["content"] for e in task.eval}) == 4


def test_gymnasium_registered_id_and_truncation() -> None:
    gymnasium = pytest.importorskip("gymnasium")
    import string

    class GymCounter(CounterEnv, gymnasium.Env):  # a real gymnasium.Env with Text spaces, through gymnasium.make
        observation_space = gymnasium.spaces.Text(200, charset=string.printable)
        action_space = gymnasium.spaces.Text(200, charset=string.printable)

        def __init__(self, limit: int = 6) -> None:
            CounterEnv.__init__(self, limit)

        def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
            gymnasium.Env.reset(self, seed=seed)
            return CounterEnv.reset(self, seed, options)

    gymnasium.registry.pop("reasonrl-test/Counter-v0", None)
    gymnasium.register(id="reasonrl-test/Counter-v0", entry_point=GymCounter)
    tok = ByteTokenizer()
    plain = Example(id="episode-7", prompt=[{"role": "system", "content": "Play the counter game."}])
    environment, (t,) = run(
        "gymnasium",
        [plain],
        TurnEngine(tok, ["no idea"]),
        tok,
        n=1,
        options={"id": "reasonrl-test/Counter-v0", "kwargs": {"limit": 3}},
    )
    check_token_in_token_out(environment, tok, t)
    assert t.num_turns == 3 and t.reward == 0.0 and t.reward_parts["correct"] == 0.0
    with pytest.raises(ValueError, match="registered Gymnasium id"):
        Environment("gymnasium", EnvContext(options={"id": "reasonrl-test/Nope-v0"}))


class GuessEnv:
    """A skyrl-gym-style environment (Env(env_config, extras), init/step on messages): answer until right."""

    def __init__(self, env_config: Any = None, extras: dict | None = None) -> None:
        self.answer = extras["reward_spec"]["ground_truth"]
        self.max_turns, self.turns = extras.get("max_turns", 5), 0  # its own limit unless the config sets one

    def init(self, prompt: list[dict]) -> tuple[list[dict], dict]:
        return prompt, {}

    def step(self, action: str) -> dict:
        self.turns += 1
        right = action.strip().endswith(self.answer)
        done = right or self.turns >= self.max_turns
        observations = [] if done else [{"role": "user", "content": "Wrong, try again."}]
        return {"observations": observations, "reward": float(right), "done": done, "metadata": {}}

    def close(self) -> None:
        pass


def test_skyrl_adapter_with_a_skyrl_style_class(tokenizer: Any) -> None:
    engine = TurnEngine(tokenizer, ["It is 48", "It is 84"])
    environment, trajectories = run(
        "skyrl_gym",
        [QUESTION],
        engine,
        tokenizer,
        n=2,
        options={"id": f"{__name__}:GuessEnv", "success_threshold": 1.0},
    )
    for t in trajectories:
        check_token_in_token_out(environment, tokenizer, t, engine.turns)
        assert t.step_rewards == [0.0, 1.0] and t.reward_parts["correct"] == 1.0
    with pytest.raises(ValueError, match="skyrl"):
        Environment("skyrl_gym", EnvContext(options={}))


def test_skyrl_adapter_runs_skyrl_gym_multi_turn_gsm8k() -> None:
    pytest.importorskip("skyrl_gym")
    tok = ByteTokenizer()
    environment, (t,) = run(
        "skyrl_gym",
        [QUESTION],
        TurnEngine(tok, ["#### 48", "#### 84"]),
        tok,
        n=1,
        max_turns=4,
        options={"id": "gsm8k_multi_turn", "success_threshold": 1.0},
    )
    check_token_in_token_out(environment, tok, t)
    assert t.num_turns == 2 and t.step_rewards == [pytest.approx(0.2 / 4), 1.0]  # skyrl's format score, then 1
    assert t.reward_parts["correct"] == 1.0


def test_a_turn_cut_at_the_token_limit_is_closed_with_the_templates_end_of_turn_token() -> None:
    """When EOS is not the end-of-turn marker (Gemma: <eos> vs <end_of_turn>), a truncated turn must be closed
    with the marker the template writes, or the conversation differs from the template's rendering."""
    if not SMOLLM2.exists():
        pytest.skip("the bundled SmolLM2 is not converted (scripts/setup.sh does it)")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SMOLLM2)
    tok.eos_token = "<|endoftext|>"  # id 0, below <|im_end|> (2), which the template ends turns with
    assert stop_token_ids(tok) == {0, 2}
    example = sokoban_example()
    engine = TurnEngine(tok, ["Answer: up", "Answer: down"], finished=False)
    environment, (t,) = run("sokoban", [example], engine, tok, n=1, max_turns=2)
    check_token_in_token_out(environment, tok, t, engine.turns)
    assert t.tokens[len(engine.turns[0]) + t.mask.index(True)] == 2  # <|im_end|>, not trained (mask False)


# --- the tiny model ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_name", ["tool_math", "sokoban", "gymnasium", "skyrl_gym"])
def test_tiny_model_rollouts_keep_token_in_token_out(tiny, env_name: str) -> None:
    from reasonrl.config import EngineConfig
    from reasonrl.engine.hf import HFEngine

    model, tok = tiny
    sampler = HFEngine(model, tok, EngineConfig())
    example, options, script = QUESTION, {}, []
    if env_name == "tool_math":  # the random model never calls a tool: script the first turn's call
        script = ["<calculator>2+3</calculator>"]
    elif env_name == "sokoban":
        example = sokoban_example(size=5)
    elif env_name == "gymnasium":
        example = load_task(TaskConfig(name=f"gymnasium:{__name__}:CounterEnv", train_size=2, eval_size=1)).train[0]
    else:
        options = {"id": f"{__name__}:GuessEnv"}
    engine = TurnEngine(tok, script, rest=sampler)
    environment, trajectories = run(
        env_name,
        [example],
        engine,
        tok,
        n=2,
        max_turns=3,
        options=options,
        rewards=env_name == "tool_math",
        max_new_tokens=12,
    )
    try:
        for t in trajectories:
            check_token_in_token_out(environment, tok, t)
            assert t.num_turns >= 2
    finally:
        environment.close()


def test_the_environments_own_turn_limit_and_threshold_apply_unless_the_config_sets_them() -> None:
    pytest.importorskip("skyrl_gym")
    gymnasium = pytest.importorskip("gymnasium")
    tok = ByteTokenizer()
    environment, (t,) = run(
        "skyrl_gym",
        [QUESTION],
        TurnEngine(tok, ["#### 48", "#### 84"]),
        tok,
        n=1,
        options={"id": "gsm8k_multi_turn", "success_threshold": 1.0},
    )
    assert t.step_rewards == [pytest.approx(0.2 / 5), 1.0]  # gsm8k_multi_turn's own 5 turns, not our 10
    gymnasium.registry.pop("reasonrl-test/Guess-v0", None)
    gymnasium.register(
        id="reasonrl-test/Guess-v0",
        entry_point="reasonrl.envs.guess:GuessNumber",
        max_episode_steps=7,
        reward_threshold=0.5,
    )
    spec_env = Environment("gymnasium", EnvContext(options={"id": "reasonrl-test/Guess-v0"}))
    assert spec_env.max_turns == 7 and spec_env.make().threshold == 0.5  # type: ignore[attr-defined]
    set_env = Environment(
        "gymnasium", EnvContext(options={"id": "reasonrl-test/Guess-v0", "success_threshold": 1.0}), max_turns=3
    )
    assert set_env.max_turns == 3 and set_env.make().threshold == 1.0  # type: ignore[attr-defined]
    gymnasium.registry.pop("reasonrl-test/Guess-v0", None)
