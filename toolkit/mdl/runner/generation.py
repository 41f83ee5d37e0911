"""The one generation path: an internal request (api/internal.py) answered by a loaded llama.cpp model.

Every API reaches llama.cpp here, in the model's worker process, so the chat template, tools,
grammars, stop sequences, usage and log probabilities are done once:

- A chat is rendered by the model's own Jinja chat template (the artifact's template layer, else the
  GGUF's `tokenizer.chat_template`), with the tools and past calls in the template's own syntax
  (toolcalls.render_tools), then completed as llama-cpp-python's chat handler completes it (same
  prompt tokens, stop strings and end-of-generation check), so the text equals
  `Llama.create_chat_completion`'s. A model without a template, or with a projector, goes through
  llama-cpp-python's own chat handler, tools described in a system message.
- `tool_choice` "required" or a named function: the text is generated under a grammar made from the
  function's parameter schema (toolcalls.forced_schema), so the call is well-formed JSON matching it.
  "auto": the answer is parsed for the template family's call syntax (toolcalls.parse; while
  streaming, toolcalls.StreamScanner holds back what may be a call).
- `n` choices are generated one after another (seed + i for choice i when a seed is given).
- Log probabilities come from the logits of each sampled token (engine.py's counter): no
  `logits_all`, so asking for them costs no memory.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import toolcalls
from .api.internal import CHAT, Choice, GenRequest, GenResult, ToolCall, new_id, now
from .validation import MAX_SCHEMA_REPETITIONS, InvalidRequestError, schema_repetitions

CHAT_TEMPERATURE = 0.2  # create_chat_completion's default (create_completion's is 0.8)


@dataclass
class _Plan:
    """How one request is run: the llama call and what is done with its text."""

    call: Callable[..., Any]  # llm.create_completion or llm.create_chat_completion
    first: Any  # its first argument: prompt tokens, a prompt, or None (messages in `args`)
    args: dict
    chat_shaped: bool  # the call answers in chat.completion(.chunk) form
    forced: bool = False
    forced_name: str | None = None  # a forced call of this function: the text is its arguments
    family: str | None = None  # "auto" tool calls: parse the text in this family's syntax
    names: set[str] = field(default_factory=set)
    prompt_tokens: int | None = None

    def run(self, i: int, seed: Any, stream: bool):
        args = dict(self.args, stream=stream)
        if seed is not None:
            args["seed"] = (seed + i) & 0xFFFFFFFF
        return self.call(self.first, **args) if self.first is not None else self.call(**args)


class Generator:
    """Runs internal requests on one Llama. `counts` is the engine's token counter (engine._Counts);
    `guard` maps llama-cpp-python's exceptions to request errors (engine.Engine._call)."""

    def __init__(self, llm, counts, guard: Callable, template: str | None, use_template: bool):
        self._llm, self._counts, self._guard = llm, counts, guard
        self.template = template
        self.family = toolcalls.family_of(template)
        self._formatter = None
        if template and use_template:
            import llama_cpp.llama_chat_format as chat_format  # the serve extra: loaded with the engine

            eos_id, bos_id = llm.token_eos(), llm.token_bos()
            self._eos = llm._model.token_get_text(eos_id) if eos_id != -1 else ""
            bos = llm._model.token_get_text(bos_id) if bos_id != -1 else ""
            self._formatter = chat_format.Jinja2ChatFormatter(template=template, eos_token=self._eos, bos_token=bos,
                                                              stop_token_ids=[eos_id])

    # -- planning -----------------------------------------------------------------------------------

    def _render(self, req: GenRequest):
        """The template's prompt for `req` (its formatter's response: prompt, stop, stopping criteria)."""
        import jinja2  # a dependency of llama-cpp-python, imported with it

        messages, tools = toolcalls.render_tools(req.messages, req.tools if req.uses_tools() else [], self.template)
        try:
            return self._formatter(messages=messages, tools=tools)
        except (ValueError, jinja2.TemplateError) as e:
            raise InvalidRequestError(f"the model's chat template cannot render these messages: {e}",
                                      param=req.param("messages")) from None

    def plan(self, req: GenRequest) -> _Plan:
        args = {k: v for k, v in req.sampling.items() if k != "seed"}
        args["max_tokens"] = req.max_tokens
        stop = [s for s in req.stop if s]
        grammar, forced_name = self._grammar(req)
        if grammar is not None:
            args["grammar"] = grammar
        if self._counts is not None:
            self._counts.top = req.logprobs
        if req.kind != CHAT:
            args["stop"] = stop
            return _Plan(self._llm.create_completion, req.prompt, args, False)
        args.setdefault("temperature", CHAT_TEMPERATURE)
        plan_kw = dict(forced=req.forced_tool(), forced_name=forced_name,
                       family=self.family if req.uses_tools() and not req.forced_tool() else None,
                       names={t["name"] for t in req.tools})
        if self._formatter is None:  # llama-cpp-python's handler: the tools go in a system message
            messages, _ = toolcalls.render_tools(req.messages, req.tools if req.uses_tools() else [], None)
            args.update(messages=messages, stop=stop)
            return _Plan(self._llm.create_chat_completion, None, args, True, **plan_kw)
        rendered = self._render(req)
        tokens = self._guard(_tokens, self._llm, rendered, _param=req.param("messages"))
        rstop = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop]
        args.update(stop=stop + [s for s in rstop if s], stopping_criteria=rendered.stopping_criteria)
        return _Plan(self._llm.create_completion, tokens, args, False, prompt_tokens=len(tokens), **plan_kw)

    def _grammar(self, req: GenRequest):
        """(the grammar the text is generated under, or None; the forced function's name, if one)."""
        from llama_cpp import llama_grammar

        if req.kind == CHAT and req.forced_tool():
            schema, name = toolcalls.forced_schema(req.tools, req.tool_name if req.tool_choice == "function" else None)
            return self._schema_grammar(schema, req.param("tools")), name
        if req.schema is not None:
            return self._schema_grammar(req.schema, req.param("schema")), None
        if req.json:
            return llama_grammar.LlamaGrammar.from_string(llama_grammar.JSON_GBNF, verbose=False), None
        return None, None

    def _schema_grammar(self, schema: dict, param: str):
        """The grammar of `schema`; refused (400) when it would exhaust memory or llama.cpp's parser
        refuses it (both would take the process down: see validation.MAX_SCHEMA_REPETITIONS)."""
        import llama_cpp
        from llama_cpp import llama_grammar

        if schema_repetitions(schema) > MAX_SCHEMA_REPETITIONS:
            raise InvalidRequestError(
                f"the '{param}' schema asks for more than {MAX_SCHEMA_REPETITIONS} repetitions "
                "(minLength, maxLength, minItems, maxItems, pattern quantifiers together)", param=param)
        try:
            gbnf = llama_grammar.json_schema_to_gbnf(json.dumps(schema))
        except Exception:  # noqa: BLE001 - a schema the converter cannot read: any JSON, as llama-cpp-python does
            gbnf = llama_grammar.JSON_GBNF
        sampler = llama_cpp.llama_sampler_init_grammar(self._llm._model.vocab, gbnf.encode("utf-8"), b"root")
        if not sampler:
            raise InvalidRequestError(f"llama.cpp cannot use the grammar of the '{param}' schema "
                                      "(too many repetitions or too complex)", param=param)
        llama_cpp.llama_sampler_free(sampler)
        return llama_grammar.LlamaGrammar.from_string(gbnf, verbose=False)

    # -- answers ------------------------------------------------------------------------------------

    def run(self, req: GenRequest) -> GenResult:
        plan = self.plan(req)
        seed = req.sampling.get("seed")
        choices, prompt_tokens, completion_tokens = [], 0, 0
        rid, created = None, now()
        for i in range(req.n):
            out = self._guard(plan.run, i, seed, False, _param=req.param("prompt" if req.kind != CHAT else "messages"))
            rid = rid or out["id"]
            first = out["choices"][0]
            text = first["message"]["content"] if plan.chat_shaped else first["text"]
            prompt_tokens = out["usage"]["prompt_tokens"]
            completion_tokens += out["usage"]["completion_tokens"]
            choices.append(self._choice(req, plan, i, text or "", first["finish_reason"]))
        return GenResult(_result_id(rid, req), created, req.model, choices,
                         {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens})

    def _choice(self, req: GenRequest, plan: _Plan, i: int, text: str, finish: str) -> Choice:
        choice = Choice(i, text, finish or "stop", stop_sequence=self._stop_sequence(req, text, finish),
                        logprobs=self._logprobs(text) if req.logprobs is not None else None)
        calls: list[tuple[str, str]] = []
        if plan.forced:
            call = toolcalls.forced_call(text, plan.forced_name)
            calls = [call] if call else []
        elif plan.family is not None:
            content, calls = toolcalls.parse(text, plan.family, plan.names)
            if calls:
                choice.text = content
        if calls:
            if not req.parallel_tool_calls:
                calls = calls[:1]
            choice.tool_calls = [ToolCall(new_id("call_"), name, args) for name, args in calls]
            choice.finish_reason, choice.stop_sequence = "tool_calls", None
            if plan.forced:
                choice.text = ""
        return choice

    def _stop_sequence(self, req: GenRequest, text: str, finish: str | None) -> str | None:
        """Which of the request's stop strings ended `text` (None: the model's end, or the length)."""
        if finish != "stop" or not req.stop or self._counts is None or self._counts.last_eog:
            return None
        raw = self._llm.detokenize(self._counts.tokens).decode("utf-8", errors="replace")
        at = raw.find(text) if text else 0
        rest = raw[at + len(text):] if at >= 0 else raw
        found = [(rest.find(s), -len(s), s) for s in req.stop if s and s in rest]
        return min(found)[2] if found else None

    def _logprobs(self, text: str) -> list[dict]:
        """The entries of the tokens that make `text` (a stop string's tokens are not part of it)."""
        entries = self._counts.logprobs or []
        have, out = 0, []
        for entry in entries:
            if have >= len(text):
                break
            out.append(entry)
            have += len(entry["token"])
        return out

    def stream(self, req: GenRequest) -> Iterator[dict]:
        """The events of a streamed answer. The prompt is evaluated before this returns, so its errors
        (a prompt over the context) are raised here, before the first event."""
        plan = self.plan(req)
        seed = req.sampling.get("seed")
        param = req.param("prompt" if req.kind != CHAT else "messages")
        chunks = self._guard(plan.run, 0, seed, True, _param=param)
        try:
            first = self._guard(next, chunks, _param=param)
        except StopIteration:
            first = None
        except BaseException:
            chunks.close()
            raise
        prompt_tokens = plan.prompt_tokens if plan.prompt_tokens is not None else self._counts.prompt
        return self._events(req, plan, seed, chunks, first, prompt_tokens)

    def _events(self, req, plan, seed, chunks, first, prompt_tokens) -> Iterator[dict]:
        rid = _result_id(first["id"] if first else None, req)
        yield {"type": "start", "id": rid, "created": now(), "model": req.model, "prompt_tokens": prompt_tokens}
        completion = 0
        for i in range(req.n):
            if i > 0:
                chunks, first = self._guard(plan.run, i, seed, True), None
            try:
                yield from self._choice_events(req, plan, i, chunks, first)
            finally:
                chunks.close()
            completion += self._counts.sampled - (1 if self._counts.last_eog else 0)
        yield {"type": "usage", "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                                          "total_tokens": prompt_tokens + completion}}

    def _choice_events(self, req, plan, i, chunks, first) -> Iterator[dict]:
        scanner = toolcalls.StreamScanner(plan.family, plan.names) if plan.family is not None else None
        parts: list[str] = []
        finish, sent_logprobs = None, 0
        escaper, tokens = toolcalls.StringEscaper(), _TokenText(self._llm, self._counts)
        if plan.forced and plan.forced_name is not None:
            yield {"type": "tool_call", "index": i, "call": 0, "id": new_id("call_"), "name": plan.forced_name}
        for chunk in _chain(first, [*chunks, None] if plan.forced else chunks):
            if plan.forced:  # a call's text is read from its tokens (exact where stray bytes split characters)
                piece, reason = tokens.more(final=chunk is None), None if chunk is None else _piece(chunk, False)[1]
            else:
                piece, reason = _piece(chunk, plan.chat_shaped)
            finish = reason or finish
            if not piece:
                continue
            parts.append(piece)
            if plan.forced:
                if plan.forced_name is not None:
                    yield {"type": "arguments", "index": i, "call": 0, "delta": escaper.feed(piece)}
                continue
            out = scanner.feed(piece) if scanner is not None else piece
            if out:
                lp = None
                if req.logprobs is not None:
                    entries = self._counts.logprobs or []
                    lp, sent_logprobs = entries[sent_logprobs:], len(entries)
                yield {"type": "text", "index": i, "text": out, "logprobs": lp}
        text = "".join(parts)
        stop_sequence = self._stop_sequence(req, text, finish)
        calls: list[tuple[str, str]] = []
        if plan.forced:
            call = toolcalls.forced_call(text, plan.forced_name)
            if plan.forced_name is not None:  # its arguments are streamed already
                finish = "tool_calls" if call else (finish or "length")
            elif call:
                calls = [call]
            elif text:  # cut short before the call was whole: what there is, as text
                yield {"type": "text", "index": i, "text": text, "logprobs": None}
        elif scanner is not None:
            rest, calls = scanner.finish()
            if rest:
                yield {"type": "text", "index": i, "text": rest, "logprobs": None}
        if calls and not req.parallel_tool_calls:
            calls = calls[:1]
        for k, (name, args) in enumerate(calls):
            yield {"type": "tool_call", "index": i, "call": k, "id": new_id("call_"), "name": name}
            yield {"type": "arguments", "index": i, "call": k, "delta": args}
        if calls:
            finish, stop_sequence = "tool_calls", None
        yield {"type": "finish", "index": i, "finish_reason": finish or "stop",
               "stop_sequence": stop_sequence if finish == "stop" else None}

    def count(self, req: GenRequest) -> int:
        """The prompt tokens of `req` (Anthropic's count_tokens)."""
        if req.kind != CHAT or self._formatter is None:  # without a template: the text of the messages
            messages, _ = toolcalls.render_tools(req.messages, req.tools, None)
            text = req.prompt if req.kind != CHAT else \
                "\n".join(m["content"] for m in messages if isinstance(m.get("content"), str))
            return len(self._guard(self._llm.tokenize, text.encode("utf-8", errors="replace"),
                                   _param=req.param("messages")))
        return len(self._guard(_tokens, self._llm, self._render(req), _param=req.param("messages")))


class _TokenText:
    """The text of the tokens sampled so far (engine._Counts.tokens), piece by piece, decoded as
    llama-cpp-python decodes a whole answer (control tokens dropped, broken UTF-8 ignored)."""

    def __init__(self, llm, counts):
        self._llm, self._counts, self._taken = llm, counts, 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")

    def more(self, final: bool = False) -> str:
        new, self._taken = self._counts.tokens[self._taken:], len(self._counts.tokens)
        return self._decoder.decode(self._llm._model.detokenize(new) if new else b"", final=final)


def _tokens(llm, rendered) -> list[int]:
    """The prompt tokens of a rendered template, as llama-cpp-python's chat handler tokenizes them."""
    return llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)


def _chain(first, chunks):
    if first is not None:
        yield first
    yield from chunks


def _piece(chunk: dict, chat_shaped: bool) -> tuple[str, str | None]:
    choice = (chunk.get("choices") or [{}])[0]
    if chat_shaped:
        return (choice.get("delta") or {}).get("content") or "", choice.get("finish_reason")
    return choice.get("text") or "", choice.get("finish_reason")


def _result_id(llama_id: str | None, req: GenRequest) -> str:
    """The answer's ID: llama-cpp-python's (`cmpl-...`), `chatcmpl-...` for a chat as its handler names it."""
    base = llama_id or new_id("cmpl-")
    if req.kind == CHAT and not base.startswith("chat"):
        return "chat" + base
    return base
