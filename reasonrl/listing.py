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

import ast
import inspect
import json
import sys
import textwrap
import typing
from dataclasses import MISSING, Field, fields, is_dataclass
from pathlib import Path
from typing import Any

INDEX = Path(__file__).with_name("registry_index.json")
KINDS = {
    "tasks": "reasonrl.tasks:TASKS",
    "rewards": "reasonrl.rewards:REWARDS",
    "advantages": "reasonrl.algos:ADVANTAGES",
    "losses": "reasonrl.algos:POLICY_LOSSES",
    "kl": "reasonrl.algos:KL_ESTIMATORS",
    "environments": "reasonrl.envs:ENVS",
    "engines": "reasonrl.engine:ENGINES",
}
_SKIP = {"self", "completion", "example", "ctx", "cfg", "batch", "kwargs", "args"}


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


def _options(obj: Any) -> list[dict[str, str]]:
    """Keyword options of a reward function or an environment class: name, type, default, doc."""
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
        out.append({"name": p.name, "type": str(kind or ""), "default": default, "doc": ""})
    return out


WHERE = {
    "tasks": "task.options",
    "rewards": "rewards.options.{name}",
    "environments": "env.options",
    "advantages": "the algo section (with algo.advantage={name})",
    "losses": "algo.loss (with algo.loss.name={name})",
    "kl": "algo.kl (with algo.kl.estimator={name})",
    "engines": "the engine section (with engine.name={name})",
}
"""Where each kind's options go in a config."""
SINGULAR = {
    "tasks": "task",
    "rewards": "reward",
    "advantages": "advantage",
    "losses": "policy loss",
    "kl": "KL estimator",
}
SINGULAR |= {"environments": "environment", "engines": "engine"}


def options_of(kind: str, name: str, obj: Any, docs: dict[tuple[str, str], str]) -> list[dict[str, str]]:
    """The options of one registered name, for the index: keyword options of rewards and environments, the
    task.options a task declares, the config keys an algorithm reads (its loss or engine section, the algo.*
    fields an advantage function reads, the algo.kl keys of a KL estimator)."""
    from reasonrl import config

    if kind in ("rewards", "environments"):
        return _options(obj)
    if kind == "tasks":
        declared = getattr(obj, "task_options", {})
        return [_row(k, default, doc) for k, (default, doc) in declared.items()]
    if kind == "advantages":
        fields_ = {f.name: f for f in fields(config.AlgoConfig)}
        reads = [f for f in cfg_reads(obj) if f in fields_ and not _is_section(fields_[f])]
        return [_field_row(f"algo.{f}", config.AlgoConfig, fields_[f], docs) for f in reads]
    if kind == "losses":
        (cls,) = [c for c in typing.get_args(config.PolicyLossConfig) if c().name == name]
        return [_field_row(f"algo.loss.{f.name}", cls, f, docs) for f in fields(cls) if f.name != "name"]
    if kind == "kl":
        return [_field_row(f"algo.kl.{f.name}", config.KLConfig, f, docs) for f in fields(config.KLConfig)]
    if kind == "engines":
        section = {f.name: f for f in fields(config.EngineConfig)}.get(name)
        shared = [f for f in fields(config.EngineConfig) if not _is_section(f) and f.name != "name"]
        rows = [_field_row(f"engine.{f.name}", config.EngineConfig, f, docs) for f in shared]
        if section is not None:
            cls = _default(section).__class__
            rows += [_field_row(f"engine.{name}.{f.name}", cls, f, docs) for f in fields(cls)]
        return rows
    return []


def cfg_reads(fn: Any, seen: set[Any] | None = None) -> list[str]:
    """The fields `fn` reads from its `cfg` argument (cfg.<field>), following calls in its module that are
    handed cfg (or something built from it), in order of first use."""
    seen = seen if seen is not None else set()
    seen.add(fn)
    module = inspect.getmodule(fn)
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "cfg":
            out.append(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            callee = getattr(module, node.func.id, None)
            passes_cfg = any(
                isinstance(n, ast.Name) and n.id == "cfg" for a in node.args + node.keywords for n in ast.walk(a)
            )
            if passes_cfg and inspect.isfunction(callee) and callee not in seen:
                out += cfg_reads(callee, seen)
    return list(dict.fromkeys(out))


def field_docs() -> dict[tuple[str, str], str]:
    """(class name, field name) -> the string literal written under the field in reasonrl/config/*.py."""
    from reasonrl import config

    docs = {}
    for path in sorted(Path(config.__file__).parent.glob("*.py")):
        for cls in (n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef)):
            for node, after in zip(cls.body, cls.body[1:]):
                if (
                    isinstance(node, ast.AnnAssign)
                    and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant)
                ):
                    docs[(cls.name, node.target.id)] = " ".join(str(after.value.value).split())
    return docs


def _default(f: Field) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _is_section(f: Field) -> bool:
    return is_dataclass(_default(f))


def _type_name(kind: Any) -> str:
    return kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))


def _field_row(key: str, cls: type, f: Field, docs: dict[tuple[str, str], str]) -> dict[str, str]:
    return {
        "name": key,
        "type": _type_name(f.type),
        "default": repr(_default(f)),
        "doc": docs.get((cls.__name__, f.name), ""),
    }


def _row(name: str, default: Any, doc: str) -> dict[str, str]:
    kind = "any" if default is None else type(default).__name__
    return {"name": name, "type": kind, "default": repr(default), "doc": doc}


def build_index() -> dict[str, dict[str, dict[str, Any]]]:
    """The index from the live registries (imports every one of them)."""
    import importlib

    docs = field_docs()
    index = {}
    for kind, ref in KINDS.items():
        module, _, name = ref.partition(":")
        registry = getattr(importlib.import_module(module), name)
        entries = {}
        for entry in registry.names():
            obj = registry.get(entry)
            if not getattr(obj, "__module__", "reasonrl").startswith("reasonrl"):
                continue  # registered by a user's (or a test's) module: not part of the package's index
            entries[entry] = {"summary": _summary(obj), "options": options_of(kind, entry, obj, docs)}
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
        default = (
            f.default
            if f.default is not MISSING
            else (f.default_factory() if f.default_factory is not MISSING else "required")
        )
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


def describe(name: str, kind: str | None = None) -> str:
    """A name's summary and options, found in whichever registry has it (or only in `kind`'s)."""
    if name.startswith("reasoning_gym:"):
        options = rg_options(name.partition(":")[2])
        return _table(f"{name}: a reasoning-gym dataset; its options go in task.options", options)
    index = load_index()
    found = [(k, entries[name]) for k, entries in index.items() if name in entries and k in KINDS and kind in (None, k)]
    elsewhere = [k for k, entries in index.items() if name in entries and k in KINDS]
    if not found and elsewhere:
        raise ValueError(
            f"{name!r} is not among the {kind}; it is one of the {', '.join(elsewhere)}: "
            f"reasonrl list {elsewhere[0]} --options {name}"
        )
    if not found:
        import difflib

        every = [n for kind, entries in index.items() for n in entries] + [
            f"reasoning_gym:{n}" for n in index["reasoning_gym_datasets"]
        ]
        close = difflib.get_close_matches(name, every, n=3)
        raise ValueError(
            f"no registered name {name!r}"
            + (f"; did you mean: {', '.join(close)}?" if close else "")
            + " (`reasonrl list` shows them all)"
        )
    blocks = []
    for kind, entry in found:
        head = f"{name} ({SINGULAR[kind]}): {entry['summary']}"
        options = entry.get("options", [])
        where = WHERE[kind].format(name=name)
        blocks.append(_table(head + (f"\noptions go in {where}" if options else "\nno options"), options))
    return "\n\n".join(blocks)


def _table(head: str, options: list[dict[str, str]]) -> str:
    if not options:
        return head
    width = max(len(o["name"]) for o in options)
    kinds = max(len(o["type"]) for o in options)
    lines = [head]
    for o in options:
        lines.append(f"  {o['name']:{width}}  {o['type']:{kinds}}  default {o['default']}")
        if o.get("doc"):
            lines += textwrap.wrap(o["doc"], 110, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m reasonrl.listing --write   (rebuild registry_index.json)")
    INDEX.write_text(json.dumps(build_index(), indent=1) + "\n")
    print(f"wrote {INDEX}")
