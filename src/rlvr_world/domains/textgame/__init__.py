"""The ByteSized32 text-game domain: predict the next game state as a JSON difference.

This package loads light: its data options (`options`) at once, the domain
itself and its dependencies when first used (`domain`).
"""

from __future__ import annotations

import importlib

from .options import TextGameData

__all__ = ["TextGameData"]  # and, loaded on first use, every name of `domain`


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    domain = importlib.import_module(f"{__name__}.domain")  # the domain, its rewards and their dependencies
    return getattr(domain, name)
