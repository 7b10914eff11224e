"""tool_math: multi-turn tool use for math. The policy may call a calculator or a sandboxed Python tool inside
its reasoning; the environment runs the calls and answers with their results; a reply without a tool call is
the final answer, scored with the run's rewards (like single_turn), and ends the episode.

    turn k:   policy: "... <calculator>12*(3+4)</calculator>"      reward 0 (format_bonus if set)
              env:    user message "<result>84</result>"           (tokens with mask False: never trained)
    last:     policy: "... Answer: 84"                             reward = rewards(answer), done

    reasonrl train recipes/tool_math.yaml          # env.name=tool_math with a reasoning_gym arithmetic task

The tool instructions come from the environment, not the task: reset prepends a system message describing the
enabled tools (env.options.tools), so any question task works unchanged (option instructions=false turns it
off; then write your own with task.system_prompt); option demonstration=true also shows one worked exchange
(question, tool call, result, answer) before the question, which small models need. On the last allowed turn
(env.max_turns) every reply is scored as the final answer, so an episode always ends with a score. The
calculator is an AST evaluator (no eval): numbers, + - * / // % ** (and ^ as a power), parentheses and
sqrt/abs/round/min/max, with bounded magnitudes. The Python tool runs in reasonrl.sandbox (no network,
CPU/memory/time limits).
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import operator
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reasonrl.envs import ENVS, BaseEnv, EnvContext
from reasonrl.types import Example, Message, StepResult

TOOLS = ("calculator", "python")
_CALL = re.compile(r"<(calculator|python)>(.*?)</\1>", re.DOTALL)
_FENCE = re.compile(r"^```(?:python|py)?\s*\n?(.*?)\n?```$", re.DOTALL)

MAX_EXPRESSION_CHARS = 300
"""Longest calculator expression."""
MAX_MAGNITUDE = 10**100
"""Largest absolute value of a calculator number or intermediate result."""

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {"sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max}


class CalculatorError(ValueError):
    """An expression the calculator refuses or cannot evaluate."""


def _power(base: Any, exponent: Any) -> Any:
    if abs(exponent) > 1000 or (abs(base) > 1 and abs(exponent) * math.log10(abs(base)) > 100):
        raise CalculatorError("result too large")
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero")
    return base**exponent


def _checked(value: Any) -> Any:
    if isinstance(value, complex) or (isinstance(value, float) and not math.isfinite(value)):
        raise CalculatorError("result is not a finite real number")
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("result too large")
    return value


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _checked(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _evaluate(node.operand)
        return value if isinstance(node.op, ast.UAdd) else -value
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, (ast.Pow, ast.BitXor)):
            return _checked(_power(left, right))
        if type(node.op) not in _BINARY:
            raise CalculatorError(f"operator {type(node.op).__name__} is not allowed")
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise CalculatorError("division by zero")
        return _checked(_BINARY[type(node.op)](left, right))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
        and 1 <= len(node.args) <= 8
    ):
        args = [_evaluate(a) for a in node.args]
        if node.func.id == "sqrt" and args[0] < 0:
            raise CalculatorError("sqrt of a negative number")
        if node.func.id == "round" and len(args) == 2 and not isinstance(args[1], int):
            raise CalculatorError("round(x, digits) needs whole digits")
        try:
            return _checked(_FUNCTIONS[node.func.id](*args))
        except TypeError as e:
            raise CalculatorError(str(e)) from None
    raise CalculatorError(
        f"{type(node).__name__} is not allowed (numbers, + - * / // % ** ^, parentheses and "
        f"{', '.join(_FUNCTIONS)} only)"
    )


def calculate(expression: str) -> int | float:
    """The value of an arithmetic expression, without eval. Raises CalculatorError on anything else."""
    text = expression.strip().rstrip("=").strip()
    text = text.replace("×", "*").replace("÷", "/").replace("−", "-")
    if not text:
        raise CalculatorError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise CalculatorError(f"cannot parse: {getattr(e, 'msg', None) or type(e).__name__}") from None
    try:
        return _evaluate(tree)
    except (OverflowError, RecursionError, ZeroDivisionError, ValueError) as e:
        if isinstance(e, CalculatorError):
            raise
        raise CalculatorError(str(e) or type(e).__name__) from None


def format_number(value: int | float) -> str:
    """Integers as they are; whole floats below 1e15 without '.0'; other floats to 12 significant digits."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".12g") if isinstance(value, float) else str(value)


def run_calculator(expression: str) -> str:
    try:
        return format_number(calculate(expression))
    except CalculatorError as e:
        return f"error: {e}"


def run_python(code: str, timeout_s: float, memory_mb: int) -> str:
    """Run code in the sandbox: its stdout, and the end of stderr when it failed."""
    from reasonrl.sandbox import Limits, SandboxError, run

    fenced = _FENCE.match(code.strip())
    source = fenced.group(1) if fenced else code
    try:
        result = run(
            ["{python}", "main.py"],
            files={"main.py": source},
            limits=Limits(timeout_s=timeout_s, memory_mb=memory_mb, output_bytes=4096),
        )
    except SandboxError as e:
        return f"error: the sandbox failed: {str(e)[-200:]}"
    if result.timed_out:
        return f"error: timed out after {timeout_s:g} s"
    out = result.stdout
    if result.returncode != 0:
        last = [line for line in result.stderr.strip().splitlines() if line.strip()][-1:] or [
            f"exit code {result.returncode}"
        ]
        out += f"error: {last[0]}"
    return out.strip() or "(no output: print the values you need)"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " ... (truncated)"


def tool_instructions(tools: tuple[str, ...]) -> str:
    """The system message that explains the enabled tools."""
    lines = ["You can use tools while you reason."]
    if "calculator" in tools:
        lines.append(
            "To compute arithmetic, write <calculator>EXPRESSION</calculator>, for example "
            "<calculator>12*(3+4)</calculator>."
        )
    if "python" in tools:
        lines.append(
            "To run Python, write <python>CODE</python> and print the values you need, for example "
            "<python>print(sum(range(10)))</python>."
        )
    lines.append(
        "After a tool call, end your turn: the result comes back as <result>...</result>. "
        "When you know the answer, reply without any tool call."
    )
    return " ".join(lines)


def demonstration(tools: tuple[str, ...]) -> list[Message]:
    """A worked exchange shown before the question (option demonstration): a call, its result, the answer."""
    call = "<calculator>23 * 4 + 7</calculator>" if "calculator" in tools else "<python>print(23 * 4 + 7)</python>"
    return [
        {"role": "user", "content": "Calculate 23 * 4 + 7."},
        {"role": "assistant", "content": call},
        {"role": "user", "content": "<result>\n99\n</result>"},
        {"role": "assistant", "content": "The result is 99.\nAnswer: 99"},
    ]


@ENVS.register("tool_math")
class ToolMathEnv(BaseEnv):
    """Tool calls (<calculator>, <python>) answered with <result> messages; a reply without one is final."""

    default_max_turns = 4

    def __init__(
        self,
        ctx: EnvContext,
        tools: list[str] | tuple[str, ...] = TOOLS,
        instructions: bool = True,
        format_bonus: float = 0.0,
        max_calls_per_turn: int = 4,
        max_output_chars: int = 400,
        python_timeout_s: float = 5.0,
        python_memory_mb: int = 256,
        result_role: str = "user",
        demonstration: bool = False,
    ) -> None:
        super().__init__(ctx)
        if ctx.rewards is None:
            raise ValueError("the tool_math environment needs the run's rewards (EnvContext.rewards)")
        unknown = [t for t in tools if t not in TOOLS]
        if unknown or not tools:
            raise ValueError(f"env.options.tools={list(tools)} must name at least one of {', '.join(TOOLS)}")
        if max_calls_per_turn < 1 or max_output_chars < 1:
            raise ValueError(
                f"env.options.max_calls_per_turn ({max_calls_per_turn}) and max_output_chars "
                f"({max_output_chars}) must be >= 1"
            )
        self.tools, self.instructions, self.format_bonus = tuple(tools), instructions, format_bonus
        self.demo = demonstration
        self.max_calls, self.max_chars, self.result_role = max_calls_per_turn, max_output_chars, result_role
        self.python_timeout_s, self.python_memory_mb = python_timeout_s, python_memory_mb
        self.turns = 0

    def reset(self, example: Example) -> list[Message]:
        super().reset(example)
        self.turns = 0
        if self.demo:
            head = 1 if self.messages and self.messages[0]["role"] == "system" else 0
            self.messages[head:head] = demonstration(self.tools)
        if self.instructions:
            text = tool_instructions(self.tools)
            if self.messages and self.messages[0]["role"] == "system":
                self.messages[0] = {"role": "system", "content": f"{text}\n\n{self.messages[0]['content']}"}
            else:
                self.messages.insert(0, {"role": "system", "content": text})
        return list(self.messages)

    def state_key(self) -> str:
        """A hash of the whole conversation so far: the state of a tool episode is its history."""
        return hashlib.sha1(json.dumps(self.messages, sort_keys=True).encode()).hexdigest()[:16]

    def calls(self, action: str) -> list[tuple[str, str]]:
        return [(m.group(1), m.group(2)) for m in _CALL.finditer(action) if m.group(1) in self.tools]

    def run_tool(self, name: str, source: str) -> str:
        if name == "calculator":
            return run_calculator(source)
        return run_python(source, self.python_timeout_s, self.python_memory_mb)

    def step(self, action: str) -> StepResult:
        return self.step_batch([self], [action])[0]

    @classmethod
    def step_batch(cls, envs: list[BaseEnv], actions: list[str]) -> list[StepResult]:
        """Final answers are scored together (reward workers); tool calls run in a few threads (each Python
        call is its own sandbox process)."""
        episodes: list[ToolMathEnv] = envs  # type: ignore[assignment]
        for env, action in zip(episodes, actions):
            env.turns += 1
            env.messages.append({"role": "assistant", "content": action})
        final = [i for i, (e, a) in enumerate(zip(episodes, actions)) if not e.calls(a) or e.turns >= e.ctx.max_turns]
        results: dict[int, StepResult] = {}
        if final:
            results.update(zip(final, score_answers([episodes[i] for i in final], [actions[i] for i in final])))
        pending = [i for i in range(len(episodes)) if i not in results]
        with ThreadPoolExecutor(max_workers=4) as pool:
            for i, result in zip(pending, pool.map(lambda i: episodes[i].tool_step(actions[i]), pending)):
                results[i] = result
        return [results[i] for i in range(len(episodes))]

    def tool_step(self, action: str) -> StepResult:
        calls = self.calls(action)
        outputs = [clip(self.run_tool(name, source), self.max_chars) for name, source in calls[: self.max_calls]]
        outputs += [f"error: at most {self.max_calls} tool calls per turn"] * (len(calls) > self.max_calls)
        observation: list[Message] = [
            {"role": self.result_role, "content": "\n".join(f"<result>\n{o}\n</result>" for o in outputs)}
        ]
        self.messages += observation
        ok = any(not o.startswith("error:") for o in outputs)
        return StepResult(
            observation=observation,
            reward=self.format_bonus * ok,
            done=False,
            reward_parts={"tool_calls": float(len(calls))},
            info={"tool_errors": [o for o in outputs if o.startswith("error:")]},
        )


def score_answers(envs: list[ToolMathEnv], actions: list[str]) -> list[StepResult]:
    """Score final answers with the run's rewards; the episode ends."""
    rewards = envs[0].ctx.rewards
    scored = rewards.score(actions, [e.example for e in envs])  # type: ignore[union-attr,misc]
    out = []
    for env, action, s in zip(envs, actions, scored):
        parts = dict(s.parts) | {"tool_calls": float(len(env.calls(action)))}
        out.append(
            StepResult(
                observation=None,
                reward=s.total if s.total is not None else float("nan"),
                done=True,
                reward_parts=parts,
                reward_steps=s.steps,
                info={"errors": s.errors, "dropped": s.total is None, "gated": s.gated},
            )
        )
    return out
