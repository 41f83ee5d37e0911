"""The state file of `mdl audit --state FILE`: what earlier runs checked, so that an interrupted audit
goes on where it stopped and a later one checks only the manifests it has not seen.

JSON Lines. The first line names the format and the registry:
`{"format": "mdl-audit-state", "version": 1, "registry": "host:port"}`. Each other line is one checked
manifest, `{"settings": {...}, "record": {...}}` (`CheckSettings.state_key()`, `Artifact.record()`),
appended and flushed to disk as soon as its check ends: a killed audit loses only the checks in flight.
A later line for the same settings, repository and digest replaces an earlier one (a signature status
checked again); a line cut short by a crash is dropped. Opening the file rewrites it whole, atomically
(`store/locks.py:atomic_write`), and so does `compact()` at the end of a run. Entries made with other
settings (another profile, `--deep`, another key) are kept but not reused. A lock beside the file
(`.<name>.lock`, flock) keeps two audits from sharing one state file.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from contextlib import ExitStack
from pathlib import Path

from ..errors import UsageError
from ..store.locks import atomic_write, flock, remove_temp_files
from .model import Artifact

FORMAT = "mdl-audit-state"
VERSION = 1

_Key = tuple[str, str, str]  # (settings as JSON, repository, digest)


class StateFileError(UsageError):
    """The --state file cannot be used: not a state file, another registry's, or in use."""

    def __init__(self, path: Path, problem: str, hint: str = "give --state a new path (it is created)"):
        self.path = str(path)
        super().__init__(f"state file {path}: {problem}", hint)


class AuditState:
    """Open with `AuditState.open(path, registry, settings)` and close when the run ends."""

    def __init__(self, path: Path, registry: str, settings: dict):
        self.path = Path(path)
        self.registry = registry
        self._settings = json.dumps(settings, sort_keys=True)
        self._entries: dict[_Key, dict] = {}
        self._lock = threading.Lock()
        self._stack = ExitStack()
        self._log = None
        self.other_settings = 0  # entries kept for other settings, not reused

    @classmethod
    def open(cls, path: str | os.PathLike, registry: str, settings: dict) -> AuditState:
        state = cls(Path(path), registry, settings)
        try:
            state._open()
        except BaseException:
            state.close()
            raise
        return state

    def _open(self) -> None:
        lock = self.path.with_name(f".{self.path.name}.lock")
        try:
            held = self._stack.enter_context(flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB))
        except OSError as e:
            raise StateFileError(self.path, f"cannot create its lock {lock}: {e.strerror}",
                                 "give --state a path in a directory you can write") from None
        if not held:
            raise StateFileError(self.path, "another audit is using it", "wait for it to end, or give another path")
        remove_temp_files(self.path.parent, self.path.name)  # a killed run's, under the lock every writer holds
        self._load()
        self._rewrite()
        self._log = self._stack.enter_context(open(self.path, "a", encoding="utf-8"))

    def _load(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as e:
            raise StateFileError(self.path, f"cannot read it: {getattr(e, 'strerror', None) or e}") from None
        if not lines:
            return
        header = _json(lines[0])
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise StateFileError(self.path, "not an mdl audit state file")
        if header.get("version") != VERSION:
            raise StateFileError(self.path, f"version {header.get('version')!r}, this mdl reads version {VERSION}")
        if header.get("registry") != self.registry:
            raise StateFileError(self.path, f"it is the state of an audit of {header.get('registry')}, "
                                            f"not of {self.registry}")
        for line in lines[1:]:
            entry = _json(line)
            try:
                record = entry["record"]
                key = (json.dumps(entry["settings"], sort_keys=True), record["repository"], record["digest"])
            except (TypeError, KeyError):
                continue  # cut short by a crash, or not an entry
            self._entries[key] = entry
        self.other_settings = sum(k[0] != self._settings for k in self._entries)

    def _rewrite(self) -> None:
        header = {"format": FORMAT, "version": VERSION, "registry": self.registry}
        lines = [json.dumps(header)] + [json.dumps(e, sort_keys=True) for e in self._entries.values()]
        try:
            atomic_write(self.path, ("\n".join(lines) + "\n").encode())
        except OSError as e:
            raise StateFileError(self.path, f"cannot write it: {e.strerror}",
                                 "give --state a path in a directory you can write") from None

    def __len__(self) -> int:
        return sum(k[0] == self._settings for k in self._entries)

    def get(self, repository: str, digest: str) -> Artifact | None:
        """The record an earlier run made of `repository@digest` with the same settings."""
        entry = self._entries.get((self._settings, repository, digest))
        return Artifact.from_record(entry["record"]) if entry else None

    def put(self, artifact: Artifact) -> None:
        """Keep `artifact`'s record, durably, before returning (thread-safe)."""
        entry = {"settings": json.loads(self._settings), "record": artifact.record()}
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock:
            self._entries[(self._settings, artifact.repository, artifact.digest)] = entry
            if self._log is not None:
                self._log.write(line)
                self._log.flush()
                os.fsync(self._log.fileno())

    def compact(self, repositories: set[str], seen: set[tuple[str, str]]) -> None:
        """Rewrite the file with one line per manifest, dropping those of `repositories` (audited whole in
        this run, with these settings) that the run did not see: they are gone from the registry."""
        with self._lock:
            self._entries = {k: e for k, e in self._entries.items()
                             if k[0] != self._settings or k[1] not in repositories or (k[1], k[2]) in seen}
            if self._log is not None:
                self._log.close()
            self._rewrite()
            self._log = self._stack.enter_context(open(self.path, "a", encoding="utf-8"))

    def close(self) -> None:
        self._stack.close()
        self._log = None


def _json(line: str):
    try:
        return json.loads(line)
    except ValueError:
        return None
