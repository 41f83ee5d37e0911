"""One loaded llama.cpp model answering internal requests (api/internal.py), and OpenAI-shaped ones
for callers in this process.

An `Engine` is not thread-safe: the scheduler hands it to one request at a time. `generate`,
`generate_stream` and `count_tokens` take a `GenRequest`, already checked by the API's translator;
generation.py does the work. What only the loaded model can check (context length, a schema's
grammar, the chat template) is checked there, and a bad request raises `InvalidRequestError` naming
the parameter (HTTP 400). `chat`, `chat_stream`, `complete` and `complete_stream` take OpenAI's JSON
bodies through the same translator as the server's OpenAI routes (api/openai_shapes.py).

Every sampling parameter is passed to llama-cpp-python explicitly: a parameter the request leaves out
takes the library's default (`repeat_penalty` 1.0, not `llama_cpp.server`'s 1.1; docs/notes.md §3),
so an answer equals a direct `Llama(...)` call with the same arguments.

llama-cpp-python is imported inside `load_engine` only; `mdl` runs without it until a model is served.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from typing import Any

from ..errors import MdlError, MissingExtraError
from .resolve import ResolvedModel
from .api import openai_shapes
from .api.internal import GenRequest, GenResult, with_request_defaults
from .generation import Generator
from .validation import InvalidRequestError, embedding_inputs, model_name, text_only

log = logging.getLogger("mdl.runner")

# With neither a user setting nor config.context_size, the GGUF's trained context applies, capped here:
# a 128k-token KV cache would not fit most machines (spec/runtime.md §2.3 allows the cap).
DEFAULT_CONTEXT_CAP = 8192


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


class _Counts:
    """What the last generation consumed: set by the counting wrapper around `Llama.generate`. With
    `top` set (by the generator, per request), each sampled token's log probability and the `top`
    likeliest alternatives are kept too, in OpenAI's shape."""

    def __init__(self) -> None:
        self.prompt = 0
        self.sampled = 0
        self.last_eog = False
        self.tokens: list[int] = []
        self.top: int | None = None
        self.logprobs: list[dict] | None = None


class Engine:
    """One loaded model. Not thread-safe: the scheduler serializes its use."""

    def __init__(self, llm, resolved: ResolvedModel, load_seconds: float, embedding: bool,
                 defaults: dict | None = None, vision: bool = False):
        self._llm = llm
        self.defaults = dict(defaults or {})  # sampling values a request gets when it leaves them out
        self.resolved = resolved
        self.load_seconds = load_seconds
        self.embedding = embedding
        self._active: Iterator | None = None  # an unfinished stream, closed before the next request
        self._active_token: object | None = None
        self.vision = vision  # a projector is attached: messages may carry image_url parts
        self._counts = _Counts()
        self._install_counter()
        template = resolved.chat_template or (llm.metadata or {}).get("tokenizer.chat_template")
        self._generator = Generator(llm, self._counts, self._call, template, use_template=not vision)

    def _install_counter(self) -> None:
        # Usage for streams: llama-cpp-python reports token counts only for non-streamed answers, so
        # count what `generate` (the library's token loop) consumes and yields.
        llama_cpp = _llama_cpp()
        llm, counts, original = self._llm, self._counts, self._llm.generate
        vocab = llm._model.vocab

        def counting_generate(tokens, *args, **kwargs):
            counts.prompt, counts.sampled, counts.last_eog, counts.tokens = len(tokens), 0, False, []
            counts.logprobs = [] if counts.top is not None else None
            inner = original(tokens, *args, **kwargs)
            try:
                for token in inner:
                    counts.sampled += 1
                    counts.tokens.append(token)
                    counts.last_eog = bool(llama_cpp.llama_vocab_is_eog(vocab, token))
                    if counts.logprobs is not None and not counts.last_eog:
                        counts.logprobs.append(_logprob_entry(llama_cpp, llm, token, counts.top))
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

    # -- generation (every API) ---------------------------------------------------------------------

    def _prepared(self, req: GenRequest) -> GenRequest:
        self._for_generation()
        if not self.vision and req.messages:
            req = dataclasses.replace(req, messages=text_only(req.messages))
        return with_request_defaults(req, self.defaults)

    def generate(self, req: GenRequest) -> GenResult:
        """The answer to an internal request (api/internal.py), whole."""
        return self._generator.run(self._prepared(req))

    def generate_stream(self, req: GenRequest) -> Iterator[dict]:
        """The events of a streamed answer. Request errors (including a prompt over the context) raise
        here, before the first event is returned, so a server can still answer 400."""
        events = self._generator.stream(self._prepared(req))
        token = object()
        gen = self._relay(events, token)
        self._active, self._active_token = gen, token
        return gen

    def _relay(self, events, token):
        try:
            yield from events
        finally:
            events.close()
            if self._active_token is token:  # finished or closed: nothing left to settle
                self._active, self._active_token = None, None

    def count_tokens(self, req: GenRequest) -> int:
        """The prompt tokens `req` renders to."""
        return self._generator.count(self._prepared(req))

    # -- OpenAI's shapes, for callers in this process (`mdl run --local`) -------------------------

    def chat(self, request: dict) -> dict:
        return openai_shapes.chat_doc(self.generate(openai_shapes.chat_request(request, self.vision, self.resolved.reference)))

    def chat_stream(self, request: dict) -> Iterator[dict]:
        req = openai_shapes.chat_request(request, self.vision, self.resolved.reference)
        return openai_shapes.chunks(self.generate_stream(req), req, openai_shapes.wants_usage(request))

    def complete(self, request: dict) -> dict:
        return openai_shapes.completion_doc(self.generate(openai_shapes.completion_request(request, self.resolved.reference)))

    def complete_stream(self, request: dict) -> Iterator[dict]:
        req = openai_shapes.completion_request(request, self.resolved.reference)
        return openai_shapes.chunks(self.generate_stream(req), req, openai_shapes.wants_usage(request))

    # -- embeddings ---------------------------------------------------------------------------------

    def embed(self, request: dict) -> dict:
        self._settle()
        if not self.embedding:
            raise InvalidRequestError(f"{self.resolved.reference} is not loaded for embeddings", param="model")
        inputs = embedding_inputs(request)
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
            "model": model_name(request, self.resolved.reference),
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
                embedding: bool = False, defaults: dict | None = None) -> Engine:
    """Load `resolved` into llama.cpp. `embedding` loads it for `/v1/embeddings` (a model that declares
    no pooling type gets mean pooling, so each input gives one vector); `defaults` are sampling values
    for requests that leave them out (settings.py)."""
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
    vision = False
    if resolved.mmproj_path is not None and not embedding:
        vision = _attach_projector(llm, resolved)
    return Engine(llm, resolved, time.monotonic() - start, embedding, defaults, vision)


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


def _logprob_entry(llama_cpp, llm, token: int, top: int) -> dict:
    """OpenAI's log-probability entry of `token`, from the logits it was sampled from (the context's
    last output row, read before the next token is evaluated)."""
    import numpy as np  # a dependency of llama-cpp-python

    n_vocab = llm.n_vocab()
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,))
    peak = float(logits.max())
    logprobs = logits - (peak + float(np.log(np.exp(logits - peak).sum())))

    def item(t: int) -> dict:
        piece = llm._model.detokenize([t])
        return {"token": piece.decode("utf-8", errors="ignore"), "logprob": float(logprobs[t]), "bytes": list(piece)}

    entry = item(token)
    best = np.argpartition(-logprobs, top)[:top] if 0 < top < n_vocab else np.arange(n_vocab if top else 0)
    entry["top_logprobs"] = [item(int(t)) for t in sorted(best, key=lambda t: -logprobs[t])]
    return entry
