"""The registry checks on documents: model config types and `artifactType`, manifests byte for byte,
layer annotations, a manifest at the 4 MiB limit, referrers, tags and deletes (blobs: `registry_blobs.py`).

Everything pushed is a real model artifact built by `mdl.artifact` and checked against the project's
schemas; its content is salted with the check's id, so no two checks share a blob.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from ..artifact import (DETERMINISTIC_MODE, FileFacts, LayerFile, ModelFacts, build, config_document,
                        layer_descriptor, to_json_bytes)
from ..content.descriptor import MAX_MANIFEST_SIZE, Descriptor, Manifest, canonical_json
from ..content.digest import sha256_bytes
from ..errors import InternalError
from ..formats.units import format_binary_size, format_decimal_size
from ..spec import mediatypes as mt
from ..spec import schemas
from .registry_framework import NOT_SUPPORTED, OCI_SPEC, PASS, Artifact, Check, Context, Outcome, check

CREATED = datetime(2025, 1, 1, tzinfo=timezone.utc)
# kind -> (mdl.artifact format, weight format, files as (path, Docker layer media type))
_GGUF_FILES = [("model.gguf", mt.GGUF), ("LICENSE", mt.LICENSE), ("template.jinja", mt.CHAT_TEMPLATE)]
KINDS = {
    "docker-v0.1": ("docker", "gguf", _GGUF_FILES),
    "docker-v0.2": ("docker", "safetensors", [("model.safetensors", mt.SAFETENSORS), ("config.json", mt.MODEL_FILE),
                                              ("tokenizer/tokenizer.json", mt.MODEL_FILE)]),
    "cncf-v1": ("cncf", "gguf", _GGUF_FILES),
    "cnai-v1": ("cncf", "gguf", _GGUF_FILES),  # then spelled the legacy way
}
CONFIG_TYPES = {"docker-v0.1": mt.DOCKER_CONFIG_V01, "docker-v0.2": mt.DOCKER_CONFIG_V02,
                "cncf-v1": mt.CNCF_CONFIG, "cnai-v1": mt.CNAI_CONFIG}


def _layer_files(salt: str, files: list[tuple[str, str]]) -> tuple[list[LayerFile], list[tuple[bytes, str]]]:
    layers, blobs = [], []
    for path, media_type in files:
        data = f"mdl registry conformance: {salt}: {path}\n".encode()
        facts = FileFacts(path.rsplit("/", 1)[-1], DETERMINISTIC_MODE, 0, 0, len(data), CREATED)
        layers.append(LayerFile(media_type, sha256_bytes(data), len(data), path, facts))
        blobs.append((data, media_type))
    return layers, blobs


def _facts(weight_format: str, layers: list[LayerFile]) -> ModelFacts:
    n = sum(lf.size for lf in layers if lf.media_type in (mt.GGUF, mt.SAFETENSORS))
    size = format_binary_size(n) if weight_format == "gguf" else format_decimal_size(n)
    return ModelFacts(weight_format, {"format": weight_format, "size": size}, None)


def _legacy(manifest: Manifest) -> Manifest:
    """The same ModelPack manifest in the `vnd.cnai` / `org.cnai` spelling used before mid-2025."""
    layers = []
    for d in manifest.layers:
        entry = mt.entry(d.media_type)
        assert entry is not None and entry.id.startswith("cncf-")
        a = d.annotations or {}
        annotations = {mt.ANNOTATION_CNAI_FILEPATH: a[mt.ANNOTATION_FILEPATH],
                       mt.ANNOTATION_CNAI_FILE_METADATA: a[mt.ANNOTATION_FILE_METADATA]}
        layers.append(Descriptor(mt.mt("cnai-" + entry.id[len("cncf-"):]), d.digest, d.size, annotations))
    config = Descriptor(mt.CNAI_CONFIG, manifest.config.digest, manifest.config.size)
    return Manifest.build(config, layers, artifact_type=mt.CNAI_ARTIFACT_TYPE)


def model_artifact(kind: str, salt: str, subject: Descriptor | None = None) -> Artifact:
    """A small model artifact of `kind` (a key of KINDS), optionally a referrer of `subject`."""
    fmt, weight_format, files = KINDS[kind]
    layers, blobs = _layer_files(salt, files)
    config, config_type, manifest = build(_facts(weight_format, layers), layers, CREATED, fmt)
    if kind == "cnai-v1" or subject is not None:
        if kind == "cnai-v1":
            manifest, config_type = _legacy(manifest), mt.CNAI_CONFIG
        manifest = Manifest.build(manifest.config, manifest.layers, artifact_type=manifest.artifact_type,
                                  subject=subject)
        schemas.check(json.loads(config), schemas.config_schema_for(config_type), "the model config")
        schemas.check(manifest.as_dict(), schemas.manifest_schema_for(config_type), "the manifest")
    return Artifact(manifest, [(config, config_type), *blobs])


def limit_artifact(salt: str, target: int = MAX_MANIFEST_SIZE) -> Artifact:
    """A Docker v0.2 artifact whose manifest is exactly `target` bytes: thousands of small files with long
    paths (one blob), the last path padded to the byte. A path is written twice (filepath and title), its
    base name three times (and in the file metadata), so the padding goes in both to reach any size."""
    data = f"mdl registry conformance: {salt}\n".encode()
    digest = sha256_bytes(data)
    directory = "data/" + "a-deeply-nested-directory/" * 8

    def files(n: int, dir_pad: int = 0, name_pad: int = 0) -> list[LayerFile]:
        out = []
        for i in range(n):
            last = i == n - 1
            name = f"{'long-file-name-' * 12}{'q' * name_pad if last else ''}{i:05d}.txt"
            path = f"{directory}{'p' * dir_pad if last else ''}{name}"
            out.append(LayerFile(mt.MODEL_FILE, digest, len(data), path,
                                 FileFacts(name, DETERMINISTIC_MODE, 0, 0, len(data), CREATED)))
        return out

    facts = ModelFacts("safetensors", {"format": "safetensors", "size": format_decimal_size(len(data))}, None)

    def size(n: int, dir_pad: int = 0, name_pad: int = 0) -> int:  # artifact.build without its (slow) schema checks
        layers = [layer_descriptor(lf, "docker") for lf in files(n, dir_pad, name_pad)]
        cfg = to_json_bytes(config_document(facts, layers, CREATED, "docker"))
        return len(Manifest.build(Descriptor(mt.DOCKER_CONFIG_V02, sha256_bytes(cfg), len(cfg)), layers).raw)

    one, two = size(1), size(2)
    n = (target - (one - (two - one))) // (two - one)
    while True:
        base = size(n)
        per_dir, per_name = size(n, 1) - base, size(n, 0, 1) - base
        rest, name_pad = target - base, 0
        while name_pad < per_dir and (rest - name_pad * per_name) % per_dir:
            name_pad += 1
        dir_pad = (rest - name_pad * per_name) // per_dir
        if dir_pad >= 0 and (rest - name_pad * per_name) % per_dir == 0:
            break
        n -= 1  # too little room left for an odd remainder: one layer fewer
    config, config_type, manifest = build(facts, files(n, dir_pad, name_pad), CREATED, "docker")
    if len(manifest.raw) != target:
        raise InternalError(f"the limit manifest is {len(manifest.raw)} bytes, not {target}")
    return Artifact(manifest, [(config, config_type), (data, mt.MODEL_FILE)])


CHECKS_BEFORE_BLOBS: list[Check] = []
CHECKS_AFTER_BLOBS: list[Check] = []


@check(CHECKS_BEFORE_BLOBS, "api-root", "The registry answers the API root", True,
       f"{OCI_SPEC}#determining-support")
def api_root(ctx: Context) -> Outcome:
    resp = ctx.send(ctx.base, "GET", "/v2/")
    resp.close()
    ctx.expect(resp, (200,), "GET /v2/")
    return Outcome(PASS, "GET /v2/ answered 200", ctx.last(),
                   {"api_version": resp.headers.get("Docker-Distribution-Api-Version")})


def _served_manifest(ctx: Context, reference: str, what: str) -> tuple[bytes, dict]:
    resp, raw = ctx.get(ctx.base, "manifests", reference)
    ctx.expect(resp, (200,), f"GET {what}", raw)
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        ctx.fail(f"GET {what} answered 200 with a body that is not a JSON object")
    return raw, doc


def _config_media_type(kind: str):
    def run(ctx: Context) -> Outcome:
        art = model_artifact(kind, f"config-media-type/{kind}")
        ctx.push_artifact(ctx.base, art)
        put = ctx.last()
        config_bytes, config_type = art.blobs[0]
        resp, body = ctx.get(ctx.base, "blobs", art.manifest.config.digest)
        ctx.expect(resp, (200,), "GET the config blob", body)
        if body != config_bytes:
            ctx.fail(f"the config blob came back as {len(body)} different bytes ({len(config_bytes)} pushed)")
        _raw, doc = _served_manifest(ctx, art.manifest.digest, "the manifest by digest")
        served = (doc.get("config") or {}).get("mediaType")
        if served != config_type:
            ctx.fail(f"the manifest came back with config media type {served!r}")
        return Outcome(PASS, f"a manifest with config {config_type} was accepted (201) and served back with its "
                             "config blob", put + ctx.last())
    return run


def _artifact_type(kind: str):
    def run(ctx: Context) -> Outcome:
        art = model_artifact(kind, f"artifact-type/{kind}")
        ctx.push_artifact(ctx.base, art)
        put = ctx.last()
        _raw, doc = _served_manifest(ctx, art.manifest.digest, "the manifest by digest")
        served_type = doc.get("artifactType")
        if served_type != art.manifest.artifact_type:
            ctx.fail(f"the manifest came back with artifactType {served_type!r}")
        ctype = (ctx.exchanges[-1].response_headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype != mt.OCI_MANIFEST:
            ctx.fail(f"the manifest was served as Content-Type {ctype!r}, not {mt.OCI_MANIFEST}")
        return Outcome(PASS, f"a manifest with artifactType {served_type} was accepted and served back with it, "
                             f"as {mt.OCI_MANIFEST}", put + ctx.last())
    return run


_LINKS = {"docker-v0.1": "spec/docker-format.md#2-versions", "docker-v0.2": "spec/docker-format.md#2-versions",
          "cncf-v1": "spec/modelpack.md#4-config", "cnai-v1": "spec/modelpack.md#42-legacy-config-example"}
for _kind in KINDS:
    # A legacy spelling is read, never written: a registry that refuses it only loses old artifacts.
    check(CHECKS_BEFORE_BLOBS, f"config-media-type/{_kind}", f"Accepts config media type {CONFIG_TYPES[_kind]}",
          _kind != "cnai-v1", _LINKS[_kind])(_config_media_type(_kind))
for _kind in ("cncf-v1", "cnai-v1"):
    check(CHECKS_BEFORE_BLOBS, f"artifact-type/{_kind}", f"Accepts and returns artifactType ({_kind})",
          _kind != "cnai-v1", "spec/modelpack.md#2-manifest")(_artifact_type(_kind))


def _first_difference(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


@check(CHECKS_BEFORE_BLOBS, "manifest/byte-for-byte", "Returns a manifest byte for byte", True,
       f"{OCI_SPEC}#pushing-manifests")
def manifest_bytes(ctx: Context) -> Outcome:
    art = model_artifact("docker-v0.1", "manifest/byte-for-byte")
    # Valid but not canonical JSON (indented, a final newline): a registry that re-serializes changes it.
    raw = (json.dumps(art.manifest.as_dict(), indent=3) + "\n").encode()
    digest = Manifest.parse(raw).digest
    resp = ctx.push_artifact(ctx.base, art, "byte-for-byte", raw=raw)
    put = ctx.last()
    returned = resp.headers.get("Docker-Content-Digest")
    if returned is not None and returned != digest:
        ctx.fail(f"the registry answered the PUT with Docker-Content-Digest {returned}, not {digest}")
    decided = list(put)
    for reference, what in (("byte-for-byte", "by tag"), (digest, "by digest")):
        resp, body = ctx.get(ctx.base, "manifests", reference)
        ctx.expect(resp, (200,), f"GET the manifest {what}", body)
        if body != raw:
            ctx.fail(f"GET {what} returned {len(body)} bytes that differ from the {len(raw)} pushed "
                     f"from byte {_first_difference(body, raw)}")
        decided += ctx.last()
    return Outcome(PASS, f"the {len(raw)} bytes pushed (indented, not canonical JSON) came back identical by tag "
                         "and by digest", decided)


@check(CHECKS_BEFORE_BLOBS, "manifest/layer-annotations", "Keeps layer annotations", True,
       "spec/annotations.md#1-keys")
def layer_annotations(ctx: Context) -> Outcome:
    art = model_artifact("docker-v0.2", "manifest/layer-annotations")
    ctx.push_artifact(ctx.base, art)
    put = ctx.last()
    _raw, doc = _served_manifest(ctx, art.manifest.digest, "the manifest by digest")
    served = [layer.get("annotations") if isinstance(layer, dict) else None for layer in doc.get("layers") or []]
    sent = [d.annotations for d in art.manifest.layers]
    if len(served) != len(sent):
        ctx.fail(f"the manifest came back with {len(served)} layers, not {len(sent)}")
    for i, (s, g) in enumerate(zip(sent, served)):
        if s != g:
            lost = sorted(set(s or {}) - set(g or {}))
            ctx.fail(f"layer {i} came back with other annotations" + (f" (lost {', '.join(lost)})" if lost else ""))
    keys = sorted({k for a in sent for k in a or {}})
    return Outcome(PASS, f"the annotations of all {len(sent)} layers ({', '.join(keys)}) came back unchanged",
                   put + ctx.last())


@check(CHECKS_BEFORE_BLOBS, "manifest/at-4mib-limit", "Stores a manifest at the 4 MiB limit", True,
       f"{OCI_SPEC}#pushing-manifests")
def manifest_limit(ctx: Context) -> Outcome:
    art = limit_artifact("manifest/at-4mib-limit")
    ctx.push_artifact(ctx.base, art)
    put = ctx.last()
    resp, body = ctx.get(ctx.base, "manifests", art.manifest.digest)
    ctx.expect(resp, (200,), "GET the manifest by digest", body)
    if body != art.manifest.raw:
        ctx.fail(f"the {len(art.manifest.raw)}-byte manifest came back as {len(body)} different bytes")
    return Outcome(PASS, f"a manifest of {len(body)} bytes (4 MiB, {len(art.manifest.layers)} layers) was stored and "
                         "served back unchanged", put + ctx.last(),
                   {"manifest_bytes": len(body), "layers": len(art.manifest.layers)})


def _referrer_pair(ctx: Context, salt: str) -> tuple[Artifact, Artifact, str | None]:
    """Push a model and a referrer of it (a ModelPack manifest with `subject`); the PUT's OCI-Subject."""
    subject = model_artifact("cncf-v1", f"{salt} subject")
    ctx.push_artifact(ctx.base, subject)
    m = subject.manifest
    referrer = model_artifact("cncf-v1", f"{salt} referrer", Descriptor(mt.OCI_MANIFEST, m.digest, m.size))
    resp = ctx.push_artifact(ctx.base, referrer)
    return subject, referrer, resp.headers.get("OCI-Subject")


@check(CHECKS_AFTER_BLOBS, "referrers/api", "Lists referrers (referrers API)", False,
       f"{OCI_SPEC}#listing-referrers")
def referrers_api(ctx: Context) -> Outcome:
    subject, referrer, oci_subject = _referrer_pair(ctx, "referrers/api")
    resp = ctx.send(ctx.base, "GET", f"/v2/{ctx.base.repository}/referrers/{subject.manifest.digest}",
                    headers={"Accept": mt.OCI_INDEX})
    data = {"oci_subject_header": oci_subject is not None}
    if resp.status_code == 404:
        resp.close()
        return Outcome(NOT_SUPPORTED, "GET /v2/<name>/referrers/<digest> answered 404: no referrers API (clients "
                                      "keep the fallback tag)", ctx.last(), data)
    ctx.expect(resp, (200,), "GET the referrers of the subject")
    ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
    try:
        entries = {d.get("digest"): d for d in json.loads(resp.content).get("manifests") or [] if isinstance(d, dict)}
    except (ValueError, AttributeError):
        entries = None
    if ctype != mt.OCI_INDEX or entries is None:
        ctx.fail(f"the referrers API answered 200 with {ctype or 'no Content-Type'}, not an OCI index", data)
    entry = entries.get(referrer.manifest.digest)
    if entry is None or entry.get("artifactType") != referrer.manifest.artifact_type:
        ctx.fail("the referrers API does not list the referrer with its artifactType" if entry is None else
                 f"the referrers API lists the referrer with artifactType {entry.get('artifactType')!r}", data)
    return Outcome(PASS, "the referrers API lists the referrer with its artifactType", ctx.last(), data)


@check(CHECKS_AFTER_BLOBS, "referrers/fallback-tag", "Stores the referrers fallback tag", True,
       "spec/signing.md#5-referrers")
def referrers_fallback(ctx: Context) -> Outcome:
    subject, referrer, _ = _referrer_pair(ctx, "referrers/fallback-tag")
    m = referrer.manifest
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
             "manifests": [Descriptor(mt.OCI_MANIFEST, m.digest, m.size, artifact_type=m.artifact_type).to_dict()]}
    schemas.check(index, schemas.OCI_INDEX, "the referrers fallback index")
    raw = canonical_json(index)
    tag = "sha256-" + subject.manifest.digest.split(":", 1)[1]
    ctx.put_manifest(ctx.base, raw, mt.OCI_INDEX, tag, f"PUT the fallback index under tag {tag}")
    put = ctx.last()
    resp, body = ctx.get(ctx.base, "manifests", tag)
    ctx.expect(resp, (200,), f"GET the fallback index by tag {tag}", body)
    if body != raw:
        ctx.fail(f"the fallback index came back as {len(body)} different bytes ({len(raw)} pushed)")
    return Outcome(PASS, "an OCI index listing the referrer was stored under the tag sha256-<subject hex> and served "
                         "back unchanged", put + ctx.last())


@check(CHECKS_AFTER_BLOBS, "tags/list", "Lists tags", True, f"{OCI_SPEC}#listing-tags")
def tags_list(ctx: Context) -> Outcome:
    art = model_artifact("cncf-v1", "tags/list")
    tags = ["conformance-b", "conformance-a", "Conformance-C"]
    ctx.push_artifact(ctx.base, art, tags[0])
    for tag in tags[1:]:
        ctx.put_manifest(ctx.base, art.manifest.raw, mt.OCI_MANIFEST, tag, f"PUT the manifest under tag {tag}")
    path = f"/v2/{ctx.base.repository}/tags/list"
    resp = ctx.send(ctx.base, "GET", path)
    ctx.expect(resp, (200,), f"GET {path}")
    decided = ctx.last()
    try:
        listed = [t for t in json.loads(resp.content).get("tags") or [] if isinstance(t, str)]
    except (ValueError, AttributeError):
        ctx.fail("the tag list is not a JSON object with a tags array")
    page = ctx.send(ctx.base, "GET", path, params={"n": "1"})
    try:
        first_page = json.loads(page.content).get("tags") or [] if page.status_code == 200 else None
    except (ValueError, AttributeError):
        first_page = None
    data = {"tags": listed, "sorted": listed == sorted(listed),
            "paginates": first_page is not None and len(first_page) == 1 and "Link" in page.headers}
    missing = [t for t in tags if t not in listed]
    if missing:
        ctx.fail(f"the tag list lacks {', '.join(missing)}", data)
    order = "in lexical order" if data["sorted"] else "not in lexical order (OCI 1.1 asks for it)"
    paging = "pages with n and Link" if data["paginates"] else "ignores n (one page)"
    return Outcome(PASS, f"the tag list names the {len(tags)} tags pushed, {order}; it {paging}", decided, data)


def _delete(ctx: Context, kind: str, digest: str) -> Outcome | None:
    """DELETE a manifest or blob by digest; an Outcome when that decides the check (405: unsupported)."""
    resp = ctx.send(ctx.base, "DELETE", f"/v2/{ctx.base.repository}/{kind}/{digest}", action="delete")
    resp.close()
    if resp.status_code == 405:
        return Outcome(NOT_SUPPORTED, f"DELETE answered 405: this registry does not delete {kind}", ctx.last())
    ctx.expect(resp, (202,), f"DELETE the {kind[:-1]} by digest")
    return None


@check(CHECKS_AFTER_BLOBS, "delete/manifest", "Deletes a manifest", False, f"{OCI_SPEC}#deleting-manifests")
def delete_manifest(ctx: Context) -> Outcome:
    art = model_artifact("cncf-v1", "delete/manifest")
    ctx.push_artifact(ctx.base, art, "delete-me")
    refused = _delete(ctx, "manifests", art.manifest.digest)
    if refused is not None:
        return refused
    decided = ctx.last()
    resp, body = ctx.get(ctx.base, "manifests", art.manifest.digest)
    ctx.expect(resp, (404,), "GET the deleted manifest by digest", body)
    decided += ctx.last()
    tag, _ = ctx.get(ctx.base, "manifests", "delete-me")
    data = {"tag_removed": tag.status_code == 404}
    return Outcome(PASS, "DELETE by digest answered 202 and the manifest is gone (404)"
                   + ("" if data["tag_removed"] else "; its tag still resolves"), decided, data)


@check(CHECKS_AFTER_BLOBS, "delete/blob", "Deletes a blob", False, f"{OCI_SPEC}#deleting-blobs")
def delete_blob(ctx: Context) -> Outcome:
    desc = ctx.push_blob(ctx.base, b"mdl registry conformance: delete/blob\n")
    refused = _delete(ctx, "blobs", desc.digest)
    if refused is not None:
        return refused
    decided = ctx.last()
    resp = ctx.send(ctx.base, "HEAD", f"/v2/{ctx.base.repository}/blobs/{desc.digest}")
    resp.close()
    ctx.expect(resp, (404,), "HEAD the deleted blob")
    return Outcome(PASS, "DELETE answered 202 and the blob is gone from the repository (404)", decided + ctx.last())
