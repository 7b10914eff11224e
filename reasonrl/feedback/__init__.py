"""Human feedback: people compare two answers in a browser; their judgements train a reward model.

    reasonrl feedback RUN_DIR [--source rollouts|model] [--pairs 50] [--host 127.0.0.1] [--port 8765] [--judge NAME]
    reasonrl feedback RECIPE.yaml [--pairs 50] ...     (the recipe's model before training; runs/<name>-feedback)
    reasonrl feedback export RUN_DIR [--out RUN_DIR/preferences.jsonl] [--sft RUN_DIR/demonstrations.jsonl]

`feedback RUN_DIR` makes pairs from the run's saved rollouts, or (--source model) of its trained policy against its
base model on held-out problems (feedback/pairs.py); `feedback RECIPE.yaml` from the recipe's model on its train
problems, into the directory runs/<name>-feedback (export it like a run directory). It stores them and every
judgement in RUN_DIR/feedback.db (feedback/store.py: SQLite, safe with several people at once), and serves the
page (feedback/app.py, feedback/page.html) with uvicorn until Ctrl-C. `export` writes the preferences as JSONL
(prompt, chosen, rejected, judge, kind) for `reasonrl rm`, and the answers people wrote as SFT demonstrations.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Any

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def open_store(run_dir: Path) -> Any:
    from reasonrl.feedback.store import Store

    if not run_dir.is_dir():
        raise ValueError(f"{run_dir} is not a directory; give a run directory (e.g. runs/quickstart)")
    return Store(run_dir / "feedback.db")


def serve(run_dir: Path, pairs: int, host: str, port: int, judge: str, seed: int = 0, source: str = "rollouts") -> None:
    """Fill the store with pairs (from the run's rollouts, or its policy against its base model; a pair already
    stored is not added twice) and serve the page."""
    try:
        import uvicorn

        from reasonrl.feedback.app import make_app
    except ImportError as e:
        raise ValueError(f"reasonrl feedback needs {e.name}: pip install 'reasonrl[feedback]'") from None
    from reasonrl.feedback.pairs import model_pairs, recipe_pairs, rollout_pairs

    if run_dir.suffix in (".yaml", ".yml"):  # a recipe: its model's answers before training, in runs/<name>-feedback
        from reasonrl.config import load_config

        cfg = load_config(run_dir)
        made = recipe_pairs(cfg, pairs, seed=seed)
        run_dir = Path(cfg.output_dir) / f"{cfg.name}-feedback"
        run_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(run_dir)
    else:
        store = open_store(run_dir)
        made = rollout_pairs(run_dir, pairs, seed) if source == "rollouts" else model_pairs(run_dir, pairs, seed=seed)
    added = store.add_pairs(made)
    token = secrets.token_urlsafe(18)
    beyond = host not in LOOPBACK
    app = make_app(store, token, judge, page_needs_token=beyond)
    shown = f"[{host}]" if ":" in host else host
    print(
        f"feedback: {store.progress(judge or '-')['pairs']} pairs ({added} new) in {run_dir / 'feedback.db'}\n"
        f"open http://{shown}:{port}/?token={token}"
        + (f"&judge={judge}" if judge else "")
        + ("\n(bound beyond this machine: the page and the API need this token)" if beyond else "")
        + "\nCtrl-C stops the server; `reasonrl feedback export` writes the preferences.",
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


def export(run_dir: Path, out: Path | None, sft: Path | None) -> tuple[Path, int, Path, int]:
    """Write the preferences and the demonstrations as JSONL; returns (path, rows) for each."""
    from reasonrl.utils.files import atomic_write_text

    if not (run_dir / "feedback.db").is_file():
        raise ValueError(f"{run_dir} has no feedback.db; run `reasonrl feedback {run_dir}` first")
    store = open_store(run_dir)
    prefs = [row | {"prompt": json.loads(row["prompt"])} for row in store.preferences()]
    demos = [row | {"prompt": json.loads(row["prompt"])} for row in store.demonstrations()]
    out = out or run_dir / "preferences.jsonl"
    sft = sft or run_dir / "demonstrations.jsonl"
    atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in prefs))
    atomic_write_text(sft, "".join(json.dumps(r) + "\n" for r in demos))
    return out, len(prefs), sft, len(demos)


def main(args: Any) -> None:
    """`reasonrl feedback ...` (args from cli.py)."""
    words = list(args.target)
    if words[0] == "export":
        if len(words) != 2:
            raise ValueError("usage: reasonrl feedback export RUN_DIR [--out FILE] [--sft FILE]")
        out, n, sft, m = export(Path(words[1]), args.out and Path(args.out), args.sft and Path(args.sft))
        print(f"wrote {n} preferences to {out} and {m} demonstrations to {sft}")
        return
    if len(words) != 1:
        raise ValueError("usage: reasonrl feedback RUN_DIR_OR_RECIPE [--pairs N] [--host H] [--port P] [--judge NAME]")
    try:
        serve(Path(words[0]), args.pairs, args.host, args.port, args.judge or "", args.seed, args.source)
    except OSError as e:
        print(f"error: cannot serve on {args.host}:{args.port}: {e.strerror}; choose another --port", file=sys.stderr)
        raise SystemExit(2) from None
