"""House style, checked: files under 400 lines, functions under 80 (train() under 150), module docstrings,
and every config field documented in the README's config reference."""
import ast
import dataclasses
import typing
from pathlib import Path

import reasonrl.config as config

ROOT = Path(__file__).parents[2]
SOURCES = sorted((ROOT / "reasonrl").rglob("*.py"))


def test_files_and_functions_are_small():
    problems = []
    for path in SOURCES:
        text = path.read_text()
        if len(text.splitlines()) > 400:
            problems.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines > 400")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                limit = 150 if node.name == "train" else 80
                if size > limit:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}() has {size} lines > {limit}")
    assert not problems, "\n".join(problems)


def test_every_module_has_a_docstring():
    missing = [str(p.relative_to(ROOT)) for p in SOURCES
               if p.read_text().strip() and ast.get_docstring(ast.parse(p.read_text())) is None]
    assert not missing, missing


def config_keys(cls: type, prefix: str = "") -> list[str]:
    """Every config key; a section that is a union of variants (algo.loss) contributes every variant's fields."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            variants = [a for a in typing.get_args(hints[f.name]) if dataclasses.is_dataclass(a)] or [type(default)]
            keys += dict.fromkeys(key for v in variants for key in config_keys(v, f"{prefix}{f.name}."))
        else:
            keys.append(prefix + f.name)
    return keys


def test_readme_documents_every_config_key():
    readme = (ROOT / "README.md").read_text()
    missing = [key for key in config_keys(config.RunConfig) if f"`{key}`" not in readme]
    assert not missing, f"README.md config reference lacks: {missing}"
