"""Code actions end to end: the real server over stdio, the real model, the real grammars.

The 0.5B model is weak, so these assert structure (where the edit lands, that the file parses,
what it leaves alone), not wording. `examples/python/textutils.py` is the subject; nothing here
writes to disk: edits are applied in memory, the way an editor would.
"""

from __future__ import annotations

import ast
import asyncio
from typing import Any, Union

import pytest
from lsprotocol import types

from lsp import syntax

pytestmark = [pytest.mark.model, pytest.mark.slow]

FILE = "python/textutils.py"
SETTINGS: dict[str, Any] = {
    "actions": {"maxTokens": 64},
    "completion": {"warmup": False},
}


def _at(text: str, needle: str, after: bool = False) -> types.Position:
    offset = text.index(needle) + (len(needle) if after else 0)
    line = text.count("\n", 0, offset)
    return types.Position(line=line, character=offset - (text.rfind("\n", 0, offset) + 1))


def _offset(text: str, pos: types.Position) -> int:
    lines = text.split("\n")
    return sum(len(line) + 1 for line in lines[: pos.line]) + pos.character


def _apply(text: str, edits: list[Any]) -> str:
    spans = sorted(
        ((_offset(text, e.range.start), _offset(text, e.range.end), e.new_text) for e in edits),
        reverse=True,
    )
    for start, end, new in spans:
        text = text[:start] + new + text[end:]
    return text


async def _actions(
    s: Any,
    uri: str,
    start: types.Position,
    end: types.Position | None = None,
    diagnostics: list[types.Diagnostic] | None = None,
) -> list[types.CodeAction]:
    result = await s.client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(start=start, end=end or start),
            context=types.CodeActionContext(diagnostics=diagnostics or []),
        )
    )
    return [a for a in result or [] if isinstance(a, types.CodeAction)]


async def _resolved(
    s: Any, uri: str, kind: str, start: types.Position, **kw: Any
) -> tuple[types.CodeAction, types.WorkspaceEdit]:
    listed = [a for a in await _actions(s, uri, start, **kw) if a.data["kind"] == kind]
    assert listed, f"no {kind} action listed"
    action = await s.client.code_action_resolve_async(listed[0])
    assert action.edit is not None and action.edit.document_changes
    return action, action.edit


def _document_edit(edit: types.WorkspaceEdit, uri: str) -> types.TextDocumentEdit:
    (change,) = [
        c
        for c in edit.document_changes or []
        if isinstance(c, types.TextDocumentEdit) and c.text_document.uri == uri
    ]
    return change


async def _action_progress(s: Any, kind: type = types.WorkDoneProgressBegin) -> None:
    """Wait for the action's `$/progress` of this kind (a report: tokens are being generated)."""
    for _ in range(1200):
        for token, reports in s.client.progress_reports.items():
            if "hushcode-action" in str(token) and any(isinstance(r, kind) for r in reports):
                return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the action reported no {kind.__name__}")


def _read_code_actions_with_commands(s: Any) -> None:
    """lsprotocol reads any `CodeAction` that has a `command` as a `Command`: tell them apart
    by the type of `command` (a string in a Command, an object in a CodeAction)."""
    converter = s.client.protocol._converter

    def structure(obj: Any, _: type) -> types.Command | types.CodeAction:
        if isinstance(obj.get("command"), str):
            return converter.structure(obj, types.Command)
        return converter.structure(obj, types.CodeAction)

    converter.register_structure_hook(Union[types.Command, types.CodeAction], structure)  # noqa: UP007 - the key lsprotocol uses


async def _open(s: Any) -> tuple[str, str]:
    await s.wait_model()
    text = (s.root / FILE).read_text()
    return s.open(FILE), text


async def test_listing_offers_every_action_without_a_model_call(session):
    async with session(settings=SETTINGS) as s:
        uri, text = await _open(s)
        before = await s.command("hushcode.actionMetrics")
        flagged = _at(text, "len(word)\n")
        diagnostic = types.Diagnostic(
            range=types.Range(start=flagged, end=_at(text, "/ len(word)", after=True)),
            message="undefined name 'word'",
            source="pyflakes",
        )
        listed = {
            "word_count": await _actions(s, uri, _at(text, "def word_count")),
            "slugify": await _actions(s, uri, _at(text, "def slugify")),
            "fix": await _actions(s, uri, flagged, diagnostics=[diagnostic]),
            "selection": await _actions(
                s, uri, _at(text, "    result = []"), _at(text, "    return result")
            ),
            "greet": await _actions(s, uri, _at(text, "def greet")),
        }
        after = await s.command("hushcode.actionMetrics")
        assert after["model_calls"] == before["model_calls"], "listing called the model"
        assert after["listings"] == before["listings"] + len(listed)
        kinds = {name: [a.data["kind"] for a in actions] for name, actions in listed.items()}
        assert kinds["word_count"] == ["docstring", "type_hints", "explain", "tests"]
        assert kinds["slugify"][0] == "implement"
        assert kinds["fix"][0] == "fix"
        assert "undefined name 'word'" in listed["fix"][0].title
        assert list(listed["fix"][0].diagnostics or []) == [diagnostic]
        assert {"simplify", "explain"} <= set(kinds["selection"])
        assert kinds["greet"][:2] == ["docstring", "explain"]
        for action in (a for actions in listed.values() for a in actions):
            assert action.title.startswith("hushcode: ")
            assert action.kind in ("quickfix", "refactor.rewrite", "source")
            assert action.edit is None and action.command is None  # VS Code resolves the edit
            assert {"uri", "range", "version", "kind"} <= set(action.data)
            assert action.data["uri"] == uri and action.data["version"] == 1


async def test_docstring_lands_inside_the_method_at_its_indentation(session):
    async with session(settings=SETTINGS) as s:
        uri, text = await _open(s)
        _, edit = await _resolved(s, uri, "docstring", _at(text, "def greet"))
        change = _document_edit(edit, uri)
        assert change.text_document.version == 1
        new = _apply(text, change.edits)
        tree = ast.parse(new)
        greeter = next(n for n in tree.body if isinstance(n, ast.ClassDef))
        greet = next(
            n for n in greeter.body if isinstance(n, ast.FunctionDef) and n.name == "greet"
        )
        assert ast.get_docstring(greet), "the docstring is greet's first statement"
        (insert,) = change.edits
        assert (
            insert.range.start
            == insert.range.end
            == types.Position(line=_at(text, "def greet").line + 1, character=0)
        )
        assert insert.new_text.startswith('        """')
        assert all(line.startswith("        ") for line in insert.new_text.splitlines() if line)


async def test_docstring_in_neovim_sees_the_definitions_the_code_uses(session):
    async with session(settings=SETTINGS, capabilities="neovim") as s:
        await s.wait_model()
        for _ in range(100):  # the index is built in the background after `initialized`
            found = await s.client.workspace_symbol_async(
                types.WorkspaceSymbolParams(query="quarterly_rebate_cents")
            )
            if found:
                break
            await asyncio.sleep(0.1)
        rel = "python/inventory/orders.py"
        text = (s.root / rel).read_text()
        uri = s.open(rel)
        _, edit = await _resolved(s, uri, "docstring", _at(text, "def rebate_for"))
        new = _apply(text, _document_edit(edit, uri).edits)
        fn = next(n for n in ast.parse(new).body if getattr(n, "name", "") == "rebate_for")
        assert isinstance(fn, ast.FunctionDef) and ast.get_docstring(fn)
        record = (await s.command("hushcode.actionMetrics"))["recent"][-1]
        assert record["context_snippets"] >= 1, "pricing.py's definition was in the prompt"


async def test_doc_comment_for_typescript_goes_above_the_export(session):
    async with session(settings=SETTINGS) as s:
        await s.wait_model()
        rel = "typescript/src/format.ts"
        text = (s.root / rel).read_text()
        uri = s.open(rel)
        _, edit = await _resolved(s, uri, "docstring", _at(text, "export function pluralise"))
        (insert,) = _document_edit(edit, uri).edits
        assert insert.range.start == _at(text, "export function pluralise")
        lines = insert.new_text.splitlines()
        assert lines[0] == "/**" and lines[-1] == " */" and len(lines) >= 3
        assert all(line.startswith(" * ") or line == " *" for line in lines[1:-1])
        new = _apply(text, [insert])
        tree = syntax.parse("typescript", new)
        assert tree is not None and syntax.error_count(tree) == 0


async def test_implement_replaces_only_the_body(session):
    async with session(settings=SETTINGS) as s:
        uri, text = await _open(s)
        _, edit = await _resolved(s, uri, "implement", _at(text, "def slugify"))
        new = _apply(text, _document_edit(edit, uri).edits)
        ast.parse(new)
        head, tail = text.split("    pass\n", 1)
        assert new.startswith(head) and new.endswith(tail), "only the body changed"
        body = new[len(head) : len(new) - len(tail)]
        assert body.strip() and "pass" not in body
        assert all(line.startswith("    ") for line in body.splitlines() if line.strip())


async def test_type_hints_change_the_signature_only(session):
    async with session(settings=SETTINGS) as s:
        uri, text = await _open(s)
        _, edit = await _resolved(s, uri, "type_hints", _at(text, "def word_count"))
        new = _apply(text, _document_edit(edit, uri).edits)
        fn = next(n for n in ast.parse(new).body if isinstance(n, ast.FunctionDef))
        assert fn.name == "word_count" and [a.arg for a in fn.args.args] == ["text"]
        assert fn.args.args[0].annotation is not None or fn.returns is not None
        line = _at(text, "def word_count").line
        old_lines, new_lines = text.split("\n"), new.split("\n")
        assert new_lines[:line] + new_lines[line + 1 :] == old_lines[:line] + old_lines[line + 1 :]


async def test_fix_changes_the_flagged_line(session):
    async with session(settings=SETTINGS) as s:
        uri, text = await _open(s)
        start, end = _at(text, "len(word)\n"), _at(text, "/ len(word)", after=True)
        diagnostic = types.Diagnostic(
            range=types.Range(start=start, end=end), message="undefined name 'word'"
        )
        _, edit = await _resolved(s, uri, "fix", start, diagnostics=[diagnostic])
        change = _document_edit(edit, uri)
        new = _apply(text, change.edits)
        ast.parse(new)
        old_lines, new_lines = text.splitlines(), new.splitlines()
        assert len(old_lines) == len(new_lines)
        changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b]
        assert start.line in changed, "the flagged line changed"
        assert all(e.range.start.line >= start.line - 3 for e in change.edits)


async def test_simplify_rewrites_the_selection_only(session):
    async with session(settings=SETTINGS) as s:
        uri, text = await _open(s)
        start = _at(text, "    result = []")
        end = _at(text, "            result.append(number)", after=True)
        _, edit = await _resolved(s, uri, "simplify", start, end=end)
        change = _document_edit(edit, uri)
        new = _apply(text, change.edits)
        ast.parse(new)
        assert all(start.line <= e.range.start.line <= end.line for e in change.edits)
        head = text[: _offset(text, start)]
        tail = text[_offset(text, end) :]
        assert new.startswith(head) and new.endswith(tail)


async def test_explain_inserts_a_comment_block_and_completions_keep_priority(session):
    async with session(settings={**SETTINGS, "actions": {"maxTokens": 48}}) as s:
        uri, text = await _open(s)
        scratch = s.open(
            "python/scratch_fib.py", "def fib(n):\n    if n < 2:\n        return n\n    return \n"
        )
        listed = [
            a for a in await _actions(s, uri, _at(text, "def shout")) if a.data["kind"] == "explain"
        ]
        resolving = asyncio.ensure_future(s.client.code_action_resolve_async(listed[0]))
        await _action_progress(s, types.WorkDoneProgressReport)  # generating tokens now
        await s.inline(scratch, 3, 11)
        completion_first = not resolving.done()
        action = await resolving
        assert action.edit is not None
        new = _apply(text, _document_edit(action.edit, uri).edits)
        ast.parse(new)
        added = [line for line in new.splitlines() if line not in text.splitlines()]
        assert added and all(line.startswith("# ") for line in added)
        assert "Explanation (hushcode):" in added[0]
        insert_at = new.index(added[0])
        assert new[insert_at:].split("\n", len(added))[-1].startswith("def shout(")
        # ghost text kept priority: it was served while the action was generating
        record = (await s.command("hushcode.actionMetrics"))["recent"][-1]
        assert completion_first and record["kind"] == "explain"
        assert record["yields"] >= 1, record
        last = (await s.metrics())["last"]  # served, not left waiting for the whole action
        assert last["source"] in ("model", "empty"), last
        (reports,) = [
            r for t, r in s.client.progress_reports.items() if "hushcode-action" in str(t)
        ]
        assert isinstance(reports[0], types.WorkDoneProgressBegin) and reports[0].cancellable
        assert isinstance(reports[-1], types.WorkDoneProgressEnd)


async def test_write_tests_creates_a_test_file_that_imports_the_module(session):
    async with session(settings={**SETTINGS, "actions": {"maxTokens": 48}}) as s:
        uri, text = await _open(s)
        _, edit = await _resolved(s, uri, "tests", _at(text, "def shout"))
        create, change = edit.document_changes or []
        assert isinstance(create, types.CreateFile)
        assert create.uri.endswith("/python/tests/test_textutils.py")
        assert isinstance(change, types.TextDocumentEdit) and change.text_document.uri == create.uri
        assert change.text_document.version is None
        test_text = _apply("", change.edits)
        tree = ast.parse(test_text)
        imports = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
        assert any(
            n.module == "textutils" and "shout" in [a.name for a in n.names] for n in imports
        )
        assert any(isinstance(n, ast.FunctionDef) and n.name.startswith("test_") for n in tree.body)


async def test_an_action_on_a_changed_document_is_refused(session):
    async with session(settings=SETTINGS) as s:
        uri, text = await _open(s)
        (listed,) = [
            a
            for a in await _actions(s, uri, _at(text, "def shout"))
            if a.data["kind"] == "docstring"
        ]
        s.type(uri, 0, 0, "# edited\n")
        before = await s.command("hushcode.actionMetrics")
        with pytest.raises(Exception, match="changed since this action was listed"):
            await s.client.code_action_resolve_async(listed)
        after = await s.command("hushcode.actionMetrics")
        assert after["model_calls"] == before["model_calls"]
        assert any("changed since this action was listed" in m.message for m in s.client.messages)


async def test_clients_without_resolve_get_a_command_that_applies_the_edit(session):
    async with session(settings=SETTINGS, capabilities="emacs") as s:
        _read_code_actions_with_commands(s)
        uri, text = await _open(s)
        applied: list[types.WorkspaceEdit] = []

        @s.client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            applied.append(params.edit)
            return types.ApplyWorkspaceEditResult(applied=True)

        (action,) = [
            a
            for a in await _actions(s, uri, _at(text, "def word_count"))
            if a.data["kind"] == "docstring"
        ]
        assert action.command is not None and action.command.command == "hushcode.applyAction"
        result = await s.command(action.command.command, *(action.command.arguments or []))
        assert result["applied"] is True
        new = _apply(text, _document_edit(applied[0], uri).edits)
        fn = next(n for n in ast.parse(new).body if isinstance(n, ast.FunctionDef))
        assert fn.name == "word_count" and ast.get_docstring(fn)


async def test_cancel_from_the_editor_stops_the_generation(session):
    settings = {**SETTINGS, "actions": {"maxTokens": 400}}
    async with session(settings=settings) as s:
        uri, text = await _open(s)
        (listed,) = [
            a for a in await _actions(s, uri, _at(text, "def evens")) if a.data["kind"] == "explain"
        ]
        msg_id = "hushcode-test-cancel"
        future = asyncio.ensure_future(
            s.client.protocol.send_request_async(types.CODE_ACTION_RESOLVE, listed, msg_id=msg_id)
        )
        await _action_progress(s)
        s.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
        with pytest.raises(Exception, match=r"(?i)cancel"):
            await asyncio.wait_for(future, 30)
        for _ in range(100):
            recent = (await s.command("hushcode.actionMetrics"))["recent"]
            if recent:
                break
            await asyncio.sleep(0.1)
        assert recent[-1]["outcome"] == "cancelled"
        assert recent[-1]["generated_tokens"] < 400
        # the model is free again: a completion is served (and shutdown finds the worker idle)
        scratch = s.open("python/scratch_after_cancel.py", "def double(x):\n    return \n")
        await s.inline(scratch, 1, 11)
        (reports,) = [
            r for t, r in s.client.progress_reports.items() if "hushcode-action" in str(t)
        ]
        assert isinstance(reports[-1], types.WorkDoneProgressEnd)
