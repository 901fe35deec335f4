"""Dataclass configs -> command-line options, with help taken from each field's comment.

Nested dataclasses become dotted options (`--rl.steps 50`). Only options given
on the command line override the preset's values.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import re
import sys
from typing import Any

_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$")


class OneLineParser(argparse.ArgumentParser):
    """Bad command lines get one line of error and exit status 2."""

    def error(self, message: str):  # noqa: D102
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def field_help(cls) -> dict[str, str]:
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2).strip() for m in map(_COMMENT.match, src.splitlines()) if m}


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


_TYPES = {"int": int, "float": float, "str": str, "bool": _bool}


def add_options(parser: argparse.ArgumentParser, cfg: Any, prefix: str = "") -> None:
    """One option per leaf field of the dataclass instance `cfg`."""
    helps = field_help(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        name = prefix + f.name
        if dataclasses.is_dataclass(value):
            add_options(parser, value, name + ".")
            continue
        t = str(f.type)
        kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS,
                              "help": f"{helps.get(f.name, '')} (default: {value!r})"}
        if t.startswith("list"):
            kw.update(nargs="*", type=str, metavar="X")
        elif t == "bool":
            kw.update(nargs="?", const=True, type=_bool, metavar="BOOL")
        else:
            kw.update(type=_TYPES.get(t, str), metavar=t.upper())
        parser.add_argument("--" + name.replace("_", "-"), **kw)


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
