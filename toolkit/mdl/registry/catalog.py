"""The repositories a registry lists: `GET /v2/_catalog` (distribution's API; the OCI distribution-spec
leaves it out, and registries that answer it may list only what the credentials can read), `n` per page,
following `Link: <...>; rel="next"` (which carries `last`) until the registry sends none."""

from __future__ import annotations

import requests

from .client import RegistryClient
from .errors import RegistryError

CATALOG_SCOPE = "registry:catalog:*"
MAX_CATALOG_PAGES = 100_000


def list_repositories(client: RegistryClient, page_size: int | None = None) -> list[str]:
    """Every repository the catalog lists, in the registry's order, each once. `page_size` asks for `n`
    per page (None: the registry's default). Errors are the client's (a registry without a catalog
    answers 404 or 401/403: RemoteNotFoundError, AuthenticationError, PermissionDeniedError)."""
    out: list[str] = []
    seen: set[str] = set()
    url: str | None = "/v2/_catalog" + (f"?n={page_size}" if page_size else "")
    what = f"listing the repositories of {client.registry}"
    for _ in range(MAX_CATALOG_PAGES):
        if url is None:
            return out
        resp = client.request("GET", url, scope=CATALOG_SCOPE, what=what, not_found=f"a catalog on {client.registry}")
        try:
            page = resp.json().get("repositories") or []
            if not isinstance(page, list):
                raise ValueError(page)
        except (ValueError, AttributeError):
            raise RegistryError(client.registry, what, resp.status_code, None, "the catalog is not a JSON object listing repositories") from None
        finally:
            resp.close()
        fresh = [n for n in page if isinstance(n, str) and n not in seen]
        out += fresh
        seen.update(fresh)
        link = resp.links.get("next", {}).get("url")
        # a page that adds nothing and points on would loop: the listing ends there
        url = requests.compat.urljoin(resp.url, link) if link and fresh else None
    return out
