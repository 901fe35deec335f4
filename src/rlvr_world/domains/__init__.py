"""Domains, listed once. Adding a domain touches this file and its own folder only.

A domain's folder holds its data options (`options.py`), its presets
(`presets.py`) and the domain itself (`domain.py`); listing and checking
options loads only the first two, so the command line answers at once.
"""

from __future__ import annotations

import importlib

# name -> (domain class, its data-options class), both found in the domain's package
DOMAINS = {
    "textgame": ("TextGameDomain", "TextGameData"),
    "web": ("WebDomain", "WebData"),
    "video": ("VideoDomain", "VideoData"),
    "jsonl": ("JsonlDomain", "JsonlData"),
}


def load_on_use(package_name: str):
    """A domain package's module `__getattr__`: the package's `domain` module (and its dependencies) loads at the
    first use of one of its names, so importing the package for its data options stays light."""

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(importlib.import_module(f"{package_name}.domain"), name)

    return __getattr__


def package(name: str):
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; known: {', '.join(DOMAINS)}")
    return importlib.import_module(f"{__name__}.{name}")


def data_class(name: str) -> type:
    """The domain's data-options dataclass (light: nothing of the domain itself is loaded)."""
    return getattr(package(name), DOMAINS[name][1])


def get(name: str):
    """(domain class, data-options class, tokenizer factory), loading the domain and its dependencies."""
    domain_cls = getattr(package(name), DOMAINS[name][0])
    return domain_cls, data_class(name), domain_cls.make_tokenizer
