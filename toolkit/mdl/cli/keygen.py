"""`mdl keygen`: an ECDSA P-256 key pair for `mdl sign` (NAME.key, encrypted PKCS#8 PEM; NAME.pub)."""

from __future__ import annotations

import getpass
import os
import sys

import typer

from ..errors import UsageError
from ..signing.keys import write_keypair


def read_new_password() -> bytes:
    """The passphrase for a new key: MDL_KEY_PASSWORD, else typed twice at a terminal."""
    env = os.environ.get("MDL_KEY_PASSWORD")
    if env is not None:
        if not env:
            raise UsageError("MDL_KEY_PASSWORD is empty", "set a passphrase, or use --no-password for a throwaway key")
        return env.encode()
    if not sys.stdin.isatty():
        raise UsageError("no passphrase for the new key: MDL_KEY_PASSWORD is not set and stdin is not a terminal",
                         "set MDL_KEY_PASSWORD, or use --no-password for a throwaway key")
    first = getpass.getpass("Passphrase for the new key: ")
    second = getpass.getpass("Passphrase again: ")
    if first != second:
        raise UsageError("the passphrases do not match", "run `mdl keygen` again")
    if not first:
        raise UsageError("empty passphrase", "type a passphrase, or use --no-password for a throwaway key")
    return first.encode()


def command(
    output_prefix: str = typer.Option("mdl", "--output-prefix", help="Write NAME.key and NAME.pub."),
    no_password: bool = typer.Option(False, "--no-password", help="Leave the private key unencrypted."),
) -> None:
    """Generate an ECDSA P-256 signing key pair (cosign-compatible signatures)."""
    password = None if no_password else read_new_password()
    key, pub = write_keypair(output_prefix, password)
    print(f"Private key written to {key}")
    print(f"Public key written to {pub}")
