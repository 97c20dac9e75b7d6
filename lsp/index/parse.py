"""Parse one file with tree-sitter and read its definitions, references and imports.

Everything returned is plain data (`FileSymbols`); trees stay with the caller.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable

import tree_sitter as ts

from .languages import LanguageSpec
from .model import CONTAINER_KINDS, KINDS, Definition, FileSymbols, ImportSpec, Kind

#: A definition this small is kept whole (`Definition.source`).
SMALL_LINES = 15
SMALL_CHARS = 800
SIGNATURE_LINES = 8
SIGNATURE_CHARS = 400
DOC_LINES = 3
DOC_CHARS = 300

_PRIORITY = {kind: i for i, kind in enumerate(KINDS)}
_IGNORABLE = frozenset(
    {
        "decorator",
        "attribute_item",
        "modifiers",
        "visibility_modifier",
        "comment",
        "line_comment",
        "block_comment",
    }
)
_local = threading.local()


def parser_for(spec: LanguageSpec) -> ts.Parser:
    """A parser per thread and language: tree-sitter parsers must not be shared across threads."""
    parsers: dict[str, ts.Parser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = {}
        _local.parsers = parsers
    parser = parsers.get(spec.name)
    if parser is None:
        parser = ts.Parser(spec.language)
        parsers[spec.name] = parser
    return parser


def parse(spec: LanguageSpec, source: bytes, old_tree: ts.Tree | None = None) -> ts.Tree:
    parser = parser_for(spec)
    if old_tree is None:
        return parser.parse(source)
    return parser.parse(source, old_tree)


def extract(spec: LanguageSpec, tree: ts.Tree, source: bytes, path: str) -> FileSymbols:
    """Definitions, references and imports of one parsed file (one pass of the tags query)."""
    definitions, references = _tags(spec, tree, source, path)
    return FileSymbols(
        language=spec.name,
        definitions=tuple(definitions),
        references=frozenset(references),
        imports=tuple(read_imports(spec, tree.root_node, source)),
    )


# -- definitions ------------------------------------------------------------------------------


class _Raw:
    __slots__ = ("container", "end", "kind", "name", "name_node", "node", "outer", "start")

    def __init__(self, name: str, kind: Kind, node: ts.Node, name_node: ts.Node, outer: ts.Node):
        self.name = name
        self.kind: Kind = kind
        self.node = node
        self.name_node = name_node
        self.outer = outer
        self.start = outer.start_byte
        self.end = outer.end_byte
        self.container: str | None = None


def _text(node: ts.Node) -> str:
    data = node.text
    return data.decode("utf-8", "replace") if data else ""


_KIND_OF: dict[str, Kind] = {kind: kind for kind in KINDS}


def _tags(
    spec: LanguageSpec, tree: ts.Tree, source: bytes, path: str
) -> tuple[list[Definition], set[str]]:
    found: dict[int, _Raw] = {}
    scopes: list[tuple[int, int, str]] = []
    references: set[str] = set()
    cursor = ts.QueryCursor(spec.tags_query)
    for _, caps in cursor.matches(tree.root_node):
        names = caps.get("name")
        if not names:
            continue
        name_node = names[0]
        for key, nodes in caps.items():
            if key.startswith("reference."):
                references.add(_text(name_node))
                break
            if key == "scope":
                scopes.append((nodes[0].start_byte, nodes[0].end_byte, _type_name(name_node)))
                break
            kind = (
                _KIND_OF.get(key[len("definition.") :]) if key.startswith("definition.") else None
            )
            if kind is None:
                continue
            prev = found.get(name_node.start_byte)
            if prev is not None and _PRIORITY[prev.kind] <= _PRIORITY[kind]:
                break
            node = nodes[0]
            raw = _Raw(_text(name_node), kind, node, name_node, _climb(spec, node))
            if _refine(spec, raw):
                found[name_node.start_byte] = raw
            break
    raws = sorted(found.values(), key=lambda r: (r.start, -r.end))
    _assign_containers(spec, raws, scopes)
    return [_build(spec, raw, source, path) for raw in raws], references


def _type_name(node: ts.Node) -> str:
    return re.split(r"[<\s(]", _text(node), maxsplit=1)[0].split("::")[-1]


def _climb(spec: LanguageSpec, node: ts.Node) -> ts.Node:
    outer = node
    while True:
        parent = outer.parent
        if parent is None:
            return outer
        if parent.type in spec.wrap_always:
            outer = parent
            continue
        if parent.type in spec.wrap_single:
            others = [
                c
                for c in parent.named_children
                if c.id != outer.id
                and c.type not in _IGNORABLE
                and c.type not in spec.comment_types
            ]
            if not others:
                outer = parent
                continue
        return outer


def _refine(spec: LanguageSpec, raw: _Raw) -> bool:
    """Per-language corrections of the query's kind; False drops the definition."""
    node = raw.node
    if spec.family == "python" and raw.kind == "constant" and not raw.name.isupper():
        raw.kind = "variable"
    elif spec.family == "js" and raw.kind in ("constant", "variable"):
        value = node.child_by_field_name("value")
        if value is not None and value.type == "call_expression":
            fn = value.child_by_field_name("function")
            if fn is not None and fn.type in ("identifier", "import") and _text(fn) == "require":
                return False
        decl = node.parent
        if decl is not None and decl.child_count and decl.children[0].type == "let":
            raw.kind = "variable"
    elif spec.family == "go" and raw.kind == "type":
        kind_node = node.child_by_field_name("type")
        if kind_node is not None and kind_node.type == "interface_type":
            raw.kind = "interface"
    return True


def _hint_container(spec: LanguageSpec, raw: _Raw) -> str | None:
    node = raw.node
    if spec.family == "go" and node.type == "method_declaration":
        receiver = node.child_by_field_name("receiver")
        if receiver is not None:
            for child in _walk_named(receiver, 4):
                if child.type == "type_identifier":
                    return _text(child)
    if spec.family == "c":
        decl = node.child_by_field_name("declarator")
        if decl is not None and decl.type == "qualified_identifier":
            scope = decl.child_by_field_name("scope")
            if scope is not None:
                return _type_name(scope)
    return None


def _assign_containers(
    spec: LanguageSpec, raws: list[_Raw], scopes: list[tuple[int, int, str]]
) -> None:
    items: list[tuple[int, int, int, _Raw | str]] = [(r.start, -r.end, 1, r) for r in raws]
    items.extend((start, -end, 0, name) for start, end, name in scopes)
    items.sort(key=lambda item: (item[0], item[1], item[2]))
    stack: list[tuple[int, str]] = []
    for start, neg_end, _, item in items:
        while stack and stack[-1][0] <= start:
            stack.pop()
        if isinstance(item, str):
            stack.append((-neg_end, item))
            continue
        hint = _hint_container(spec, item)
        item.container = hint if hint is not None else (stack[-1][1] if stack else None)
        if item.container is not None and item.kind == "function":
            item.kind = "method"
        if item.kind in CONTAINER_KINDS:
            stack.append((-neg_end, item.name))


def _walk_named(node: ts.Node, depth: int) -> Iterable[ts.Node]:
    queue: deque[tuple[ts.Node, int]] = deque((c, 1) for c in node.named_children)
    while queue:
        child, d = queue.popleft()
        yield child
        if d < depth:
            queue.extend((c, d + 1) for c in child.named_children)


#: Definitions shown whole up to the signature cap: their "body" is the definition itself.
_NO_BODY = frozenset(
    {"type_alias_declaration", "type_alias", "type_item", "type_definition", "alias_declaration"}
)


def _find_body(spec: LanguageSpec, raw: _Raw) -> ts.Node | None:
    if raw.kind in ("constant", "variable", "macro") or raw.node.type in _NO_BODY:
        return None
    for start, depth in ((raw.node, 3), (raw.outer, 2)):
        if start.type in spec.body_types:
            continue
        for child in _walk_named(start, depth):
            if child.type in spec.body_types:
                return child
        if raw.outer.id == raw.node.id:
            break
    return None


def _col16(source: bytes, byte: int, col: int) -> int:
    prefix = source[byte - col : byte]
    if prefix.isascii():
        return col
    return len(prefix.decode("utf-8", "replace").encode("utf-16-le")) // 2


def _dedent_tail(text: str, col: int) -> str:
    lines = text.split("\n")
    if len(lines) == 1 or col == 0:
        return text
    out = [lines[0]]
    for line in lines[1:]:
        strip = min(col, len(line) - len(line.lstrip(" \t")))
        out.append(line[strip:])
    return "\n".join(out)


def _cap(text: str, max_lines: int, max_chars: int) -> str:
    lines = [line.rstrip() for line in text.split("\n")]
    capped = len(lines) > max_lines
    lines = lines[:max_lines]
    out = "\n".join(lines)
    if len(out) > max_chars:
        out, capped = out[:max_chars].rstrip(), True
    return out + " ..." if capped else out


def _build(spec: LanguageSpec, raw: _Raw, source: bytes, path: str) -> Definition:
    outer, name_node = raw.outer, raw.name_node
    col = outer.start_point.column
    doc, doc_start = _doc(spec, raw, source)
    body = _find_body(spec, raw)
    if body is not None and body.start_byte > outer.start_byte:
        head = source[outer.start_byte : body.start_byte].decode("utf-8", "replace").rstrip()
    else:
        head = _text(outer).rstrip()
    signature = _cap(_dedent_tail(head, col), SIGNATURE_LINES, SIGNATURE_CHARS)
    whole: str | None = None
    if outer.end_point.row - doc_start.row < SMALL_LINES:
        start = doc_start.byte
        if start < outer.start_byte:
            start -= doc_start.column
        text = source[start : outer.end_byte].decode("utf-8", "replace").rstrip()
        if len(text) <= SMALL_CHARS:
            whole = _dedent_tail(text, 0 if start < outer.start_byte else col)
            if start < outer.start_byte:
                whole = _dedent_all(whole)
    sp, np, nep = outer.start_point, name_node.start_point, name_node.end_point
    end_line, end_byte, end_col = _end(source, outer)
    return Definition(
        name=raw.name,
        kind=raw.kind,
        path=path,
        start_line=sp.row,
        start_col=_col16(source, outer.start_byte, sp.column),
        end_line=end_line,
        end_col=_col16(source, end_byte, end_col),
        name_line=np.row,
        name_col=_col16(source, name_node.start_byte, np.column),
        name_end_col=_col16(source, name_node.end_byte, nep.column)
        if nep.row == np.row
        else nep.column,
        container=raw.container,
        signature=signature,
        doc=doc,
        source=whole,
    )


def _end(source: bytes, node: ts.Node) -> tuple[int, int, int]:
    """Where a node ends, less the line break some grammars include (`#define`)."""
    row, col = node.end_point
    end = node.end_byte
    start = node.start_byte
    while end > start and source[end - 1 : end] in (b"\n", b"\r"):
        if source[end - 1 : end] == b"\n":
            row -= 1
        end -= 1
    if end != node.end_byte:
        col = end - (source.rfind(b"\n", 0, end) + 1)
    return row, end, col


def _dedent_all(text: str) -> str:
    lines = text.split("\n")
    widths = [len(line) - len(line.lstrip(" \t")) for line in lines if line.strip()]
    strip = min(widths) if widths else 0
    return "\n".join(line[strip:] for line in lines)


class _Pos:
    __slots__ = ("byte", "column", "row")

    def __init__(self, byte: int, row: int, column: int):
        self.byte, self.row, self.column = byte, row, column


def _doc(spec: LanguageSpec, raw: _Raw, source: bytes) -> tuple[str, _Pos]:
    """The cleaned first lines of the doc, and where the shown text of the definition starts."""
    outer = raw.outer
    here = _Pos(outer.start_byte, outer.start_point.row, outer.start_point.column)
    if spec.doc_style == "docstring":
        body = raw.node.child_by_field_name("body")
        if body is not None and body.named_child_count:
            first = body.named_children[0]
            if first.type == "expression_statement" and first.named_child_count:
                string = first.named_children[0]
                if string.type == "string":
                    return _clean_docstring(_text(string)), here
        return "", here
    comments: list[ts.Node] = []
    expected = outer.start_point.row
    sib = outer.prev_named_sibling
    while sib is not None and len(comments) < 12:
        if sib.type in spec.doc_skip_types:
            expected = sib.start_point.row
        elif sib.type in spec.comment_types and sib.end_point.row >= expected - 1:
            line_start = sib.start_byte - sib.start_point.column
            if source[line_start : sib.start_byte].strip():
                break
            comments.append(sib)
            expected = sib.start_point.row
        else:
            break
        sib = sib.prev_named_sibling
    if not comments:
        return "", here
    comments.reverse()
    first = comments[0]
    start = _Pos(first.start_byte, first.start_point.row, first.start_point.column)
    return _clean_comment("\n".join(_text(c) for c in comments)), start


_COMMENT_MARK = re.compile(r"^\s*(?:/\*+!?|\*+/|\*+(?!/)|///?!?|//|#)\s?")


def _clean_comment(text: str) -> str:
    lines: list[str] = []
    for line in text.split("\n"):
        line = _COMMENT_MARK.sub("", line, count=1)
        line = re.sub(r"\s*\*+/\s*$", "", line).rstrip()
        if line.strip():
            lines.append(line.strip())
        elif lines:
            break
    return _cap("\n".join(lines[:DOC_LINES]), DOC_LINES, DOC_CHARS) if lines else ""


def _clean_docstring(text: str) -> str:
    match = re.match(r'^[rRuUbBfF]*("""|\'\'\'|"|\')(.*)\1\s*$', text, re.S)
    inner = match.group(2) if match else text
    lines: list[str] = []
    for line in inspect.cleandoc(inner).split("\n"):
        if not line.strip():
            if lines:
                break
            continue
        lines.append(line.rstrip())
    return _cap("\n".join(lines[:DOC_LINES]), DOC_LINES, DOC_CHARS)


# -- imports ----------------------------------------------------------------------------------


def read_imports(spec: LanguageSpec, root: ts.Node, source: bytes) -> list[ImportSpec]:
    reader = _IMPORT_READERS.get(spec.family)
    if reader is None:
        return []
    cursor = ts.QueryCursor(spec.imports_query)
    out: list[ImportSpec] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for _, caps in cursor.matches(root):
        nodes = caps.get("import")
        if not nodes:
            continue
        for spec_ in reader(nodes[0], caps):
            key = (spec_.module, spec_.names)
            if spec_.module and key not in seen:
                seen.add(key)
                out.append(spec_)
    return out


_Caps = dict[str, list[ts.Node]]


def _string_value(node: ts.Node) -> str:
    return _text(node).strip().strip("\"'`")


def _py_imports(node: ts.Node, caps: _Caps) -> Iterable[ImportSpec]:
    line = node.start_point.row
    if node.type == "import_statement":
        for child in node.children_by_field_name("name"):
            target = child.child_by_field_name("name") if child.type == "aliased_import" else child
            if target is not None:
                yield ImportSpec(_text(target), (), line)
        return
    module = node.child_by_field_name("module_name")
    if module is None:
        return
    names: list[str] = []
    for child in node.children_by_field_name("name"):
        target = child.child_by_field_name("name") if child.type == "aliased_import" else child
        if target is not None:
            names.append(_text(target))
    if any(c.type == "wildcard_import" for c in node.named_children):
        names.append("*")
    yield ImportSpec(re.sub(r"\s+", "", _text(module)), tuple(names), line)


def _js_imports(node: ts.Node, caps: _Caps) -> Iterable[ImportSpec]:
    sources = caps.get("source")
    if not sources:
        return
    names: list[str] = []
    clause_types = ("import_clause", "export_clause")
    for child in node.named_children:
        if child.type not in clause_types:
            continue
        for part in _walk_named(child, 3):
            if part.type in ("import_specifier", "export_specifier"):
                name = part.child_by_field_name("name")
                if name is not None:
                    names.append(_text(name))
            elif (
                part.type == "identifier"
                and part.parent is not None
                and part.parent.type == "import_clause"
            ):
                names.append(_text(part))
    yield ImportSpec(_string_value(sources[0]), tuple(names), node.start_point.row)


def _go_imports(node: ts.Node, caps: _Caps) -> Iterable[ImportSpec]:
    sources = caps.get("source")
    if sources:
        path = _string_value(sources[0])
        alias = node.child_by_field_name("name")
        name = _text(alias) if alias is not None else path.rsplit("/", 1)[-1]
        yield ImportSpec(path, (name,), node.start_point.row)


def _rust_imports(node: ts.Node, caps: _Caps) -> Iterable[ImportSpec]:
    line = node.start_point.row
    if node.type == "mod_item":
        names = caps.get("name")
        if names:
            yield ImportSpec("mod:" + _text(names[0]), (_text(names[0]),), line)
        return
    sources = caps.get("source")
    if sources:
        for path in expand_rust_use(_text(sources[0])):
            yield ImportSpec(path, (path.rsplit("::", 1)[-1],), line)


def expand_rust_use(text: str) -> list[str]:
    """`a::{b, c::{d as e, self}}` -> `a::b`, `a::c::d`, `a::c`."""
    text = re.sub(r"\s+as\s+\w+", "", text)
    text = re.sub(r"\s+", "", text)

    def split_top(body: str) -> list[str]:
        parts, depth, cur = [], 0, ""
        for ch in body:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        return parts

    def expand(prefix: str, s: str) -> list[str]:
        i = s.find("{")
        if i < 0:
            if s == "self":
                return [prefix.rstrip(":")]
            return [prefix + s]
        j = s.rfind("}")
        head, body = s[:i], s[i + 1 : j if j > i else len(s)]
        out: list[str] = []
        for part in split_top(body):
            out.extend(expand(prefix + head, part))
        return out

    return [p for p in expand("", text) if p]


def _java_imports(node: ts.Node, caps: _Caps) -> Iterable[ImportSpec]:
    text = re.sub(r"\s+", " ", _text(node)).strip().rstrip(";").strip()
    text = re.sub(r"^import\s+(static\s+)?", "", text).replace(" ", "")
    if text:
        yield ImportSpec(text, (text.rsplit(".", 1)[-1],), node.start_point.row)


def _c_imports(node: ts.Node, caps: _Caps) -> Iterable[ImportSpec]:
    sources = caps.get("source")
    if sources:
        raw = _text(sources[0]).strip()
        if raw.startswith("<"):
            yield ImportSpec(raw, (), node.start_point.row)
        else:
            yield ImportSpec(raw.strip('"'), (), node.start_point.row)


_IMPORT_READERS: dict[str, Callable[[ts.Node, _Caps], Iterable[ImportSpec]]] = {
    "python": _py_imports,
    "js": _js_imports,
    "go": _go_imports,
    "rust": _rust_imports,
    "java": _java_imports,
    "c": _c_imports,
}
