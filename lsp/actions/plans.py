"""One plan per action: what the model is shown, when it stops, and how its reply becomes an edit.

A plan is made on resolve from the target recorded at listing (the document is the same
version). `values` fill the prompt's placeholders; `stop` sees the generated text (after the
prefill) and returns how much to keep; `build(reply, truncated)` turns prefill + generation into
file edits, raising ReplyError when the reply cannot be used (the engine retries once).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tree_sitter as ts

from lsp.actions import reply as R
from lsp.actions import testfiles
from lsp.actions import tree as T
from lsp.actions.languages import ActionLanguage
from lsp.actions.model import (
    ActionError,
    ActionKind,
    Document,
    FileEdit,
    ReplyError,
    Target,
    TextChange,
)
from lsp.actions.prompts import ActionPrompt, PromptBook, fill

MAX_SHOWN_LINES = 150
"""Longer definitions are shown to the model without their middle (docstring, explain, ...)."""

FileReader = Callable[[Path], str | None]
"""The current text of a file: the open document's, else the disk's, else None."""


@dataclass
class Plan:
    title: str
    values: dict[str, str]
    focus: tuple[int, int]
    """The code the action is about (for repository context)."""
    stop: Callable[[str], int | None]
    build: Callable[[str, bool], tuple[FileEdit, ...]]
    languages: dict[str, ActionLanguage] = field(default_factory=dict)
    """Language of each edited file by uri (default: the document's)."""


@dataclass
class Env:
    doc: Document
    parsed: T.Parsed
    target: Target
    prompt: ActionPrompt
    book: PromptBook
    read: FileReader

    @property
    def lang(self) -> ActionLanguage:
        return self.parsed.lang

    @property
    def text(self) -> str:
        return self.parsed.text

    @property
    def unit(self) -> str:
        return R.indent_unit(self.text, self.lang.indent)


def make_plan(env: Env) -> Plan:
    builders: dict[ActionKind, Callable[[Env], Plan]] = {
        ActionKind.DOCSTRING: _docstring,
        ActionKind.IMPLEMENT: _implement,
        ActionKind.TYPE_HINTS: _type_hints,
        ActionKind.FIX: _fix,
        ActionKind.SIMPLIFY: _simplify,
        ActionKind.EXPLAIN: _explain,
        ActionKind.TESTS: _tests,
    }
    return builders[env.target.kind](env)


# -- shared --------------------------------------------------------------------------------------


def _values(env: Env, **extra: str) -> dict[str, str]:
    lang = env.lang
    values = {
        "language": lang.name,
        "fence": lang.fence,
        "path": env.doc.rel,
        "name": env.target.name,
        "doc_marker": lang.doc_marker or lang.line_comment,
        "context": "",
        "method_note": "",
        **extra,
    }
    if values.get("container"):
        values["method_note"] = fill(env.book.text("method_note"), values)
    for key, template in env.prompt.extra.items():
        values[key] = fill(template, values)
    return values


def _definition(env: Env) -> T.Definition:
    found = T.definition_exact(env.parsed, env.target.start, env.target.end)
    if found is None:
        raise ActionError(
            f"hushcode: `{env.target.name}` is no longer where the action was listed; "
            "ask for code actions again"
        )
    return found


def _what(definition: T.Definition) -> str:
    if definition.kind == "class":
        return "class"
    return "method" if definition.container else "function"


def _def_code(env: Env, definition: T.Definition, *, whole: bool = False) -> str:
    """The definition as shown to the model; a long one loses its middle unless `whole`."""
    src = env.parsed.source
    start = T.line_start(env.text, src.start(definition.outer))
    code = R.dedent(env.text[start : src.end(definition.outer)])
    lines = code.split("\n")
    if whole or len(lines) <= MAX_SHOWN_LINES:
        return code
    head, tail = lines[: MAX_SHOWN_LINES - 20], lines[-20:]
    indent = R.indent_unit(code, env.lang.indent)
    return "\n".join([*head, f"{indent}{env.lang.line_comment} ...", *tail])


def _strip_indent(text: str, indent: str) -> str:
    return "\n".join(
        line[len(indent) :] if line.startswith(indent) else line for line in text.split("\n")
    )


def _edit(env: Env, changes: list[TextChange]) -> tuple[FileEdit, ...]:
    return (FileEdit(env.doc.uri, env.text, tuple(changes)),)


def _fence_stop(text: str) -> int | None:
    return R.fence_end(text)


def _lines_region(text: str, start: int, end: int) -> tuple[int, int]:
    """[start, end] grown to whole lines (an end at a line's start excludes that line)."""
    if end > start and text[end - 1 : end] == "\n":
        end -= 1
    return T.line_start(text, start), T.line_end(text, end)


def _min_indent(region: str) -> str:
    leads = [
        line[: len(line) - len(line.lstrip(" \t"))] for line in region.split("\n") if line.strip()
    ]
    if not leads:
        return ""
    common = leads[0]
    for lead in leads[1:]:
        while not lead.startswith(common):
            common = common[:-1]
    return common


# -- docstring / doc comment ---------------------------------------------------------------------


def _docstring(env: Env) -> Plan:
    definition = _definition(env)
    src, text, lang = env.parsed.source, env.text, env.lang
    def_start = src.start(definition.node)
    def_indent = T.indent_at(text, def_start)
    values: dict[str, str] = {
        "what": _what(definition),
        "container": definition.container,
        "code": _def_code(env, definition),
        "doc_lead": f"{definition.name} " if lang.id == "go" else "",
    }
    if lang.doc_style == "docstring":
        body = T.body_of(definition.node)
        colon = body.prev_sibling if body is not None else None
        if body is None or colon is None:
            raise ActionError("hushcode: this definition has no body to hold a docstring")
        header_start = T.line_start(text, src.start(definition.outer))
        header = _strip_indent(text[header_start : src.end(colon)], def_indent)
        first = body.named_children[0] if body.named_children else body
        body_indent = T.indent_at(text, src.start(first))
        if len(body_indent) <= len(def_indent):
            body_indent = def_indent + env.unit
        values["header"] = header
        values["body_indent"] = body_indent[len(def_indent) :]
        insert_at = min(len(text), T.line_end(text, src.end(colon)) + 1)

        def stop(generated: str) -> int | None:
            close = generated.find('"""')
            if close >= 0:
                return close + 3
            return _fence_stop(generated)

        def build(reply: str, truncated: bool) -> tuple[FileEdit, ...]:
            doc = _python_docstring(lang, R.extract_code(reply))
            return _edit(
                env, [TextChange(insert_at, insert_at, _place_docstring(doc, body_indent) + "\n")]
            )

        return Plan(
            env.prompt.title,
            _values(env, **values),
            (def_start, src.end(definition.node)),
            stop,
            build,
        )

    outer_start = src.start(definition.outer)
    at = T.line_start(text, outer_start)
    if text[at:outer_start].strip():
        raise ActionError("hushcode: the definition does not start its line; no doc comment added")
    indent = T.indent_at(text, outer_start)

    if lang.doc_style == "block":

        def stop(generated: str) -> int | None:
            close = generated.find("*/")
            if close >= 0:
                return close + 2
            return _fence_stop(generated)

        def build(reply: str, truncated: bool) -> tuple[FileEdit, ...]:
            lines = _block_comment_lines(R.extract_code(reply))
            comment = f"{indent}/**\n" + "".join(f"{indent} * {ln}".rstrip() + "\n" for ln in lines)
            return _edit(env, [TextChange(at, at, comment + f"{indent} */\n")])

    else:
        marker = lang.doc_marker

        def stop(generated: str) -> int | None:
            for match in re.finditer(r"\n", generated):
                rest = generated[match.end() :]
                if rest.strip() and not rest.lstrip().startswith(marker[:2]):
                    return match.start()
                if rest.startswith("\n"):
                    return match.start()
            return _fence_stop(generated)

        def build(reply: str, truncated: bool) -> tuple[FileEdit, ...]:
            code = R.extract_code(reply)
            lines = []
            for line in code.split("\n"):
                stripped = line.strip()
                if not stripped.startswith(marker[:2]):
                    break
                lines.append(stripped.lstrip("/").strip())
            if truncated and len(lines) > 1:
                lines.pop()
            if not any(lines):
                raise ReplyError(f"the reply has no `{marker}` comment")
            comment = "".join(f"{indent}{marker} {ln}".rstrip() + "\n" for ln in lines)
            return _edit(env, [TextChange(at, at, comment)])

    return Plan(
        env.prompt.title,
        _values(env, **values),
        (src.start(definition.node), src.end(definition.node)),
        stop,
        build,
    )


def _python_docstring(lang: ActionLanguage, code: str) -> str:
    """The docstring literal of the first definition in `code` (closed when cut off)."""
    if code.count('"""') % 2:
        code = code.rstrip() + '"""'
    parsed = T.parse(lang, code + "\n")
    if parsed is not None:
        stack = [parsed.tree.root_node]
        while stack:
            node = stack.pop(0)
            if node.type in lang.functions or node.type in lang.classes:
                doc = T.python_docstring(node)
                if doc is not None:
                    return parsed.source.node_text(doc)
                break
            stack.extend(node.named_children)
    match = re.search(r'"""(.*?)"""', code, re.DOTALL)
    if match is None or not match.group(1).strip():
        raise ReplyError("the reply has no docstring")
    return f'"""{match.group(1).strip()}"""'


def _place_docstring(literal: str, indent: str) -> str:
    lines = literal.strip().split("\n")
    if len(lines) == 1:
        body = lines[0][3:-3].strip() if lines[0].startswith('"""') else lines[0]
        if not body or body in ('"', "'"):
            raise ReplyError("the docstring is empty")
        return f'{indent}"""{body}"""'
    rest = R.dedent("\n".join(lines[1:])).split("\n")
    out = [indent + lines[0].rstrip()]
    out.extend(indent + line if line.strip() else "" for line in rest)
    return "\n".join(out)


def _block_comment_lines(code: str) -> list[str]:
    match = re.search(r"/\*\*?(.*?)(\*/|$)", code, re.DOTALL)
    if match is None:
        raise ReplyError("the reply has no `/** ... */` comment")
    lines = [re.sub(r"^\s*\*? ?", "", line).rstrip() for line in match.group(1).split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ReplyError("the doc comment is empty")
    return lines


# -- implement -----------------------------------------------------------------------------------


def _implement(env: Env) -> Plan:
    definition = _definition(env)
    stub = T.stub_body(env.parsed, definition)
    if stub is None:
        raise ActionError(f"hushcode: `{definition.name}` already has a body")
    src, text, unit = env.parsed.source, env.text, env.unit
    def_indent = T.indent_at(text, src.start(definition.node))
    header_start = T.line_start(text, src.start(definition.outer))
    body = T.body_of(definition.node)
    assert body is not None
    if stub.braces:
        header = _strip_indent(text[header_start : src.start(body) + 1], def_indent)
    else:
        doc = T.python_docstring(definition.node)
        colon = body.prev_sibling
        end = src.end(doc) if doc is not None else (src.end(colon) if colon else src.start(body))
        header = _strip_indent(text[header_start:end], def_indent)
    values = {
        "what": _what(definition),
        "container": definition.container,
        "code": _def_code(env, definition, whole=True),
        "header": header,
    }

    def stop(generated: str) -> int | None:
        ends = [e for e in (_split_body(generated, stub.braces)[1], _fence_stop(generated)) if e]
        return min(ends) if ends else None

    def build(reply: str, truncated: bool) -> tuple[FileEdit, ...]:
        code = R.extract_code(reply)
        if not code.startswith(header):
            raise ReplyError("the reply does not continue the function")
        body_text, end = _split_body(code[len(header) :].removeprefix("\n"), stub.braces)
        if truncated and end is None:
            raise ReplyError("the body was cut off before its end")
        body_lines = body_text.split("\n")
        while body_lines and (not body_lines[0].strip() or body_lines[0][0] not in " \t"):
            body_lines.pop(0)  # blank lines, or the signature repeated
        new_body = R.dedent("\n".join(body_lines))
        if not new_body.strip():
            raise ReplyError("the reply has no body")
        if re.fullmatch(r"(pass|\.\.\.|raise NotImplementedError.*|todo!\(\)|)\s*", new_body):
            raise ReplyError("the reply leaves the body unimplemented")
        if stub.braces:
            inner = R.reindent(new_body, def_indent + unit, unit)
            return _edit(env, [TextChange(stub.start, stub.end, "\n" + inner + "\n" + def_indent)])
        first = body.named_children[0] if body.named_children else body
        body_indent = T.indent_at(text, src.start(first))
        if len(body_indent) <= len(def_indent):
            body_indent = def_indent + unit
        inner = R.reindent(new_body, body_indent, unit)
        if stub.start == stub.end:
            return _edit(env, [TextChange(stub.start, stub.end, "\n" + inner)])
        return _edit(env, [TextChange(stub.start, stub.end, inner[len(body_indent) :])])

    return Plan(
        env.prompt.title,
        _values(env, **values),
        (src.start(definition.node), src.end(definition.node)),
        stop,
        build,
    )


def _split_body(generated: str, braces: bool) -> tuple[str, int | None]:
    """The body that starts `generated` (after the prefilled signature), and where it ends.

    It ends at the first line back at the signature's column once an indented line was seen
    (Python), or at a `}` in that column (braces). Earlier lines at that column (the signature
    repeated) are skipped.
    """
    pos = 0
    seen = False
    for line in generated.split("\n"):
        if line and line[0] not in " \t":
            if braces and line.startswith("}"):
                return generated[:pos], pos + 1
            if seen and not braces:
                return generated[:pos], pos
        elif line.strip():
            seen = True
        pos += len(line) + 1
    return generated, None


# -- type hints (Python) -------------------------------------------------------------------------


def _type_hints(env: Env) -> Plan:
    definition = _definition(env)
    src, text, lang = env.parsed.source, env.text, env.lang
    node = definition.node
    params = node.child_by_field_name("parameters")
    if params is None or lang.id != "python":
        raise ActionError("hushcode: type hints are offered for Python functions only")
    header_open = text[src.start(node) : src.start(params) + 1]
    values = {
        "what": _what(definition),
        "container": definition.container,
        "code": _def_code(env, definition),
        "header_open": header_open,
    }

    def stop(generated: str) -> int | None:
        depth = 1
        for i, ch in enumerate(generated):
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            elif ch == ":" and depth == 0 and generated[i + 1 : i + 2] == "\n":
                return i + 1
            elif ch == "\n" and depth <= 0:
                return i
        return _fence_stop(generated)

    def build(reply: str, truncated: bool) -> tuple[FileEdit, ...]:
        code = R.extract_code(reply)
        head = code.split(":\n", 1)[0].rstrip().rstrip(":") + ":\n    pass\n"
        parsed = T.parse(lang, head)
        fn = (
            parsed.tree.root_node.named_children[0]
            if parsed and parsed.tree.root_node.named_children
            else None
        )
        if parsed is None or fn is None or fn.type != "function_definition" or parsed.errors:
            raise ReplyError("the reply's signature does not parse")
        new_params = fn.child_by_field_name("parameters")
        assert new_params is not None
        old = [p for p in params.named_children if not T.is_comment(p)]
        new = [p for p in new_params.named_children if not T.is_comment(p)]
        if [_param_name(src, p) for p in old] != [_param_name(parsed.source, p) for p in new]:
            raise ReplyError("the reply changed the parameters")
        changes = []
        for o, n in zip(old, new, strict=True):
            hint = n.child_by_field_name("type")
            if hint is None or o.child_by_field_name("type") is not None:
                continue  # only missing hints are added; names and defaults stay as written
            hint_text = parsed.source.node_text(hint)
            if o.type == "default_parameter":
                name, value = o.child_by_field_name("name"), o.child_by_field_name("value")
                if name is None or value is None:
                    continue
                typed = f"{src.node_text(name)}: {hint_text} = {src.node_text(value)}"
            elif o.type in ("identifier", "list_splat_pattern", "dictionary_splat_pattern"):
                typed = f"{src.node_text(o)}: {hint_text}"
            else:
                continue
            changes.append(TextChange(src.start(o), src.end(o), typed))
        new_ret = fn.child_by_field_name("return_type")
        if new_ret is not None and node.child_by_field_name("return_type") is None:
            ret_text = parsed.source.node_text(new_ret)
            changes.append(TextChange(src.end(params), src.end(params), f" -> {ret_text}"))
        if not changes:
            raise ReplyError("the reply adds no type hints")
        return _edit(env, changes)

    return Plan(
        env.prompt.title,
        _values(env, **values),
        (src.start(node), src.end(node)),
        stop,
        build,
    )


def _param_name(src: T.Source, node: ts.Node) -> str:
    if node.type == "identifier":
        return src.node_text(node)
    for child in node.named_children:
        if child.type == "identifier":
            return src.node_text(child)
        if child.type in ("list_splat_pattern", "dictionary_splat_pattern"):
            return _param_name(src, child)
    return src.node_text(node)


# -- fix / simplify: rewrite a region ------------------------------------------------------------


def _region_plan(
    env: Env,
    start: int,
    end: int,
    values: dict[str, str],
    *,
    must_change: str,
    keep_exits: bool = False,
) -> Plan:
    text = env.text
    start, end = _lines_region(text, start, end)
    old = text[start:end]
    base_indent = _min_indent(old)
    values = {"code": R.dedent(old), **values}

    def build(reply: str, truncated: bool) -> tuple[FileEdit, ...]:
        if truncated:
            raise ReplyError("the reply was cut off before its end")
        code = R.extract_code(reply)
        if not code.strip():
            raise ReplyError("the reply has no code")
        new = R.reindent(code, base_indent, env.unit)
        changes = R.line_changes(old, new, start)
        if not changes:
            raise ReplyError(must_change)
        if keep_exits and _EXIT.search(old) and not _EXIT.search(new):
            raise ReplyError("the new code lost the `return` (or `yield`, `raise`) of the old")
        return _edit(env, changes)

    return Plan(env.prompt.title, _values(env, **values), (start, end), _fence_stop, build)


def _fix(env: Env) -> Plan:
    target, text = env.target, env.text
    if not (0 <= target.start <= target.end <= len(text)):
        raise ActionError("hushcode: the diagnostic's code is gone; ask for code actions again")
    line = target.line if target.line >= 0 else T.line_number(text, target.start)
    at = T.line_offset(text, line)
    message = target.message.strip()
    values = {
        "message": message,
        "message_short": _short(message),
        "line_text": text[at : T.line_end(text, at)].strip(),
        "line_number": str(line + 1),
    }
    plan = _region_plan(
        env, target.start, target.end, values, must_change="the reply changes nothing"
    )
    plan.title = fill(env.prompt.title, plan.values)
    return plan


def _simplify(env: Env) -> Plan:
    target = env.target
    plan = _region_plan(
        env, target.start, target.end, {}, must_change="the reply is the same code", keep_exits=True
    )
    return plan


_EXIT = re.compile(r"^\s*(return|yield|raise|throw)\b", re.MULTILINE)


def _short(message: str, width: int = 60) -> str:
    first = message.strip().split("\n")[0]
    return first if len(first) <= width else first[: width - 1] + "…"


# -- explain -------------------------------------------------------------------------------------


def _explain(env: Env) -> Plan:
    """The explanation becomes a comment block above the code (see the package docstring)."""
    target, text, lang = env.target, env.text, env.lang
    if target.selection:
        start, end = _lines_region(text, target.start, target.end)
        first = start
        what = "selection"
    else:
        definition = _definition(env)
        first = env.parsed.source.start(definition.outer)
        start, end = T.line_start(text, first), env.parsed.source.end(definition.outer)
        what = _what(definition)
    while first < len(text) and text[first] in " \t":
        first += 1
    indent = T.indent_at(text, first)
    values = {"code": R.dedent(text[start:end]), "what": what}
    header = env.prompt.extra.get("comment_header", "")

    def stop(generated: str) -> int | None:
        para = generated.find("\n\n")
        return para if para > 0 and generated[:para].strip() else None

    def build(reply: str, truncated: bool) -> tuple[FileEdit, ...]:
        prose = R.plain_prose(reply, truncated=truncated)
        if len(prose) < 10:
            raise ReplyError("the explanation is empty")
        block = R.comment_block(f"{header} {prose}".strip(), indent, lang.line_comment)
        return _edit(env, [TextChange(start, start, block)])

    title = (
        env.prompt.extra.get("selection_title", env.prompt.title)
        if target.selection
        else env.prompt.title
    )
    return Plan(title, _values(env, **values), (start, end), stop, build)


# -- tests ---------------------------------------------------------------------------------------


def _tests(env: Env) -> Plan:
    definition = _definition(env)
    doc, lang, src = env.doc, env.lang, env.parsed.source
    if doc.path is None:
        raise ActionError("hushcode: tests are written for files on disk only")
    where = testfiles.locate(lang, doc.path, doc.root)
    if where is None:
        raise ActionError(f"hushcode: no test file convention for {doc.rel}")
    existing = env.read(where.path)
    import_name = definition.container or definition.name
    qualname = (
        f"{definition.container}.{definition.name}" if definition.container else definition.name
    )
    test_rel = where.path.name
    if doc.root is not None:
        with contextlib.suppress(ValueError):
            test_rel = where.path.resolve().relative_to(doc.root.resolve()).as_posix()
    values = {
        "what": _what(definition),
        "container": definition.container,
        "code": _def_code(env, definition),
        "module": where.module,
        "stem": where.stem,
        "import_name": import_name,
        "qualname": qualname,
        "name_title": definition.name[:1].upper() + definition.name[1:],
        "test_path": test_rel,
        "package": _go_package(env) if lang.id == "go" else "",
    }
    values = _values(env, **values)
    head = values.get("test_head", "")
    import_line = values.get("import_line", "")
    uri = where.path.absolute().as_uri()

    def build(reply: str, truncated: bool) -> tuple[FileEdit, ...]:
        code = R.extract_code(reply)
        if truncated:
            code = R.trim_to_parse(lang, code, keep=len(head) + 1)
        code = code.rstrip() + "\n"
        if import_line and import_line not in code:
            raise ReplyError(f"the tests do not import the code under test (`{import_line}`)")
        if existing is None:
            return (FileEdit(uri, "", (TextChange(0, 0, code),), create=True),)
        return (FileEdit(uri, existing, tuple(_append_tests(lang, existing, code))),)

    plan = Plan(
        env.prompt.title,
        values,
        (src.start(definition.node), src.end(definition.node)),
        _fence_stop,
        build,
        languages={uri: lang},
    )
    return plan


def _go_package(env: Env) -> str:
    for node in env.parsed.tree.root_node.named_children:
        if node.type == "package_clause":
            for child in node.named_children:
                return env.parsed.source.node_text(child)
    return "main"


_HEAD_LINE = re.compile(r"^(import\b|from\s+\S+\s+import\b|package\b|use\b)")


def _append_tests(lang: ActionLanguage, existing: str, code: str) -> list[TextChange]:
    """New imports after the file's last import line; the tests at the end of the file."""
    lines = code.split("\n")
    head: list[str] = []
    i = 0
    while i < len(lines) and (not lines[i].strip() or _HEAD_LINE.match(lines[i])):
        line = lines[i]
        if line.strip() and line.strip() not in existing and not line.startswith("package"):
            head.append(line)
        i += 1
    body = "\n".join(lines[i:]).strip("\n")
    changes: list[TextChange] = []
    if head:
        last_import = 0
        offset = 0
        for line in existing.split("\n"):
            offset += len(line) + 1
            if _HEAD_LINE.match(line):
                last_import = min(offset, len(existing))
        insert = "\n".join(head) + "\n"
        if last_import == 0 and existing and not existing.startswith("\n"):
            insert += "\n"
        changes.append(TextChange(last_import, last_import, insert))
    gap = "\n\n\n" if lang.id == "python" else "\n\n"
    tail = existing.rstrip("\n")
    changes.append(TextChange(len(tail), len(existing), gap + body + "\n"))
    return changes
