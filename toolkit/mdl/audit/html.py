"""An audit as one static, self-contained HTML page (`index.html`): inline CSS and a few lines of inline
JS, no resource from anywhere else, so it opens from a CI artifact or a file share as it is.

The page: the verdict; counts by kind and by format; failures by rule as CSS bars, each rule linked to
its spec section; the largest models; the models without a verified (or, with no key, any) signature;
and every artifact in a table filtered by text, kind and "failing only". Each finding links to the spec
section of the cases it breaks: `spec_base` + the case's link (`spec/<file>.md#<anchor>`, the part after
`spec/`); by default the spec that ships with mdl, as a file URL.
"""

from __future__ import annotations

from html import escape

from ..formats.units import format_binary_size
from ..spec.resources import spec_dir
from .classify import KINDS
from .model import SIGNED, UNSIGNED, VERIFIED, Artifact, AuditReport

PAGE_NAME = "index.html"
LARGEST = 10

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:80em;padding:0 1em;color:#1d1d1f}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.meta{color:#555}.ok{color:#17692b}.bad{color:#b3261e}.warn{color:#8a5a00}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid #eee;
vertical-align:top}th{background:#f5f5f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#e8e8ed;height:.9em;min-width:12em;border-radius:2px}.bar>div{background:#4a6fa5;height:100%;
border-radius:2px}.bar.fail>div{background:#c0504d}.grid{display:grid;grid-template-columns:1fr 1fr;gap:2em}
code{font-size:.92em}ul.f{margin:.1em 0 .4em;padding-left:1.3em}.controls{margin:.6em 0}.controls>*{margin-right:1em}
.tags{word-break:break-all;max-width:24em}.scroll{overflow-x:auto}tr.detail td{border-bottom:1px solid #ddd;
padding-top:0}tbody tr:first-child td{border-bottom:none}
"""

_JS = """
(function(){
  var q=document.getElementById('q'),k=document.getElementById('kind'),f=document.getElementById('failing');
  function apply(){
    var t=q.value.toLowerCase(),n=0,rows=document.querySelectorAll('#artifacts tbody');
    for(var i=0;i<rows.length;i++){var r=rows[i];
      var show=(!t||r.textContent.toLowerCase().indexOf(t)>=0)&&(!k.value||r.getAttribute('data-kind')===k.value)
        &&(!f.checked||r.getAttribute('data-ok')==='false');
      r.hidden=!show;if(show)n++;}
    document.getElementById('shown').textContent=n;
  }
  q.addEventListener('input',apply);k.addEventListener('change',apply);f.addEventListener('change',apply);apply();
})();
"""


def default_spec_base() -> str:
    return spec_dir().as_uri() + "/"


def spec_href(link: str, spec_base: str) -> str:
    """The URL of a case's spec link (`spec/<file>.md#<anchor>`) under `spec_base`."""
    return spec_base.rstrip("/") + "/" + link.removeprefix("spec/")


def render(report: AuditReport, spec_base: str | None = None) -> str:
    base = spec_base or default_spec_base()
    c = report.counts()
    verdict = {0: ("ok", "Sound: no finding"), 1: ("bad", f"{c['failing']} artifact(s) failing"),
               2: ("warn", f"Incomplete: {c['errors']} error(s)")}[report.exit_code]
    s = report.settings
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>mdl audit: {_e(report.registry)}</title><style>{_CSS}</style></head><body>",
        f"<h1>mdl audit: {_e(report.registry)}</h1>",
        f'<p class="meta">{_e(" ".join(report.targets))} &middot; started {_e(report.started)} &middot; '
        f"{report.seconds:.1f} s &middot; {_e(s['profile'])} profile{', layers hashed' if s['deep'] else ''}"
        f"{', signatures verified with a key' if s['key'] else ''} &middot; {c['repositories']} repositories, "
        f"{c['tags']} tags, {c['artifacts']} artifacts ({c['checkedNow']} checked now, {c['fromState']} from the "
        f'state file)</p><p class="{verdict[0]}"><strong>{_e(verdict[1])}</strong></p>',
        '<div class="grid"><section><h2>By kind</h2>', _count_table(c["kinds"], c["artifacts"]),
        "</section><section><h2>By format (models)</h2>", _count_table(c["formats"], c["models"]),
        "</section></div>",
        "<h2>Failures by rule</h2>", _rules(report, base),
        '<div class="grid"><section><h2>Largest models</h2>', _largest(report),
        "</section><section><h2>Unsigned models</h2>", _unsigned(report), "</section></div>",
    ]
    if report.errors:
        parts += ["<h2>Not audited</h2><ul>"] + [f'<li class="warn">{_e(e)}</li>' for e in report.errors] + ["</ul>"]
    parts += ["<h2>Artifacts</h2>", _table(report, base), f"<script>{_JS}</script></body></html>"]
    return "\n".join(parts) + "\n"


def _e(text) -> str:
    return escape(str(text), quote=True)


def _bar(n: int, total: int, fail: bool = False) -> str:
    pct = 0 if not total else max(1, round(100 * n / total))
    return f'<div class="bar{" fail" if fail else ""}"><div style="width:{pct}%"></div></div>'


def _count_table(counts: dict, total: int) -> str:
    if not counts:
        return "<p>None.</p>"
    rows = "".join(f'<tr><td>{_e(k)}</td><td class="n">{n}</td><td>{_bar(n, total)}</td></tr>'
                   for k, n in counts.items())
    return f"<table><tr><th>name</th><th>count</th><th></th></tr>{rows}</table>"


def _rules(report: AuditReport, base: str) -> str:
    rules = report.failures_by_rule()
    if not rules:
        return '<p class="ok">No rule fails.</p>'
    top = rules[0][2]
    rows = []
    for rule, link, n in rules:
        name = f'<a href="{_e(spec_href(link, base))}">{_e(rule)}</a>' if link else _e(rule)
        rows.append(f'<tr><td>{name}</td><td class="n">{n}</td><td>{_bar(n, top, fail=True)}</td></tr>')
    return "<table><tr><th>rule (conformance case)</th><th>artifacts</th><th></th></tr>" + "".join(rows) + "</table>"


def _largest(report: AuditReport) -> str:
    models = sorted(report.models, key=lambda a: -a.size)[:LARGEST]
    if not models:
        return "<p>No model.</p>"
    rows = "".join(f'<tr><td>{_e(a.name)}</td><td>{_e(a.format or "")}</td>'
                   f'<td class="n">{_e(format_binary_size(a.size))}</td></tr>' for a in models)
    return f"<table><tr><th>model</th><th>format</th><th>size</th></tr>{rows}</table>"


def _unsigned(report: AuditReport) -> str:
    keyed = bool(report.settings.get("key"))
    models = [a for a in report.models if a.signature is not None
              and a.signature["status"] not in ((VERIFIED,) if keyed else (SIGNED, VERIFIED))]
    if not models:
        return '<p class="ok">Every model is signed' + (" with the key given." if keyed else ".") + "</p>"
    if not keyed:
        rows = "".join(f"<tr><td>{_e(a.name)}</td><td>{_e(a.signature['status'])}</td></tr>" for a in models)
        return f"<table><tr><th>model</th><th>signature</th></tr>{rows}</table>"
    rows = "".join(f"<tr><td>{_e(a.name)}</td><td>{_e(a.signature['status'])}</td>"
                   f"<td>{_e((a.signature.get('error') or {}).get('message', ''))}</td></tr>" for a in models)
    return f"<table><tr><th>model</th><th>signature</th><th>why</th></tr>{rows}</table>"


def _findings(a: Artifact, base: str) -> str:
    items = []
    for f in a.findings:
        where = f["path"] if f["document"] == "manifest" else f"{f['document']} {f['path']}"
        cases = " ".join(f'<a href="{_e(spec_href(c["spec"], base))}">{_e(c["id"])}</a>' for c in f["cases"])
        items.append(f"<li><code>[{_e(f['kind'])}] {_e(where)}</code>: {_e(f['message'])} {cases}</li>")
    if a.signature_failed:
        why = (a.signature.get("error") or {}).get("message", "")
        items.append(f"<li>signature {_e(a.signature['status'])}: {_e(why)}</li>")
    if a.error is not None:
        items.append(f'<li class="warn">not audited: {_e(a.error["message"])}</li>')
    return f'<ul class="f">{"".join(items)}</ul>' if items else ""


def _table(report: AuditReport, base: str) -> str:
    """One tbody per artifact (its row, then its findings across the table), filtered whole by the JS."""
    kinds = "".join(f'<option value="{k}">{k}</option>' for k in KINDS if any(a.kind == k for a in report.artifacts))
    head = ('<div class="controls"><input id="q" type="search" placeholder="filter" aria-label="filter">'
            f'<select id="kind" aria-label="kind"><option value="">every kind</option>{kinds}</select>'
            '<label><input id="failing" type="checkbox"> failing only</label>'
            f'<span><span id="shown">{len(report.artifacts)}</span> shown</span></div>')
    bodies = []
    for a in report.artifacts:
        status = "error" if a.error else "ok" if a.ok else "failing"
        css = {"ok": "ok", "failing": "bad", "error": "warn"}[status]
        sig = a.signature["status"] if a.signature else ""
        sig_css = "bad" if a.signature_failed else "warn" if sig == UNSIGNED else ""
        findings = _findings(a, base)
        detail = f'<tr class="detail"><td colspan="9">{findings}</td></tr>' if findings else ""
        bodies.append(
            f'<tbody data-kind="{_e(a.kind)}" data-ok="{"true" if a.ok else "false"}"><tr>'
            f'<td>{_e(a.repository)}</td><td class="tags">{_e(", ".join(a.tags))}</td>'
            f'<td><code title="{_e(a.digest)}">{_e(a.digest[7:19])}</code></td><td>{_e(a.kind)}</td>'
            f'<td>{_e(a.format or "")}</td><td class="n">{_e(format_binary_size(a.size))}</td>'
            f'<td class="{sig_css}">{_e(sig)}</td><td class="{css}">{status}</td>'
            f'<td>{_e(", ".join(a.parents and ["in index " + p[7:19] for p in a.parents]))}</td></tr>'
            f"{detail}</tbody>")
    return (head + '<div class="scroll"><table id="artifacts"><thead><tr><th>repository</th><th>tags</th>'
            "<th>digest</th><th>kind</th><th>format</th><th>size</th><th>signature</th><th>status</th><th>listed by</th>"
            "</tr></thead>" + "".join(bodies) + "</table></div>")
