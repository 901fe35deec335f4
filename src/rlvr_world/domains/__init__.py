"""Domains, listed once. Adding a domain touches this file and its own folder only.

A domain's folder holds its data options (`options.py`), its presets
(`presets.py`) and the domain itself (`domain.py`); listing and checking
options loads only the first two, so the command line answers at once.

A domain whose Python stack is an optional extra of the package (web: a real
browser; video: a robot simulator) names that extra and the modules it brings;
loading such a domain without them fails at once with one line that says what
to install, before anything is written.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import NamedTuple

from ..engine.errors import UserError


class Entry(NamedTuple):
    domain: str  # the domain class, found in the domain's package
    data: str  # its data-options class, found there too
    extra: str = ""  # the package extra that installs the domain's Python stack ("": the core has it)
    needs: tuple[str, ...] = ()  # the top-level modules that extra brings, checked before the domain loads


DOMAINS = {
    "textgame": Entry("TextGameDomain", "TextGameData"),
    "web": Entry("WebDomain", "WebData", extra="web", needs=("selenium", "miniwob")),
    "video": Entry("VideoDomain", "VideoData", extra="video", needs=("metaworld", "mujoco", "torchmetrics")),
    "jsonl": Entry("JsonlDomain", "JsonlData"),
}


class MissingExtra(UserError, ImportError):
    """A domain's optional Python stack is not installed; the message is one line saying how to install it."""


def missing_modules(name: str) -> list[str]:
    """The modules the domain `name` needs that cannot be imported here (found without importing them)."""

    def absent(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is None
        except (ImportError, ValueError):  # a blocked or half-removed module
            return True

    return [m for m in DOMAINS[name].needs if absent(m)]


def require_extra(name: str) -> None:
    """Raise `MissingExtra` when the domain `name` needs modules of an extra that is not installed."""
    missing = missing_modules(name)
    if missing:
        extra = DOMAINS[name].extra
        names = " and ".join((", ".join(missing[:-1]), missing[-1])) if len(missing) > 1 else missing[0]
        raise MissingExtra(f"the {name} domain needs {names}, which the package's {extra!r} extra installs: "
                           f"pip install 'rlvr-world[{extra}]' (or ./install.sh {extra})")


def load_on_use(package_name: str):
    """A domain package's module `__getattr__`: the package's `domain` module (and its dependencies) loads at the
    first use of one of its names, so importing the package for its data options stays light. A domain whose
    extra is missing says so in one line instead."""

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        module = f"{package_name}.domain"
        if module not in sys.modules:
            require_extra(package_name.rpartition(".")[2])
        return getattr(importlib.import_module(module), name)

    return __getattr__


def package(name: str):
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; known: {', '.join(DOMAINS)}")
    return importlib.import_module(f"{__name__}.{name}")


def data_class(name: str) -> type:
    """The domain's data-options dataclass (light: nothing of the domain itself is loaded)."""
    return getattr(package(name), DOMAINS[name].data)


def get(name: str) -> type:
    """The domain class (an `engine.domain.Domain`: its data options, tokenizer and the rest reachable from it),
    loading the domain and its dependencies."""
    return getattr(package(name), DOMAINS[name].domain)
