"""A stand-in for `hushcode serve` that speaks the same LSP surface, for testing the editor harness.

Standard LSP only: `textDocument/inlineCompletion`, `textDocument/codeAction` + `codeAction/resolve`,
`$/progress` during a fake model load, and the `hushcode.status` / `hushcode.toggleCompletions`
commands through `workspace/executeCommand`. When `HUSHCODE_STUB_LOG` is set, every request it sees
is appended there as one JSON line, so the end-to-end test can check what the editor sent.

Run with an interpreter that has pygls 2: `python stub_server.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

LOAD_SECONDS = float(os.environ.get("HUSHCODE_STUB_LOAD_SECONDS", "1.5"))
LOG = os.environ.get("HUSHCODE_STUB_LOG")
DEF_LINE = re.compile(r"^(\s*)(?:async\s+)?def\s+(\w+)\s*\(")

server = LanguageServer("hushcode-stub", "0.0.1")
state: dict[str, Any] = {"model": "unloaded", "enabled": True, "name": "stub-model"}


def record(event: str, **data: Any) -> None:
    if LOG:
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps({"t": time.time(), "event": event, **data}) + "\n")


@server.feature(types.INITIALIZE)
def initialize(ls: LanguageServer, params: types.InitializeParams) -> None:
    record("initialize", initializationOptions=params.initialization_options,
           client=params.client_info.name if params.client_info else None)


async def load_model(ls: LanguageServer) -> None:
    token = "hushcode-load-model"
    state["model"] = "loading"
    try:
        await ls.work_done_progress.create_async(token)
        ls.work_done_progress.begin(
            token, types.WorkDoneProgressBegin(title="hushcode: loading model", message=state["name"])
        )
        await asyncio.sleep(LOAD_SECONDS)
        state["model"] = "ready"
    finally:
        ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=state["model"]))
    ls.window_log_message(
        types.LogMessageParams(type=types.MessageType.Info, message=f"stub model {state['model']}")
    )


@server.feature(types.INITIALIZED)
async def initialized(ls: LanguageServer, params: types.InitializedParams) -> None:
    await pull_configuration(ls, "initialized")
    await load_model(ls)


async def pull_configuration(ls: LanguageServer, why: str) -> None:
    result = await ls.workspace_configuration_async(
        types.ConfigurationParams(items=[types.ConfigurationItem(section="hushcode")])
    )
    record("configuration", why=why, value=result[0] if result else None)


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def did_change_configuration(ls: LanguageServer, params: types.DidChangeConfigurationParams) -> None:
    record("didChangeConfiguration", settings=params.settings)
    await pull_configuration(ls, "didChangeConfiguration")


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
def inline_completion(
    ls: LanguageServer, params: types.InlineCompletionParams
) -> list[types.InlineCompletionItem]:
    doc = ls.workspace.get_text_document(params.text_document.uri)
    line = doc.lines[params.position.line] if params.position.line < len(doc.lines) else ""
    prefix = line[: params.position.character]
    record("inlineCompletion", prefix=prefix, enabled=state["enabled"], model=state["model"])
    if not state["enabled"] or state["model"] != "ready":
        return []
    if prefix.endswith("def add"):
        text = "(a, b):\n    return a + b  # from the stub"
    else:
        return []
    pos = params.position
    return [
        types.InlineCompletionItem(insert_text=text, range=types.Range(start=pos, end=pos))
    ]


@server.feature(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.RefactorRewrite], resolve_provider=True),
)
def code_action(ls: LanguageServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    doc = ls.workspace.get_text_document(params.text_document.uri)
    line_no = params.range.start.line
    line = doc.lines[line_no] if line_no < len(doc.lines) else ""
    m = DEF_LINE.match(line)
    record("codeAction", line=line_no, text=line.rstrip("\n"), only=params.context.only)
    if not m:
        return []
    return [
        types.CodeAction(
            title=f"hushcode: add a docstring to {m.group(2)}",
            kind=types.CodeActionKind.RefactorRewrite,
            data={"uri": params.text_document.uri, "line": line_no, "version": doc.version},
        )
    ]


@server.feature(types.CODE_ACTION_RESOLVE)
def resolve(ls: LanguageServer, action: types.CodeAction) -> types.CodeAction:
    data = action.data or {}
    doc = ls.workspace.get_text_document(data["uri"])
    line_no = int(data["line"])
    m = DEF_LINE.match(doc.lines[line_no])
    indent = (m.group(1) if m else "") + "    "
    name = m.group(2) if m else "it"
    # Insert after the (possibly multi-line) signature: the first line ending with ':'.
    end = line_no
    while end < len(doc.lines) - 1 and not doc.lines[end].rstrip().endswith(":"):
        end += 1
    at = types.Position(line=end + 1, character=0)
    text = f'{indent}"""Stub docstring for {name}."""\n'
    action.edit = types.WorkspaceEdit(
        changes={data["uri"]: [types.TextEdit(range=types.Range(start=at, end=at), new_text=text)]}
    )
    record("codeActionResolve", title=action.title, line=line_no)
    return action


@server.command("hushcode.status")
def status(ls: LanguageServer) -> dict[str, Any]:
    record("status", model=state["model"], enabled=state["enabled"])
    return {
        "model": {"state": state["model"], "name": state["name"], "error": None},
        "completionsEnabled": state["enabled"],
    }


@server.command("hushcode.toggleCompletions")
def toggle(ls: LanguageServer) -> bool:
    state["enabled"] = not state["enabled"]
    record("toggle", enabled=state["enabled"])
    return bool(state["enabled"])


if __name__ == "__main__":
    print(f"hushcode stub server on stdio (pid {os.getpid()})", file=sys.stderr)
    server.start_io()
