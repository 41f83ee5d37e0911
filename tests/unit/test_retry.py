"""mdl.retry: which failures are transient, and how a retry loop waits."""

from __future__ import annotations

import email.utils
import http.client
import subprocess
import sys
import time

import pytest
import requests
import urllib3

from mdl.errors import DigestMismatchError, MdlError
from mdl.retry import RetryPolicy, is_transient


def _raised_from(cause: BaseException) -> MdlError:
    try:
        try:
            raise cause
        except BaseException as e:
            raise MdlError("wrapped") from e
    except MdlError as wrapped:
        return wrapped


@pytest.mark.parametrize("error", [
    ConnectionResetError(),
    TimeoutError(),
    http.client.IncompleteRead(b"x", 10),
    urllib3.exceptions.ProtocolError("Connection broken"),
    requests.exceptions.ChunkedEncodingError("truncated"),
    requests.exceptions.ConnectionError("refused"),
])
def test_broken_connections_are_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize("error", [
    requests.exceptions.HTTPError("404"),  # an OSError, but an answer
    requests.exceptions.InvalidURL("bad"),
    requests.exceptions.MissingSchema("no scheme"),
    ValueError("a bug"),
    MdlError("refused"),
    DigestMismatchError("blob", "sha256:" + "0" * 64, "sha256:" + "1" * 64),
    None,
])
def test_answers_and_bugs_are_not(error):
    assert not is_transient(error)


def test_an_mdl_error_counts_by_its_cause_or_its_flag():
    assert is_transient(_raised_from(ConnectionResetError()))
    assert not is_transient(_raised_from(ValueError()))
    flagged = MdlError("lost")
    flagged.transient = True
    assert is_transient(flagged)


def test_also_adds_a_callers_own_rule():
    refused = MdlError("503")
    assert not is_transient(refused)
    assert is_transient(refused, also=lambda e: e is refused)
    assert is_transient(_raised_from(ConnectionResetError()), also=lambda e: False)


def test_importing_mdl_retry_does_not_import_requests():
    code = "import sys, mdl.retry; assert 'requests' not in sys.modules, 'requests imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_backoff_is_jittered_under_its_cap():
    policy = RetryPolicy(backoff_base=1.0, backoff_cap=4.0)
    assert all(0 <= policy.backoff(0) <= 1.0 for _ in range(50))
    assert all(0 <= policy.backoff(10) <= 4.0 for _ in range(50))


def test_retry_after_seconds_and_dates_are_capped():
    policy = RetryPolicy(retry_after_cap=60.0)
    assert policy.retry_after("7") == 7.0
    assert policy.retry_after(" 3600 ") == 60.0
    assert policy.retry_after(None) is None and policy.retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= policy.retry_after(later) <= 30
    assert policy.retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0


def test_attempts_stop_at_the_count_and_the_budget():
    slept = []
    tries = RetryPolicy(retries=2, backoff_base=0.0, budget=100.0).start()
    while tries.allows(tries.delay()):
        tries.wait(tries.delay(), slept.append)
    assert slept == [0.0, 0.0] and tries.retries == 2
    assert not RetryPolicy(retries=5, budget=1.0).start().allows(2.0)
    assert RetryPolicy().start().delay(retry_after=3.0) == 3.0
