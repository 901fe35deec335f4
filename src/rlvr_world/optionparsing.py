"""Dataclass configs -> command-line options and config files, with help taken from each field's comment.

Nested dataclasses become dotted options (`--rl.steps 50`), listed in a group
of their own, and nested mappings in a config file (`rl: {steps: 50}`). Only
options given on the command line override the preset's (or the file's)
values. A field typed `Literal["a", "b"]` lists its choices in `--help` and is
checked against them.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import inspect
import json
import math
import re
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

_FIELD = re.compile(r"^\s+(\w+)\s*:[^#]*(?:#\s*(.*))?$")
_COMMENT = re.compile(r"^\s+#\s?(.*)$")
_LITERAL = re.compile(r"^(?:typing\.)?Literal\[(.+)\]$")


class OneLineParser(argparse.ArgumentParser):
    """Bad command lines get one line of error and exit status 2."""

    def error(self, message: str):  # noqa: D102
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def field_help(cls) -> dict[str, str]:
    """Each field's help, read from the comments in its class's source.

    A field's help is the comment that ends its line, continued on the comment
    lines below it; a field whose line has no comment takes the comment lines
    right above it instead.
    """
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, str] = {}
    last, block = None, []  # the field whose comment the block below it may continue; comment lines since a field
    for line in src.splitlines():
        comment = _COMMENT.match(line)
        if comment:
            block.append(comment.group(1).strip())
            continue
        m = _FIELD.match(line)
        if m and m.group(1) in names and m.group(2):
            if last and block:
                out[last] += " " + " ".join(block)
            out[m.group(1)], last = m.group(2).strip(), m.group(1)
        elif m and m.group(1) in names:
            if block:
                out[m.group(1)] = " ".join(block)
            last = None
        else:
            last = None
        block = []
    return out


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


_TYPES = {"int": int, "float": float, "str": str, "bool": _bool}


def choices_of(cfg: Any) -> dict[str, tuple[str, ...]]:
    """The values of each `Literal[...]` field of a dataclass (or instance): `{"scale": ("group", "batch", "none")}`."""
    out = {}
    for f in dataclasses.fields(cfg):
        if typing.get_origin(f.type) is typing.Literal:
            out[f.name] = typing.get_args(f.type)
        elif isinstance(f.type, str) and (m := _LITERAL.match(f.type)):  # postponed annotations
            out[f.name] = ast.literal_eval(f"({m.group(1)},)")
    return out


def _kind(f: dataclasses.Field) -> str:
    """int, float, bool, str or list: what a field holds, as options and config files read it."""
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if t.startswith("list"):
        return "list"
    return t if t in _TYPES else "str"


def _first_line(text: str | None) -> str:
    return (text or "").strip().partition("\n")[0]


def add_options(parser: argparse.ArgumentParser, cfg: Any, prefix: str = "",
                choices: dict[str, tuple[str, ...]] | None = None) -> None:
    """One option per leaf field of the dataclass instance `cfg`; a nested dataclass's options form a group of their
    own ("rl options": `--rl.steps`, ...), described by its class docstring.

    `choices` gives, by dotted name, the choices of options known only at run time (e.g. the domain's rewards);
    `Literal` fields bring their own.
    """
    _add_options(parser, parser, cfg, prefix, choices or {})


def _add_options(parser: argparse.ArgumentParser, into, cfg: Any, prefix: str,
                 choices: dict[str, tuple[str, ...]]) -> None:
    helps = field_help(type(cfg))
    known = {prefix + k: v for k, v in choices_of(cfg).items()} | choices
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        name = prefix + f.name
        if dataclasses.is_dataclass(value):
            group = parser.add_argument_group(f"{name} options", _first_line(type(value).__doc__) or None)
            _add_options(parser, group, value, name + ".", choices)
            continue
        kind = _kind(f)
        listed = f"choices: {', '.join(known[name])}; " if name in known else ""
        kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS,
                              "help": f"{helps.get(f.name, '')} ({listed}default: {value!r})".replace("%", "%%")}
        if kind == "list":
            kw.update(nargs="*", type=str, metavar="X")
        elif kind == "bool":
            kw.update(nargs="?", const=True, type=_bool, metavar="BOOL")
        else:
            kw.update(type=_TYPES[kind], metavar=kind.upper())
        into.add_argument("--" + name.replace("_", "-"), **kw)


def apply_overrides(cfg: Any, args: argparse.Namespace, skip: tuple[str, ...] = ()) -> Any:
    """Set every dotted option present in `args` on the nested config."""
    for key, value in vars(args).items():
        if key in skip:
            continue
        *path, leaf = key.split(".")
        target = cfg
        for p in path:
            target = getattr(target, p)
        if not hasattr(target, leaf):
            raise ValueError(f"unknown option {key}")
        setattr(target, leaf, value)
    check(cfg)
    return cfg


def check(cfg: Any) -> None:
    """Run the checks (`__post_init__`) of every nested config again: options set later bypass them."""
    for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(cfg) else ():
        check(getattr(cfg, f.name))
    if dataclasses.is_dataclass(cfg) and hasattr(cfg, "__post_init__"):
        cfg.__post_init__()


# ----------------------------------------------------------------------------------------------- config files

def read_file(path: str) -> dict:
    """A config file's options as a nested mapping: JSON where the name ends in .json (a run's own config.json),
    else YAML. A one-line ValueError when it cannot be read."""
    import yaml

    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read config file {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        values = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"config file {path} is not valid JSON: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ValueError(f"config file {path} is not valid YAML{where}: "
                         f"{' '.join(str(getattr(e, 'problem', None) or e).split())}") from None
    if values is None:  # an empty file
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of options (key: value), not a "
                         f"{type(values).__name__}")
    return values


_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "text", "list": "a list of text"}


def _coerce(value: Any, kind: str, where: str) -> Any:
    """`value` read from a file as the field's kind; text is read as the command line reads it (YAML reads 1e-3 as
    text)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    try:
        if kind == "list" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        if kind == "bool" and isinstance(value, (bool, str)):
            return value if isinstance(value, bool) else _bool(value)
        if kind == "int" and (isinstance(value, str) or (number and value == int(value))):
            return int(value) if number else int(value.strip())
        if kind == "float" and (isinstance(value, str) or number):
            return float(value)
        if kind == "str" and isinstance(value, str):
            return value
    except (ValueError, OverflowError, argparse.ArgumentTypeError):
        pass
    raise ValueError(f"{where} must be {_WORDS[kind]}, got {value!r}")


def update(cfg: Any, values: dict, prefix: str = "") -> Any:
    """Set the nested config's fields from `values`, a mapping nested like the config (read from a file).

    A one-line ValueError names the first unknown key or value of the wrong kind; the values' own checks are
    `check`'s.
    """
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in fields:
            raise ValueError(f"unknown key {name}{_suggestion(str(key), fields, prefix)}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{name} must be a mapping of its options ({name}: {{key: value}}), "
                                 f"got {value!r}")
            update(current, value, name + ".")
        else:
            setattr(cfg, key, _coerce(value, _kind(fields[key]), name))
    return cfg


def _suggestion(key: str, fields: dict, prefix: str) -> str:
    head, dot, tail = key.partition(".")
    if dot and head in fields:
        return f" (in a file, {tail} goes nested under {prefix}{head}:)"
    close = difflib.get_close_matches(key.replace("-", "_"), list(fields), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {prefix}{close[0]}?)"
    return f" (known: {', '.join(prefix + k for k in fields)})"


def to_yaml(cfg: Any, header: list[str] = (), choices: dict[str, tuple[str, ...]] | None = None) -> str:
    """The nested config as YAML that `update` reads back: each key under its help (and choices, as `add_options`
    lists them) as a comment, `header` first."""
    import yaml

    lines = [line for h in header for line in textwrap.wrap(h, 118, initial_indent="# ", subsequent_indent="#   ")]
    lines += [""] if lines else []

    def scalar(value: Any) -> str:
        return yaml.safe_dump([value], default_flow_style=True, width=math.inf).strip()[1:-1]

    def emit(obj: Any, prefix: str, indent: str) -> None:
        helps = field_help(type(obj))
        known = {prefix + k: v for k, v in choices_of(obj).items()} | (choices or {})
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            nested = dataclasses.is_dataclass(value)
            about = helps.get(f.name, "") if not nested else _first_line(type(value).__doc__)
            if prefix + f.name in known:
                about += f" (choices: {', '.join(known[prefix + f.name])})"
            if nested:
                lines.append("")
            lines.extend(textwrap.wrap(about, 118 - len(indent), initial_indent=indent + "# ",
                                       subsequent_indent=indent + "# "))
            if nested:
                lines.append(f"{indent}{f.name}:")
                emit(value, f"{prefix}{f.name}.", indent + "  ")
            else:
                lines.append(f"{indent}{f.name}: {scalar(float(value) if _kind(f) == 'float' else value)}")

    emit(cfg, "", "")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- checks

_RULES = {  # what `require` accepts for each spec
    "> 0": lambda v: v > 0,
    ">= 0": lambda v: v >= 0,
    ">= 1": lambda v: v >= 1,
    ">= 2": lambda v: v >= 2,
    "in [0, 1]": lambda v: 0 <= v <= 1,
    "in (0, 1]": lambda v: 0 < v <= 1,
    "in (0, 1)": lambda v: 0 < v < 1,
    ">= 0, or -1 for all": lambda v: v >= 0 or v == -1,
    "in [0, 65535]": lambda v: 0 <= v <= 65535 and v == int(v),
}


def require(cfg: Any, prefix: str, **specs: str) -> None:
    """A one-line ValueError for the first field of `cfg` outside its spec: `require(self, "mle", lr="> 0")`.

    Numbers must also be finite (nan and inf are refused everywhere).
    """
    for name, spec in specs.items():
        value = getattr(cfg, name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not (ok and _RULES[spec](value)):
            raise ValueError(f"--{prefix}{name.replace('_', '-')} must be {spec}, got {value!r}")


def require_choice(cfg: Any, prefix: str, **choices: tuple[str, ...]) -> None:
    """A one-line ValueError for the first field of `cfg` that is not one of its choices."""
    for name, known in choices.items():
        value = getattr(cfg, name)
        if value not in known:
            raise ValueError(f"unknown {name.replace('_', ' ')} {value!r} (--{prefix}{name.replace('_', '-')}); "
                             f"known: {', '.join(known)}")
