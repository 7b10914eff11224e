"""House style, checked: files under 400 lines, functions under 80 (train() under 150), module docstrings,
and every config field documented in docs/config.md."""

import ast
import dataclasses
import re
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
    missing = [
        str(p.relative_to(ROOT))
        for p in SOURCES
        if p.read_text().strip() and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
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


def test_the_docs_document_every_config_key():
    page = (ROOT / "docs" / "config.md").read_text()
    missing = [key for key in config_keys(config.RunConfig) if f"`{key}`" not in page]
    assert not missing, f"docs/config.md lacks: {missing}; run scripts/update_config_docs.py"


def test_the_readme_is_a_short_guide_whose_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250, "README.md is a user's guide: move measurements and details to docs/"
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)\)", page.read_text()):
            if not target.startswith(("http://", "https://", "mailto:")):
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"
    outside = [
        str(p.relative_to(ROOT))
        for p in [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("reasonrl/**/*.py")]
        if "ALGORITHMS.md" in p.read_text() or "../shared" in p.read_text()
    ]
    assert not outside, f"these point outside the repository: {outside}"
