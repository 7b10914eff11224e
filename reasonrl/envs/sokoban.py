"""Sokoban on text: small boards, one move per turn, reward 1 when every box is on a target (GiGPO's setting,
arXiv:2505.10978, appendix). Boards come from the "sokoban" task (reasonrl/tasks/sokoban.py), which generates
them by playing backwards from the solved state (so every board is solvable) and checks them with a BFS solver.

    task.name=sokoban env.name=sokoban                 # recipes/sokoban.yaml

The policy sees the board with a legend and answers with a move: the last "Answer: <direction>" line, else the
last of the words up/down/left/right in its reply. A reply without a move is a no-op with a small penalty
(invalid_penalty). Walking into a wall, or pushing a box into a wall or another box, moves nothing (no penalty).
Optional shaping, off by default: step_penalty per move and box_reward for each box pushed onto a target (minus
as much for each pushed off). state_key() is the board's rendering, so identical boards in a group are one
anchor state for GiGPO. The episode ends when solved or after the example's move budget (metadata max_steps)
or env.max_turns, whichever is first.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, replace

from reasonrl.envs import ENVS, BaseEnv, EnvContext
from reasonrl.types import Example, Message, StepResult

Cell = tuple[int, int]
MOVES: dict[str, Cell] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
LEGEND = "# wall, _ floor, O target, X box, * box on a target, P you, S you on a target"
WALL, FLOOR, TARGET, BOX, BOX_ON_TARGET, PLAYER, PLAYER_ON_TARGET = "#", "_", "O", "X", "*", "P", "S"
_ANSWER = re.compile(r"answer\s*[:=]?\s*[*`'\"]*\s*(up|down|left|right|[udlr])\b", re.IGNORECASE)
_WORD = re.compile(r"\b(up|down|left|right)\b", re.IGNORECASE)
_LETTERS = {"u": "up", "d": "down", "l": "left", "r": "right"}


@dataclass(frozen=True)
class Board:
    """A Sokoban position: walls and targets are fixed, boxes and the player move."""

    height: int
    width: int
    walls: frozenset[Cell]
    targets: frozenset[Cell]
    boxes: frozenset[Cell]
    player: Cell

    def solved(self) -> bool:
        return self.boxes == self.targets

    def free(self, cell: Cell) -> bool:
        """Inside the board, not a wall, not a box."""
        r, c = cell
        return 0 <= r < self.height and 0 <= c < self.width and cell not in self.walls and cell not in self.boxes


def move(board: Board, direction: str) -> tuple[Board, bool]:
    """The board after the player tries to move; (board, False) when nothing moved."""
    dr, dc = MOVES[direction]
    ahead = (board.player[0] + dr, board.player[1] + dc)
    if board.free(ahead):
        return replace(board, player=ahead), True
    if ahead in board.boxes:
        beyond = (ahead[0] + dr, ahead[1] + dc)
        if board.free(beyond):
            return replace(board, player=ahead, boxes=(board.boxes - {ahead}) | {beyond}), True
    return board, False


def render(board: Board) -> str:
    rows = []
    for r in range(board.height):
        row = []
        for c in range(board.width):
            cell, on_target = (r, c), (r, c) in board.targets
            if cell in board.walls:
                row.append(WALL)
            elif cell == board.player:
                row.append(PLAYER_ON_TARGET if on_target else PLAYER)
            elif cell in board.boxes:
                row.append(BOX_ON_TARGET if on_target else BOX)
            else:
                row.append(TARGET if on_target else FLOOR)
        rows.append("".join(row))
    return "\n".join(rows)


def parse(text: str) -> Board:
    """The inverse of render. Raises ValueError on an unknown symbol or a board without exactly one player."""
    rows = text.strip("\n").split("\n")
    walls, targets, boxes, players = set(), set(), set(), []
    for r, row in enumerate(rows):
        for c, ch in enumerate(row):
            if ch not in (WALL, FLOOR, TARGET, BOX, BOX_ON_TARGET, PLAYER, PLAYER_ON_TARGET):
                raise ValueError(f"sokoban board: unknown symbol {ch!r} at row {r}, column {c}; legend: {LEGEND}")
            if ch == WALL:
                walls.add((r, c))
            if ch in (TARGET, BOX_ON_TARGET, PLAYER_ON_TARGET):
                targets.add((r, c))
            if ch in (BOX, BOX_ON_TARGET):
                boxes.add((r, c))
            if ch in (PLAYER, PLAYER_ON_TARGET):
                players.append((r, c))
    if len(players) != 1 or len(boxes) != len(targets) or not boxes:
        raise ValueError(
            f"sokoban board needs one player and as many boxes as targets (at least one); got "
            f"{len(players)} players, {len(boxes)} boxes, {len(targets)} targets:\n{text}"
        )
    return Board(
        len(rows), max(len(r) for r in rows), frozenset(walls), frozenset(targets), frozenset(boxes), players[0]
    )


def solve(board: Board, max_states: int = 200_000) -> list[str] | None:
    """A shortest move sequence that solves the board (breadth-first search), or None when there is none
    within max_states positions."""
    start = (board.player, board.boxes)
    parents: dict[tuple[Cell, frozenset[Cell]], tuple[tuple[Cell, frozenset[Cell]], str] | None] = {start: None}
    queue = deque([board])
    while queue:
        current = queue.popleft()
        if current.solved():
            path, key = [], (current.player, current.boxes)
            while parents[key] is not None:
                key, direction = parents[key]  # type: ignore[misc]
                path.append(direction)
            return path[::-1]
        for direction in MOVES:
            nxt, moved = move(current, direction)
            key = (nxt.player, nxt.boxes)
            if moved and key not in parents:
                if len(parents) >= max_states:
                    return None
                parents[key] = ((current.player, current.boxes), direction)
                queue.append(nxt)
    return None


def parse_move(action: str) -> str | None:
    """The move in a reply: the last 'Answer: <direction>' (a word or u/d/l/r), else the last direction word."""
    answers = _ANSWER.findall(action)
    if answers:
        word = answers[-1].lower()
        return _LETTERS.get(word, word)
    words = _WORD.findall(action)
    return words[-1].lower() if words else None


@ENVS.register("sokoban")
class SokobanEnv(BaseEnv):
    """One Sokoban episode on the board in example.metadata['sokoban'] (from the sokoban task)."""

    default_max_turns = 20

    def __init__(
        self,
        ctx: EnvContext,
        solve_reward: float = 1.0,
        invalid_penalty: float = 0.1,
        step_penalty: float = 0.0,
        box_reward: float = 0.0,
    ) -> None:
        super().__init__(ctx)
        if invalid_penalty < 0 or step_penalty < 0:
            raise ValueError(
                f"env.options.invalid_penalty ({invalid_penalty}) and step_penalty ({step_penalty}) "
                "are subtracted, so they must be >= 0"
            )
        self.solve_reward, self.invalid_penalty = solve_reward, invalid_penalty
        self.step_penalty, self.box_reward = step_penalty, box_reward
        self.board: Board | None = None
        self.steps, self.budget = 0, 0

    def reset(self, example: Example) -> list[Message]:
        info = example.metadata.get("sokoban")
        if not isinstance(info, dict) or "board" not in info:
            raise ValueError(
                f"env sokoban: example {example.id!r} has no sokoban board in its metadata; use task.name=sokoban"
            )
        self.board = parse(info["board"])
        self.steps = 0
        self.budget = min(int(info.get("max_steps") or self.ctx.max_turns), self.ctx.max_turns)
        return super().reset(example)

    def state_key(self) -> str:
        """The board as shown: identical boards are identical states."""
        assert self.board is not None, "reset() first"
        return render(self.board)

    def step(self, action: str) -> StepResult:
        assert self.board is not None, "reset() first"
        self.steps += 1
        direction = parse_move(action)
        before = self.board
        if direction is None:
            reward, note = (
                -self.invalid_penalty,
                ("No move found in your reply (end it with 'Answer: up', 'down', 'left' or 'right'); nothing moved."),
            )
        else:
            self.board, moved = move(before, direction)
            pushed = moved and self.board.boxes != before.boxes
            on_target = len(self.board.boxes & self.board.targets) - len(before.boxes & before.targets)
            reward = -self.step_penalty + self.box_reward * on_target
            note = (
                f"You pushed a box {direction}."
                if pushed
                else f"You moved {direction}."
                if moved
                else f"You cannot move {direction} there; nothing moved."
            )
        solved = self.board.solved()
        done = solved or self.steps >= self.budget
        parts: dict[str, float | None] = {"invalid": float(direction is None)}
        if done:
            reward += self.solve_reward * solved
            parts["correct"] = float(solved)
        if done:
            return StepResult(
                observation=None, reward=reward, done=True, reward_parts=parts, info={"moves": self.steps}
            )
        left = self.budget - self.steps
        observation: list[Message] = [
            {
                "role": "user",
                "content": (
                    f"{note}\n\n{render(self.board)}\n\n{left} move{'s' * (left != 1)} left. "
                    "Your next move? End with: Answer: <up|down|left|right>"
                ),
            }
        ]
        self.messages += [Message(role="assistant", content=action)] + observation
        return StepResult(observation=observation, reward=reward, done=False, reward_parts=parts)
