"""Domains, listed once. Adding a domain touches this file and its own folder only."""

from __future__ import annotations

from . import jsonl, textgame, video, web

# name -> (domain class, its data-options dataclass, tokenizer factory)
DOMAINS = {
    "textgame": (textgame.TextGameDomain, textgame.TextGameData, textgame.TextGameDomain.make_tokenizer),
    "web": (web.WebDomain, web.WebData, web.WebDomain.make_tokenizer),
    "video": (video.VideoDomain, video.VideoData, video.VideoDomain.make_tokenizer),
    "jsonl": (jsonl.JsonlDomain, jsonl.JsonlData, jsonl.JsonlDomain.make_tokenizer),
}


def get(name: str):
    try:
        return DOMAINS[name]
    except KeyError:
        raise ValueError(f"unknown domain {name!r}; known: {', '.join(DOMAINS)}") from None
