"""`mdl sign REF --key KEY`: sign a model in a registry: cosign's bundle and legacy forms, and with
--model-signing an OpenSSF model signature over its files (spec/signing.md)."""

from __future__ import annotations

import getpass
import os
import sys

import typer

from ..errors import UsageError
from ..ops.sign import check_format, sign
from ..reference import parse_reference
from .common import JSON_OPTION, print_json
from .remote import CA_FILE, PLAIN_HTTP, RemoteOptions


def key_password() -> bytes | None:
    """The passphrase of an encrypted key: MDL_KEY_PASSWORD, else a prompt at a terminal."""
    env = os.environ.get("MDL_KEY_PASSWORD")
    if env is not None:
        return env.encode()
    if sys.stdin.isatty():
        return getpass.getpass("Passphrase for the private key: ").encode()
    return None


def parse_annotations(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise UsageError(f"--annotation {item!r} is not KEY=VALUE", "e.g. --annotation team=ml")
        out[k] = v
    return out


def command(
    reference: str = typer.Argument(..., help="Model in a registry: registry/repo:tag or registry/repo@sha256:..."),
    key: str = typer.Option(..., "--key", help="Private key (PEM) from `mdl keygen`, or cosign's from "
                                               "`cosign generate-key-pair`."),
    annotation: list[str] = typer.Option(None, "--annotation", "-a",
                                         help="KEY=VALUE signed with the digest (legacy payload's optional, "
                                              "bundle subject's annotations)."),
    format: str = typer.Option("both", "--format", help="bundle (cosign v3), legacy (.sig, cosign v2), or both: "
                                                        "every verifier finds the form it reads."),
    model_signing: bool = typer.Option(False, "--model-signing",
                                       help="Also attach an OpenSSF model signature over the model's files "
                                            "(`mdl extract --model-signature` writes it as model.sig)."),
    plain_http: bool = PLAIN_HTTP,
    ca_file: str = CA_FILE,
    json_output: bool = JSON_OPTION,
) -> None:
    """Sign a model in a registry; prints the signature manifest's digest (the legacy one when written,
    else the bundle's), and on stderr each form written."""
    annotations = parse_annotations(annotation)
    check_format(format, model_signing)
    ref = parse_reference(reference)
    repo = RemoteOptions(plain_http, ca_file).open(ref)
    result = sign(repo, ref.digest or ref.tag, key, password=key_password, annotations=annotations,
                  format=format, model_signing=model_signing)
    if json_output:
        print_json(result.as_dict())
        return
    for form, digest in result.signatures.items():
        how = "signed" if form in result.added else "already signed with this key"
        print(f"{result.reference}: {form} {how}: {digest}", file=sys.stderr)
    print(result.signature_manifest)
