"""tree-sitter helpers for the actions: definitions at a range, bodies, stubs, doc comments, errors.

Everything here is cheap (one parse, a walk up from the cursor) because listing runs on nearly
every cursor move.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import tree_sitter as ts

from lsp import syntax
from lsp.actions.languages import ActionLanguage

_STUB = re.compile(
    r"""^(?:
        pass
      | \.\.\.
      | raise\s+NotImplementedError\b.*
      | (?:todo|unimplemented)!\s*\(.*\)\s*;?
      | panic\(\s*".*(?:TODO|todo|not\s+implemented|unimplemented).*"\s*\)
      | throw\s+new\s+\w*(?:Error|Exception)\s*\(.*\)\s*;?
    )$""",
    re.VERBOSE | re.DOTALL,
)
_THROW_TODO = re.compile(r"TODO|todo|not\s+implemented|unimplemented|Unsupported", re.IGNORECASE)


def is_comment(node: ts.Node) -> bool:
    return "comment" in node.type


class Source:
    """A document's text with its UTF-8 bytes; maps between str offsets and byte offsets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = text.encode("utf-8")
        self._ascii = len(self.data) == len(text)

    def byte(self, char: int) -> int:
        return char if self._ascii else len(self.text[:char].encode("utf-8"))

    def char(self, byte: int) -> int:
        if self._ascii:
            return byte
        return len(self.data[:byte].decode("utf-8", errors="replace"))

    def node_text(self, node: ts.Node) -> str:
        return self.data[node.start_byte : node.end_byte].decode("utf-8", errors="replace")

    def start(self, node: ts.Node) -> int:
        return self.char(node.start_byte)

    def end(self, node: ts.Node) -> int:
        return self.char(node.end_byte)


@dataclass
class Parsed:
    lang: ActionLanguage
    source: Source
    tree: ts.Tree

    @property
    def text(self) -> str:
        return self.source.text

    @cached_property
    def errors(self) -> int:
        """ERROR and MISSING nodes, and (Python) blocks without a statement."""
        return syntax.error_count(self.tree) + len(self.empty_blocks(0, len(self.source.data)))

    def empty_blocks(self, start_byte: int, end_byte: int) -> list[ts.Node]:
        """Python blocks holding no statement: tree-sitter accepts `def f():` alone, Python not."""
        if self.lang.braces:
            return []
        found = []
        stack = [self.tree.root_node]
        while stack:
            node = stack.pop()
            if node.end_byte < start_byte or node.start_byte > end_byte:
                continue
            if node.type == "block" and all(is_comment(c) for c in node.named_children):
                found.append(node)
            stack.extend(node.named_children)
        return found

    def problems_in(self, start_byte: int, end_byte: int) -> list[ts.Node]:
        return errors_in(self.tree, start_byte, end_byte) + self.empty_blocks(start_byte, end_byte)


def parse(lang: ActionLanguage, text: str) -> Parsed | None:
    source = Source(text)
    parser = syntax.parser(lang.id)
    if parser is None:
        return None
    return Parsed(lang, source, parser.parse(source.data))


@dataclass(frozen=True)
class Definition:
    node: ts.Node
    """The function or class node itself."""
    outer: ts.Node
    """With its decorators / export / declaration: what a comment goes above."""
    kind: str
    """function | class"""
    name: str
    container: str = ""
    """The enclosing class of a method."""


def name_of(node: ts.Node) -> str:
    """The declared name (C declarators and JS variable declarators included), else ""."""
    name = node.child_by_field_name("name")
    if name is None and node.type in ("arrow_function", "function_expression"):
        parent = node.parent
        if parent is not None and parent.type == "variable_declarator":
            name = parent.child_by_field_name("name")
    if name is None:
        declarator = node.child_by_field_name("declarator")
        while declarator is not None and declarator.child_by_field_name("declarator") is not None:
            declarator = declarator.child_by_field_name("declarator")
        name = declarator
    if name is None or name.text is None:
        return ""
    text: str = name.text.decode("utf-8", errors="replace")
    return text if re.fullmatch(r"[\w$:~.]+", text) else ""


def _as_definition(lang: ActionLanguage, node: ts.Node) -> Definition | None:
    if node.type in lang.functions:
        kind = "function"
    elif node.type in lang.classes:
        kind = "class"
    else:
        return None
    name = name_of(node)
    if not name:
        return None
    outer = node
    while outer.parent is not None and outer.parent.type in lang.wrappers:
        outer = outer.parent
    container = ""
    up = outer.parent
    while up is not None:
        if up.type in lang.classes:
            container = name_of(up)
            break
        if up.type in lang.functions:
            break
        up = up.parent
    return Definition(node, outer, kind, name, container)


def definition_at(parsed: Parsed, start: int, end: int) -> Definition | None:
    """The innermost named function or class around [start, end]."""
    src = parsed.source
    node: ts.Node | None = parsed.tree.root_node.descendant_for_byte_range(
        src.byte(start), src.byte(max(start, end))
    )
    while node is not None:
        found = _as_definition(parsed.lang, node)
        if found is None and node.type in parsed.lang.wrappers:
            found = _wrapped(parsed.lang, node)  # the cursor is on `export`, `@decorator`, ...
        if found is not None:
            return found
        node = node.parent
    return None


def _wrapped(lang: ActionLanguage, node: ts.Node) -> Definition | None:
    """The definition inside a wrapper node (breadth first, a few levels down)."""
    level = list(node.named_children)
    for _ in range(3):
        for child in level:
            found = _as_definition(lang, child)
            if found is not None:
                return found
        level = [g for child in level for g in child.named_children]
    return None


def definition_exact(parsed: Parsed, start: int, end: int) -> Definition | None:
    """The definition spanning exactly [start, end] (as recorded at listing)."""
    found = definition_at(parsed, start, start)
    while found is not None:
        if parsed.source.start(found.node) == start and parsed.source.end(found.node) == end:
            return found
        parent = found.outer.parent
        found = None
        while parent is not None and found is None:
            found = _as_definition(parsed.lang, parent)
            parent = parent.parent
    return None


def body_of(node: ts.Node) -> ts.Node | None:
    return node.child_by_field_name("body")


def python_docstring(node: ts.Node) -> ts.Node | None:
    """The docstring statement of a Python function or class, else None."""
    body = body_of(node)
    if body is None:
        return None
    for child in body.named_children:
        if is_comment(child):
            continue
        if child.type == "expression_statement" and child.named_child_count == 1:
            first = child.named_children[0]
            if first.type in ("string", "concatenated_string"):
                return child
        return None
    return None


def has_doc_comment(parsed: Parsed, definition: Definition) -> bool:
    if parsed.lang.doc_style == "docstring":
        return python_docstring(definition.node) is not None
    prev = definition.outer.prev_sibling
    if prev is None or not is_comment(prev):
        return False
    gap = definition.outer.start_point.row - prev.end_point.row
    return gap <= 1


def body_on_own_line(definition: Definition) -> bool:
    """The body starts below the `:` (a docstring can go between them)."""
    body = body_of(definition.node)
    colon = body.prev_sibling if body is not None else None
    if body is None or colon is None:
        return False
    return body.start_point.row > colon.end_point.row


@dataclass(frozen=True)
class StubBody:
    start: int
    """Where the replacement starts (str offset)."""
    end: int
    braces: bool
    """The region is the inside of `{...}`."""


def stub_body(parsed: Parsed, definition: Definition) -> StubBody | None:
    """The region to replace when the body is a stub (pass, ..., todo!(), TODO, empty)."""
    if definition.kind != "function":
        return None
    node = definition.node
    body = body_of(node)
    if body is None:
        return None
    src = parsed.source
    if not parsed.lang.braces:
        children = list(body.named_children)
        doc = python_docstring(node)
        if doc is not None:
            children = children[children.index(doc) + 1 :] if doc in children else children
        statements = [c for c in children if not is_comment(c)]
        comments = [c for c in children if is_comment(c)]
        if len(statements) > 1:
            return None
        if statements and not _STUB.match(src.node_text(statements[0]).strip()):
            return None
        if not statements and not comments and doc is None:
            return None
        if doc is not None and not children:
            end = src.end(doc)
            return StubBody(end, end, braces=False)
        return StubBody(src.start(children[0]), src.end(body), braces=False)
    if body.type not in ("statement_block", "block", "compound_statement", "constructor_body"):
        return None
    inner = [c for c in body.named_children if c.type != "statement_list"]
    for c in body.named_children:
        if c.type == "statement_list":
            inner.extend(c.named_children)
    statements = [c for c in inner if not is_comment(c)]
    if len(statements) > 1:
        return None
    if statements:
        text = src.node_text(statements[0]).strip()
        if not _STUB.match(text):
            return None
        if text.startswith(("throw", "panic")) and not _THROW_TODO.search(text):
            return None
    return StubBody(src.start(body) + 1, src.end(body) - 1, braces=True)


def errors_in(tree: ts.Tree, start_byte: int, end_byte: int) -> list[ts.Node]:
    """ERROR and MISSING nodes overlapping [start_byte, end_byte]."""
    found: list[ts.Node] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.end_byte < start_byte or node.start_byte > end_byte:
            continue
        if node.is_error or node.is_missing:
            found.append(node)
            continue
        if node.has_error:
            stack.extend(node.children)
    return found


_IDENTIFIERS = frozenset(
    {"identifier", "type_identifier", "field_identifier", "property_identifier", "constant"}
)


def identifiers(parsed: Parsed, node: ts.Node, limit: int = 60) -> list[str]:
    """Names used inside `node`, in order of first use."""
    seen: dict[str, None] = {}
    stack = [node]
    while stack and len(seen) < limit:
        n = stack.pop()
        if n.type in _IDENTIFIERS and n.text is not None:
            seen.setdefault(n.text.decode("utf-8", errors="replace"), None)
        stack.extend(reversed(n.children))
    return list(seen)


# -- lines ---------------------------------------------------------------------------------------


def line_start(text: str, offset: int) -> int:
    return text.rfind("\n", 0, offset) + 1


def line_end(text: str, offset: int) -> int:
    end = text.find("\n", offset)
    return len(text) if end < 0 else end


def indent_at(text: str, offset: int) -> str:
    """The leading whitespace of the line holding `offset`."""
    start = line_start(text, offset)
    end = start
    while end < len(text) and text[end] in " \t":
        end += 1
    return text[start:end]


def line_number(text: str, offset: int) -> int:
    return text.count("\n", 0, offset)


def line_offset(text: str, line: int) -> int:
    """The offset where 0-based `line` starts (the end of the text past the last line)."""
    offset = 0
    for _ in range(line):
        nxt = text.find("\n", offset)
        if nxt < 0:
            return len(text)
        offset = nxt + 1
    return offset
