"""Repository context for a cursor: which definitions and snippets a prompt should carry.

Three sources, ranked on one scale and packed into a character budget:
definitions of identifiers near the cursor (and in the enclosing function), preferring the files
the current file imports; the top-level signatures of those imported modules; and windows of
recently opened or edited files that resemble the lines before the cursor (Jaccard over
identifier sets). The current file never contributes: the prompt has it already.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import tree_sitter as ts

from .languages import LanguageSpec
from .model import Definition, Snippet

WINDOW_BEFORE = 40
WINDOW_AFTER = 10
FUNCTION_MAX_LINES = 400
MAX_DEFINITIONS_PER_NAME = 2
MAX_MEMBERS = 12
MAX_MODULE_LINES = 12
SIMILAR_WINDOW = 16
SIMILAR_STRIDE = 8
SIMILAR_QUERY_LINES = 12
SIMILAR_MIN = 0.2
SIMILAR_MAX = 2
#: What one snippet costs beyond its text: the separator and path line the prompt adds.
SNIPPET_OVERHEAD = 16

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]+")
_KIND_WEIGHT = {
    "function": 1.0,
    "method": 0.9,
    "class": 1.0,
    "interface": 0.9,
    "type": 0.9,
    "enum": 0.8,
    "constant": 0.7,
    "variable": 0.5,
    "macro": 0.7,
    "module": 0.2,
}


@dataclass(slots=True)
class Candidate:
    path: str
    text: str
    score: float
    kind: str
    start_line: int = 0
    end_line: int = 0
    compact: str | None = None


def cursor_byte(text: str, offset: int) -> int:
    offset = max(0, min(offset, len(text)))
    return len(text[:offset].encode("utf-8"))


def identifiers_near(
    spec: LanguageSpec, tree: ts.Tree, source: bytes, byte: int
) -> dict[str, float]:
    """Identifiers around the cursor and in its enclosing function, weighted by nearness."""
    root = tree.root_node
    line = source.count(b"\n", 0, byte)
    start = byte
    for _ in range(WINDOW_BEFORE + 1):
        start = source.rfind(b"\n", 0, start)
        if start < 0:
            break
    start = start + 1
    end = byte
    for _ in range(WINDOW_AFTER + 1):
        end = source.find(b"\n", end + 1 if end < len(source) else end)
        if end < 0:
            end = len(source)
            break
    func = enclosing_function(spec, root, byte)
    fstart, fend = start, end
    if func is not None and func.end_point.row - func.start_point.row <= FUNCTION_MAX_LINES:
        fstart, fend = min(start, func.start_byte), max(end, func.end_byte)
    weights: dict[str, float] = {}
    cursor = ts.QueryCursor(spec.identifier_query)
    cursor.set_byte_range(fstart, fend)
    for nodes in cursor.captures(root).values():
        for node in nodes:
            data = node.text
            if not data or len(data) < 2:
                continue
            name = data.decode("utf-8", "replace")
            dist = abs(node.start_point.row - line)
            w = 1.0 / (1.0 + dist / 8.0)
            if not (start <= node.start_byte < end):
                w = min(w, 0.3)
            if w > weights.get(name, 0.0):
                weights[name] = w
    return weights


def enclosing_function(spec: LanguageSpec, root: ts.Node, byte: int) -> ts.Node | None:
    node: ts.Node | None = root.named_descendant_for_byte_range(byte, byte)
    while node is not None:
        if node.type in spec.function_types:
            return node
        node = node.parent
    return None


def word_before(text: str, offset: int) -> str:
    match = re.search(r"[A-Za-z_][A-Za-z0-9_]*$", text[max(0, offset - 80) : offset])
    return match.group(0) if match else ""


# -- rendering --------------------------------------------------------------------------------


def render_doc(spec: LanguageSpec, doc: str, indent: str = "") -> str:
    if not doc:
        return ""
    lines = doc.split("\n")
    if spec.elision == "python":
        joined = ("\n" + indent).join(lines)
        return f'{indent}"""{joined}"""\n'
    if spec.doc_prefix == "/**":
        if len(lines) == 1:
            return f"{indent}/** {lines[0]} */\n"
        inner = "".join(f"{indent} * {line}\n" for line in lines)
        return f"{indent}/**\n{inner}{indent} */\n"
    return "".join(f"{indent}{spec.doc_prefix} {line}\n" for line in lines)


def _has_body(d: Definition) -> bool:
    if d.kind in ("constant", "variable", "macro"):
        return False
    sig = d.signature.rstrip()
    return not sig.endswith((";", "...", "}", "="))


def elided(spec: LanguageSpec, d: Definition, *, first_line_only: bool = False) -> str:
    """The signature with its body replaced by `...` / `{ ... }`."""
    sig = d.signature
    if first_line_only and "\n" in sig:
        sig = sig.split("\n", 1)[0].rstrip() + " ..."
        return sig
    if not _has_body(d):
        return sig
    if spec.elision == "python":
        return sig + " ..." if sig.endswith(":") else sig
    return sig + " { ... }"


def render_definition(
    spec: LanguageSpec, d: Definition, members: Sequence[Definition]
) -> tuple[str, str]:
    """The full rendering of a definition for a prompt, and a compact fallback."""
    compact = elided(spec, d)
    if d.source is not None:
        return d.source, compact
    if spec.elision == "python":
        parts = [d.signature]
        doc = render_doc(spec, d.doc, "    ").rstrip("\n")
        if doc:
            parts.append(doc)
        if members:
            parts.extend("    " + elided(spec, m, first_line_only=True) for m in members)
        elif _has_body(d):
            parts.append("    ...")
        return "\n".join(parts), compact
    head = render_doc(spec, d.doc) + d.signature
    if members:
        inner = "".join("    " + elided(spec, m, first_line_only=True) + "\n" for m in members)
        return f"{head} {{\n{inner}}}", compact
    return render_doc(spec, d.doc) + compact, compact


def is_public_member(m: Definition) -> bool:
    return not m.name.startswith("_") or m.name == "__init__"


def module_summary(spec: LanguageSpec, defs: Iterable[Definition], skip: set[str]) -> str:
    lines = []
    for d in defs:
        if d.container is not None or d.name in skip or d.kind in ("module", "variable"):
            continue
        if d.name.startswith("_"):
            continue
        lines.append(elided(spec, d, first_line_only=True))
        if len(lines) >= MAX_MODULE_LINES:
            break
    return "\n".join(lines)


# -- ranking ----------------------------------------------------------------------------------


def score_definition(
    d: Definition,
    weight: float,
    count: int,
    *,
    imported: set[str],
    named_from: set[str],
    here_dir: str,
) -> float:
    """Nearness x kind x how directly the current file reaches the definition, divided by how
    ambiguous the name is across the workspace (not when an import points at it)."""
    if d.path in named_from:
        affinity, count = 4.0, 1
    elif d.path in imported:
        affinity, count = 3.0, 1
    elif posixpath.dirname(d.path) == here_dir:
        affinity = 1.5
    else:
        affinity = 1.0
    return weight * _KIND_WEIGHT.get(d.kind, 0.5) * affinity / math.sqrt(max(1, count))


# -- similar windows --------------------------------------------------------------------------


def tokens(text: str) -> set[str]:
    return set(_TOKEN.findall(text))


def windows(text: str) -> list[tuple[int, str, frozenset[str]]]:
    lines = text.split("\n")
    out = []
    for start in range(0, max(1, len(lines) - SIMILAR_WINDOW // 2), SIMILAR_STRIDE):
        chunk = "\n".join(lines[start : start + SIMILAR_WINDOW]).strip("\n")
        toks = frozenset(tokens(chunk))
        if len(toks) >= 3:
            out.append((start, chunk, toks))
    return out


def similar(
    query: set[str],
    docs: Iterable[tuple[str, list[tuple[int, str, frozenset[str]]]]],
) -> list[Candidate]:
    if len(query) < 3:
        return []
    found: list[Candidate] = []
    for path, wins in docs:
        for start, chunk, toks in wins:
            union = len(query | toks)
            score = len(query & toks) / union if union else 0.0
            if score >= SIMILAR_MIN:
                end = start + chunk.count("\n")
                found.append(Candidate(path, chunk, score, "similar", start, end))
    found.sort(key=lambda c: (-c.score, c.path, c.start_line))
    chosen: list[Candidate] = []
    for cand in found:
        if any(
            c.path == cand.path and c.start_line < cand.end_line and cand.start_line < c.end_line
            for c in chosen
        ):
            continue
        chosen.append(cand)
        if len(chosen) >= SIMILAR_MAX:
            break
    return chosen


# -- packing ----------------------------------------------------------------------------------


def pack(candidates: Iterable[Candidate], budget_chars: int) -> list[Snippet]:
    """Best first, each whole or compact, skipping what does not fit or is already shown."""
    ordered = sorted(candidates, key=lambda c: (-c.score, c.path, c.start_line, c.kind))
    left = budget_chars
    out: list[Snippet] = []
    shown: list[tuple[str, int, int]] = []
    texts: set[tuple[str, str]] = set()
    for cand in ordered:
        ranged = cand.kind != "module"
        if ranged and any(
            p == cand.path and s <= cand.start_line and cand.end_line <= e for p, s, e in shown
        ):
            continue
        for text, whole in ((cand.text, True), (cand.compact, False)):
            if not text or (cand.path, text) in texts:
                continue
            cost = len(text) + len(cand.path) + SNIPPET_OVERHEAD
            if cost <= left:
                left -= cost
                out.append(
                    Snippet(cand.path, text, round(cand.score, 4), cand.kind, cand.start_line)
                )
                texts.add((cand.path, text))
                if ranged and whole:
                    shown.append((cand.path, cand.start_line, cand.end_line))
                break
        if left < SNIPPET_OVERHEAD + 20:
            break
    return out
