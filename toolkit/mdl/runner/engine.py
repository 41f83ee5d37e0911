"""One loaded llama.cpp model answering OpenAI-shaped requests.

An `Engine` is not thread-safe: the scheduler hands it to one request at a time. Requests are plain
dicts (the JSON body of `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`); each is checked
here, once, and a bad one raises `InvalidRequestError` naming the parameter (HTTP 400).

Generation goes through llama-cpp-python's own `create_chat_completion` / `create_completion`, with
every sampling parameter passed explicitly: a parameter the request leaves out takes the library's
default (`repeat_penalty` 1.0, not `llama_cpp.server`'s 1.1; ../shared/FACTS.md §6), so an answer
equals a direct `Llama(...)` call with the same arguments.

llama-cpp-python is imported inside `load_engine` only; `mdl` runs without it until a model is served.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterator
from typing import Any

from ..errors import MdlError, MissingExtraError
from .resolve import ResolvedModel

log = logging.getLogger("mdl.runner")

# With neither a user setting nor config.context_size, the GGUF's trained context applies, capped here:
# a 128k-token KV cache would not fit most machines (spec/runtime.md §2.3 allows the cap).
DEFAULT_CONTEXT_CAP = 8192

_ROLES = ("system", "user", "assistant", "tool", "developer", "function")

# A `response_format` JSON schema becomes a llama.cpp grammar with every repetition written out (a
# `minLength` of 10**9 is a billion symbols: gigabytes, then the OOM killer), and llama-cpp-python uses
# a grammar llama.cpp's parser refuses (`maxLength` 3000 is enough) as a NULL sampler: a segfault that
# takes the server down. So the repetitions a schema asks for are bounded in total, and llama.cpp
# parses the grammar once before generation, where a refusal is still a 400 (`Engine._check_grammar`).
MAX_SCHEMA_REPETITIONS = 100_000
_REPEAT_KEYS = frozenset({"minLength", "maxLength", "minItems", "maxItems"})
_QUANTIFIER = re.compile(r"\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}")


class InvalidRequestError(MdlError):
    """A request the engine cannot answer as asked (HTTP 400)."""

    kind = "invalid-request"

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        self.param = param
        self.code = code
        super().__init__(message, "fix the request and send it again")


class EngineLoadError(MdlError):
    kind = "load-failed"

    def __init__(self, reference: str, problem: str):
        self.reference = reference
        super().__init__(f"llama.cpp could not load {reference}: {problem}",
                         "check that the model is a GGUF llama.cpp supports; run `mdl verify` on it")


def _llama_cpp():
    try:
        import llama_cpp  # noqa: F401
        import llama_cpp.llama_chat_format  # noqa: F401
    except ImportError:
        raise MissingExtraError(["llama-cpp-python"]) from None
    return llama_cpp


# --------------------------------------------------------------------------------------------------
# request checks


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _num(req: dict, name: str, lo: float, hi: float | None, *, integer: bool = False):
    if name not in req or req[name] is None:
        return None
    v = req[name]
    ok = _is_int(v) if integer else _is_num(v)
    if not ok or v < lo or (hi is not None and v > hi):
        kind = "an integer" if integer else "a number"
        rng = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
        raise InvalidRequestError(f"'{name}' must be {kind} {rng}, got {v!r}", param=name)
    return v


def _stop(req: dict):
    stop = req.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return [s for s in stop if s]
    raise InvalidRequestError("'stop' must be a string or a list of strings", param="stop")


def _sampling(req: dict) -> dict:
    """The sampling arguments the request sets (absent ones keep the library's defaults)."""
    if "n" in req and req["n"] is not None:
        n = req["n"]
        if not _is_int(n) or n < 1:
            raise InvalidRequestError(f"'n' must be a positive integer, got {n!r}", param="n")
        if n != 1:
            raise InvalidRequestError("only n=1 is supported", param="n")
    if req.get("stream") is not None and not isinstance(req.get("stream"), bool):
        raise InvalidRequestError("'stream' must be true or false", param="stream")
    so = req.get("stream_options")
    if so is not None and (not isinstance(so, dict) or not isinstance(so.get("include_usage", False), bool)):
        raise InvalidRequestError("'stream_options' must be an object like {\"include_usage\": true}",
                                  param="stream_options")
    if req.get("logprobs") not in (None, False, 0):
        raise InvalidRequestError("logprobs are not supported", param="logprobs")
    if "suffix" in req and req["suffix"] is not None:
        raise InvalidRequestError("'suffix' is not supported", param="suffix")
    if "echo" in req and req["echo"] not in (None, False):
        raise InvalidRequestError("'echo' is not supported", param="echo")
    out: dict[str, Any] = {}
    max_tokens = req.get("max_completion_tokens")
    if max_tokens is not None:
        max_tokens = _num(req, "max_completion_tokens", 1, None, integer=True)
    if req.get("max_tokens") is not None:
        max_tokens = _num(req, "max_tokens", 1, None, integer=True)
    if max_tokens is not None:
        out["max_tokens"] = max_tokens
    for name, key, lo, hi, integer in (
        ("temperature", "temperature", 0, 2, False),
        ("top_p", "top_p", 0, 1, False),
        ("top_k", "top_k", 0, None, True),
        ("min_p", "min_p", 0, 1, False),
        ("presence_penalty", "presence_penalty", -2, 2, False),
        ("frequency_penalty", "frequency_penalty", -2, 2, False),
        ("repeat_penalty", "repeat_penalty", 0, None, False),
        ("seed", "seed", -(2**63), 2**64 - 1, True),
    ):
        v = _num(req, name, lo, hi, integer=integer)
        if v is not None:
            out[key] = v
    if "seed" in out:
        out["seed"] = out["seed"] & 0xFFFFFFFF  # llama.cpp seeds are 32-bit
    stop = _stop(req)
    if stop:
        out["stop"] = stop
    rf = req.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
            raise InvalidRequestError("'response_format' must be {\"type\": \"text\"|\"json_object\"|\"json_schema\"}",
                                      param="response_format")
        if rf["type"] == "json_schema":
            schema = (rf.get("json_schema") or {}).get("schema") if isinstance(rf.get("json_schema"), dict) else None
            if not isinstance(schema, dict):
                raise InvalidRequestError("'response_format.json_schema.schema' must be an object",
                                          param="response_format")
            out["response_format"] = {"type": "json_object", "schema": schema}
        elif rf["type"] == "json_object":
            out["response_format"] = {"type": "json_object"}
    return out


def _schema_repetitions(schema: Any) -> int:
    """The total of the repetition counts a JSON schema asks for (string lengths, item counts, regex
    quantifiers in `pattern`), as the grammar writes them out; over the limit as soon as it is known."""
    total = 0
    stack = [schema]
    while stack and total <= MAX_SCHEMA_REPETITIONS:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key in _REPEAT_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                total += int(abs(value)) if math.isfinite(value) and abs(value) <= MAX_SCHEMA_REPETITIONS \
                    else MAX_SCHEMA_REPETITIONS + 1
            elif key == "pattern" and isinstance(value, str):
                for m in _QUANTIFIER.finditer(value):
                    for digits in m.groups():
                        if digits:
                            total += int(digits) if len(digits) <= 6 else MAX_SCHEMA_REPETITIONS + 1
            elif isinstance(value, (dict, list)):
                stack.append(value)
    return total


def _messages(req: dict, images: bool = False) -> list[dict]:
    msgs = req.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise InvalidRequestError("'messages' must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise InvalidRequestError(f"messages[{i}] needs a 'role' ({', '.join(_ROLES[:4])})",
                                      param=f"messages[{i}].role")
        content = m.get("content")
        if content is None and m["role"] == "assistant":
            content = ""
        if isinstance(content, list) and images:  # content parts go to the projector's handler as given
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
                    raise InvalidRequestError(f"messages[{i}].content[{j}]: only text and image_url parts are supported",
                                              param=f"messages[{i}].content")
        elif isinstance(content, list):  # content parts: text only
            texts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise InvalidRequestError(f"messages[{i}].content[{j}]: only text parts are supported",
                                              param=f"messages[{i}].content")
                texts.append(part["text"])
            content = "".join(texts)
        if not isinstance(content, (str, list)):
            raise InvalidRequestError(f"messages[{i}].content must be a string or a list of text parts",
                                      param=f"messages[{i}].content")
        msg = {"role": m["role"], "content": content}
        if isinstance(m.get("name"), str):
            msg["name"] = m["name"]
        out.append(msg)
    return out


def _prompt(req: dict) -> str:
    p = req.get("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], str):
        p = p[0]
    if not isinstance(p, str):
        raise InvalidRequestError("'prompt' must be a string (one prompt per request)", param="prompt")
    return p


def _model_name(req: dict, resolved: ResolvedModel) -> str:
    m = req.get("model")
    return m if isinstance(m, str) and m else resolved.reference


# --------------------------------------------------------------------------------------------------


class _Counts:
    """What the last generation consumed: set by the counting wrapper around `Llama.generate`."""

    def __init__(self) -> None:
        self.prompt = 0
        self.sampled = 0
        self.last_eog = False


class Engine:
    """One loaded model. Not thread-safe: the scheduler serializes its use."""

    def __init__(self, llm, resolved: ResolvedModel, load_seconds: float, embedding: bool):
        self._llm = llm
        self.resolved = resolved
        self.load_seconds = load_seconds
        self.embedding = embedding
        self._active: Iterator | None = None  # an unfinished stream, closed before the next request
        self._active_token: object | None = None
        self.vision = False  # a projector is attached: messages may carry image_url parts
        self._counts = _Counts()
        self._install_counter()

    def _install_counter(self) -> None:
        # Usage for streams: llama-cpp-python reports token counts only for non-streamed answers, so
        # count what `generate` (the library's token loop) consumes and yields.
        llama_cpp = _llama_cpp()
        llm, counts, original = self._llm, self._counts, self._llm.generate
        vocab = llm._model.vocab

        def counting_generate(tokens, *args, **kwargs):
            counts.prompt, counts.sampled, counts.last_eog = len(tokens), 0, False
            inner = original(tokens, *args, **kwargs)
            try:
                for token in inner:
                    counts.sampled += 1
                    counts.last_eog = bool(llama_cpp.llama_vocab_is_eog(vocab, token))
                    yield token
            finally:
                inner.close()

        llm.generate = counting_generate

    def _usage(self) -> dict:
        c = self._counts
        completion = c.sampled - (1 if c.last_eog else 0)
        return {"prompt_tokens": c.prompt, "completion_tokens": completion,
                "total_tokens": c.prompt + completion}

    def _settle(self) -> None:
        if self._active is not None:
            active, self._active = self._active, None
            active.close()
        if self._llm is None:
            raise MdlError(f"the engine of {self.resolved.reference} is closed")

    def _for_generation(self) -> None:
        self._settle()
        if self.embedding:
            raise InvalidRequestError(f"{self.resolved.reference} is loaded for embeddings", param="model")

    def _context_error(self, e: ValueError, param: str = "messages") -> InvalidRequestError | None:
        text = str(e)
        if "exceed context window" in text or "exceed batch size" in text:
            return InvalidRequestError(
                f"the prompt is too long for the context of {self._llm.n_ctx()} tokens ({text})",
                param=param, code="context_length_exceeded")
        return None

    def _call(self, fn, *args, _param: str = "messages", **kwargs):
        try:
            return fn(*args, **kwargs)
        except UnicodeError as e:  # text llama.cpp cannot take (a lone surrogate escape in the JSON)
            raise InvalidRequestError(f"the text is not valid Unicode: {e}", param=_param) from None
        except ValueError as e:
            err = self._context_error(e, _param)
            if err is not None:
                raise err from None
            raise InvalidRequestError(str(e)) from None

    def _check_grammar(self, args: dict) -> None:
        """Refuse a `response_format` schema whose grammar would exhaust memory or that llama.cpp's
        grammar parser refuses (see MAX_SCHEMA_REPETITIONS): both would take the process down."""
        rf = args.get("response_format")
        schema = rf.get("schema") if isinstance(rf, dict) else None
        if schema is None:
            return
        if _schema_repetitions(schema) > MAX_SCHEMA_REPETITIONS:
            raise InvalidRequestError(
                f"the 'response_format' schema asks for more than {MAX_SCHEMA_REPETITIONS} repetitions "
                "(minLength, maxLength, minItems, maxItems, pattern quantifiers together)",
                param="response_format")
        llama_cpp = _llama_cpp()
        from llama_cpp import llama_grammar

        try:
            gbnf = llama_grammar.json_schema_to_gbnf(json.dumps(schema))
        except Exception:  # noqa: BLE001 - llama-cpp-python then constrains to any JSON, as it does
            return
        sampler = llama_cpp.llama_sampler_init_grammar(self._llm._model.vocab, gbnf.encode("utf-8"), b"root")
        if not sampler:
            raise InvalidRequestError("llama.cpp cannot use the grammar of the 'response_format' schema "
                                      "(too many repetitions or too complex)", param="response_format")
        llama_cpp.llama_sampler_free(sampler)

    # -- chat ---------------------------------------------------------------------------------------

    def chat(self, request: dict) -> dict:
        self._for_generation()
        messages, args = _messages(request, self.vision), _sampling(request)
        self._check_grammar(args)
        out = self._call(self._llm.create_chat_completion, messages=messages, stream=False,
                         model=_model_name(request, self.resolved), **args)
        out["model"] = _model_name(request, self.resolved)
        return out

    def chat_stream(self, request: dict) -> Iterator[dict]:
        """The chunks of a streamed chat answer. Request errors (including a prompt over the context)
        raise here, before the first chunk is returned, so a server can still answer 400."""
        self._for_generation()
        messages, args = _messages(request, self.vision), _sampling(request)
        self._check_grammar(args)
        name = _model_name(request, self.resolved)
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        chunks = self._call(self._llm.create_chat_completion, messages=messages, stream=True, model=name, **args)
        return self._stream(chunks, name, "chat.completion.chunk", include_usage)

    # -- completions --------------------------------------------------------------------------------

    def complete(self, request: dict) -> dict:
        self._for_generation()
        prompt, args = _prompt(request), _sampling(request)
        out = self._call(self._llm.create_completion, prompt, stream=False, _param="prompt",
                         model=_model_name(request, self.resolved), **self._completion_args(args))
        out["model"] = _model_name(request, self.resolved)
        return out

    def complete_stream(self, request: dict) -> Iterator[dict]:
        self._for_generation()
        prompt, args = _prompt(request), _sampling(request)
        name = _model_name(request, self.resolved)
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        chunks = self._call(self._llm.create_completion, prompt, stream=True, model=name, _param="prompt",
                            **self._completion_args(args))
        return self._stream(chunks, name, "text_completion", include_usage)

    @staticmethod
    def _completion_args(args: dict) -> dict:
        args = dict(args)
        if "response_format" in args:  # create_completion takes a grammar, not a response format
            raise InvalidRequestError("'response_format' is supported on chat completions only",
                                      param="response_format")
        return args

    def _stream(self, chunks, name: str, obj: str, include_usage: bool) -> Iterator[dict]:
        # Pull the first chunk now: prompt evaluation (and its errors) happen before anything is sent.
        try:
            first = self._call(next, chunks, _param="prompt" if obj == "text_completion" else "messages")
        except StopIteration:
            first = None
        except BaseException:
            chunks.close()
            raise
        token = object()
        gen = self._relay(chunks, first, name, obj, include_usage, token)
        self._active, self._active_token = gen, token
        return gen

    def _relay(self, chunks, first, name, obj, include_usage, token):
        last = None
        try:
            if first is not None:
                first["model"] = name
                last = first
                yield first
            for chunk in chunks:
                chunk["model"] = name
                last = chunk
                yield chunk
            if include_usage and last is not None:
                yield {"id": last["id"], "object": obj, "created": last["created"], "model": name,
                       "choices": [], "usage": self._usage()}
        finally:
            chunks.close()
            if self._active_token is token:  # finished or closed: nothing left to settle
                self._active, self._active_token = None, None

    # -- embeddings ---------------------------------------------------------------------------------

    def embed(self, request: dict) -> dict:
        self._settle()
        if not self.embedding:
            raise InvalidRequestError(f"{self.resolved.reference} is not loaded for embeddings", param="model")
        inp = request.get("input")
        if isinstance(inp, str):
            inputs = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(s, str) for s in inp):
            inputs = inp
        else:
            raise InvalidRequestError("'input' must be a string or a non-empty list of strings", param="input")
        if request.get("encoding_format") not in (None, "float"):
            raise InvalidRequestError("only encoding_format 'float' is supported", param="encoding_format")
        if any(s == "" for s in inputs):
            raise InvalidRequestError("'input' must not contain empty strings", param="input")
        n_ctx = self._llm.n_ctx()
        for i, s in enumerate(inputs):
            n = len(self._llm.tokenize(s.encode("utf-8")))
            if n > min(n_ctx, self._llm.n_batch):
                raise InvalidRequestError(
                    f"input[{i}] is {n} tokens, over the model's limit of {min(n_ctx, self._llm.n_batch)}",
                    param="input", code="context_length_exceeded")
        try:
            vectors, total = self._llm.embed(inputs, truncate=False, return_count=True)
        except ValueError as e:
            err = self._context_error(e, "input")
            if err is not None:
                raise err from None
            raise InvalidRequestError(str(e), param="input") from None
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": [float(x) for x in v]}
                     for i, v in enumerate(vectors)],
            "model": _model_name(request, self.resolved),
            "usage": {"prompt_tokens": total, "total_tokens": total},
        }

    # -- helpers ------------------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = False) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    @property
    def n_ctx(self) -> int:
        return self._llm.n_ctx()

    def close(self) -> None:
        if self._active is not None:
            try:
                self._active.close()
            finally:
                self._active = None
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()


# --------------------------------------------------------------------------------------------------


def context_for(resolved: ResolvedModel, n_ctx: int | None = None) -> int:
    """The context length to load with: the user's, else config.context_size, else the GGUF's own
    (capped at DEFAULT_CONTEXT_CAP), else 0 (llama.cpp's default: the model's)."""
    if n_ctx:
        return n_ctx
    if resolved.context_size:
        return resolved.context_size
    if resolved.train_context:
        return min(resolved.train_context, DEFAULT_CONTEXT_CAP)
    return 0


def load_engine(resolved: ResolvedModel, *, n_threads: int | None = None, n_ctx: int | None = None,
                embedding: bool = False) -> Engine:
    """Load `resolved` into llama.cpp. `embedding` loads it for `/v1/embeddings` (a model that declares
    no pooling type gets mean pooling, so each input gives one vector)."""
    llama_cpp = _llama_cpp()
    ctx = context_for(resolved, n_ctx)
    kwargs: dict[str, Any] = {"model_path": str(resolved.model_path), "n_ctx": ctx, "verbose": False,
                              "embedding": embedding}
    if n_threads:
        kwargs["n_threads"] = n_threads
        kwargs["n_threads_batch"] = n_threads
    if embedding:
        if not resolved.embedding:
            kwargs["pooling_type"] = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        if ctx:  # embeddings are computed in one batch: let it hold a whole context
            kwargs["n_batch"] = kwargs["n_ubatch"] = ctx
    start = time.monotonic()
    try:
        llm = llama_cpp.Llama(**kwargs)
    except (ValueError, RuntimeError, OSError) as e:
        raise EngineLoadError(resolved.reference, str(e)) from None
    if resolved.chat_template:
        llm.chat_handler = _template_handler(llama_cpp, llm, resolved.chat_template)
    vision = False
    if resolved.mmproj_path is not None and not embedding:
        vision = _attach_projector(llm, resolved)
    engine = Engine(llm, resolved, time.monotonic() - start, embedding)
    engine.vision = vision
    return engine


def _attach_projector(llm, resolved: ResolvedModel) -> bool:
    """Use the projector through llama-cpp-python's Llava 1.5 handler (its prompt format replaces the
    model's template). The projector is initialized now, not at the first request, so a projector
    llama.cpp cannot use leaves a text-only engine (logged) instead of failing every request."""
    try:
        from llama_cpp.llama_chat_format import Llava15ChatHandler

        handler = Llava15ChatHandler(clip_model_path=str(resolved.mmproj_path), verbose=False)
        init = getattr(handler, "_init_mtmd_context", None)
        if init is not None:
            init(llm)
    except Exception as e:  # noqa: BLE001 - the projector is optional
        log.warning("%s: cannot use the projector %s (%s); running text-only",
                    resolved.reference, resolved.mmproj_path, e)
        return False
    llm.chat_handler = handler
    return True


def _template_handler(llama_cpp, llm, template: str):
    """A chat handler for the artifact's template layer, built the way Llama builds one for the GGUF's."""
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    eos = llm._model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = llm._model.token_get_text(bos_id) if bos_id != -1 else ""
    return llama_cpp.llama_chat_format.Jinja2ChatFormatter(
        template=template, eos_token=eos, bos_token=bos, stop_token_ids=[eos_id],
    ).to_chat_handler()
