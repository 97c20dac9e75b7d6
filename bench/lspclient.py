"""A small LSP client for the benchmarks: drives a real `hushcode serve` over stdio (pygls).

Protocol code lives here, outside `lsp/`, so the domain rule (only lsp/server.py speaks LSP) holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

REQUEST_TIMEOUT = float(os.environ.get("BENCH_REQUEST_TIMEOUT", "120"))
"""No request waits longer: a wedged server fails the case instead of hanging the run."""

LANGUAGE_IDS = {
    ".py": "python",
    ".ts": "typescript",
    ".tsx": "typescriptreact",
    ".js": "javascript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
}


class ServerSession:
    """One live server: open/type/close documents, ask for completions and code actions."""

    def __init__(self, client: LanguageClient, root: Path, caps: types.ServerCapabilities) -> None:
        self.client = client
        self.root = root
        self.caps = caps
        self.versions: dict[str, int] = {}
        self.texts: dict[str, str] = {}
        self.progress_titles: dict[str, str] = {}
        self.progress_done: dict[str, str] = {}
        self.messages: list[str] = []

    # -- documents ------------------------------------------------------------------------

    def uri(self, rel: str) -> str:
        return (self.root / rel).as_uri()

    def open(self, rel: str, text: str, language: str | None = None) -> str:
        uri = self.uri(rel)
        lang = language or LANGUAGE_IDS.get(Path(rel).suffix, "plaintext")
        self.versions[uri] = 1
        self.texts[uri] = text
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id=lang, version=1, text=text
                )
            )
        )
        return uri

    def type(self, uri: str, line: int, character: int, text: str) -> None:
        """Insert `text` at a position, as an editor's incremental didChange does."""
        self.versions[uri] += 1
        pos = types.Position(line=line, character=character)
        lines = self.texts[uri].split("\n")
        lines[line] = lines[line][:character] + text + lines[line][character:]
        self.texts[uri] = "\n".join(lines)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=uri, version=self.versions[uri]
                ),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(start=pos, end=pos), text=text
                    )
                ],
            )
        )

    def close(self, uri: str) -> None:
        self.versions.pop(uri, None)
        self.texts.pop(uri, None)
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )

    # -- requests -------------------------------------------------------------------------

    async def inline(self, uri: str, line: int, character: int) -> tuple[str | None, float]:
        """The inline completion at a position and the client-side round trip in ms."""
        started = time.perf_counter()
        result = await asyncio.wait_for(
            self.client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(line=line, character=character),
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Automatic
                    ),
                )
            ),
            REQUEST_TIMEOUT,
        )
        elapsed = (time.perf_counter() - started) * 1000
        if result is None:
            return None, elapsed
        items = result.items if isinstance(result, types.InlineCompletionList) else result
        if not items:
            return None, elapsed
        text = items[0].insert_text
        return (text if isinstance(text, str) else text.value), elapsed

    @property
    def has_code_actions(self) -> bool:
        return bool(self.caps.code_action_provider)

    @property
    def resolves_code_actions(self) -> bool:
        provider = self.caps.code_action_provider
        return isinstance(provider, types.CodeActionOptions) and bool(provider.resolve_provider)

    async def code_actions(
        self, uri: str, start: tuple[int, int], end: tuple[int, int]
    ) -> tuple[list[Any], float]:
        started = time.perf_counter()
        result = await asyncio.wait_for(
            self.client.text_document_code_action_async(
                types.CodeActionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    range=types.Range(
                        start=types.Position(line=start[0], character=start[1]),
                        end=types.Position(line=end[0], character=end[1]),
                    ),
                    context=types.CodeActionContext(diagnostics=[]),
                )
            ),
            REQUEST_TIMEOUT,
        )
        return list(result or []), (time.perf_counter() - started) * 1000

    async def resolve(self, action: types.CodeAction) -> tuple[types.CodeAction, float]:
        started = time.perf_counter()
        resolved = await asyncio.wait_for(
            self.client.code_action_resolve_async(action), REQUEST_TIMEOUT
        )
        return resolved, (time.perf_counter() - started) * 1000

    async def command(self, name: str, *args: Any) -> Any:
        return await asyncio.wait_for(
            self.client.workspace_execute_command_async(
                types.ExecuteCommandParams(command=name, arguments=list(args))
            ),
            REQUEST_TIMEOUT,
        )

    async def metrics(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.command("hushcode.metrics")
        return result

    async def last_metrics(self) -> dict[str, Any]:
        last: dict[str, Any] = (await self.metrics()).get("last") or {}
        return last

    async def wait_model(self, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = await self.command("hushcode.status")
            if status["model"]["state"] in ("ready", "failed"):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"model not loaded: {status}")
            await asyncio.sleep(0.1)

    async def wait_index(self, timeout: float = 180) -> str | None:
        """Wait for the server's indexing progress to end; its final message (None: no index)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for token, title in self.progress_titles.items():
                if "index" in title and token in self.progress_done:
                    return self.progress_done[token]
            await asyncio.sleep(0.05)
        return None


@contextlib.asynccontextmanager
async def serve(
    root: Path,
    *,
    settings: dict[str, Any] | None = None,
    home: Path,
    stderr_log: Path | None = None,
    wait_index: bool = True,
) -> AsyncIterator[ServerSession]:
    """Start `python -m lsp serve` on `root` with `settings`, initialised as an editor would."""
    client = LanguageClient("hushcode-bench", "1")
    titles: dict[str, str] = {}
    done: dict[str, str] = {}
    messages: list[str] = []

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def _create(params: types.WorkDoneProgressCreateParams) -> None:
        return None

    @client.feature(types.PROGRESS)
    def _progress(params: types.ProgressParams) -> None:
        token, value = str(params.token), params.value
        kind = getattr(value, "kind", None) or (
            value.get("kind") if isinstance(value, dict) else None
        )
        get = (
            (lambda k: value.get(k))
            if isinstance(value, dict)
            else (lambda k: getattr(value, k, None))
        )
        if kind == "begin":
            titles[token] = str(get("title") or "")
        elif kind == "end":
            done[token] = str(get("message") or "")

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def _log(params: types.LogMessageParams) -> None:
        messages.append(params.message)

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def _show(params: types.ShowMessageParams) -> None:
        messages.append(params.message)

    @client.feature(types.WORKSPACE_CONFIGURATION)
    def _configuration(params: types.ConfigurationParams) -> list[Any]:
        return [settings or {} for _ in params.items]

    env = {**os.environ, "HUSHCODE_HOME": str(home)}
    await asyncio.to_thread(home.mkdir, parents=True, exist_ok=True)
    await client.start_io(sys.executable, "-m", "lsp", "serve", env=env)
    drain = asyncio.create_task(_drain(client, stderr_log))
    caps = types.ClientCapabilities(
        window=types.WindowClientCapabilities(work_done_progress=True),
        workspace=types.WorkspaceClientCapabilities(configuration=True),
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities(),
            code_action=types.CodeActionClientCapabilities(
                code_action_literal_support=types.ClientCodeActionLiteralOptions(
                    code_action_kind=types.ClientCodeActionKindOptions(
                        value_set=[k for k in types.CodeActionKind]
                    )
                ),
                resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"]),
                data_support=True,
            ),
        ),
    )
    result = await client.initialize_async(
        types.InitializeParams(
            capabilities=caps,
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            initialization_options=settings or {},
        )
    )
    client.initialized(types.InitializedParams())
    session = ServerSession(client, root, result.capabilities)
    session.progress_titles, session.progress_done, session.messages = titles, done, messages
    try:
        status = await session.wait_model()
        if status["model"]["state"] != "ready":
            raise RuntimeError(f"the server's model did not load: {status['model']['error']}")
        index_on = (settings or {}).get("index", {}).get("enabled", True)
        if wait_index and index_on:
            await session.wait_index()
        yield session
    finally:
        try:
            await asyncio.wait_for(client.shutdown_async(None), timeout=20)
            client.exit(None)
        except Exception:
            pass
        server = getattr(client, "_server", None)
        try:
            await asyncio.wait_for(client.stop(), timeout=10)
        except Exception:
            if server is not None and server.returncode is None:
                server.kill()
        drain.cancel()


async def _drain(client: LanguageClient, log: Path | None) -> None:
    """Read the server's stderr so it can never block on a full pipe."""
    server = getattr(client, "_server", None)
    if server is None or server.stderr is None:
        return
    fh = log.open("ab") if log is not None else None
    try:
        while True:
            chunk = await server.stderr.read(65536)
            if not chunk:
                return
            if fh is not None:
                fh.write(chunk)
                fh.flush()
    finally:
        if fh is not None:
            fh.close()
