"""Typed dataclasses from plain data (YAML): every type problem collected under its dotted
name, unknown keys with a suggestion, and `key.sub=value` overrides. Generic; the training
config in `config.py` is built with it."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

import yaml


class ConfigError(ValueError):
    """Every problem of a config, one per line, each under its dotted name."""

    def __init__(self, problems: list[str], source: str = "config"):
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n  " + "\n  ".join(problems))


# ---- building dataclasses from plain data, collecting every problem -----------------------

def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def _convert(value: Any, tp, where: str, problems: list[str]) -> Any:
    """`value` as type `tp`, or the value unchanged with a problem recorded."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:  # the first alternative that accepts the value without a problem
            trial: list[str] = []
            out = _convert(value, a, where, trial)
            if not trial:
                return out
        problems.append(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {value!r}")
            return tp()
        return build_dataclass(tp, value, where, problems)
    if tp is type(None):
        if value is not None:
            problems.append(f"{where}: expected null, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where}: expected a number, got {value!r}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.append(f"{where}: expected a string, got {value!r}")
        return value
    if tp is list or origin is list:
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list, got {value!r}")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {value!r}")
        return value
    return value


def build_dataclass(cls, data: dict, where: str, problems: list[str]):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            problems.append(f"{path}: unknown key" + (f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(names)}"))
            continue
        kwargs[key] = _convert(value, hints[key], path, problems)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        problems.append(f"{where or 'config'}: {e}")
        return cls()


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError([f"override {text!r}: expected key.sub=value"])
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return data


def describe(root) -> str:
    """Every field with its default and comment, for `xgenmm train --describe`."""
    import inspect

    lines: list[str] = []

    def walk(cls, indent: str) -> None:
        src = inspect.getsource(cls).splitlines()
        comments = {}
        for line in src:
            s = line.strip()
            if ":" in s and "#" in s and not s.startswith(("#", '"')):
                comments[s.split(":", 1)[0].strip()] = s.split("#", 1)[1].strip()
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                lines.append(f"{indent}{f.name}:  # {comments.get(f.name, '')}")
                walk(tp, indent + "  ")
            else:
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
                lines.append(f"{indent}{f.name}: {yaml.safe_dump(default, default_flow_style=True).strip().removesuffix('...').strip()}"
                             f"  # {comments.get(f.name, '')}")

    walk(root, "")
    return "\n".join(lines)
