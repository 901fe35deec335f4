"""The web-page domain: predict how a page's accessibility tree changes after an action.

This package loads light: its data options (`options`) at once, the domain
itself and its dependencies when first used (`domain`).
"""

from __future__ import annotations

from .. import load_on_use
from .options import WebData

__all__ = ["WebData"]  # and, loaded on first use, every name of `domain`

__getattr__ = load_on_use(__name__)
