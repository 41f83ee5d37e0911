"""`mdl run MODEL [PROMPT]`: chat with a stored model in this process.

With PROMPT: one answer, streamed to stdout. Without: a chat reading one message per line from stdin
(a terminal or a pipe), keeping the history, until `/bye` or end of input. It uses the same scheduler
and engine as `mdl serve`; nothing is imported from llama-cpp-python until the model loads.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..errors import UsageError
from ..runner import links_dir
from ..runner.scheduler import Scheduler
from ..runner.validation import InvalidRequestError
from .common import debug_log, open_store

BYE = "/bye"


def command(
    reference: str = typer.Argument(..., metavar="MODEL", help="Model reference or ID, e.g. ai/smollm2."),
    prompt: Optional[str] = typer.Argument(None, help="Ask this once and exit; without it, chat on stdin."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", help="CPU threads (default: llama.cpp's)."),
    context_size: Optional[int] = typer.Option(None, "--context-size", "-c",
                                               help="Context length in tokens (default: the model's setting)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Sampling temperature, 0 to 2."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", "-n", help="Most tokens per answer."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampling seed, for repeatable answers."),
    system: Optional[str] = typer.Option(None, "--system", help="A system message to start the chat with."),
) -> None:
    """Run a model: answer PROMPT, or chat interactively."""
    for name, value in (("--threads", threads), ("--context-size", context_size), ("--max-tokens", max_tokens)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be a positive number, got {value}")
    store = open_store()
    scheduler = Scheduler(store, links_dir(store), max_models=1, n_threads=threads, n_ctx=context_size)
    params: dict = {}
    if temperature is not None:
        params["temperature"] = temperature
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if seed is not None:
        params["seed"] = seed
    history: list[dict] = [{"role": "system", "content": system}] if system else []
    try:
        with scheduler.acquire(reference) as engine:
            debug_log(f"loaded {engine.resolved.reference} in {engine.load_seconds:.2f}s")
            if prompt is not None:
                _answer(engine, reference, history + [{"role": "user", "content": prompt}], params)
                return
            _chat(engine, reference, history, params)
    finally:
        scheduler.close()


def _answer(engine, reference: str, messages: list[dict], params: dict) -> str:
    """Stream one answer to stdout; returns its text."""
    request = {"model": reference, "messages": messages, "stream": True, **params}
    parts = []
    stream = engine.chat_stream(request)
    try:
        for chunk in stream:
            for choice in chunk.get("choices", []):
                text = choice.get("delta", {}).get("content")
                if text:
                    parts.append(text)
                    sys.stdout.write(text)
                    sys.stdout.flush()
    finally:
        stream.close()
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(parts)


def _chat(engine, reference: str, history: list[dict], params: dict) -> None:
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Chatting with {reference}. Send {BYE} to leave.", file=sys.stderr)
    while True:
        if interactive:
            sys.stderr.write("> ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:  # end of input
            break
        text = line.rstrip("\r\n")
        if text.strip() == BYE:
            break
        if not text.strip():
            continue
        history.append({"role": "user", "content": text})
        try:
            answer = _answer(engine, reference, history, params)
        except InvalidRequestError as e:  # e.g. the history outgrew the context: say so, go on
            history.pop()
            print(f"error: {e.message}", file=sys.stderr)
            continue
        except BaseException:
            history.pop()
            raise
        history.append({"role": "assistant", "content": answer})
