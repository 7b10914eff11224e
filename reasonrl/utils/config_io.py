"""Config loading machinery: dict -> frozen dataclass with type checks and "did you mean" errors.

Generic over the dataclass; reasonrl.config applies it to RunConfig.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check (and gently coerce) a YAML/CLI value against a type hint. Raises ValueError naming the field."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if isinstance(value, bool) and ("off" if value is False else "on") in typing.get_args(tp):
            value = "off" if value is False else "on"  # YAML 1.1 reads a bare off/on as a boolean
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(c) for c in typing.get_args(tp))
            raise ValueError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        variants = _variants(args)
        if variants:
            return _convert_variant(value, variants, where)
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(f"{where}: expected {' | '.join(_type_name(a) for a in args)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        assert isinstance(tp, type)  # a type hint: the class, never an instance
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return build(tp, value, where)
    if origin in (dict,):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {_convert(k, key_tp, where): _convert(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_convert(v, a, where) for v, a in zip(value, args))
        item = args[0] if args else Any
        out = [_convert(v, item, where) for v in value]
        return tuple(out) if origin is tuple else out
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ValueError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise ValueError(f"{where}: unsupported type {tp}")


def _variants(args: tuple[Any, ...]) -> dict[str, type] | None:
    """{name: class} when every member of a union is a dataclass with a Literal `name` (a discriminated union)."""
    out = {}
    for arg in args:
        hint = typing.get_type_hints(arg).get("name") if dataclasses.is_dataclass(arg) else None
        if typing.get_origin(hint) is not Literal:
            return None
        out[typing.get_args(hint)[0]] = arg
    return out


def _convert_variant(value: Any, variants: dict[str, type], where: str) -> Any:
    """Pick the dataclass by `name` (default: the first variant); `algo.loss=gspo` is short for `algo.loss.name=gspo`.
    Its defaults apply and a field of another variant is an unknown key."""
    if isinstance(value, tuple(variants.values())):
        return value
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping with a name ({', '.join(variants)}), got {value!r}")
    name = value.get("name", next(iter(variants)))
    if name not in variants:
        close = difflib.get_close_matches(str(name), variants, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{where}.name: {name!r} is not one of {', '.join(map(repr, variants))}{hint}")
    fields = [f.name for f in dataclasses.fields(variants[name])]
    for key in value:
        owners = [n for n, cls in variants.items() if key in {f.name for f in dataclasses.fields(cls)}]
        if key not in fields and owners:
            raise ValueError(
                f"{where}.{key} belongs to {where}.name={'/'.join(owners)}, not to {where}.name={name} "
                f"(which takes: {', '.join(fields)})"
            )
    try:
        return build(variants[name], value, where)
    except ValueError as e:
        raise ValueError(f"{e} (with {where}.name={name})") from None


def build(cls: type, data: dict[str, Any], where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
            hint = f"; did you mean {(where + '.' if where else '') + close[0]!r}?" if close else ""
            raise ValueError(f"unknown config key {path!r}{hint} (valid: {', '.join(names)})")
        kwargs[key] = _convert(value, hints[key], path)
    return cls(**kwargs)


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if isinstance(child, str):  # `algo.loss=gspo` then `algo.loss.clip_low=...`: the variant's short form
            child = node[key] = {"name": child}
        if not isinstance(child, dict):
            raise ValueError(f"override {dotted!r}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'algo.kl.coef=0.01' -> ('algo.kl.coef', 0.01). The value is parsed as YAML ('[a, b]', 'null', 'true')."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(
            f"override {text!r}: the value is not valid YAML ({problem}); quote it, e.g. {key.strip()}='\"{raw}\"'"
        ) from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    def plain(x: Any) -> Any:
        if isinstance(x, tuple):
            return [plain(v) for v in x]
        if isinstance(x, list):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return plain(dataclasses.asdict(cfg))


_KEY = re.compile(r"unknown config key '([\w.]+)'|^([A-Za-z_][\w]*(?:\.[\w]+)*)(?=[:=]| must| is| needs)")


def key_line(text: str, dotted: str) -> int | None:
    """The 1-based line of a dotted key in YAML text (the deepest part that is there), or None."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return line


def blame_recipe(path: Path, text: str, message: str, from_overrides: set[str]) -> str:
    """A config error with the recipe's file:line in front, unless the key it names came from an override."""
    m = _KEY.search(message)
    key = (m.group(1) or m.group(2)) if m else None
    if key and any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in from_overrides):
        return message
    line = key_line(text, key) if key else None
    return f"{path}{f':{line}' if line else ''}: {message}"
