"""`reasonrl list`: the registered names and their options, from an index that imports nothing heavy.

    reasonrl list                                   every registry, one line each
    reasonrl list rewards                           one registry, a line per name with its summary
    reasonrl list --options code_tests              a name's options: type and default
    reasonrl list --options reasoning_gym:chain_sum a reasoning-gym dataset's options (task.options)

Importing the registries takes seconds (torch, transformers, reasoning-gym), so the names, summaries and
options live in registry_index.json beside this file (with reasoning-gym's dataset names), written by
`python -m reasonrl.listing --write` from the live registries; tests/unit/test_listing.py fails when it is out
of date. Only a reasoning-gym dataset's options are read live.
"""
from __future__ import annotations

import inspect
import json
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

INDEX = Path(__file__).with_name("registry_index.json")
KINDS = {"tasks": "reasonrl.tasks:TASKS", "rewards": "reasonrl.rewards:REWARDS",
         "advantages": "reasonrl.algos:ADVANTAGES", "losses": "reasonrl.algos:POLICY_LOSSES",
         "kl": "reasonrl.algos:KL_ESTIMATORS", "environments": "reasonrl.envs:ENVS",
         "engines": "reasonrl.engine:ENGINES"}
_SKIP = {"self", "completion", "example", "ctx", "cfg", "batch", "kwargs", "args"}


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


def _options(obj: Any) -> list[dict[str, str]]:
    """Keyword options of a reward function or an environment class: name, type, default."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return []
    out = []
    for p in params:
        if p.name in _SKIP or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        kind = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
        default = "required" if p.default is p.empty else repr(p.default)
        out.append({"name": p.name, "type": str(kind or ""), "default": default})
    return out


def build_index() -> dict[str, dict[str, dict[str, Any]]]:
    """The index from the live registries (imports every one of them)."""
    import importlib
    index = {}
    for kind, ref in KINDS.items():
        module, _, name = ref.partition(":")
        registry = getattr(importlib.import_module(module), name)
        entries = {}
        for entry in registry.names():
            obj = registry.get(entry)
            if not getattr(obj, "__module__", "reasonrl").startswith("reasonrl"):
                continue  # registered by a user's (or a test's) module: not part of the package's index
            with_options = kind in ("rewards", "environments")
            entries[entry] = {"summary": _summary(obj), **({"options": _options(obj)} if with_options else {})}
        index[kind] = entries
    index["reasoning_gym_datasets"] = {name: {} for name in rg_datasets()}
    return index


def load_index() -> dict[str, dict[str, dict[str, Any]]]:
    return json.loads(INDEX.read_text())


def rg_datasets() -> list[str]:
    """reasoning-gym's dataset names (imports reasoning-gym, and transformers with it: about a second)."""
    from reasoning_gym.factory import DATASETS
    return sorted(DATASETS)


def rg_options(dataset: str) -> list[dict[str, str]]:
    from reasonrl.tasks.gym import _RESERVED_OPTIONS, _rg_config_class
    out = []
    for f in fields(_rg_config_class(dataset)):
        if f.name in _RESERVED_OPTIONS:
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else "required")
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out.append({"name": f.name, "type": str(kind), "default": repr(default) if default != "required" else default})
    return out


def list_all(kind: str | None = None) -> str:
    """Every registry on one line each (kind None), or one registry with a line per name."""
    index = load_index()
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f"unknown registry {kind!r}; one of: {', '.join(KINDS)}")
        width = max(map(len, index[kind]), default=0)
        lines = [f"{name:{width}}  {entry['summary']}" for name, entry in index[kind].items()]
        if kind == "tasks":
            names = list(index["reasoning_gym_datasets"])
            lines.append(f"reasoning_gym:<dataset>, {len(names)} datasets: {', '.join(names)}")
        return "\n".join(lines)
    lines = [f"{k + ':':14}{', '.join(index[k])}" for k in KINDS]
    lines[0] += "  (reasoning_gym:<dataset>; jsonl, json, csv, parquet, hf with task.path)"
    lines[1] += "  (or module:function, path/file.py:function)"
    names = list(index["reasoning_gym_datasets"])
    lines.insert(1, f"  reasoning_gym datasets ({len(names)}): {', '.join(names)}")
    lines.append("options of one: reasonrl list --options NAME (e.g. code_tests, reasoning_gym:chain_sum)")
    return "\n".join(lines)


def describe(name: str) -> str:
    """A name's summary and options, found in whichever registry has it."""
    if name.startswith("reasoning_gym:"):
        options = rg_options(name.partition(":")[2])
        return _table(f"{name}: a reasoning-gym dataset; its options go in task.options", options)
    index = load_index()
    found = [(kind, entries[name]) for kind, entries in index.items() if name in entries and kind in KINDS]
    if not found:
        import difflib
        every = [n for kind, entries in index.items() for n in entries] + [
            f"reasoning_gym:{n}" for n in index["reasoning_gym_datasets"]]
        close = difflib.get_close_matches(name, every, n=3)
        raise ValueError(f"no registered name {name!r}" + (f"; did you mean: {', '.join(close)}?" if close else "")
                         + " (`reasonrl list` shows them all)")
    blocks = []
    for kind, entry in found:
        where = {"rewards": "rewards.options.<name>", "environments": "env.options"}.get(kind)
        head = f"{name} ({kind[:-1] if kind.endswith('s') else kind}): {entry['summary']}"
        if "options" in entry:
            blocks.append(_table(head + (f"\noptions go in {where}" if entry["options"] else "\nno options"),
                                 entry["options"]))
        else:
            blocks.append(head)
    return "\n\n".join(blocks)


def _table(head: str, options: list[dict[str, str]]) -> str:
    if not options:
        return head
    width = max(len(o["name"]) for o in options)
    kinds = max(len(o["type"]) for o in options)
    return head + "\n" + "\n".join(f"  {o['name']:{width}}  {o['type']:{kinds}}  default {o['default']}"
                                   for o in options)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m reasonrl.listing --write   (rebuild registry_index.json)")
    INDEX.write_text(json.dumps(build_index(), indent=1) + "\n")
    print(f"wrote {INDEX}")
