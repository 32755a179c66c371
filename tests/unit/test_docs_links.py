"""The user-facing documents link only to what a user has, and docs/api.md lists every metric.

Documents: README.md, every Markdown file under docs/, bench/README.md and bench/RESULTS.md.
Every link in them (``[text](target)``, ``![alt](target)``, ``[ref]: target``, ``href``/``src``)
that is not an http(s) or mailto URL must be a relative path to a file or directory of this
repository that exists and is not ignored by git, and a ``#fragment`` must name a heading of the
target. Nothing may point at the founders' internal design outside the repository
(``../shared``, ``DESIGN.md``), linked or not.

The metric names, types and labels come from the code: :class:`gateway.telemetry.metrics.Metrics`
built from a small routes file, so a metric added there fails this test until docs/api.md's
metrics table lists it.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest
from prometheus_client.metrics import MetricWrapperBase

from gateway.config import load_config
from gateway.telemetry.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
API_DOC = REPO / "docs" / "api.md"


def documents() -> list[Path]:
    """The documents users read, in the repository."""
    return [
        REPO / "README.md",
        *sorted((REPO / "docs").rglob("*.md")),
        REPO / "bench" / "README.md",
        REPO / "bench" / "RESULTS.md",
    ]


_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
_HTML_LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""")
_HTML_ANCHOR = re.compile(r"""<a\s+(?:name|id)\s*=\s*["']([^"']+)["']""")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_WEB = ("http://", "https://", "mailto:")
_FORBIDDEN = ("../shared", "DESIGN.md")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans removed."""
    out = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        found = _FENCE.match(line)
        if found:
            if fence is None:
                fence = found.group(1)
            elif found.group(1) == fence:
                fence = None
            continue
        if fence is None:
            out.append((number, _CODE_SPAN.sub("", line)))
    return out


def links(text: str) -> list[tuple[int, str]]:
    """Every link target in a Markdown text, with its line number."""
    found = []
    for number, line in prose_lines(text):
        for pattern in (_INLINE_LINK, _REFERENCE, _HTML_LINK):
            found += [(number, m.group(1)) for m in pattern.finditer(line)]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@functools.cache
def anchors(path: Path) -> frozenset[str]:
    """The anchors a Markdown file defines: its headings' slugs (deduplicated as GitHub does)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        heading = _HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(m.group(1) for m in _HTML_ANCHOR.finditer(line))
    return frozenset(found)


@functools.cache
def repository_paths() -> frozenset[Path] | None:
    """Files and directories git tracks or would track (not ignored); None without git."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        return None
    listed = subprocess.run(
        [git, "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    paths: set[Path] = set()
    for name in filter(None, listed.split("\0")):
        path = REPO / name
        paths.add(path)
        paths.update(p for p in path.parents if p.is_relative_to(REPO))
    return frozenset(paths)


def problems_of(doc: Path, text: str | None = None) -> list[str]:
    """Every link of ``doc`` (or of ``text`` read as if it were ``doc``) that leaves the
    repository or leads nowhere, and every mention of the internal design."""
    text = doc.read_text(encoding="utf-8") if text is None else text
    where = doc.relative_to(REPO)
    problems = [
        f"{where}:{number}: mentions {word!r}, which users do not have; link docs/ instead"
        for number, line in enumerate(text.splitlines(), start=1)
        for word in _FORBIDDEN
        if word in line
    ]
    known = repository_paths()
    for number, target in links(text):
        at = f"{where}:{number}: ({target})"
        if target.startswith(_WEB):
            continue
        if _SCHEME.match(target):
            problems.append(f"{at}: not an http(s) URL nor a path in the repository")
            continue
        path_part, _, fragment = target.partition("#")
        path_part = unquote(path_part)
        if path_part.startswith("/"):
            problems.append(f"{at}: an absolute path; link relative to the document")
            continue
        resolved = (doc.parent / path_part).resolve() if path_part else doc
        if not resolved.is_relative_to(REPO):
            problems.append(f"{at}: outside the repository")
            continue
        if not resolved.exists():
            problems.append(f"{at}: no such file in the repository")
            continue
        if known is not None and resolved not in known:
            problems.append(f"{at}: ignored by git, so users do not have it")
            continue
        if fragment and resolved.suffix == ".md" and unquote(fragment) not in anchors(resolved):
            problems.append(f"{at}: no heading '#{fragment}' in {resolved.relative_to(REPO)}")
    return problems


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_document_links_stay_inside_the_repository_and_resolve(doc: Path) -> None:
    """Every link of the document is a web URL or an existing, tracked repository path."""
    assert problems_of(doc) == []


def test_the_documents_include_the_new_docs() -> None:
    """The set checked above covers the README, docs/ and the bench's documents."""
    names = {str(p.relative_to(REPO)) for p in documents()}
    assert {"README.md", "docs/concepts.md", "docs/api.md", "docs/deployment.md"} <= names
    assert {"bench/README.md", "bench/RESULTS.md"} <= names


def test_the_link_checker_catches_what_it_must() -> None:
    """Links outside the repository, to missing files, ignored files or headings, and any
    mention of ../shared or DESIGN.md fail; web URLs, existing files and headings pass."""
    doc = REPO / "docs" / "concepts.md"
    text = (
        "[a](../../shared/notes.md) [b](/etc/passwd) [c](missing.md) [d](api.md#no-such-heading)\n"
        "[e](api.md#metrics) [f](https://example.com/x) [g](#words) `[h](nowhere.md)`\n"
        "```\n[i](nowhere.md)\n```\n[j]: ../../outside.md\n"
        "[k](../bench/.work/x.md) [l](../README.md#configuration) see DESIGN.md section 2\n"
    )
    assert [target for _, target in links(text)] == [
        "../../shared/notes.md",
        "/etc/passwd",
        "missing.md",
        "api.md#no-such-heading",
        "api.md#metrics",
        "https://example.com/x",
        "#words",
        "../../outside.md",
        "../bench/.work/x.md",
        "../README.md#configuration",
    ]
    problems = "\n".join(problems_of(doc, text))
    for expected in (
        "docs/concepts.md:1: mentions '../shared'",
        "(../../shared/notes.md): outside the repository",
        "(/etc/passwd): an absolute path",
        "(missing.md): no such file",
        "(api.md#no-such-heading): no heading",
        "(../../outside.md): outside the repository",
        "(../bench/.work/x.md): ",
        "docs/concepts.md:7: mentions 'DESIGN.md'",
    ):
        assert expected in problems
    for fine in ("api.md#metrics", "example.com", "#words", "nowhere.md", "#configuration"):
        assert fine not in problems
    assert slug("What `x-gateway-decision` says") == "what-x-gateway-decision-says"
    assert slug("Control plane: /admin") == "control-plane-admin"


# -- metrics ----------------------------------------------------------------------------------

_ROUTES = """
upstreams:
  sim: {base_url: "http://127.0.0.1:9/v1"}
routes:
  triage:
    contract: {labels: [billing, technical]}
    variants:
      tuned: {upstream: sim, model: ft-model, system_prompt: "Answer with one label."}
      prompted: {upstream: sim, model: base-model}
    candidate: tuned
    fallback: prompted
    flag: {weight: 50000}
    guard: {}
    shadow: {share: 0.5}
passthrough:
  sim: [raw-model]
prices:
  base-model: {input: 0.15, output: 0.6}
"""


def registered_metrics(tmp_path: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Exposed metric name -> (type, label names), from the code."""
    routes = tmp_path / "gateway.yaml"
    routes.write_text(_ROUTES)
    metrics = Metrics(load_config(routes))
    labels = {
        next(iter(wrapper.describe())).name: tuple(wrapper._labelnames)
        for wrapper in vars(metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
    }
    out = {}
    for family in metrics.registry.collect():
        exposed = family.name + "_total" if family.type == "counter" else family.name
        out[exposed] = (family.type, labels.get(family.name, ()))
    return out


def documented_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Rows of docs/api.md's metrics table: name -> (type, label names)."""
    rows = {}
    for line in API_DOC.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`(gateway|gen_ai)_\w+`", cells[0]):
            names = tuple(label.strip() for label in cells[2].split(",") if label.strip())
            rows[cells[0].strip("`")] = (cells[1], names)
    return rows


def test_every_registered_metric_is_in_the_api_doc(tmp_path: Path) -> None:
    """Each metric the gateway exports has a row in docs/api.md with its type and labels."""
    registered = registered_metrics(tmp_path)
    assert len(registered) > 10  # the registry was read, not an empty one
    documented = documented_metrics()
    missing = sorted(set(registered) - set(documented))
    assert missing == [], f"add these metrics to docs/api.md's metrics table: {missing}"
    wrong = {
        name: {"code": registered[name], "docs/api.md": documented[name]}
        for name in registered
        if (registered[name][0], set(registered[name][1]))
        != (documented[name][0], set(documented[name][1]))
    }
    assert wrong == {}, "docs/api.md's type or labels differ from the code"


def test_the_api_doc_lists_no_metric_the_code_lacks(tmp_path: Path) -> None:
    """A renamed or removed metric leaves no stale row in docs/api.md."""
    stale = sorted(set(documented_metrics()) - set(registered_metrics(tmp_path)))
    assert stale == [], f"docs/api.md lists metrics the code does not export: {stale}"
