"""sokoban: procedurally generated small Sokoban boards for the sokoban environment (reasonrl/envs/sokoban.py).

    task.name=sokoban task.options={size: 6, boxes: 1}

A board is made by placing the boxes on their targets (the solved state) and playing backwards: the player
walks and pulls boxes at random, which only ever leads to positions from which pushes undo the pulls, so every
board is solvable. A BFS solver then gives the shortest solution (the example's answer) and rejects boards
that are already solved or shorter than min_moves. Eval boards are distinct from each other and from every
train board; train boards may repeat (small rooms have few distinct boards).

Options (task.options): size (room side with its walls, or [height, width]; default 6), boxes (1), walls
(extra interior wall cells, 0), min_moves (2), max_moves (None: no cap), max_steps (the episode's move budget;
None: 2 * shortest solution + 4), eval (option overrides for the eval boards, e.g. {size: 7}: harder held-out
boards).
"""

from __future__ import annotations

import random
from typing import Any

from reasonrl.config import TaskConfig
from reasonrl.envs.sokoban import LEGEND, MOVES, Board, render, solve
from reasonrl.tasks import TASKS, Task, derive_seed, make_prompt, task_options
from reasonrl.types import Example

SOKOBAN_INSTRUCTION = "Think briefly, then end your reply with your move in the form: Answer: <up|down|left|right>"
"""The default instruction of the sokoban task (task.instruction=None)."""
RULES = (
    "You are playing Sokoban. Push every box onto a target. Each turn you move one square up, down, left "
    "or right; walking into a box pushes it one square if the square behind it is free. Boxes cannot be "
    f"pulled. Up is towards the first row. Legend: {LEGEND}."
)
_OPTIONS = ("size", "boxes", "walls", "min_moves", "max_moves", "max_steps", "eval")
_TRIES_PER_BOARD = 50


def room_size(size: Any) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if not (isinstance(height, int) and isinstance(width, int) and 5 <= height <= 12 and 5 <= width <= 12):
        raise ValueError(
            f"task.options.size={size!r} must be an int or [height, width] between 5 and 12 (the "
            "room with its outer walls)"
        )
    return height, width


def generate(
    rng: random.Random,
    height: int,
    width: int,
    boxes: int = 1,
    walls: int = 0,
    min_moves: int = 1,
    max_moves: int | None = None,
) -> tuple[Board, list[str]] | None:
    """One solvable board and its shortest solution, or None when this draw gave none that fits."""
    outer = {(r, c) for r in range(height) for c in range(width) if r in (0, height - 1) or c in (0, width - 1)}
    inside = [(r, c) for r in range(1, height - 1) for c in range(1, width - 1)]
    rng.shuffle(inside)
    if len(inside) < walls + boxes + 1:
        return None
    wall_cells, targets = set(inside[:walls]), inside[walls : walls + boxes]
    board = Board(
        height, width, frozenset(outer | wall_cells), frozenset(targets), frozenset(targets), inside[walls + boxes]
    )
    board = play_backwards(rng, board, steps=rng.randint(4, 8 * (height + width) * boxes))
    if board.solved():
        return None
    solution = solve(board)
    if solution is None or len(solution) < min_moves or (max_moves is not None and len(solution) > max_moves):
        return None
    return board, solution


def play_backwards(rng: random.Random, board: Board, steps: int) -> Board:
    """Random reverse moves from a solved board: step away, pulling the box behind the player (if any) along
    with probability 1/2. Pushes undo pulls, so the board stays solvable."""
    player, boxes = board.player, set(board.boxes)
    for _ in range(steps):
        dr, dc = rng.choice(list(MOVES.values()))
        ahead, behind = (player[0] + dr, player[1] + dc), (player[0] - dr, player[1] - dc)
        if ahead in board.walls or ahead in boxes:
            continue
        if behind in boxes and rng.random() < 0.5:
            boxes = (boxes - {behind}) | {player}
        player = ahead
    return Board(board.height, board.width, board.walls, board.targets, frozenset(boxes), player)


def board_example(
    board: Board, solution: list[str], cfg: TaskConfig, split: str, index: int, max_steps: int | None
) -> Example:
    text = render(board)
    budget = max_steps if max_steps is not None else 2 * len(solution) + 4
    question = f"{RULES}\n\n{text}\n\nYou have {budget} moves."
    return Example(
        id=f"sokoban/{split}/{index}",
        prompt=make_prompt(question, cfg, SOKOBAN_INSTRUCTION),
        answer=" ".join(solution),
        task=cfg.name,
        metadata={"sokoban": {"board": text, "solution": solution, "max_steps": budget}},
        source=f"sokoban#{split},idx={index}",
    )


def boards(
    rng: random.Random, count: int, options: dict[str, Any], exclude: set[str], unique: bool, what: str
) -> list[tuple[Board, list[str]]]:
    """count generated boards whose renderings are not in exclude (nor repeated, when unique)."""
    height, width = room_size(options.get("size", 6))
    out: list[tuple[Board, list[str]]] = []
    seen = set(exclude)
    for _ in range(_TRIES_PER_BOARD * count):
        if len(out) == count:
            break
        made = generate(
            rng,
            height,
            width,
            int(options.get("boxes", 1)),
            int(options.get("walls", 0)),
            int(options.get("min_moves", 2)),
            options.get("max_moves"),
        )
        if made is None or render(made[0]) in seen:
            continue
        if unique:
            seen.add(render(made[0]))
        out.append(made)
    if len(out) < count:
        raise ValueError(
            f"sokoban task: found only {len(out)} distinct {what} boards of {count} wanted with "
            f"options {options}; lower task.{what}_size or use larger rooms (task.options.size)"
        )
    return out


@TASKS.register("sokoban")
@task_options(
    size=(6, "room side with its walls, or [height, width], 5 to 12"),
    boxes=(1, "boxes (and targets) per board"),
    walls=(0, "extra interior wall cells"),
    min_moves=(2, "shortest solution at least this long"),
    max_moves=(None, "shortest solution at most this long (None: no cap)"),
    max_steps=(None, "the episode's move budget (None: 2 * shortest solution + 4)"),
    eval=(None, "option overrides for the held-out boards, e.g. {size: 7}"),
)
def load_sokoban(cfg: TaskConfig) -> Task:
    """Train and eval boards from two seeds derived from task.seed."""
    unknown = [k for k in cfg.options if k not in _OPTIONS]
    if unknown:
        raise ValueError(f"task.options.{unknown[0]} is not a sokoban option; valid: {', '.join(_OPTIONS)}")
    if cfg.options.get("boxes", 1) < 1 or cfg.options.get("walls", 0) < 0:
        raise ValueError(
            f"task.options boxes ({cfg.options.get('boxes')}) must be >= 1 and walls ({cfg.options.get('walls')}) >= 0"
        )
    train_options = {k: v for k, v in cfg.options.items() if k != "eval"}
    eval_options = train_options | dict(cfg.options.get("eval") or {})
    max_steps = cfg.options.get("max_steps")
    held_out = boards(random.Random(derive_seed(cfg.seed, "eval")), cfg.eval_size, eval_options, set(), True, "eval")
    eval_texts = {render(b) for b, _ in held_out}
    train = boards(
        random.Random(derive_seed(cfg.seed, "train")), cfg.train_size, train_options, eval_texts, False, "train"
    )
    return Task(
        name=cfg.name,
        train=[board_example(b, s, cfg, "train", i, max_steps) for i, (b, s) in enumerate(train)],
        eval=[board_example(b, s, cfg, "eval", i, eval_options.get("max_steps")) for i, (b, s) in enumerate(held_out)],
    )
