"""Inline completions from the real 0.5B model through the real server over stdio."""

from __future__ import annotations

import asyncio
import time

from lsprotocol import types
from pytest_lsp import client_capabilities

from lsp import syntax
from tests.conftest import LONG_LIST, LONG_LIST_CURSOR

FIB = "def fib(n):\n    if n < 2:\n        return n\n    return \n\n\nprint(fib(10))\n"
WALK = (
    "import os\n\n\n"
    "def list_python_files(root):\n"
    '    """Return the paths of all .py files under root, recursively."""\n'
    "    \n"
)


def _insert(text: str, line: int, character: int, completion: str) -> str:
    lines = text.split("\n")
    lines[line] = lines[line][:character] + completion + lines[line][character:]
    return "\n".join(lines)


async def test_return_in_recursive_fib_is_one_line_calling_fib(session):
    async with session() as s:
        await s.wait_model()
        uri = s.open("scratch/fib.py", FIB)
        result = await s.inline(uri, 3, 11)
        assert result is not None
        assert "\n" not in result
        assert "fib(" in result
        tree = syntax.parse("python", _insert(FIB, 3, 11, result))
        assert tree is not None and syntax.error_count(tree) == 0, result


async def test_body_after_def_with_docstring_is_multi_line_and_parses(session):
    async with session() as s:
        await s.wait_model()
        uri = s.open("scratch/walk.py", WALK)
        result = await s.inline(uri, 5, 4)
        assert result is not None
        assert "\n" in result, result
        body = "    " + result
        assert all(not line.strip() or line.startswith("    ") for line in body.split("\n")), body
        tree = syntax.parse("python", _insert(WALK, 5, 4, result))
        assert tree is not None and syntax.error_count(tree) == 0, result
        metrics = await s.metrics()
        assert metrics["last"]["multiline"] is True


async def test_typing_through_returns_the_rest_with_no_generation(session):
    async with session() as s:
        await s.wait_model()
        uri = s.open("scratch/fib.py", FIB)
        first = await s.inline(uri, 3, 11)
        assert first is not None and len(first) > 4, first
        s.type(uri, 3, 11, first[:3])
        rest = await s.inline(uri, 3, 14)
        assert rest == first[3:]
        last = (await s.metrics())["last"]
        assert last["source"] == "cache"
        assert last["generated_tokens"] == 0


async def test_one_typed_character_evaluates_few_new_prompt_tokens(session):
    # Warm-up off: this checks the prompt layout alone, not the background evaluation.
    async with session(settings={"completion": {"warmup": False}}) as s:
        await s.wait_model()
        uri = s.open("scratch/fib.py", FIB)
        first = await s.inline(uri, 3, 11)
        assert first is not None
        typed = "(" if not first.startswith("(") else "f"
        s.type(uri, 3, 11, typed)
        await s.inline(uri, 3, 12)
        last = (await s.metrics())["last"]
        assert last["source"] == "model", last
        assert last["reused_tokens"] > 0
        assert last["evaluated_tokens"] < 32, last


async def test_cancel_mid_generation_answers_quickly_and_the_next_request_works(session):
    settings = {"completion": {"maxBlockTokens": 1000, "timeBudgetMs": 60000, "warmup": False}}
    async with session(settings=settings) as s:
        await s.wait_model()
        uri = s.open("scratch/capitals.py", LONG_LIST)
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(*LONG_LIST_CURSOR),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked
            ),
        )
        msg_id = "cancel-me"
        pending = asyncio.ensure_future(
            s.client.protocol.send_request_async(
                types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id
            )
        )
        # Wait until the model is generating (prompt evaluated), then cancel.
        await asyncio.sleep(0.5)
        assert not pending.done(), "the generation finished before it could be cancelled"
        cancelled_at = time.monotonic()
        s.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
        result = await asyncio.wait_for(pending, timeout=5)
        answered_ms = (time.monotonic() - cancelled_at) * 1000
        assert answered_ms < 300, answered_ms
        assert result is None or not result.items
        # the worker stopped at the cancel flag, long before its token limit, and the next works
        assert await s.inline(s.open("scratch/fib.py", FIB), 3, 11)
        metrics = await s.metrics()
        assert [m["source"] for m in metrics["recent"]][-2:] == ["cancelled", "model"]
        (abandoned,) = metrics["abandoned"]
        assert abandoned["stop_reason"] == "cancelled"
        assert abandoned["generated_tokens"] < 1000


async def test_completion_fallback_for_a_client_without_inline_completion(session):
    async with session(capabilities="neovim") as s:
        await s.wait_model()
        uri = s.open("scratch/fib.py", FIB)
        result = await s.client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=3, character=11),
            )
        )
        assert isinstance(result, types.CompletionList)
        assert len(result.items) == 1
        edit = result.items[0].text_edit
        assert isinstance(edit, types.TextEdit)
        assert "fib(" in edit.new_text


async def test_completion_request_is_quiet_for_inline_clients(session):
    caps = client_capabilities("visual_studio_code")
    assert caps.text_document is not None
    caps.text_document.inline_completion = types.InlineCompletionClientCapabilities()
    async with session(capabilities=caps) as s:
        await s.wait_model()
        uri = s.open("scratch/fib.py", FIB)
        result = await s.client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=3, character=11),
            )
        )
        assert result is None


async def test_warmup_after_a_pause_makes_the_next_request_cheap(session):
    async with session() as s:
        await s.wait_model()
        uri = s.open("scratch/fib.py", FIB)
        await s.inline(uri, 3, 11)
        s.type(uri, 3, 11, "(")  # the user types, then pauses
        deadline = time.monotonic() + 30
        while (await s.metrics())["warmups"] < 1:
            assert time.monotonic() < deadline, "no warm-up after the pause"
            await asyncio.sleep(0.1)
        await s.inline(uri, 3, 12)
        last = (await s.metrics())["last"]
        assert last["source"] == "model"
        assert last["evaluated_tokens"] <= 2, last  # the warm-up evaluated the prompt already
