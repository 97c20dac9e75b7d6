"""Which actions fit a range: read from the tree-sitter tree alone, never from the model."""

from __future__ import annotations

from collections.abc import Sequence

from lsp.actions import testfiles
from lsp.actions import tree as T
from lsp.actions.model import ActionKind, Diagnostic, Document, Offer, Target
from lsp.actions.prompts import PromptBook, fill

MAX_FIX_LINES = 40
"""A diagnostic inside a longer definition is fixed in a window of lines around it."""
FIX_WINDOW = 4


def list_offers(
    doc: Document,
    parsed: T.Parsed,
    start: int,
    end: int,
    diagnostics: Sequence[Diagnostic],
    prompts: PromptBook,
) -> list[Offer]:
    lang, text, src = parsed.lang, parsed.text, parsed.source
    start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
    start, end = min(start, end), max(start, end)
    offers: list[Offer] = []

    def title(kind: ActionKind, key: str = "title", **values: str) -> str:
        prompt = prompts.get(kind, lang)
        template = prompt.extra.get(key, prompt.title) if key != "title" else prompt.title
        return fill(template, values)

    for diag in diagnostics:
        region = _fix_region(parsed, diag)
        line = T.line_number(text, max(0, min(diag.start, len(text))))
        message = diag.message.strip()
        short = message.split("\n")[0]
        short = short if len(short) <= 60 else short[:59] + "…"
        offers.append(
            Offer(
                title(ActionKind.FIX, message_short=short, line_number=str(line + 1)),
                Target(
                    ActionKind.FIX,
                    region[0],
                    region[1],
                    version=doc.version,
                    message=message,
                    line=line,
                ),
            )
        )

    definition = T.definition_at(parsed, start, end)
    if definition is not None:
        node_start, node_end = src.start(definition.node), src.end(definition.node)
        name = definition.name

        def on_definition(kind: ActionKind) -> Offer:
            return Offer(
                title(kind, name=name),
                Target(kind, node_start, node_end, name=name, version=doc.version),
            )

        is_function = definition.kind == "function"
        if is_function and T.stub_body(parsed, definition) is not None:
            offers.append(on_definition(ActionKind.IMPLEMENT))
        if _can_document(parsed, definition):
            offers.append(on_definition(ActionKind.DOCSTRING))
        if is_function and lang.id == "python" and _needs_hints(parsed, definition):
            offers.append(on_definition(ActionKind.TYPE_HINTS))

    selected = text[start:end]
    if selected.strip() and ("\n" in selected.strip() or len(selected.strip()) > 1):
        offers.append(
            Offer(
                title(ActionKind.SIMPLIFY),
                Target(ActionKind.SIMPLIFY, start, end, version=doc.version, selection=True),
            )
        )
        offers.append(
            Offer(
                title(ActionKind.EXPLAIN, "selection_title"),
                Target(ActionKind.EXPLAIN, start, end, version=doc.version, selection=True),
            )
        )
    elif definition is not None:
        offers.append(on_definition(ActionKind.EXPLAIN))

    if (
        definition is not None
        and definition.kind == "function"
        and doc.path is not None
        and testfiles.locate(lang, doc.path, doc.root) is not None
    ):
        offers.append(on_definition(ActionKind.TESTS))
    return offers


def matches_only(offer: Offer, only: Sequence[str] | None) -> bool:
    """LSP `context.only`: a kind matches itself and its sub-kinds (`refactor` has `refactor.x`)."""
    if not only:
        return True
    kind = offer.kind.lsp_kind
    return any(kind == o or kind.startswith(o + ".") for o in only)


def _can_document(parsed: T.Parsed, definition: T.Definition) -> bool:
    if T.has_doc_comment(parsed, definition):
        return False
    if parsed.lang.doc_style == "docstring":
        return T.body_on_own_line(definition)
    text, start = parsed.text, parsed.source.start(definition.outer)
    return not text[T.line_start(text, start) : start].strip()


def _needs_hints(parsed: T.Parsed, definition: T.Definition) -> bool:
    node = definition.node
    if node.child_by_field_name("return_type") is None:
        return True
    params = node.child_by_field_name("parameters")
    if params is None:
        return False
    for i, p in enumerate(params.named_children):
        if p.type in ("identifier", "default_parameter", "list_splat_pattern"):
            if i == 0 and definition.container and p.type == "identifier":
                continue  # self / cls
            return True
        if p.type == "dictionary_splat_pattern":
            return True
    return False


def _fix_region(parsed: T.Parsed, diag: Diagnostic) -> tuple[int, int]:
    """The enclosing definition (or top-level statement) when short, else lines around it."""
    text, src = parsed.text, parsed.source
    at = max(0, min(diag.start, len(text)))
    definition = T.definition_at(parsed, at, at)
    candidates = []
    if definition is not None:
        candidates.append((src.start(definition.outer), src.end(definition.outer)))
    node = parsed.tree.root_node.descendant_for_byte_range(src.byte(at), src.byte(at))
    while node is not None and node.parent is not None and node.parent.parent is not None:
        node = node.parent
    if node is not None and node.parent is not None:
        candidates.append((src.start(node), src.end(node)))
    for a, b in candidates:
        if text.count("\n", a, b) < MAX_FIX_LINES:
            return T.line_start(text, a), T.line_end(text, b)
    line = T.line_number(text, at)
    first = T.line_offset(text, max(0, line - FIX_WINDOW))
    last = T.line_offset(text, line + FIX_WINDOW)
    return first, T.line_end(text, max(first, last - 1 if last > first else first))
