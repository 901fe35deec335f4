"""A world model behind an OpenAI-compatible completions endpoint, as the paper served its web world model to the agent.

    rlvr-world serve --model runs/web/rl/model [--port 8000]

Routes: `POST /v1/completions` (the legacy text-completions API: `prompt`
as a string, a list of strings, a list of token ids or a list of such lists;
`max_tokens`, `temperature`, `top_p`, `n`, `stop`, `seed`),
`POST /v1/chat/completions` (`messages`, for a model whose tokenizer carries
a chat template), `GET /v1/models` and `GET /health`. Any OpenAI client
pointed at `http://HOST:PORT/v1` can call it. A prompt is tokenised as the
language domains tokenise theirs (no special tokens added), so the text a
domain's `prompt_text` writes is what a client sends (the README.md a run
writes beside its model says how); the completion stops at the model's
end-of-sequence token. A chat request's messages are written into prompt
text by the tokenizer's chat template (with the assistant's turn opened);
a model without a template gets a 400 saying so. rlvr-world's own world
models read plain prompt text, even one fine-tuned from a chat model: theirs
is `/v1/completions`.

A request without `max_tokens` gets the server's `--max-tokens`: by default
the length the run evaluated with (`max_new_tokens` in the run's config.json
beside the model directory), else 512, cut to what the model's context leaves
after the prompt.

Concurrent requests are each answered on their own thread. While the model
decodes, requests wait; those waiting that sample alike (the same
`max_tokens`, `n`, `temperature` and `top_p`) are then decoded together in
one batch, up to `--max-batch` completions. A completion's random draws come
from its own request's seed, whatever shares its batch (the sampler's
`draws`).

What is not supported is refused, never ignored: streaming, log-probabilities,
`echo`, `best_of` above 1, `suffix`, logit bias, non-zero penalties and tools
get a 400 with a one-line message, as do malformed bodies, unknown models,
prompts too long for the model's context and out-of-range numbers. An error
inside the model answers 500 and the server goes on.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .optionparsing import require, require_choice

MAX_BODY_BYTES = 4 * 2**20
MAX_N = 64  # completions per request, all prompts together
ROUTES = "this server answers POST /v1/completions, POST /v1/chat/completions, GET /v1/models and GET /health"
# field -> the values a request may still send besides null (each API's defaults)
COMPLETIONS_UNSUPPORTED = {
    "stream": (False,), "logprobs": (), "echo": (False,), "best_of": (1,), "suffix": (), "logit_bias": ({},),
    "presence_penalty": (0,), "frequency_penalty": (0,),
}
CHAT_UNSUPPORTED = {
    "stream": (False,), "stream_options": (), "logprobs": (False,), "top_logprobs": (0,), "logit_bias": ({},),
    "presence_penalty": (0,), "frequency_penalty": (0,), "tools": ([],), "tool_choice": ("none",),
    "functions": ([],), "function_call": ("none",), "response_format": ({"type": "text"},), "audio": (),
    "modalities": (["text"],), "prediction": (),
}


@dataclass
class ServeConfig:
    """The world model behind an OpenAI-compatible completions endpoint."""

    # a model directory (Hugging Face format, tokenizer inside), an adapter folder (adapters/NAME), a .gguf file or a
    # model name
    model: str = ""
    host: str = "127.0.0.1"  # address to listen on (0.0.0.0: every interface)
    port: int = 8000  # port to listen on (0: any free one, printed at start)
    name: str = ""  # the model's name in the API (default: the --model argument)
    # completion length when a request gives no max_tokens (0: the run's own evaluation length, from the config.json
    # beside the model directory, else 512), cut to what the model's context leaves after the prompt
    max_tokens: int = 0
    max_batch: int = 64  # completions of concurrent requests decoded together (1: one request at a time)
    device: str = "auto"  # auto, cpu, cuda, ...
    dtype: str = "auto"  # auto, bf16 or fp32
    threads: int = 0  # torch CPU threads (0: one per core)

    def __post_init__(self):
        require_choice(self, "", dtype=("auto", "bf16", "fp32"))
        require(self, "", port="in [0, 65535]", max_tokens=">= 0", max_batch=">= 1", threads=">= 0")


def default_max_tokens(model_dir) -> int:
    """The completion length a run evaluated its model with (`max_new_tokens` in the config.json of the run the
    model directory belongs to), else `RunConfig`'s default (512)."""
    from .rundir import run_config_of
    from .runconfig import RunConfig

    value = run_config_of(str(model_dir)).get("max_new_tokens")
    return value if is_id(value) and value >= 1 else RunConfig.max_new_tokens


class RequestError(ValueError):
    """A request the server refuses: an HTTP status and a one-line message."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.kind = status, kind


@dataclass
class Sampling:
    """How a request samples; requests that sample alike can share a decoding batch."""

    max_tokens: int
    n: int
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None

    @property
    def key(self) -> tuple:
        return self.max_tokens, self.n, self.temperature, self.top_p


@dataclass
class Job:
    """A request's prompts waiting for the model, then its completions: (ids, ended) per (prompt, sample)."""

    prompts: list[list[int]]
    sampling: Sampling
    draws: Any  # (rows, max_tokens) uniforms from the request's seed; None when greedy
    out: list[tuple[list[int], bool]] | None = None
    error: Exception | None = None

    @property
    def rows(self) -> int:
        return len(self.prompts) * self.sampling.n


class Completer:
    """Completions from one causal LM and its tokenizer; `complete` and `chat` take and return the API's JSON
    objects, and may be called from many threads at once."""

    def __init__(self, model, tokenizer, name: str, *, max_tokens: int = 512, autocast=None, max_batch: int = 64):
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.max_tokens, self.autocast, self.max_batch = max_tokens, autocast, max_batch
        self.context = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None
        self.vocab = len(tokenizer)
        self.chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.lock = threading.Lock()  # the model: one batch decodes at a time
        self.text_lock = threading.Lock()  # the tokenizer (Hugging Face does not promise it is thread-safe)
        self.queue_lock = threading.Lock()
        self.waiting: list[Job] = []  # requests waiting for the model
        self.decoded = {"requests": 0, "batches": 0}  # so far (GET /health)

    # ---- the two routes ------------------------------------------------------------------------------------------
    def complete(self, body: Any) -> dict:
        """The response object to a completions request body; RequestError for a bad request."""
        self.check(body, COMPLETIONS_UNSUPPORTED)
        prompts = self.prompt_ids(body.get("prompt"))
        texts, usage = self.generate(prompts, self.sampling(body, prompts, "max_tokens"))
        return {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion", "created": int(time.time()),
                "model": self.name, "usage": usage,
                "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": why}
                            for i, (text, why) in enumerate(texts)]}

    def chat(self, body: Any) -> dict:
        """The response object to a chat-completions request body; RequestError for a bad request, or for a model
        without a chat template."""
        self.check(body, CHAT_UNSUPPORTED)
        prompts = [self.chat_ids(body.get("messages"))]
        key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        texts, usage = self.generate(prompts, self.sampling(body, prompts, key))
        return {"id": f"chatcmpl-{secrets.token_hex(12)}", "object": "chat.completion", "created": int(time.time()),
                "model": self.name, "usage": usage,
                "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
                             "finish_reason": why} for i, (text, why) in enumerate(texts)]}

    # ---- reading a request ---------------------------------------------------------------------------------------
    def check(self, body: Any, unsupported: dict[str, tuple]) -> None:
        """A JSON object naming this server's model and asking for nothing it cannot do."""
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        model = body.get("model", self.name)
        if model != self.name:
            raise RequestError(404, f"model {model!r} is not served here; this server serves {self.name!r}",
                               "model_not_found")
        for key, allowed in unsupported.items():
            value = body.get(key)
            if value is not None and value not in allowed:
                raise RequestError(400, f"{key}={value!r} is not supported by this server")

    def sampling(self, body: dict, prompts: list[list[int]], length_key: str) -> Sampling:
        """The request's sampling options, checked (the completion length against the model's context)."""
        n = integer(body, "n", 1, low=1)
        if n * len(prompts) > MAX_N:
            raise RequestError(400, f"{n} completions of {len(prompts)} prompts: at most {MAX_N} a request")
        temperature = number(body, "temperature", 1.0, low=0.0, high=2.0)
        top_p = number(body, "top_p", 1.0, low=0.0, high=1.0)
        if top_p == 0.0:
            raise RequestError(400, "top_p must be > 0")
        seed = body.get("seed")
        if seed is not None and not is_id(seed):
            raise RequestError(400, f"seed must be an integer, not {seed!r}")
        longest = max(len(p) for p in prompts)
        room = self.context - longest if self.context else None  # what the model's context leaves after the prompt
        max_tokens = integer(body, length_key, self.max_tokens, low=1)
        if body.get(length_key) is None and room is not None and room >= 1:
            max_tokens = min(max_tokens, room)  # the server's length, as much of it as fits
        if room is not None and max_tokens > room:
            raise RequestError(400, f"a prompt of {longest} tokens plus {length_key} {max_tokens} exceeds the "
                                    f"model's context of {self.context} tokens")
        return Sampling(max_tokens, n, temperature, top_p, stops(body.get("stop")), seed)

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
                with self.text_lock:
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

    def chat_ids(self, messages: Any) -> list[int]:
        """Chat messages as prompt ids: the tokenizer's chat template, with the assistant's turn opened."""
        if not self.chat_template:
            raise RequestError(400, f"the model {self.name!r} has no chat template (its tokenizer files carry none): "
                                    f"send its prompt text to POST /v1/completions")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "messages must be a non-empty list of {\"role\": ..., \"content\": ...} objects")
        turns = [{"role": m["role"], "content": message_text(m)} for m in messages
                 if isinstance(m, dict) and isinstance(m.get("role"), str)]
        if len(turns) != len(messages):
            raise RequestError(400, "each message must be an object with a string role")
        try:
            with self.text_lock:
                text = self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
                ids = self.tokenizer.encode(text, add_special_tokens=False)
        except Exception as e:  # noqa: BLE001 - the template refuses these messages (e.g. roles out of order)
            raise RequestError(400, f"the model's chat template refused the messages: {one_line(e)}") from None
        if not ids:
            raise RequestError(400, "the messages make an empty prompt")
        return ids

    # ---- decoding ------------------------------------------------------------------------------------------------
    def generate(self, prompts: list[list[int]], s: Sampling) -> tuple[list[tuple[str, str]], dict]:
        """(text, finish reason) per (prompt, sample), prompt-major, and the token counts."""
        job = Job(prompts, s, self.draws(len(prompts) * s.n, s))
        with self.queue_lock:
            self.waiting.append(job)
        with self.lock:
            if job.out is None and job.error is None:  # no batch before took it along
                self.decode(self.take(job))
        if job.error is not None:
            raise job.error
        texts = []
        for ids, finished in job.out:
            with self.text_lock:
                text = self.tokenizer.decode([t for t in ids if t != self.tokenizer.eos_token_id],
                                             skip_special_tokens=True)
            cut = min((text.find(x) for x in s.stop if x in text), default=-1)
            if cut >= 0:
                text, finished = text[:cut], True
            texts.append((text, "stop" if finished else "length"))
        prompt_tokens = s.n * sum(len(p) for p in prompts)
        completion_tokens = sum(len(ids) for ids, _ in job.out)  # end-of-sequence tokens included
        return texts, {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                       "total_tokens": prompt_tokens + completion_tokens}

    @staticmethod
    def draws(rows: int, s: Sampling):
        """The uniforms behind a request's draws, from its seed (a random one without): what `sample` would draw
        for the request alone. None when greedy."""
        import torch  # here, not at the top: the command line's parser imports this module for its options

        from .engine.sampler import uniforms

        if s.temperature <= 0:
            return None
        generator = torch.Generator().manual_seed(s.seed if s.seed is not None else secrets.randbits(63))
        return uniforms((rows, s.max_tokens), generator, "cpu")

    def take(self, job: Job) -> list[Job]:
        """`job` and the waiting jobs that sample alike, up to `max_batch` completions (`job` always goes)."""
        with self.queue_lock:
            batch, rows = [job], job.rows
            for j in self.waiting:
                if j is not job and j.sampling.key == job.sampling.key and rows + j.rows <= self.max_batch:
                    batch.append(j)
                    rows += j.rows
            self.waiting = [j for j in self.waiting if not any(j is b for b in batch)]
        return batch

    def decode(self, batch: list[Job]) -> None:
        """One `sample` call for every prompt of the batch; each job gets its own rows, or the error."""
        import torch

        from .engine.sampler import sample

        s = batch[0].sampling
        self.decoded["requests"] += len(batch)
        self.decoded["batches"] += 1
        device = next(self.model.parameters()).device
        draws = torch.cat([j.draws for j in batch]).to(device) if s.temperature > 0 else None  # (rows, max_tokens)
        try:
            with torch.inference_mode():
                out = sample(self.model, [p for j in batch for p in j.prompts], eos_id=self.tokenizer.eos_token_id,
                             pad_id=self.tokenizer.pad_token_id, max_new_tokens=s.max_tokens, num_samples=s.n,
                             temperature=s.temperature, top_p=s.top_p, draws=draws, autocast=self.autocast)
        except Exception as e:  # noqa: BLE001 - every request of the batch answers 500, the server goes on
            for j in batch:
                j.error = e
            return
        rows = [(out.tokens[i, : int(out.lengths[i])].tolist(), bool(out.finished[i]))  # ids up to and with the end
                for i in range(out.tokens.size(0))]
        start = 0
        for j in batch:  # the sampler's rows are prompt-major, so each job's are contiguous
            j.out, start = rows[start: start + j.rows], start + j.rows


def message_text(m: dict) -> str:
    """A message's content: a string, or the text of its text parts (joined by newlines)."""
    content = m.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(c, dict) and c.get("type") == "text"
                                         and isinstance(c.get("text"), str) for c in content):
        return "\n".join(c["text"] for c in content)
    raise RequestError(400, "a message's content must be a string or a list of text parts")


def one_line(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


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
                self.reply(200, {"status": "ok", "model": completer.name, "decoded": completer.decoded})
            elif path == "/v1/models":
                self.reply(200, {"object": "list", "data": [
                    {"id": completer.name, "object": "model", "created": 0, "owned_by": "rlvr-world"}]})
            else:
                self.error(RequestError(404, f"no route GET {path}; {ROUTES}", "not_found"))

        def do_POST(self):
            path = self.path.split("?")[0].rstrip("/")
            try:
                body = self.body()  # read first: an unread body would be taken for the next request
                routes = {"/v1/completions": completer.complete, "/v1/chat/completions": completer.chat}
                if path not in routes:
                    raise RequestError(404, f"no route POST {path}; {ROUTES}", "not_found")
                self.reply(200, routes[path](body))
            except RequestError as e:
                self.error(e)
            except Exception as e:  # the model failed: say so, keep serving
                self.error(RequestError(500, one_line(e), "server_error"))

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


class Server(ThreadingHTTPServer):
    """One thread per connection; a backlog deep enough for many clients connecting at once."""

    request_queue_size = 128


def make_server(completer: Completer, host: str = "127.0.0.1", port: int = 0, log=None) -> ThreadingHTTPServer:
    """A started-when-`serve_forever`-runs HTTP server for `completer` (port 0: a free one, see `server_address`)."""
    try:
        return Server((host, port), handler(completer, log))
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None

