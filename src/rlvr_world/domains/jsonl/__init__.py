"""Bring your own transitions: JSON-lines records of state, action and next state.

This package loads light: its data options (`options`) at once, the domain
itself and its dependencies when first used (`domain`).
"""

from __future__ import annotations

from .. import load_on_use
from .options import JsonlData

__all__ = ["JsonlData"]  # and, loaded on first use, every name of `domain`

__getattr__ = load_on_use(__name__)
