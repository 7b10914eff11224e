"""Print the config reference (every key, its default and its doc string) as a Markdown table for docs/config.md.

    .venv/bin/python scripts/config_reference.py

A section that is a union of variants chosen by `name` (algo.loss) lists the fields of every variant.
"""

import dataclasses
import typing

import reasonrl.config as config
from reasonrl.listing import field_docs


def variants(cls: type, name: str) -> list[type]:
    """The dataclasses of a union-typed field (several for algo.loss), or [] for a plain field."""
    args = typing.get_args(typing.get_type_hints(cls)[name])
    return [a for a in args if dataclasses.is_dataclass(a)] if len(args) > 1 else []


def rows(cls: type, prefix: str, docs: dict, tag: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            options = variants(cls, f.name) or [type(default)]
            for option in options:
                label = f"[{option().name}] " if len(options) > 1 else ""
                out += rows(option, f"{prefix}{f.name}.", docs, label)
        else:
            doc = docs.get((cls.__name__, f.name), "")
            out.append(f"| `{prefix}{f.name}` | `{default!r}` | {tag}{doc} |")
    return out


if __name__ == "__main__":
    print("| key | default | meaning |\n|---|---|---|")
    print("\n".join(rows(config.RunConfig, "", field_docs())))
