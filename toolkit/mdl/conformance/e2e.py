"""`mdl conformance e2e REGISTRY[/NAMESPACE]`: the whole chain, from a generated model to a chat answer.

Steps, in order (each one a `StepResult`: name, format, pass/fail/skip, seconds, detail):

    registry            GET /v2/: the registry answers (and takes the credentials, if any)
    generate            a tiny llama GGUF from a fixed seed (`tinymodel`), in a temp dir
    direct              llama.cpp on that file: the reference chat answer
    for docker, cncf:   package (temp store A) -> push -> pull (fresh temp store B) -> verify
    serve               the runner's HTTP app over store B on 127.0.0.1, a free port
    for docker, cncf:   chat (POST /engines/v1/chat/completions) -> compare (identical to `direct`)
    for docker, cncf:   delete (manifest DELETE by digest; then neither digest nor tag resolves; then the
                        blobs no other pushed manifest still needs, where the registry deletes blobs)

A step that fails skips the steps that need it (another format's chain still runs); `delete` runs
for every push that was attempted, whatever failed, unless `keep`. The user's store is never
touched: both stores and the model live in one temp dir, removed at the end. What is pushed goes
to `<registry>/<namespace>/mdl-e2e-<random>`, tagged with the format's name. What a delete could not
remove is listed in the report (`left_behind`), and so is what the API cannot remove at all
(`not_removable`: the repository, listed in /v2/_catalog, and the blobs' bytes until garbage collection).

The comparison is fair because both sides load the same bytes with the same settings: the runner
loads the pulled blob with the context `context_for` picks (the model's 256 tokens, which Docker's
config also records) and the GGUF's own chat template; `direct` loads the original file with
`n_ctx` 256 and that same template; both use one thread, temperature 0 and the same seed.

llama-cpp-python, Starlette and uvicorn (the `serve` extra) are needed: without them `run_e2e`
raises `MissingExtraError` before doing anything.
"""

from __future__ import annotations

import importlib.util
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..content.digest import hash_file
from ..errors import MdlError, MissingExtraError, UsageError
from ..model_check import check_model_in_store
from ..ops.package import PackageRequest, package
from ..ops.pull import pull
from ..ops.push import push
from ..reference import Reference, parse_reference
from ..registry.errors import RegistryError, RemoteNotFoundError
from ..store import LayoutStore
from .registry_framework import not_removable
from .tinymodel import write_tiny_gguf

FORMATS = ("docker", "cncf")
PASS, FAIL, SKIP = "pass", "fail", "skip"

MODEL_SEED = 7
CONTEXT_LENGTH = 256  # the generated model's; what the runner's context_for picks for it
CREATED = datetime(2025, 1, 1, tzinfo=timezone.utc)  # reproducible packages: same digests every run
CHAT_MESSAGES = [{"role": "user", "content": "hello world"}]
SAMPLING = {"temperature": 0, "seed": 1234, "max_tokens": 16}
N_THREADS = 1  # docs/notes.md §3: more threads on 2 cores can crawl
CHAT_PATH = "/engines/v1/chat/completions"
START_TIMEOUT = 30.0
HTTP_TIMEOUT = 120.0

_SERVE_EXTRA = {"llama_cpp": "llama-cpp-python", "starlette": "starlette", "uvicorn": "uvicorn"}


@dataclass
class StepResult:
    name: str
    format: str | None  # docker | cncf, or None for a step shared by both
    status: str  # pass | fail | skip
    seconds: float
    detail: str
    error: dict | None = None  # a failure's {"kind", "message", "hint"}
    value: Any = field(default=None, repr=False, compare=False)  # what the step produced, for later steps

    def as_dict(self) -> dict:
        d = {"name": self.name, "format": self.format, "status": self.status,
             "seconds": round(self.seconds, 3), "detail": self.detail}
        if self.error is not None:
            d["error"] = self.error
        return d


@dataclass
class E2EReport:
    registry: str
    repository: str
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0
    artifacts: dict[str, str] = field(default_factory=dict)  # format -> reference@digest packaged and pushed
    kept: list[str] = field(default_factory=list)  # references left in the registry (`keep`)
    left_behind: list[str] = field(default_factory=list)  # what a delete could not remove, with why
    not_removable: list[str] = field(default_factory=list)  # what the API cannot remove (registry_framework)

    @property
    def ok(self) -> bool:
        return all(s.status != FAIL for s in self.steps)

    def counts(self) -> dict[str, int]:
        return {status: sum(s.status == status for s in self.steps) for status in (PASS, FAIL, SKIP)}

    def as_dict(self) -> dict:
        return {"registry": self.registry, "repository": self.repository, "ok": self.ok,
                "seconds": round(self.seconds, 3), "counts": self.counts(),
                "steps": [s.as_dict() for s in self.steps], "artifacts": self.artifacts, "kept": self.kept,
                "left_behind": self.left_behind, "not_removable": self.not_removable}


class StepFailure(MdlError):
    """A check inside a step did not hold; `kind` names which (mismatch, findings, http, leftover)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# --------------------------------------------------------------------------------------------------


def split_target(target: str) -> tuple[str, str]:
    """`host[:port][/namespace]` -> (registry, namespace); the first component must be a registry host."""
    registry, _, namespace = target.strip().strip("/").partition("/")
    if not registry or not ("." in registry or ":" in registry or registry == "localhost"):
        raise UsageError(f"{target!r} does not start with a registry host",
                         "give REGISTRY[/NAMESPACE], e.g. localhost:5000/e2e or ghcr.io/myorg")
    return registry, namespace.strip("/")


def run_e2e(target: str, open_repository: Callable[[Reference], Any], *, keep: bool = False,
            on_step: Callable[[StepResult], None] | None = None) -> E2EReport:
    """Run every step against `target` (`REGISTRY[/NAMESPACE]`); `open_repository(ref)` gives the
    registry repository (a `RemoteRepository`) with the caller's TLS and credential settings."""
    registry, namespace = split_target(target)
    missing = [pkg for mod, pkg in _SERVE_EXTRA.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise MissingExtraError(missing)
    name = f"mdl-e2e-{secrets.token_hex(4)}"
    refs = {fmt: parse_reference(f"{registry}/{namespace + '/' if namespace else ''}{name}:{fmt}")
            for fmt in FORMATS}
    report = E2EReport(registry, refs[FORMATS[0]].repository)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mdl-e2e-"))
    try:
        _Run(report, refs, open_repository(refs[FORMATS[0]]), work, keep, on_step).all()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        report.seconds = time.monotonic() - started
    return report


class _Run:
    def __init__(self, report: E2EReport, refs: dict[str, Reference], repo, work: Path, keep: bool,
                 on_step: Callable[[StepResult], None] | None):

        self.report, self.refs, self.repo, self.work, self.keep = report, refs, repo, work, keep
        self.on_step = on_step or (lambda step: None)
        self.source = LayoutStore(work / "packaged")  # what is packaged and pushed
        self.target = LayoutStore(work / "pulled")  # the fresh store it is pulled into and served from
        self.model: Path | None = None
        self.digests: dict[str, str] = {}  # format -> packaged manifest digest
        self.blobs: dict[str, list[str]] = {}  # format -> the packaged config and layer digests
        self.live: set[str] = set()  # formats whose manifest may be in the registry (a push was attempted)
        self.deleted_blobs: set[str] = set()
        self.expected: dict | None = None  # the direct llama.cpp answer
        self.server: _Runner | None = None

    def record(self, result: StepResult) -> StepResult:
        self.report.steps.append(result)
        self.on_step(result)
        return result

    def step(self, name: str, fmt: str | None, fn: Callable[[], tuple[Any, str]],
             needs: tuple[StepResult, ...] = ()) -> StepResult:
        """Run `fn` (returning (value, detail)) as one step; skip it when a step it needs did not pass."""
        blocker = next((s for s in needs if s.status != PASS), None)
        if blocker is not None:
            shown = f"{blocker.name} ({blocker.format})" if blocker.format else blocker.name
            return self.record(StepResult(name, fmt, SKIP, 0.0, f"skipped: {shown} did not pass"))
        start = time.monotonic()
        try:
            value, detail = fn()
        except MdlError as e:
            error = {"kind": e.kind, "message": e.message, "hint": e.hint}
        except Exception as e:  # noqa: BLE001 - a conformance run reports a bug as a failed step
            error = {"kind": "internal", "message": f"{type(e).__name__}: {e}", "hint": None}
        else:
            return self.record(StepResult(name, fmt, PASS, time.monotonic() - start, detail, value=value))
        return self.record(StepResult(name, fmt, FAIL, time.monotonic() - start, error["message"], error))

    def all(self) -> None:
        pushes: dict[str, StepResult] = {}
        try:
            reachable = self.step("registry", None, self.ping)
            generated = self.step("generate", None, self.generate, (reachable,))
            direct = self.step("direct", None, self.direct, (generated,))
            verified: dict[str, StepResult] = {}
            for fmt in FORMATS:
                packaged = self.step("package", fmt, lambda: self.package(fmt), (generated,))
                pushes[fmt] = pushed = self.step("push", fmt, lambda: self.push(fmt), (packaged,))
                pulled = self.step("pull", fmt, lambda: self.pull(fmt), (pushed,))
                verified[fmt] = self.step("verify", fmt, lambda: self.verify(fmt), (pulled,))
            ready = [v for v in verified.values() if v.status == PASS]
            served = self.step("serve", None, self.serve, tuple(ready[:1] or verified.values()))
            for fmt in FORMATS:
                chatted = self.step("chat", fmt, lambda: self.chat(fmt), (verified[fmt], served))
                self.step("compare", fmt, lambda: self.compare(chatted.value), (chatted, direct))
        finally:
            try:
                if self.server is not None:
                    self.server.stop()
            finally:
                self.clean_up(pushes)

    def clean_up(self, pushes: dict[str, StepResult]) -> None:
        """Delete every manifest a push was attempted for (even one that failed), and its blobs, unless kept;
        then note what the API cannot remove."""
        attempted = {fmt for fmt, pushed in pushes.items() if pushed.status != SKIP}
        self.live = set(attempted)
        for fmt, pushed in pushes.items():
            if pushed.status == SKIP:
                continue
            if self.keep:
                kept = self.report.artifacts[fmt]
                self.report.kept.append(kept)
                self.record(StepResult("delete", fmt, SKIP, 0.0, f"skipped: --keep leaves {kept}"))
            else:
                self.step("delete", fmt, lambda: self.delete(fmt))
        if attempted and not self.keep:
            try:
                self.report.not_removable = not_removable(self.repo.client, [self.report.repository],
                                                          len(self.deleted_blobs))
            except MdlError as e:  # the run's results stand; only this note is lost
                self.report.not_removable = [f"what stays could not be asked: {e.message}"]

    # -- the steps ----------------------------------------------------------------------------------

    def ping(self):
        client = self.repo.client
        client.request("GET", "/v2/", what=f"checking registry {client.registry}").close()
        return None, f"{client.registry} answers over {'HTTP' if client.plain_http else 'HTTPS'}"

    def generate(self):

        (self.work / "model").mkdir()
        self.model = write_tiny_gguf(self.work / "model" / "tiny-e2e.gguf", seed=MODEL_SEED,
                                     context_length=CONTEXT_LENGTH)[0]
        digest, size = hash_file(self.model)
        return None, f"{self.model.name}: {size} bytes, {digest} (seed {MODEL_SEED})"

    def direct(self):
        """llama.cpp on the original file, loaded as the runner loads models (engine.load_engine)."""
        import llama_cpp

        llm = llama_cpp.Llama(model_path=str(self.model), n_ctx=CONTEXT_LENGTH, n_threads=N_THREADS,
                              n_threads_batch=N_THREADS, embedding=False, verbose=False)
        try:
            self.expected = _answer(llm.create_chat_completion(messages=CHAT_MESSAGES, **SAMPLING))
        finally:
            llm.close()
        return None, f"{self.expected['text']!r} ({self.expected['finish_reason']})"

    def package(self, fmt: str):

        result = package(self.source, PackageRequest(gguf=str(self.model), format=fmt, created=CREATED),
                         self.refs[fmt])
        self.digests[fmt] = result.digest
        self.blobs[fmt] = [result.manifest.config.digest] + [d.digest for d in result.manifest.layers]
        self.report.artifacts[fmt] = f"{self.refs[fmt]}@{result.digest}"
        return None, f"{result.digest}, {len(result.manifest.layers)} layer(s), {result.size} bytes"

    def push(self, fmt: str):

        result = push(self.source, self.repo, str(self.refs[fmt]), self.refs[fmt], concurrency=2)
        _same(result.digest, self.digests[fmt], "the pushed manifest")
        outcomes = sorted(result.outcomes.values())
        summary = ", ".join(f"{outcomes.count(o)} {o}" for o in sorted(set(outcomes)))
        return None, f"{result.reference}: blobs {summary}, {result.sent} bytes sent"

    def pull(self, fmt: str):

        result = pull(self.target, self.repo, self.refs[fmt], concurrency=2)
        _same(result.digest, self.digests[fmt], "the pulled manifest")
        return None, f"{result.digest}: {result.fetched} of {result.size} bytes fetched, digests checked"

    def verify(self, fmt: str):

        report = check_model_in_store(self.target, self.digests[fmt])
        if not report.ok:
            first = report.findings[0]
            raise StepFailure("findings", f"{len(report.findings)} finding(s), first [{first.kind}] "
                                          f"{first.path}: {first.message}")
        return None, f"{report.blobs_checked} blobs, {report.bytes_checked} bytes verified against the spec"

    def serve(self):
        self.server = _Runner(self.target)
        self.server.start()
        return None, f"runner at {self.server.url} (OpenAI API at {self.server.url}/engines/v1)"

    def chat(self, fmt: str):
        body = {"model": str(self.refs[fmt]), "messages": CHAT_MESSAGES, **SAMPLING}
        resp = self.server.session.post(self.server.url + CHAT_PATH, json=body, timeout=HTTP_TIMEOUT)
        try:
            doc = resp.json()
            if resp.status_code == 200:
                answer = _answer(doc)
                return answer, f"{answer['text']!r} ({answer['finish_reason']})"
            said = doc["error"]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            said = resp.text[:200]
        raise StepFailure("http", f"POST {CHAT_PATH} answered {resp.status_code}: {said!r}")

    def compare(self, answer: dict):
        if answer != self.expected:
            raise StepFailure("mismatch", f"the runner answered {answer['text']!r} ({answer['finish_reason']}), "
                                          f"llama.cpp on the original file {self.expected['text']!r} "
                                          f"({self.expected['finish_reason']})")
        return None, "identical to llama.cpp on the original file"

    def delete(self, fmt: str):
        ref, digest = self.refs[fmt], self.digests[fmt]
        if self._resolves(digest):  # else a push that failed before its manifest went up
            self.repo.delete_manifest(digest)
            if self._resolves(ref.tag):  # OCI 1.1 lets a registry keep the tag: delete it by name
                self._delete_tag(ref)
            for what, shown in ((digest, f"{ref.name}@{digest}"), (ref.tag, str(ref))):
                if self._resolves(what):
                    raise StepFailure("leftover", f"{shown} still resolves after the DELETE of {digest}")
            done = f"deleted {ref.name}@{digest}; neither the digest nor the tag resolves"
        else:
            done = f"{ref.name}@{digest} is not in the registry"
        self.live.discard(fmt)
        deleted, shared = self._delete_blobs(fmt)
        if not deleted and done.endswith("registry"):
            return None, f"{done}: nothing to delete"
        return None, f"{done}; {deleted} blob(s) deleted" + (f", {shared} kept for the other format" if shared else "")

    def _delete_tag(self, ref: Reference) -> None:
        try:
            self.repo.delete_manifest(ref.tag)
        except RegistryError as e:  # the leftover check that follows fails the step
            self.report.left_behind.append(f"tag {ref} (DELETE answered {_answer_of(e)})")

    def _delete_blobs(self, fmt: str) -> tuple[int, int]:
        """DELETE the blobs of `fmt` that are in the registry and that no manifest still there needs; a
        refused delete goes to the report's `left_behind`. (Blobs deleted, blobs kept for another manifest.)"""
        needed = {d for other in self.live for d in self.blobs.get(other, [])}
        deleted, kept = 0, 0
        for digest in dict.fromkeys(self.blobs.get(fmt, [])):
            if digest in needed:
                kept += 1
                continue
            if digest in self.deleted_blobs or self.repo.blob_size(digest) is None:
                continue  # gone already, or never pushed
            try:
                self.repo.delete_blob(digest)
            except RemoteNotFoundError:
                continue
            except RegistryError as e:
                self.report.left_behind.append(f"blob {digest} in {self.report.repository} "
                                               f"(DELETE answered {_answer_of(e)})")
                continue
            self.deleted_blobs.add(digest)
            deleted += 1
        return deleted, kept

    def _resolves(self, reference: str) -> bool:
        try:
            self.repo.resolve(reference)
        except RemoteNotFoundError:
            return False
        return True


def _answer_of(e) -> str:
    """`405 UNSUPPORTED`: a registry error's status and code."""
    return " ".join(str(x) for x in (e.status, e.code) if x) or e.message


def _answer(doc: dict) -> dict:
    choice = doc["choices"][0]
    return {"text": choice["message"]["content"], "finish_reason": choice.get("finish_reason")}


def _same(actual: str, expected: str, what: str) -> None:
    if actual != expected:
        raise StepFailure("mismatch", f"{what} is {actual}, the packaged one {expected}")


# --------------------------------------------------------------------------------------------------


class _Runner:
    """The runner's HTTP app (what `mdl serve` serves) on 127.0.0.1, in a thread of this process:
    a Scheduler and `create_app` over `store`, uvicorn on a socket bound to a free port."""

    def __init__(self, store):
        import requests
        import uvicorn

        from ..runner import links_dir
        from ..runner.app import create_app
        from ..runner.scheduler import Scheduler

        self.scheduler = Scheduler(store, links_dir(store), max_models=1, n_threads=N_THREADS)
        app = create_app(store, self.scheduler, env={})
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=3)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="mdl-e2e-runner", daemon=True)
        self.session = requests.Session()
        self.session.trust_env = False  # loopback: no proxy from the environment

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise StepFailure("http", f"the runner did not start on {self.url}")
            time.sleep(0.01)
        resp = self.session.get(self.url + "/health/ready", timeout=10)
        if resp.status_code != 200:
            raise StepFailure("http", f"GET /health/ready answered {resp.status_code}")

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(15)
        self.scheduler.close()  # idempotent; covers a start that failed before the lifespan ran
        self.session.close()
        self.sock.close()
