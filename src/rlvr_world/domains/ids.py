"""Reading a response as token ids of a vocabulary, so that scoring never raises.

A sampled response is a list of ints in [0, vocab size). A response from
elsewhere may hold anything: floats, NaN, negative ids, ids past the
vocabulary, None. Such a sequence is not a response of the model, and each
domain scores it as its unparseable response, saying why in `parts["why"]`.
"""

from __future__ import annotations

import operator
from typing import Any


def token_ids(response: Any, vocab_size: int) -> tuple[list[int] | None, str]:
    """(the ids as a list of ints, "") or (None, why they are not ids in [0, vocab_size)).

    Accepts any iterable of Python ints, numpy integers or one-element integer
    tensors; rejects floats (even whole ones), bools and everything else.
    Never raises.
    """
    try:
        items = list(response)
    except Exception:  # noqa: BLE001 - not iterable, or failing while iterated
        return None, f"the response is not a sequence of token ids ({type(response).__name__})"
    ids = []
    for item in items:
        try:
            i = operator.index(item)  # ints, numpy integers, integer tensors of one element; not floats
        except Exception:  # noqa: BLE001 - floats, None, strings, tensors of several elements, ...
            return None, f"a response id is not an integer ({type(item).__name__})"
        if isinstance(item, bool):
            return None, "a response id is a bool"
        if i < 0:
            return None, "a response id is negative"
        if i >= vocab_size:
            return None, f"a response id is past the vocabulary (>= {vocab_size})"
        ids.append(i)
    return ids, ""
