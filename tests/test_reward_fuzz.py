"""Adversarial responses through every reward of every domain and every domain's `score`: nothing may raise.

    python3 -m pytest -q tests/test_reward_fuzz.py      # RLVR_WORLD_FUZZ_N=1000 for the full fuzz

The contract (issue #22, item 7): rewards and `score` are pure functions that
never raise and always return a value in their documented range. Each target
below gets `RLVR_WORLD_FUZZ_N` inputs (default 300) drawn with a fixed seed
from its generator's categories, cycling through real examples. How fast the
rewards are on the longest inputs is a ratio test in `test_reward_edges.py`
(tests assert behaviour, not the machine's speed).

Targets:
- text rewards (`textgame/binary`, `textgame/task_specific`, `web/f1`) on
  text: random bytes and unicode (lone surrogates, line separators, case-folding
  letters), truncated and mutated real targets, deeply nested JSON, huge
  numbers, NaN/Infinity literals, JSON of the wrong shape, repeated section
  headers, responses as long as the sampler can write, and non-text objects;
- video rewards (`mae_ssim`, `mae_lpips` with a random-weight LPIPS network:
  the trained weights cannot be downloaded here) on predicted frames: NaN,
  infinities, huge values, wrong shapes and dtypes, tiny frames, lists, None;
- every domain's `score` (and the video `token_rewards`) on id sequences:
  random valid ids, mutated real targets, negative ids, ids past the
  vocabulary or beyond int64, floats, mixed types, arrays and tensors, special
  ids only, the longest-decoding token repeated, empty, not sequences at all.

"As long as the sampler can write": the largest `max_new_tokens` of all
presets (`pipeline.preset`) times the longest text one token decodes to,
over the text domains' tokenizers: each domain's own BPE tokenizer at the
presets' vocabulary size and, when its converted copy is already in the cache
(nothing is converted or downloaded here), SmolLM2's, which the `-pretrained`
presets use. The text game uses its bundled data; the web domain the real
MiniWoB++ records bundled with the tests; the video domain the real Bridge
test episodes with an untrained frame tokenizer of `video-full`'s shape (the
scoring code path does not depend on the weights).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from rlvr_world.domains.textgame import TextGameData, TextGameDomain
from rlvr_world.domains.video import VideoData, VideoDomain, VideoTokenizer
from rlvr_world.domains.video.data import bridge
from rlvr_world.domains.video.frames import FrameTokenizer, FrameTokenizerConfig
from rlvr_world.domains.video.lpips import LPIPS
from rlvr_world.domains.video.metrics import BEST_REWARD, WORST_REWARD
from rlvr_world.domains.web import WebData, WebDomain
from rlvr_world.runconfig import preset, presets

pytestmark = pytest.mark.slow  # ~1 min of CPU: tokenizers trained, ~4,000 calls (`-m "not slow"` leaves it out)
N = int(os.environ.get("RLVR_WORLD_FUZZ_N", "300"))  # inputs per target
SEED = 0
WEB_RECORDS = Path(__file__).resolve().parent / "fixtures" / "web" / "miniwob-sample.jsonl.gz"
RANGES = {"binary": (0.0, 1.0), "task_specific": (0.0, 1.3), "f1": (0.0, 1.0),
          "mae_ssim": (WORST_REWARD, BEST_REWARD), "mae_lpips": (WORST_REWARD, BEST_REWARD)}
SPECIAL_CHARS = "\n\r\t\x00\x0b\x0c\x1c\x85\u2028\u2029\ufeff\u017f\u212a\u0130{}[]\":,'\\#*_>-"
HEADERS = ["New items:", "Deleted items:", "Updated items:", "**New items:**", "### Updated items:", "new ITEMS :",
           "> - Deleted items: [1] button 'A'", "New items: [2] link 'B'", "Updated  items:__"]


# ---- text responses ---------------------------------------------------------------------------------------------


def text_generators(longest_token: str, max_tokens: int) -> dict[str, Callable[[random.Random, str, int], Any]]:
    """category -> (rng, the real target text, longest length) -> a response (mostly text)."""

    def random_bytes(r, target, limit):
        raw = r.randbytes(r.randint(0, min(limit, 4096)))
        return raw.decode(r.choice(["utf-8", "latin-1"]), errors=r.choice(["replace", "surrogateescape", "ignore"]))

    def random_unicode(r, target, limit):
        n = r.randint(0, min(limit, 4096))
        return "".join(chr(r.randrange(0x110000)) if r.random() < 0.5 else r.choice(SPECIAL_CHARS) for _ in range(n))

    def truncated(r, target, limit):
        return target[: r.randint(0, len(target))]

    def mutated(r, target, limit):
        text = target
        for _ in range(r.randint(1, 8)):
            i, j = sorted(r.randint(0, len(text)) for _ in range(2))
            text = r.choice([text[:i] + r.choice(SPECIAL_CHARS + "0123456789") + text[i:],  # insert
                             text[:i] + text[j:],  # delete
                             text[:j] + text[i:j] * r.randint(2, 20) + text[j:],  # repeat a slice
                             "\n".join(r.sample(text.split("\n"), len(text.split("\n"))))])  # shuffle lines
        return text[:limit]

    def nested(r, target, limit):
        depth = r.choice([10, 100, 1000, 10_000, limit // 2])
        open_, close = r.choice([("[", "]"), ('{"a":', "}"), ('{"modified":[', "]}"), ('{"uuid":', "}")])
        body = open_ * depth + r.choice(["1", "", "null", '"x"']) + (close * depth if r.random() < 0.5 else "")
        return (r.choice(["", '{"modified":', "New items:\n"]) + body)[:limit]

    def huge_numbers(r, target, limit):
        def big():
            return r.choice(["9" * r.randint(20, 5000), "1e999", "-1e999", "1e-999", "-0", "0x10", "1_000",
                             "123456789" * 600, "-" + "9" * 4400, "1" + "0" * 4300 + ".5"])

        text = re.sub(r"-?\d+(\.\d+)?", lambda m: big() if r.random() < 0.5 else m.group(), target)
        return (text if text != target else target + big())[:limit]

    def nan_inf(r, target, limit):
        lit = lambda: r.choice(["NaN", "Infinity", "-Infinity", "nan", "inf", "1e400"])  # noqa: E731
        text = re.sub(r'-?\d+(\.\d+)?|true|false|null|"[^"\\]*"', lambda m: lit() if r.random() < 0.4 else m.group(),
                      target)
        return text[:limit]

    def wrong_shape_json(r, target, limit):
        values = [None, 1, -1.5, "s", True, [], {}, [1], [None], [[1]], [{"uuid": [1]}], [{"uuid": {"a": 1}}],
                  [{"uuid": 1, "properties": [1], "contains": {"a": 1}}], [{"uuid": 1.5, "properties": {"x": [[]]}}],
                  [{"uuid": None, "contains": [[], {}, None]}], {"score": [1]}, {"score": {"score": {"a": 1}}}]
        obj = {k: r.choice(values) for k in r.sample(["modified", "removed", "score", "extra"], r.randint(0, 4))}
        return json.dumps(r.choice([obj, [obj], r.choice(values)]), allow_nan=True)[:limit]

    def repeated_headers(r, target, limit):
        unit = r.choice(HEADERS) + "\n" + r.choice(["", "[1] button 'A'\n", "None\n", "\t[3] link 'x'\r\n"])
        return unit * max(1, r.choice([r.randint(1, 50), limit // len(unit)]))

    def long(r, target, limit):
        kind = r.choice(["target", "longest_token", "spaces", "items", "newlines"])
        if kind == "target":
            return ((target + "\n") * (limit // (len(target) + 1) + 1))[:limit]
        if kind == "longest_token":
            return longest_token * max_tokens
        if kind == "spaces":
            return " " * limit
        if kind == "newlines":
            return "New items:" + "\n" * (limit - 10)
        return "New items:\n" + "".join(f"[{i}] button '{i}'\n" for i in range(limit // 16))[: limit - 11]

    def web_lines(r, target, limit):
        ids = ["1", "0", "-1", "NaN", "9" * 5000, "", "1e9", "٣"]  # the last: an Arabic-Indic digit (\d matches it)
        lines = [r.choice(HEADERS)] + [
            "\t" * r.randint(0, 3) + f"[{r.choice(ids)}] {r.choice(['button', 'link', '', ' '])} "
            f"'{r.choice(['A', '', chr(r.randrange(0x110000))])}'" + r.choice(["", "\r", " focused: True"])
            for _ in range(r.randint(0, 200))]
        return "\n".join(lines)[:limit]

    def empty(r, target, limit):
        return r.choice(["", " ", "\n", "\r\n", "\x00", "None", "null", "{}", "[]", "New items:",
                         "New items:\nNone\n\nDeleted items:\nNone\n\nUpdated items:\nNone\n"])

    def not_text(r, target, limit):
        return r.choice([None, 0, -1, 2**100, 1.5, math.nan, math.inf, target.encode(), bytearray(b"\xff"), [target],
                         {"text": target}, (target,), object(), target.encode("utf-16")])

    return {f.__name__: f for f in (random_bytes, random_unicode, truncated, mutated, nested, huge_numbers, nan_inf,
                                    wrong_shape_json, repeated_headers, long, web_lines, empty, not_text)}


# ---- predicted frames -------------------------------------------------------------------------------------------


def frame_generators() -> dict[str, Callable[[random.Random, np.random.Generator, np.ndarray], Any]]:
    """category -> (rng, numpy rng, the real frames (F, H, W, 3) uint8) -> a prediction (mostly an array)."""

    def perturbed(r, g, real):
        return np.clip(real.astype(np.int64) + g.integers(-40, 41, real.shape), 0, 255).astype(np.uint8)

    def random_uint8(r, g, real):
        return g.integers(0, 256, real.shape, dtype=np.uint8)

    def wide_floats(r, g, real):
        return g.standard_normal(real.shape) * 10.0 ** r.randint(-300, 300)

    def nan_inf(r, g, real):
        x = g.random(real.shape)
        x[g.random(real.shape) < r.random()] = r.choice([np.nan, np.inf, -np.inf, 1e308, -1e308])
        return x

    def constant(r, g, real):
        return np.full(real.shape, r.choice([np.nan, np.inf, -np.inf, 1e308, -0.0, 0.0, 1.0, 255.0, -1.0]))

    def wrong_shape(r, g, real):
        return g.random(tuple(r.randint(0, 12) for _ in range(r.randint(0, 6))))

    def wrong_dtype(r, g, real):
        dtype = r.choice([bool, np.int8, np.uint16, np.int64, np.uint64, np.float16, np.complex64, object, str])
        return real.astype(dtype) if dtype not in (object, str) else np.full(real.shape[:2], r.choice(["a", None]),
                                                                              dtype=dtype)

    def tiny_frames(r, g, real):
        h, w = r.randint(0, 12), r.randint(0, 12)
        return g.random((len(real), h, w, 3)), np.zeros((len(real), h, w, 3), np.uint8)  # both tiny

    def frame_count(r, g, real):
        return g.random((r.choice([0, 1, len(real) + 1, 50]), *real.shape[1:]))

    def lists(r, g, real):
        return r.choice([real[:1, :2, :2].tolist(), [[1, 2], [3]], [], [[[[0.5] * 3] * 64] * 64], [None] * 3])

    def tensors(r, g, real):
        t = torch.as_tensor(real)
        return r.choice([t, t.float().requires_grad_(), t.to(torch.bfloat16), t.bool(), t.permute(0, 2, 1, 3),
                         t.double() * 1e300, torch.empty(0)])

    def not_frames(r, g, real):
        return r.choice([None, 3, 2.5, "frames", b"\x00", {"frames": 1}, object(), math.nan])

    return {f.__name__: f for f in (perturbed, random_uint8, wide_floats, nan_inf, constant, wrong_shape,
                                    wrong_dtype, tiny_frames, frame_count, lists, tensors, not_frames)}


# ---- id sequences -----------------------------------------------------------------------------------------------


def id_generators(vocab: int, specials: list[int], longest_id: int, max_tokens: int, visual: int | None = None
                  ) -> dict[str, Callable[[random.Random, list[int]], Any]]:
    """category -> (rng, the real target ids) -> a response (mostly a sequence of would-be ids)."""

    def valid_random(r, target):
        top = visual if visual and r.random() < 0.5 else vocab  # video: frame codes only, or any id
        return [r.randrange(top) for _ in range(r.randint(0, max_tokens))]

    def target(r, real):
        return list(real)

    def target_mutated(r, target):
        ids = list(target)[: r.randint(0, len(target))] + [r.randrange(vocab) for _ in range(r.randint(0, 20))]
        for _ in range(r.randint(0, 10)):
            if ids:
                ids[r.randrange(len(ids))] = r.choice([r.randrange(vocab), *specials])
        return ids[:max_tokens]

    def bad_value(r, target, values):
        ids = list(target)[:max_tokens]
        for _ in range(r.randint(1, 5)):
            pos = r.randint(0, len(ids))
            ids[pos:pos] = [r.choice(values)]
        return ids if r.random() < 0.7 else [r.choice(values)] * r.randint(1, max_tokens)

    def negative(r, target):
        return bad_value(r, target, [-1, -2, -vocab, -(2**31), -(2**63)])

    def past_vocab(r, target):
        return bad_value(r, target, [vocab, vocab + 1, 2**31, 2**63 - 1])

    def beyond_int64(r, target):
        return bad_value(r, target, [2**63, 2**64, 10**30, 10**400, -(2**63) - 1, -(10**400)])

    def floats(r, target):
        return bad_value(r, target, [3.0, 0.0, 3.5, -0.0, math.nan, math.inf, -math.inf, 1e308, float(vocab - 1)])

    def mixed_types(r, target):
        return bad_value(r, target, [None, "5", b"5", True, False, np.float32(1), np.float64(math.nan), 1 + 2j,
                                     [1, 2], (3,), {"id": 1}, torch.tensor(2.5), torch.tensor([1, 2]), object()])

    def containers(r, target):
        ids = list(target)[:max_tokens]
        return r.choice([np.array(ids, dtype=np.int64), np.array(ids, dtype=np.int32), np.array(ids, np.float32),
                         torch.tensor(ids), torch.tensor(ids, dtype=torch.float64), torch.tensor(ids).bool(),
                         np.array([ids, ids]), tuple(ids), iter(ids), range(min(vocab, max_tokens)),
                         [np.int64(i) for i in ids], [torch.tensor(i) for i in ids]])

    def special_only(r, target):
        return [r.choice(specials) for _ in range(r.randint(1, max_tokens))]

    def longest_token(r, target):
        return [longest_id] * max_tokens

    def boundaries(r, target):
        return [r.choice([0, vocab - 1, vocab, -1])] * r.randint(1, max_tokens)

    def empty(r, target):
        return r.choice([[], (), np.array([], dtype=np.int64), torch.tensor([], dtype=torch.long)])

    def not_a_sequence(r, target):
        return r.choice([None, 5, 2.5, "12 34", b"\x01\x02", torch.tensor(3), np.int64(4), object(), {1: 2}])

    return {f.__name__: f for f in (valid_random, target, target_mutated, negative, past_vocab, beyond_int64,
                                    floats, mixed_types, containers, special_only, longest_token, boundaries, empty,
                                    not_a_sequence)}


# ---- running and checking ---------------------------------------------------------------------------------------


def check(result: Any, lo: float, hi: float, per_token: bool) -> str:
    """"" when the result keeps the contract, else what is wrong."""
    if per_token:
        if not isinstance(result, list):
            return f"token rewards are a {type(result).__name__}, not a list"
        bad = [v for v in result if not (isinstance(v, float) and math.isfinite(v) and lo <= v <= hi)]
        return f"token rewards out of [{lo}, {hi}]: {bad[:3]}" if bad else ""
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        return f"not a (value, parts) pair: {type(result).__name__}"
    value, parts = result
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and lo <= value <= hi):
        return f"value {value!r} out of [{lo}, {hi}]"
    bad = {k: v for k, v in parts.items() if isinstance(v, float) and not math.isfinite(v)}
    return f"non-finite parts {bad}" if bad else ""


def fuzz(call: Callable, generators: dict, draw: Callable, examples: list, n: int, lo: float, hi: float,
         seed: int, per_token: bool = False) -> dict:
    """`n` generated inputs through `call(*draw(generator, rng, np_rng, example))`, categories in turn, examples
    cycled; counts and the first failures."""
    r, g = random.Random(seed), np.random.default_rng(seed)
    names = sorted(generators)
    stats: dict[str, Any] = {"calls": 0, "exceptions": 0, "out_of_range": 0}
    by_category, failures = Counter(), []
    for i in range(n):
        category = names[i % len(names)]
        inputs = draw(generators[category], r, g, examples[(i // len(names)) % len(examples)])
        try:
            problem, kind = check(call(*inputs), lo, hi, per_token), "out_of_range"
        except Exception as e:  # noqa: BLE001 - what the fuzzer counts
            problem, kind = f"{type(e).__name__}: {str(e)[:200]}", "exceptions"
        stats["calls"] += 1
        by_category[category] += 1
        if problem:
            stats[kind] += 1
            if len(failures) < 5:
                failures.append({"category": category, "kind": kind, "problem": problem})
    return {**stats, "failures": failures, "by_category": dict(sorted(by_category.items()))}


# ---- the domains ------------------------------------------------------------------------------------------------


def longest_token(tok) -> tuple[int, int]:
    """The id whose decoded text is longest, and that length."""
    lengths = [len(tok.decode([i])) for i in range(len(tok))]
    i = max(range(len(lengths)), key=lengths.__getitem__)
    return i, lengths[i]


def smollm2_tokenizer() -> tuple[Any, str]:
    """SmolLM2's tokenizer when its converted copy is already cached (never converts), else (None, why not)."""
    from rlvr_world.engine.models import ModelError
    from rlvr_world.engine.pretrained import converted_dir, named_file
    from rlvr_world.text import load_tokenizer

    try:
        path = converted_dir(named_file("smollm2-135m"))
    except ModelError as e:
        return None, str(e)
    if not (path / "tokenizer.json").is_file():
        return None, f"not converted here ({path})"
    return load_tokenizer(path), str(path)


def text_domains(vocab: int, seed: int, n_games: int) -> tuple[dict[str, tuple], dict[str, dict]]:
    """{"textgame[bpe]": (domain, examples), ...} with each domain's BPE tokenizer and SmolLM2's; tokenizer facts."""
    game_data, web_data = TextGameData(), WebData(dataset=str(WEB_RECORDS))
    game_ts = random.Random(seed).sample(TextGameDomain.transitions("test", game_data), n_games)
    web_ts = WebDomain.transitions("train", web_data) + WebDomain.transitions("test", web_data)
    smol, where = smollm2_tokenizer()
    domains, info = {}, {}
    for label, cls, data, ts in (("textgame", TextGameDomain, game_data, game_ts),
                                 ("web", WebDomain, web_data, web_ts)):
        toks = {"bpe": cls.make_tokenizer(data, vocab)} | ({"smollm2": smol} if smol is not None else {})
        for tok_name, tok in toks.items():
            dom = cls(tok, data)
            domains[f"{label}[{tok_name}]"] = (dom, [dom.example(t) for t in ts])
            i, chars = longest_token(tok)
            info[f"{label}[{tok_name}]"] = {"vocab": len(tok), "longest_token_id": i, "longest_token_chars": chars}
    if smol is None:
        info["smollm2"] = f"left out: {where}"
    return domains, info


def video_domain(seed: int) -> tuple[VideoDomain, list]:
    """`video-full`'s token layout (8x8 codes, levels 8,5,5,5, 32 bins) on the real Bridge test episodes, with an
    untrained frame tokenizer and a random-weight LPIPS network (the code paths, not the meaning)."""
    cfg = preset("video-full").data
    torch.manual_seed(seed)
    frames = FrameTokenizer(FrameTokenizerConfig(grid=cfg.grid, levels=cfg.level_list()))
    dom = VideoDomain(VideoTokenizer(frames, action_dims=4, bins=cfg.action_bins), VideoData())
    dom.lpips = LPIPS()
    return dom, dom.episode_examples(bridge("test"))


# ---- the targets ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def domains():
    """The text domains with their tokenizers, the video domain, and the longest response the sampler can write."""
    configs = {name: preset(name) for name in presets()}
    max_tokens = max(max(c.max_new_tokens, c.rl.max_new_tokens) for c in configs.values())
    texts, tokenizers = text_domains(preset("default").vocab_size, SEED, n_games=200)
    longest_chars = max(v["longest_token_chars"] for v in tokenizers.values() if isinstance(v, dict))
    torch.set_num_threads(1)
    return texts, tokenizers, video_domain(SEED), max_tokens, longest_chars


def failed(results: dict[str, dict]) -> dict[str, list]:
    assert all(v["calls"] == N for v in results.values())
    return {k: v["failures"] for k, v in results.items() if v["exceptions"] or v["out_of_range"]}


def test_text_rewards_on_adversarial_text(domains):
    texts, _, _, max_tokens, longest_chars = domains
    limit = max_tokens * longest_chars
    gens = text_generators(" " * longest_chars, max_tokens)
    gens["target"] = lambda r, target, limit: target
    results = {}
    for seed, label in enumerate(("textgame[bpe]", "web[bpe]")):
        dom, examples = texts[label]
        draw = lambda gen, r, g, ex, dom=dom: (gen(r, dom.target_text(ex.payload), limit), ex.payload)  # noqa: E731
        for name, reward in dom.rewards.items():
            results[f"{label}/{name}"] = fuzz(reward, gens, draw, examples, N, *RANGES[name], seed * 10 + len(results))
    assert set(results) == {"textgame[bpe]/binary", "textgame[bpe]/task_specific", "web[bpe]/f1"}
    assert not failed(results)


def test_video_rewards_on_adversarial_frames(domains):
    video, examples = domains[2]
    gens = frame_generators()
    gens["target"] = lambda r, g, real: real.copy()

    def draw(gen, r, g, ex):
        pred = gen(r, g, ex.payload.frames)
        return pred if isinstance(pred, tuple) else (pred, ex.payload.frames)  # tiny_frames brings its own real ones

    results = {}
    for seed, (name, reward) in enumerate(video.rewards.items()):
        call = lambda pred, real, reward=reward: reward(pred, real, lpips=video.lpips)  # noqa: E731
        results[name] = fuzz(call, gens, draw, examples, N, *RANGES[name], 100 + seed)
    assert set(results) == {"mae_ssim", "mae_lpips"} and not failed(results)


def test_every_domains_score_on_adversarial_ids(domains):
    texts, tokenizers, (video, video_examples), max_tokens, _ = domains
    draw = lambda gen, r, g, ex: (gen(r, ex.target_ids), ex)  # noqa: E731
    results = {}
    for label, (dom, examples) in texts.items():
        tok = dom.tokenizer
        specials = [i for i in (tok.eos_token_id, tok.pad_token_id, tok.bos_token_id) if i is not None]
        gens = id_generators(len(tok), specials, tokenizers[label]["longest_token_id"], max_tokens)
        for name in dom.rewards:
            call = lambda ids, ex, dom=dom, name=name: dom.score(name, ids, ex)  # noqa: E731
            results[f"{label}.score/{name}"] = fuzz(call, gens, draw, examples, N, *RANGES[name], 200 + len(results))
    vt = video.tokenizer
    gens = id_generators(len(vt), [vt.eos_token_id, vt.pad_token_id, vt.bos_token_id, vt.action_base], vt.codebook - 1,
                         max_tokens, visual=vt.codebook)
    for name in video.rewards:
        call = lambda ids, ex, name=name: video.score(name, ids, ex)  # noqa: E731
        results[f"video.score/{name}"] = fuzz(call, gens, draw, video_examples, N, *RANGES[name], 200 + len(results))
    call = lambda ids, ex: video.token_rewards("mae_ssim", ids, ex)  # noqa: E731
    results["video.token_rewards/mae_ssim"] = fuzz(call, gens, draw, video_examples, N, *RANGES["mae_ssim"], 300,
                                                   per_token=True)
    assert {"textgame[bpe].score/binary", "web[bpe].score/f1", "video.score/mae_lpips"} <= set(results)
    assert not failed(results)
