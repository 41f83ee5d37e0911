"""`mdl login REGISTRY` and `mdl logout REGISTRY`: credentials in Docker's config format."""

from __future__ import annotations

import os
import sys

import typer

from ..errors import UsageError
from ..registry.open import check_credentials
from ..registry.credentials import login, logout
from .remote import CA_FILE, PLAIN_HTTP


def login_command(
    registry: str = typer.Argument(..., help="Registry host, e.g. ghcr.io or localhost:5000."),
    username: str = typer.Option(None, "--username", "-u", help="User name (prompted when missing)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
    plain_http: bool = PLAIN_HTTP,
    ca_file: str = CA_FILE,
) -> None:
    """Store credentials for a registry (in $DOCKER_CONFIG/config.json, as docker login does)."""
    if not username:
        if not sys.stdin.isatty():
            raise UsageError("no --username given and no terminal to ask on", "pass --username and --password-stdin")
        username = typer.prompt("Username")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True)
    else:
        raise UsageError("no password given", "pipe it in with --password-stdin")
    if not password:
        raise UsageError("the password is empty", "give the registry password or token")
    check_credentials(registry, username, password, plain_http=plain_http or None, ca_file=ca_file, env=os.environ)
    where = login(registry, username, password, os.environ)
    print(f"Login succeeded for {registry} (credentials stored in {where})")


def logout_command(registry: str = typer.Argument(..., help="Registry host.")) -> None:
    """Remove stored credentials for a registry."""
    logout(registry, os.environ)
    print(f"Removed credentials for {registry}")
