"""What a user does in one editor session, as one coroutine: the privacy tests run it under guards.

Indexing, completions (inline and the fallback), typing, symbols, a code action listed and
resolved, a request that fails, a file changed on disk (the watcher), and a model restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.reliability.conftest import Live

ACTION_SETTINGS: dict[str, Any] = {
    "actions": {"maxTokens": 32, "contextTokens": 96},
    "completion": {"maxTokens": 16, "maxBlockTokens": 32, "maxPromptTokens": 512},
}


def marked_source(marker: str) -> str:
    """A document whose every part carries `marker`: comment, string, names, docstring."""
    return (
        f"# {marker} is a secret the logs must never show\n"
        f"SECRET_{marker} = '{marker}'\n\n\n"
        f"def helper_{marker}(value):\n"
        f'    """Doubles {marker}."""\n'
        "    return value * 2\n\n\n"
        "def fib(n):\n"
        "    if n < 2:\n"
        "        return n\n"
        "    return \n"
    )


def at(text: str, needle: str, after: bool = False) -> types.Position:
    offset = text.index(needle) + (len(needle) if after else 0)
    line = text.count("\n", 0, offset)
    return types.Position(line=line, character=offset - (text.rfind("\n", 0, offset) + 1))


@dataclass
class Outcome:
    completions: list[str] = field(default_factory=list)
    action_edit: types.WorkspaceEdit | None = None
    symbols_found_after_disk_change: bool = False


async def use_everything(s: Live, marker: str, *, actions: bool = True) -> Outcome:
    out = Outcome()
    status = await s.wait_model()
    assert status["model"]["state"] == "ready", status
    await s.wait_indexed()
    text = marked_source(marker)
    (s.root / "python" / "private_on_disk.py").write_text(text)  # indexed through the watcher
    uri = s.open("python/private_open.py", text)
    pos = at(text, "    return \n", after=True)
    pos = types.Position(line=pos.line - 1, character=11)
    first = await s.inline_at(uri, pos.line, pos.character)
    assert first, "no completion"
    out.completions.append(first)
    s.type(uri, pos.line, pos.character, "f")
    second = await s.inline_at(uri, pos.line, pos.character + 1)
    out.completions.append(second or "")
    await s.answer(
        s.client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=pos
            )
        )
    )
    with contextlib.suppress(JsonRpcException):  # an error names the position, not the text
        await s.inline_at(uri, 9999, 0)
    await s.answer(
        s.client.text_document_document_symbol_async(
            types.DocumentSymbolParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
    )
    await s.symbols("helper")
    if actions and s.capabilities is not None and s.capabilities.code_action_provider:
        listed = await s.answer(
            s.client.text_document_code_action_async(
                types.CodeActionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    range=types.Range(start=at(text, "def helper"), end=at(text, "def helper")),
                    context=types.CodeActionContext(diagnostics=[]),
                )
            )
        )
        picked = [a for a in listed or [] if isinstance(a, types.CodeAction)]
        assert picked, "no code action listed"
        resolved = await s.answer(s.client.code_action_resolve_async(picked[0]))
        out.action_edit = resolved.edit
    # the watcher sees a new file on disk
    (s.root / "python" / "added_later.py").write_text(f"def added_later_{marker}():\n    pass\n")

    async def found() -> bool:
        return bool(await s.symbols(f"added_later_{marker}"))

    await s.wait_for(found, "a file written to disk reached the index", timeout=60)
    out.symbols_found_after_disk_change = True
    restarted = await s.answer(s.command("hushcode.restart"))
    assert restarted["model"]["state"] == "ready", restarted
    s.type(uri, pos.line, pos.character + 1, "i")
    out.completions.append(await s.inline_at(uri, pos.line, pos.character + 2) or "")
    await asyncio.sleep(0.5)  # let the last log lines arrive
    return out
