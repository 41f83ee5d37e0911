"""`mdl run MODEL [PROMPT]`: chat with a stored model, through a running `mdl serve` or in this process.

With PROMPT: one answer, streamed to stdout. Without: a chat reading one message per line from stdin
(a terminal or a pipe), keeping the history, until `/bye` or end of input. When a runner answers at
MODEL_RUNNER_HOST (default http://127.0.0.1:12434) the answers come from it (the model stays loaded
there); otherwise, or with `--local`, `--threads` or `--context-size`, the model is loaded here with
the same scheduler and engine as `mdl serve` (nothing is imported from llama-cpp-python until then).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Optional

import typer

from ..errors import UsageError
from ..runner import links_dir
from ..runner.scheduler import Scheduler
from ..runner.validation import InvalidRequestError
from .boundary import debug_log
from .common import open_store
from .runner_client import RunnerClient, RunnerError

BYE = "/bye"
Chat = Callable[[list[dict]], Iterator[dict]]  # messages -> the chunks of a streamed answer


def command(
    reference: str = typer.Argument(..., metavar="MODEL", help="Model reference or ID, e.g. ai/smollm2."),
    prompt: Optional[str] = typer.Argument(None, help="Ask this once and exit; without it, chat on stdin."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t",
                                          help="CPU threads (default: llama.cpp's); loads the model here."),
    context_size: Optional[int] = typer.Option(None, "--context-size", "-c",
                                               help="Context length in tokens (default: the model's setting); "
                                                    "loads the model here."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Sampling temperature, 0 to 2."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", "-n", help="Most tokens per answer."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampling seed, for repeatable answers."),
    system: Optional[str] = typer.Option(None, "--system", help="A system message to start the chat with."),
    local: bool = typer.Option(False, "--local", help="Load the model in this process even if a runner answers."),
) -> None:
    """Run a model: answer PROMPT, or chat interactively."""
    for name, value in (("--threads", threads), ("--context-size", context_size), ("--max-tokens", max_tokens)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be a positive number, got {value}")
    params: dict = {}
    if temperature is not None:
        params["temperature"] = temperature
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if seed is not None:
        params["seed"] = seed
    history: list[dict] = [{"role": "system", "content": system}] if system else []
    client = RunnerClient(timeout=600)
    if not local and threads is None and context_size is None and client.answers():
        debug_log(f"answering through the runner at {client.url}")
        _converse(_remote_chat(client, reference, params), reference, history, prompt)
        return
    store = open_store()
    scheduler = Scheduler(store, links_dir(store), max_models=1, n_threads=threads, n_ctx=context_size)
    try:
        with scheduler.acquire(reference) as engine:
            debug_log(f"loaded {engine.resolved.reference} in {engine.load_seconds:.2f}s")
            chat = lambda messages: engine.chat_stream({"model": reference, "messages": messages,  # noqa: E731
                                                        "stream": True, **params})
            _converse(chat, reference, history, prompt)
    finally:
        scheduler.close()


def _remote_chat(client: RunnerClient, reference: str, params: dict) -> Chat:
    def chat(messages: list[dict]) -> Iterator[dict]:
        body = {"model": reference, "messages": messages, "stream": True, **params}
        response = client.open("POST", "/engines/v1/chat/completions", body, timeout=None)

        def chunks() -> Iterator[dict]:
            try:
                while line := response.readline():
                    if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                        continue
                    doc = json.loads(line[len(b"data: "):])
                    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):  # failed mid-answer
                        raise RunnerError(500, str(doc["error"].get("message")), doc["error"].get("code"))
                    yield doc
            finally:
                response.close()

        return chunks()

    return chat


def _converse(chat: Chat, reference: str, history: list[dict], prompt: str | None) -> None:
    if prompt is not None:
        _answer(chat, history + [{"role": "user", "content": prompt}])
        return
    _chat(chat, reference, history)


def _answer(chat: Chat, messages: list[dict]) -> str:
    """Stream one answer to stdout; returns its text."""
    parts = []
    stream = chat(messages)
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


def _chat(chat: Chat, reference: str, history: list[dict]) -> None:
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
            answer = _answer(chat, history)
        except (InvalidRequestError, RunnerError) as e:  # e.g. the history outgrew the context: say so, go on
            history.pop()
            if isinstance(e, RunnerError) and e.status != 400:
                raise
            print(f"error: {e.message}", file=sys.stderr)
            continue
        except BaseException:
            history.pop()
            raise
        history.append({"role": "assistant", "content": answer})
