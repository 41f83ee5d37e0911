"""`registry.catalog.list_repositories`: `n` per page, `Link` followed (relative to the page), each name once,
and a page that adds nothing ends the listing instead of looping."""

from __future__ import annotations

import pytest

from mdl.registry.catalog import CATALOG_SCOPE, list_repositories
from mdl.registry.errors import RegistryError


class Page:
    def __init__(self, url: str, body, next_link: str | None = None):
        self.url, self.body, self.status_code = url, body, 200
        self.links = {"next": {"url": next_link}} if next_link else {}
        self.closed = False

    def json(self):
        if isinstance(self.body, Exception):
            raise self.body
        return self.body

    def close(self):
        self.closed = True


class Client:
    registry = "r.example"

    def __init__(self, pages: dict[str, Page]):
        self.pages, self.asked = pages, []

    def request(self, method, url, *, scope=None, **kw):
        assert method == "GET" and scope == CATALOG_SCOPE
        self.asked.append(url)
        return self.pages[url]


def test_pages_are_followed_with_n_and_last():
    base = "https://r.example/v2/_catalog"
    client = Client({
        "/v2/_catalog?n=2": Page(base + "?n=2", {"repositories": ["a", "b"]}, "/v2/_catalog?last=b&n=2"),
        base + "?last=b&n=2": Page(base + "?last=b&n=2", {"repositories": ["c", "ns/d"]}, "?last=ns%2Fd&n=2"),
        base + "?last=ns%2Fd&n=2": Page(base + "?last=ns%2Fd&n=2", {"repositories": ["e"]}),
    })
    assert list_repositories(client, 2) == ["a", "b", "c", "ns/d", "e"]
    assert len(client.asked) == 3 and all(p.closed for p in client.pages.values())


def test_without_a_page_size_the_registry_picks_it():
    client = Client({"/v2/_catalog": Page("https://r.example/v2/_catalog", {"repositories": ["a", 7, None]})})
    assert list_repositories(client) == ["a"]


def test_a_page_that_adds_nothing_ends_the_listing():
    url = "https://r.example/v2/_catalog?n=1"
    client = Client({"/v2/_catalog?n=1": Page(url, {"repositories": ["a"]}, "/v2/_catalog?n=1&last=a"),
                     "https://r.example/v2/_catalog?n=1&last=a": Page(url, {"repositories": ["a"]},
                                                                      "/v2/_catalog?n=1&last=a")})
    assert list_repositories(client, 1) == ["a"] and len(client.asked) == 2


@pytest.mark.parametrize("body", [ValueError("not JSON"), ["a"], {"repositories": "a"}])
def test_a_catalog_that_is_not_one_is_a_registry_error(body):
    client = Client({"/v2/_catalog": Page("https://r.example/v2/_catalog", body)})
    with pytest.raises(RegistryError, match="the catalog is not a JSON object listing repositories"):
        list_repositories(client)
