"""The robot-video domain: predict the next frame(s) of a manipulation episode from frames and actions.

This package loads light: its data options (`options`) at once, the domain
itself and its dependencies when first used (`domain`).
"""

from __future__ import annotations

from .. import load_on_use
from .options import VideoData

__all__ = ["VideoData"]  # and, loaded on first use, every name of `domain`

__getattr__ = load_on_use(__name__)
