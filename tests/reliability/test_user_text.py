"""The user's text is sacred: the server changes a document only through an edit the user accepts
(a resolved code action the editor applies, or `workspace/applyEdit` for a command the user ran),
every edit carries the version it was made for, and an edit for a changed document is refused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.reliability.conftest import FIB, Live
from tests.reliability.flows import at

pytestmark = [pytest.mark.model, pytest.mark.slow]

SETTINGS: dict[str, Any] = {
    "actions": {"maxTokens": 32, "contextTokens": 96},
    "completion": {"warmup": False, "maxTokens": 16, "maxBlockTokens": 32},
}
FILE = "python/textutils.py"


def _require_actions(s: Live) -> None:
    assert s.capabilities and s.capabilities.code_action_provider, "code actions not advertised"


async def _listed(s: Live, uri: str, text: str, needle: str, kind: str) -> types.CodeAction:
    result = await s.answer(
        s.client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                range=types.Range(start=at(text, needle), end=at(text, needle)),
                context=types.CodeActionContext(diagnostics=[]),
            )
        )
    )
    actions = [a for a in result or [] if isinstance(a, types.CodeAction) and a.data]
    picked = [a for a in actions if a.data.get("kind") == kind]
    assert picked, f"no {kind} action at {needle!r}: {[a.data for a in actions]}"
    return picked[0]


def _text_edits(edit: types.WorkspaceEdit | None) -> list[types.TextDocumentEdit]:
    assert edit is not None
    return [c for c in edit.document_changes or [] if isinstance(c, types.TextDocumentEdit)]


async def test_nothing_is_edited_without_the_user(start: Any, workspace: Any):
    """A whole session of typing, completions, listing and resolving actions, disk changes:
    no `workspace/applyEdit`. Only the command the user runs applies one."""
    async with start(workspace, settings=SETTINGS) as s:
        _require_actions(s)
        await s.wait_model()
        await s.wait_indexed()
        text = (workspace / FILE).read_text()
        uri = s.open(FILE, text)
        s.type(uri, 3, 0, "\n")
        text = s.texts[uri]
        completion = await s.answer(
            s.client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(line=3, character=0),
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Invoked
                    ),
                )
            )
        )
        for item in getattr(completion, "items", None) or []:
            # ghost text only: inserted where the cursor is, if the user takes it, and no more
            assert item.range is None or item.range.start == item.range.end
            assert item.command is None
        action = await _listed(s, uri, text, "def shout", "docstring")
        resolved = await s.answer(s.client.code_action_resolve_async(action))
        assert _text_edits(resolved.edit), "the resolved action carries its edit"
        (workspace / "python" / "other.py").write_text("def other():\n    pass\n")
        await asyncio.sleep(1.0)
        assert s.applied == [], "the server applied an edit on its own"
        # the user runs the action as a command (a client without resolve): one edit, versioned
        arguments = {**action.data, "title": action.title}
        result = await s.answer(s.command("hushcode.applyAction", arguments))
        assert result["applied"] is True
        (applied,) = s.applied
        (change,) = _text_edits(applied.edit)
        assert change.text_document.uri == uri
        assert change.text_document.version == s.versions[uri]


async def test_edits_carry_the_document_version(start: Any, workspace: Any):
    async with start(workspace, settings=SETTINGS) as s:
        _require_actions(s)
        await s.wait_model()
        text = (workspace / FILE).read_text()
        uri = s.open(FILE, text)
        s.type(uri, 0, 0, "# edited first\n")
        s.type(uri, 0, 0, "# and again\n")
        text = s.texts[uri]
        action = await _listed(s, uri, text, "def word_count", "docstring")
        assert action.data["version"] == 3
        resolved = await s.answer(s.client.code_action_resolve_async(action))
        (change,) = _text_edits(resolved.edit)
        assert change.text_document.version == 3 == s.versions[uri]


async def test_an_edit_for_a_changed_document_is_refused(start: Any, workspace: Any):
    async with start(workspace, settings=SETTINGS) as s:
        _require_actions(s)
        await s.wait_model()
        text = (workspace / FILE).read_text()
        uri = s.open(FILE, text)
        action = await _listed(s, uri, text, "def shout", "docstring")
        s.type(uri, 0, 0, "# the user typed\n")
        with pytest.raises(JsonRpcException, match="changed"):
            await s.answer(s.client.code_action_resolve_async(action))
        with pytest.raises(JsonRpcException, match="changed"):
            await s.answer(s.command("hushcode.applyAction", {**action.data, "title": "x"}))
        assert s.applied == []
        # a document closed since the listing is refused too
        s.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        with pytest.raises(JsonRpcException, match="closed"):
            await s.answer(s.client.code_action_resolve_async(action))
        await s.still_serves()


async def test_a_change_while_the_action_generates_is_refused(start: Any, workspace: Any):
    settings = {**SETTINGS, "actions": {"maxTokens": 200}}
    async with start(workspace, settings=settings) as s:
        _require_actions(s)
        await s.wait_model()
        text = (workspace / FILE).read_text()
        uri = s.open(FILE, text)
        action = await _listed(s, uri, text, "def evens", "explain")
        pending = asyncio.ensure_future(s.client.code_action_resolve_async(action))

        def generating() -> bool:
            return any(
                "hushcode-action" in str(token)
                and any(isinstance(r, types.WorkDoneProgressBegin) for r in reports)
                for token, reports in s.client.progress_reports.items()
            )

        await s.wait_for(generating, "the action started generating")
        s.type(uri, len(text.split("\n")) - 1, 0, FIB)  # the user keeps typing meanwhile
        with pytest.raises(JsonRpcException, match="changed"):
            await s.answer(pending)
        assert s.applied == []
