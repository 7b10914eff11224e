"""Print the config reference (every key, its default and its doc string) as a Markdown table for the README.

    .venv/bin/python scripts/config_reference.py
"""
import ast
import dataclasses
from pathlib import Path

import reasonrl.config as config


def field_docs() -> dict[tuple[str, str], str]:
    """(class name, field name) -> the string literal written under the field in config.py."""
    tree = ast.parse(Path(config.__file__).read_text())
    docs = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        body = cls.body
        for node, after in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                docs[(cls.name, node.target.id)] = " ".join(str(after.value.value).split())
    return docs


def rows(cls: type, prefix: str, docs: dict) -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out += rows(type(default), f"{prefix}{f.name}.", docs)
        else:
            doc = docs.get((cls.__name__, f.name), "")
            out.append(f"| `{prefix}{f.name}` | `{default!r}` | {doc} |")
    return out


if __name__ == "__main__":
    print("| key | default | meaning |\n|---|---|---|")
    print("\n".join(rows(config.RunConfig, "", field_docs())))
