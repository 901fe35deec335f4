"""A world model behind an OpenAI-compatible completions endpoint, as the paper served its web world model to the agent.

    rlvr-world serve --model runs/web/rl/model [--port 8000]

Routes: `POST /v1/completions` (the legacy text-completions API: `prompt`
as a string, a list of strings, a list of token ids or a list of such lists;
`max_tokens`, `temperature`, `top_p`, `n`, `stop`, `seed`), `GET /v1/models`
and `GET /health`. Any OpenAI client pointed at `http://HOST:PORT/v1` can call
it. A prompt is tokenised as the language domains tokenise theirs (no special
tokens added), so the text a domain's `prompt_text` writes is what a client
sends; the completion stops at the model's end-of-sequence token.

What is not supported is refused, never ignored: streaming, log-probabilities,
`echo`, `best_of` above 1, `suffix`, logit bias and non-zero penalties get a 400
with a one-line message, as do malformed bodies, unknown models, prompts too
long for the model's context and out-of-range numbers. An error inside the
model answers 500 and the server goes on. Requests are answered one at a time
(the model computes with every core it is given).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .config import require, require_choice

MAX_BODY_BYTES = 4 * 2**20
MAX_N = 64  # completions per request, all prompts together
UNSUPPORTED = {  # field -> the value a request may still send (the default)
    "stream": False, "logprobs": None, "echo": False, "best_of": 1, "suffix": None, "logit_bias": None,
    "presence_penalty": 0, "frequency_penalty": 0,
}


@dataclass
class ServeConfig:
    """The world model behind an OpenAI-compatible completions endpoint."""

    model: str = ""  # a model directory (Hugging Face format, tokenizer inside), a .gguf file or a model name
    host: str = "127.0.0.1"  # address to listen on (0.0.0.0: every interface)
    port: int = 8000  # port to listen on (0: any free one, printed at start)
    name: str = ""  # the model's name in the API (default: the --model argument)
    max_tokens: int = 256  # completion length when a request gives no max_tokens
    device: str = "auto"  # auto, cpu, cuda, ...
    dtype: str = "auto"  # auto, bf16 or fp32
    threads: int = 0  # torch CPU threads (0: one per core)

    def __post_init__(self):
        require_choice(self, "", dtype=("auto", "bf16", "fp32"))
        require(self, "", port="in [0, 65535]", max_tokens=">= 1", threads=">= 0")


class RequestError(ValueError):
    """A request the server refuses: an HTTP status and a one-line message."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.kind = status, kind


class Completer:
    """Completions from one causal LM and its tokenizer; `complete` takes and returns the API's JSON objects."""

    def __init__(self, model, tokenizer, name: str, *, max_tokens: int = 256, autocast=None):
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.max_tokens, self.autocast = max_tokens, autocast
        self.context = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None
        self.vocab = len(tokenizer)
        self.lock = threading.Lock()  # one request computes at a time

    def complete(self, body: Any) -> dict:
        """The response object to a completions request body; RequestError for a bad request."""
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        model = body.get("model", self.name)
        if model != self.name:
            raise RequestError(404, f"model {model!r} is not served here; this server serves {self.name!r}",
                               "model_not_found")
        for key, default in UNSUPPORTED.items():
            value = body.get(key)
            if value is not None and value != default and value != {}:
                raise RequestError(400, f"{key}={value!r} is not supported by this server")
        prompts = self.prompt_ids(body.get("prompt"))
        max_tokens = integer(body, "max_tokens", self.max_tokens, low=1)
        n = integer(body, "n", 1, low=1)
        if n * len(prompts) > MAX_N:
            raise RequestError(400, f"{n} completions of {len(prompts)} prompts: at most {MAX_N} a request")
        temperature = number(body, "temperature", 1.0, low=0.0, high=2.0)
        top_p = number(body, "top_p", 1.0, low=0.0, high=1.0)
        if top_p == 0.0:
            raise RequestError(400, "top_p must be > 0")
        stop = stops(body.get("stop"))
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise RequestError(400, f"seed must be an integer, not {seed!r}")
        longest = max(len(p) for p in prompts)
        if self.context and longest + max_tokens > self.context:
            raise RequestError(400, f"a prompt of {longest} tokens plus max_tokens {max_tokens} exceeds the model's "
                                    f"context of {self.context} tokens")
        import torch  # here, not at the top: the command line's parser imports this module for its options

        from .engine.sampler import sample

        generator = torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(63))
        with self.lock, torch.inference_mode():
            out = sample(self.model, prompts, eos_id=self.tokenizer.eos_token_id, pad_id=self.tokenizer.pad_token_id,
                         max_new_tokens=max_tokens, num_samples=n, temperature=temperature, top_p=top_p,
                         generator=generator, autocast=self.autocast)
        choices, completion_tokens = [], 0
        for i in range(out.tokens.size(0)):
            ids = out.tokens[i, : int(out.lengths[i])].tolist()  # up to and including the end-of-sequence token
            completion_tokens += len(ids)
            finished = bool(out.finished[i])
            text = self.tokenizer.decode([t for t in ids if t != self.tokenizer.eos_token_id], skip_special_tokens=True)
            cut = min((text.find(s) for s in stop if s in text), default=-1)
            if cut >= 0:
                text, finished = text[:cut], True
            choices.append({"index": i, "text": text, "logprobs": None, "finish_reason": "stop" if finished else "length"})
        prompt_tokens = n * sum(len(p) for p in prompts)
        return {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion", "created": int(time.time()),
                "model": self.name, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    def prompt_ids(self, prompt: Any) -> list[list[int]]:
        """The API's four prompt forms as lists of token ids (each non-empty)."""
        if isinstance(prompt, str):
            prompt = [prompt]
        elif isinstance(prompt, list) and prompt and all(is_id(t) for t in prompt):
            prompt = [prompt]
        if not isinstance(prompt, list) or not prompt:
            raise RequestError(400, "prompt must be a string, a list of strings, a list of token ids or a list of "
                                    "such lists")
        out = []
        for p in prompt:
            if isinstance(p, str):
                ids = self.tokenizer.encode(p, add_special_tokens=False)
            elif isinstance(p, list) and all(is_id(t) for t in p):
                bad = [t for t in p if not 0 <= t < self.vocab]
                if bad:
                    raise RequestError(400, f"token id {bad[0]} is outside the vocabulary (0 to {self.vocab - 1})")
                ids = p
            else:
                raise RequestError(400, f"each prompt must be a string or a list of token ids, not {type(p).__name__}")
            if not ids:
                raise RequestError(400, "a prompt is empty")
            out.append(ids)
        return out


def is_id(t: Any) -> bool:
    return isinstance(t, int) and not isinstance(t, bool)


def integer(body: dict, key: str, default: int, *, low: int) -> int:
    value = body.get(key, default)
    value = default if value is None else value
    if not is_id(value) or value < low:
        raise RequestError(400, f"{key} must be an integer >= {low}, not {value!r}")
    return value


def number(body: dict, key: str, default: float, *, low: float, high: float) -> float:
    value = body.get(key, default)
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(400, f"{key} must be a number in [{low:g}, {high:g}], not {value!r}")
    return float(value)


def stops(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise RequestError(400, "stop must be a non-empty string or a list of at most 4 of them")
    return stop


def handler(completer: Completer, log=None) -> type[BaseHTTPRequestHandler]:
    """The HTTP request handler class serving `completer`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            path = self.path.split("?")[0].rstrip("/")
            if path == "/health":
                self.reply(200, {"status": "ok", "model": completer.name})
            elif path == "/v1/models":
                self.reply(200, {"object": "list", "data": [
                    {"id": completer.name, "object": "model", "created": 0, "owned_by": "rlvr-world"}]})
            else:
                self.error(RequestError(404, f"no route GET {path}; try POST /v1/completions", "not_found"))

        def do_POST(self):
            path = self.path.split("?")[0].rstrip("/")
            try:
                body = self.body()  # read first: an unread body would be taken for the next request
                if path != "/v1/completions":
                    raise RequestError(404, f"no route POST {path}; this server answers POST /v1/completions",
                                       "not_found")
                self.reply(200, completer.complete(body))
            except RequestError as e:
                self.error(e)
            except Exception as e:  # the model failed: say so, keep serving
                self.error(RequestError(500, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                                        "server_error"))

        def body(self) -> Any:
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self.close_connection = True  # where the body ends is unknown
                raise RequestError(411, "a Content-Length header is required") from None
            if not 0 <= length <= MAX_BODY_BYTES:
                self.close_connection = True
                raise RequestError(413, f"the body is {length} bytes; at most {MAX_BODY_BYTES}")
            raw = self.rfile.read(length)
            try:
                return json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise RequestError(400, f"the body is not JSON: {e}") from None

        def error(self, e: RequestError) -> None:
            self.reply(e.status, {"error": {"message": str(e), "type": e.kind, "code": e.status}})

        def reply(self, status: int, obj: dict) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):
            if log is not None:
                log(f"{self.address_string()} {fmt % args}")

    return Handler


def make_server(completer: Completer, host: str = "127.0.0.1", port: int = 0, log=None) -> ThreadingHTTPServer:
    """A started-when-`serve_forever`-runs HTTP server for `completer` (port 0: a free one, see `server_address`)."""
    try:
        return ThreadingHTTPServer((host, port), handler(completer, log))
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None

