"""The ByteSized32 text-game domain: predict the next game state as a JSON difference.

This package loads light: its data options (`options`) at once, the domain
itself and its dependencies when first used (`domain`).
"""

from __future__ import annotations

from .. import load_on_use
from .options import TextGameData

__all__ = ["TextGameData"]  # and, loaded on first use, every name of `domain`

__getattr__ = load_on_use(__name__)
