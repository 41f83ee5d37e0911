"""`LayoutStore`: the local store, whole. Each layer of it lives in its own module (see `mdl.store`);
this class adds where the store lives by default and the collection operations of `gc`."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from .gc import (DiskUsage, PruneResult, RemovalResult, discard_unreferenced, disk_usage, prune, referenced_blobs,
                 remove, remove_damaged)
from .index import IndexedStore


class LayoutStore(IndexedStore):
    def __repr__(self) -> str:
        return f"LayoutStore({str(self.root)!r})"

    @staticmethod
    def default_root(env: Mapping[str, str]) -> Path:
        """$MDL_HOME, else $XDG_DATA_HOME/mdl (when absolute), else ~/.local/share/mdl."""
        if env.get("MDL_HOME"):
            return Path(env["MDL_HOME"]).expanduser()
        xdg = env.get("XDG_DATA_HOME")
        if xdg and os.path.isabs(xdg):
            return Path(xdg) / "mdl"
        home = Path(env["HOME"]) if env.get("HOME") else Path.home()
        return home / ".local" / "share" / "mdl"

    # Collection (gc.py), as methods so a store is one object to pass around.

    def remove(self, text: str, *, force: bool = False) -> RemovalResult:
        return remove(self, text, force=force)

    def prune(self) -> PruneResult:
        return prune(self)

    def disk_usage(self) -> DiskUsage:
        return disk_usage(self)

    def referenced_blobs(self) -> set[str]:
        return referenced_blobs(self)

    def discard_unreferenced(self, digests: list[str]) -> list[str]:
        return discard_unreferenced(self, digests)

    def remove_damaged(self, corrupt: Collection[str], models: Collection[str],
                       still_corrupt: Callable[[str], bool] | None = None) -> RemovalResult:
        return remove_damaged(self, corrupt, models, still_corrupt)
