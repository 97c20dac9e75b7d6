"""`make run`: a real completion from the real model through the real server, over stdio.

Starts `hushcode serve` as an editor would, opens examples/python/mathutils.py as if the user had
just typed `return ` in `fib`, asks for an inline completion, then for the code actions offered
on `normalise`. Prints what an editor would show, with latencies.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

HERE = Path(__file__).resolve().parent
FILE = HERE / "python" / "mathutils.py"
CURSOR_LINE = "    return fib(n - 1) + fib(n - 2)"
TYPED = "    return "


async def main() -> int:
    source = FILE.read_text()
    line_no = source.splitlines().index(CURSOR_LINE)
    text = source.replace(CURSOR_LINE, TYPED, 1)
    uri = FILE.as_uri()

    client = LanguageClient("hushcode-demo", "1")
    logs: list[str] = []
    shown: list[str] = []

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def _log(params: types.LogMessageParams) -> None:
        logs.append(params.message)

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def _show(params: types.ShowMessageParams) -> None:
        shown.append(params.message)

    @client.feature(types.PROGRESS)
    def _progress_report(params: types.ProgressParams) -> None:
        return None

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def _progress(params: types.WorkDoneProgressCreateParams) -> None:
        return None

    await client.start_io(sys.executable, "-m", "lsp", "serve")
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=True),
                text_document=types.TextDocumentClientCapabilities(
                    inline_completion=types.InlineCompletionClientCapabilities(),
                    code_action=types.CodeActionClientCapabilities(
                        resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"])
                    ),
                ),
            ),
            root_uri=HERE.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=HERE.as_uri(), name="examples")],
        )
    )
    client.initialized(types.InitializedParams())
    try:
        status = await _wait_ready(client)
        for line in logs:
            print(line)
        if status["model"]["state"] != "ready":
            print(f"model not ready: {status['model']['error']}")
            for message in shown:
                print(message)
            return 1
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=text
                )
            )
        )
        position = types.Position(line=line_no, character=len(TYPED))
        print(f"\n{FILE.relative_to(HERE.parent)}:{line_no + 1}, the user has typed:")
        print(f"    {TYPED}|")
        started = time.perf_counter()
        result = await client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=position,
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic
                ),
            )
        )
        elapsed = (time.perf_counter() - started) * 1000
        items = result.items if isinstance(result, types.InlineCompletionList) else result or []
        if not items:
            print(f"no completion ({elapsed:.0f} ms)")
            return 1
        insert = items[0].insert_text
        insert = insert if isinstance(insert, str) else insert.value
        print(f"ghost text ({elapsed:.0f} ms): {insert!r}")
        print(f"    {TYPED}{insert}")
        metrics = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="hushcode.metrics")
        )
        last = metrics["last"]
        print(
            f"tokens: {last['prompt_tokens']} in the prompt, {last['reused_tokens']} reused "
            f"from the KV cache, {last['evaluated_tokens']} evaluated, "
            f"{last['generated_tokens']} generated"
        )

        target = source.splitlines().index("def normalise(values: list[float]) -> list[float]:")
        actions = (
            await client.text_document_code_action_async(
                types.CodeActionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    range=types.Range(
                        start=types.Position(line=target, character=4),
                        end=types.Position(line=target, character=4),
                    ),
                    context=types.CodeActionContext(diagnostics=[]),
                )
            )
            if _supports(client, "codeActionProvider")
            else None
        )
        print(f"\ncode actions offered on line {target + 1} (`def normalise`):")
        titles = [a.title for a in actions or []]
        print("\n".join(f"  - {t}" for t in titles) if titles else "  (none yet)")
        return 0
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()


def _supports(client: LanguageClient, capability: str) -> bool:
    caps = (
        client.protocol.server_capabilities
        if hasattr(client.protocol, "server_capabilities")
        else None
    )
    return bool(caps and getattr(caps, _snake(capability), None))


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


async def _wait_ready(client: LanguageClient, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="hushcode.status")
        )
        if status["model"]["state"] in ("ready", "failed") or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.1)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
