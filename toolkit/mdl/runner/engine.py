"""One loaded llama.cpp model answering OpenAI-shaped requests.

An `Engine` is not thread-safe: the scheduler hands it to one request at a time. Requests are plain
dicts (the JSON body of `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`), checked once by
`validation.py`; what only the loaded model can check (context length, the schema's grammar) is
checked here. A bad request raises `InvalidRequestError` naming the parameter (HTTP 400).

Generation goes through llama-cpp-python's own `create_chat_completion` / `create_completion`, with
every sampling parameter passed explicitly: a parameter the request leaves out takes the library's
default (`repeat_penalty` 1.0, not `llama_cpp.server`'s 1.1; docs/notes.md §3), so an answer
equals a direct `Llama(...)` call with the same arguments.

llama-cpp-python is imported inside `load_engine` only; `mdl` runs without it until a model is served.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from ..errors import MdlError, MissingExtraError
from .resolve import ResolvedModel
from .settings import with_defaults
from .validation import (MAX_SCHEMA_REPETITIONS, InvalidRequestError, chat_messages, completion_args,
                         embedding_inputs, model_name, prompt_text, sampling_args, schema_repetitions,
                         wants_usage)

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
    """What the last generation consumed: set by the counting wrapper around `Llama.generate`."""

    def __init__(self) -> None:
        self.prompt = 0
        self.sampled = 0
        self.last_eog = False


class Engine:
    """One loaded model. Not thread-safe: the scheduler serializes its use."""

    def __init__(self, llm, resolved: ResolvedModel, load_seconds: float, embedding: bool,
                 defaults: dict | None = None):
        self._llm = llm
        self.defaults = dict(defaults or {})  # sampling values a request gets when it leaves them out
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
        if schema_repetitions(schema) > MAX_SCHEMA_REPETITIONS:
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
        request = with_defaults(request, self.defaults)
        messages, args = chat_messages(request, self.vision), sampling_args(request)
        self._check_grammar(args)
        out = self._call(self._llm.create_chat_completion, messages=messages, stream=False,
                         model=model_name(request, self.resolved.reference), **args)
        out["model"] = model_name(request, self.resolved.reference)
        return out

    def chat_stream(self, request: dict) -> Iterator[dict]:
        """The chunks of a streamed chat answer. Request errors (including a prompt over the context)
        raise here, before the first chunk is returned, so a server can still answer 400."""
        self._for_generation()
        request = with_defaults(request, self.defaults)
        messages, args = chat_messages(request, self.vision), sampling_args(request)
        self._check_grammar(args)
        name = model_name(request, self.resolved.reference)
        include_usage = wants_usage(request)
        chunks = self._call(self._llm.create_chat_completion, messages=messages, stream=True, model=name, **args)
        return self._stream(chunks, name, "chat.completion.chunk", include_usage)

    # -- completions --------------------------------------------------------------------------------

    def complete(self, request: dict) -> dict:
        self._for_generation()
        request = with_defaults(request, self.defaults)
        prompt, args = prompt_text(request), completion_args(request)
        out = self._call(self._llm.create_completion, prompt, stream=False, _param="prompt",
                         model=model_name(request, self.resolved.reference), **args)
        out["model"] = model_name(request, self.resolved.reference)
        return out

    def complete_stream(self, request: dict) -> Iterator[dict]:
        self._for_generation()
        request = with_defaults(request, self.defaults)
        prompt, args = prompt_text(request), completion_args(request)
        name = model_name(request, self.resolved.reference)
        include_usage = wants_usage(request)
        chunks = self._call(self._llm.create_completion, prompt, stream=True, model=name, _param="prompt",
                            **args)
        return self._stream(chunks, name, "text_completion", include_usage)

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
    if resolved.chat_template:
        llm.chat_handler = _template_handler(llama_cpp, llm, resolved.chat_template)
    vision = False
    if resolved.mmproj_path is not None and not embedding:
        vision = _attach_projector(llm, resolved)
    engine = Engine(llm, resolved, time.monotonic() - start, embedding, defaults)
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
