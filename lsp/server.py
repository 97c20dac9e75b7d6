"""The only module that speaks LSP: handlers turn protocol types into calls on domain objects."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from lsp import __version__, paths, syntax
from lsp import log as logsetup
from lsp.completion.engine import CompletionEngine, CompletionRequest
from lsp.completion.fim import load_templates
from lsp.config import Settings, parse_settings, to_wire
from lsp.index import Definition, SymbolNode, WorkspaceIndex, nest
from lsp.model.backend import ModelError, ModelState
from lsp.model.service import CancelToken, ModelService

log = logging.getLogger(__name__)
T = TypeVar("T")

_LEVELS = {
    logging.ERROR: types.MessageType.Error,
    logging.WARNING: types.MessageType.Warning,
    logging.INFO: types.MessageType.Info,
    logging.DEBUG: types.MessageType.Log,
}


class HushcodeServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("hushcode", __version__)
        self.settings = Settings()
        self.service = ModelService()
        self.engine = CompletionEngine(self.service, load_templates(), self.settings.completion)
        self.completions_enabled = True
        self.root: Path | None = None
        self._model_key: tuple[str, int, int] | None = None
        self._load_task: asyncio.Task[None] | None = None
        self._reload_wanted = False
        self._client_log: logsetup.ClientHandler | None = None
        self.index: WorkspaceIndex | None = None
        # One thread for the index keeps didOpen/didChange/didClose in order.
        self._index_thread = ThreadPoolExecutor(1, thread_name_prefix="hushcode-index")

    # -- settings -------------------------------------------------------------------------------

    def apply_settings(self, raw: Any, source: str) -> None:
        settings, problems = parse_settings(raw)
        if problems:
            details = "; ".join(problems)
            log.warning("settings from %s: %s (defaults kept for those)", source, details)
            self.show(
                types.MessageType.Warning,
                f"hushcode: some settings from {source} were ignored, defaults kept: {details}",
            )
        self.settings = settings
        self.engine.settings = settings.completion
        logsetup.setup(settings.log_level, settings.log_file)
        if self._client_log is not None:
            self._client_log.setLevel(max(logging.INFO, logging.getLogger("lsp").level))

    def model_key(self) -> tuple[str, int, int]:
        m = self.settings.model
        return (m.name, m.threads, m.context_size)

    # -- messages -------------------------------------------------------------------------------

    def show(self, kind: types.MessageType, message: str) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def attach_client_log(self) -> None:
        loop = asyncio.get_running_loop()

        def send(level: int, message: str) -> None:
            params = types.LogMessageParams(
                type=_LEVELS.get(level, types.MessageType.Log), message=message
            )
            loop.call_soon_threadsafe(self.window_log_message, params)

        self._client_log = logsetup.ClientHandler(send)
        self._client_log.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logging.getLogger("lsp").addHandler(self._client_log)
        # Editors show a server's stderr as errors; the client's log now carries the rest.
        logsetup.quiet_stderr()

    # -- model ----------------------------------------------------------------------------------

    def start_model_load(self) -> None:
        """Load the configured model; a load already under way is followed by another if needed.

        A load is never cancelled midway: that would orphan its progress request.
        """
        if self._load_task is not None and not self._load_task.done():
            self._reload_wanted = True
            return
        self._model_key = self.model_key()
        self._reload_wanted = False
        self._load_task = asyncio.get_running_loop().create_task(self.load_model())
        self._load_task.add_done_callback(self._after_load)

    def _after_load(self, _: asyncio.Task[None]) -> None:
        if self._reload_wanted and self.model_key() != self._model_key:
            self.start_model_load()

    async def load_model(self) -> None:
        from lsp.model.llama import LlamaModel
        from lsp.model.manager import resolve_model

        m = self.settings.model
        token = f"hushcode-model-{uuid.uuid4()}"
        progress = await self._progress_begin(token, "hushcode: loading model", m.name)
        try:
            path = await asyncio.to_thread(resolve_model, m.name)
            display = Path(m.name).name if Path(m.name).suffix == ".gguf" else m.name
            model = await self.service.load(
                lambda: LlamaModel(path, name=display, n_ctx=m.context_size, n_threads=m.threads)
            )
            info = model.info
            warning = self.engine.model_ready(info)
            family = self.engine.template.family if self.engine.template else "?"
            self.window_log_message(
                types.LogMessageParams(
                    type=types.MessageType.Info,
                    message=(
                        f"hushcode: model {info.name} ready ({info.size_bytes / 1e6:.0f} MB, "
                        f"{info.n_threads} threads, context {info.n_ctx}, FIM {family}) "
                        f"loaded in {self.service.load_seconds:.2f} s"
                    ),
                )
            )
            if warning:
                log.warning(warning)
                self.show(types.MessageType.Warning, f"hushcode: {warning}")
        except ModelError as exc:
            self.service.state, self.service.error = ModelState.FAILED, str(exc)
            log.error("model not loaded: %s", exc)
            self.show(types.MessageType.Error, f"hushcode: {exc}")
        finally:
            if progress:
                self.work_done_progress.end(
                    token, types.WorkDoneProgressEnd(message=self.service.state.value)
                )

    async def _progress_begin(self, token: str, title: str, message: str) -> bool:
        caps = self.client_capabilities.window
        if not (caps and caps.work_done_progress):
            return False
        try:
            await self.work_done_progress.create_async(token)
        except Exception:
            log.debug("client refused a progress token", exc_info=True)
            return False
        self.work_done_progress.begin(
            token, types.WorkDoneProgressBegin(title=title, message=message, cancellable=False)
        )
        return True

    # -- index ----------------------------------------------------------------------------------

    async def in_index(self, fn: Callable[[WorkspaceIndex], T]) -> T | None:
        """Run `fn(index)` on the index thread; None when there is no index."""
        index = self.index
        if index is None:
            return None
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._index_thread, fn, index)
        except Exception:
            log.exception("index operation failed")
            return None

    async def start_index(self) -> None:
        if self.root is None or not self.settings.index.enabled:
            return
        root = self.root.resolve()
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
        index = WorkspaceIndex(
            root,
            paths.index_dir() / f"{digest}.sqlite",
            max_file_bytes=self.settings.index.max_file_kb * 1024,
            exclude=self.settings.index.exclude,
        )
        self.index = index
        self.engine.context = self.retrieve
        self.engine.repo_name = root.name
        token = f"hushcode-index-{uuid.uuid4()}"
        progress = await self._progress_begin(token, "hushcode: indexing", root.name)
        loop = asyncio.get_running_loop()
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = loop.time()
            if progress and (now - last[0] > 0.2 or done == total):
                last[0] = now
                pct = int(100 * done / total) if total else 100
                value = types.WorkDoneProgressReport(
                    message=f"{done}/{total} files", percentage=pct
                )
                loop.call_soon_threadsafe(self.work_done_progress.report, token, value)

        message = "failed"
        try:
            stats = await loop.run_in_executor(
                None,
                lambda: index.index_all(progress=report, cancel=lambda: self.index is not index),
            )
            message = f"{stats.files_seen} files, {stats.definitions} definitions"
            log.debug(
                "index of %s: %s (%d parsed) in %.1f s",
                root.name,
                message,
                stats.parsed,
                stats.seconds,
            )
            await loop.run_in_executor(None, index.start_watching)
        except Exception:
            log.exception("indexing failed; completions go on without repository context")
        finally:
            if progress:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))

    def retrieve(self, req: CompletionRequest) -> list[tuple[str, str]]:
        """Repository context for the engine (runs on a worker thread)."""
        index, fs = self.index, to_fs_path(req.uri)
        if index is None or fs is None:
            return []
        budget = int(self.settings.completion.context_tokens * 3.2)
        return [(s.path, s.text) for s in index.retrieve(Path(fs), req.text, req.offset, budget)]

    def stop_index(self) -> None:
        index, self.index = self.index, None
        if index is not None:
            index.stop()

    # -- documents ------------------------------------------------------------------------------

    def index_later(self, fn: Callable[[WorkspaceIndex], Any]) -> None:
        """Queue an index update without waiting for it (order is kept by the index thread)."""
        index = self.index
        if index is not None:
            future = self._index_thread.submit(fn, index)
            future.add_done_callback(_log_failure)

    def document_request(self, uri: str, position: types.Position) -> CompletionRequest | None:
        """Validate a request position and build the engine's request (None: nothing to serve)."""
        doc = self.workspace.get_text_document(uri)
        if uri not in self.workspace.text_documents:
            raise JsonRpcInvalidParams(f"{uri} is not open: send textDocument/didOpen first")
        lines = doc.lines
        if position.line > len(lines) or (position.line == len(lines) and position.character > 0):
            raise JsonRpcInvalidParams(
                f"position {position.line}:{position.character} is past the end of the document "
                f"({len(lines)} lines)"
            )
        if position.line < len(lines):
            line = lines[position.line].rstrip("\r\n")
            width = doc.position_codec.client_num_units(line)
            if position.character > width:
                raise JsonRpcInvalidParams(
                    f"position {position.line}:{position.character} is past the end of line "
                    f"{position.line} ({width} characters)"
                )
        language = syntax.normalise_language_id(doc.language_id, to_fs_path(uri) or uri)
        if (doc.language_id or "") in self.settings.disabled_languages or (
            language is not None and language in self.settings.disabled_languages
        ):
            return None
        return CompletionRequest(
            uri=uri,
            text=doc.source,
            offset=doc.offset_at_position(position),
            language_id=language,
            path=self.display_path(uri),
            version=doc.version,
        )

    def display_path(self, uri: str) -> str:
        fs = to_fs_path(uri)
        if fs is None:
            return uri
        path = Path(fs)
        if self.root is not None:
            try:
                return path.resolve().relative_to(self.root.resolve()).as_posix()
            except ValueError:
                pass
        return path.name

    def warm(self, uri: str, position: types.Position | None) -> None:
        if not self.completions_enabled or not self.settings.completion.warmup:
            return
        doc = self.workspace.get_text_document(uri)
        if position is None:
            position = types.Position(line=max(0, len(doc.lines) - 1), character=0)
        try:
            req = self.document_request(uri, position)
        except JsonRpcInvalidParams:
            return
        if req is not None:
            self.engine.schedule_warmup(req)

    def status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "model": {
                "state": self.service.state.value,
                "name": self.settings.model.name,
                "error": self.service.error,
                "family": self.engine.template.family if self.engine.template else None,
            },
            "completionsEnabled": self.completions_enabled,
            "settings": to_wire(self.settings),
        }


def _log_failure(future: Any) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("index update failed: %s", exc, exc_info=exc)


server = HushcodeServer()


@server.feature(types.INITIALIZE)
def initialize(ls: HushcodeServer, params: types.InitializeParams) -> None:
    folders = params.workspace_folders or []
    root = folders[0].uri if folders else params.root_uri
    fs = to_fs_path(root) if root else None
    ls.root = Path(fs) if fs else None
    ls.apply_settings(params.initialization_options, "initializationOptions")


@server.feature(types.INITIALIZED)
async def initialized(ls: HushcodeServer, params: types.InitializedParams) -> None:
    ls.attach_client_log()
    await pull_configuration(ls)
    ls.start_model_load()
    await register_file_watching(ls)
    await ls.start_index()


async def register_file_watching(ls: HushcodeServer) -> None:
    """Ask the client to watch files too, when it can (watchdog covers the rest)."""
    caps = ls.client_capabilities.workspace
    watched = caps.did_change_watched_files if caps else None
    if not (watched and watched.dynamic_registration) or ls.root is None:
        return
    options = types.DidChangeWatchedFilesRegistrationOptions(
        watchers=[types.FileSystemWatcher(glob_pattern="**/*")]
    )
    try:
        await ls.client_register_capability_async(
            types.RegistrationParams(
                registrations=[
                    types.Registration(
                        id=f"hushcode-watch-{uuid.uuid4()}",
                        method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                        register_options=options,
                    )
                ]
            )
        )
    except Exception as exc:
        log.debug("client file watching not registered: %s", exc)


@server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
async def did_change_watched_files(
    ls: HushcodeServer, params: types.DidChangeWatchedFilesParams
) -> None:
    changed = [Path(p) for c in params.changes if (p := to_fs_path(c.uri))]
    await ls.in_index(lambda index: index.disk_changed(changed))


async def pull_configuration(ls: HushcodeServer) -> None:
    workspace_caps = ls.client_capabilities.workspace
    if not (workspace_caps and workspace_caps.configuration):
        return
    try:
        result = await asyncio.wait_for(
            ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section="hushcode")])
            ),
            timeout=5,
        )
    except Exception as exc:
        log.warning("workspace/configuration failed: %s", exc)
        return
    if result and isinstance(result[0], dict) and result[0]:
        ls.apply_settings(result[0], "workspace/configuration")


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def did_change_configuration(
    ls: HushcodeServer, params: types.DidChangeConfigurationParams
) -> None:
    settings = params.settings
    if isinstance(settings, dict) and isinstance(settings.get("hushcode"), dict):
        ls.apply_settings(settings["hushcode"], "workspace/didChangeConfiguration")
    else:
        await pull_configuration(ls)
    if ls.model_key() != ls._model_key and ls._model_key is not None:
        ls.start_model_load()


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
async def did_open(ls: HushcodeServer, params: types.DidOpenTextDocumentParams) -> None:
    td = params.text_document
    ls.warm(td.uri, None)
    if fs := to_fs_path(td.uri):
        await ls.in_index(lambda index: index.update_document(Path(fs), td.text, td.language_id))


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: HushcodeServer, params: types.DidChangeTextDocumentParams) -> None:
    position = None
    last = params.content_changes[-1] if params.content_changes else None
    if isinstance(last, types.TextDocumentContentChangePartial):
        lines = last.text.split("\n")
        start = last.range.start
        character = (start.character if len(lines) == 1 else 0) + len(lines[-1])
        position = types.Position(line=start.line + len(lines) - 1, character=character)
    uri = params.text_document.uri
    ls.warm(uri, position)
    if fs := to_fs_path(uri):
        text = ls.workspace.get_text_document(uri).source
        ls.index_later(lambda index: index.update_document(Path(fs), text))


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: HushcodeServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.engine.forget(uri)
    if fs := to_fs_path(uri):
        ls.index_later(lambda index: index.close_document(Path(fs)))


_KINDS = {
    "function": types.SymbolKind.Function,
    "method": types.SymbolKind.Method,
    "class": types.SymbolKind.Class,
    "interface": types.SymbolKind.Interface,
    "type": types.SymbolKind.Struct,
    "enum": types.SymbolKind.Enum,
    "constant": types.SymbolKind.Constant,
    "variable": types.SymbolKind.Variable,
    "module": types.SymbolKind.Module,
    "macro": types.SymbolKind.Constant,
}


def _range(d: Definition) -> types.Range:
    return types.Range(
        start=types.Position(line=d.start_line, character=d.start_col),
        end=types.Position(line=d.end_line, character=d.end_col),
    )


def _document_symbol(node: SymbolNode) -> types.DocumentSymbol:
    d = node.definition
    return types.DocumentSymbol(
        name=d.name,
        kind=_KINDS.get(d.kind, types.SymbolKind.Variable),
        range=_range(d),
        selection_range=types.Range(
            start=types.Position(line=d.name_line, character=d.name_col),
            end=types.Position(line=d.name_line, character=d.name_end_col),
        ),
        detail=d.signature.splitlines()[0] if d.signature else None,
        children=[_document_symbol(c) for c in node.children],
    )


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
async def document_symbol(
    ls: HushcodeServer, params: types.DocumentSymbolParams
) -> list[types.DocumentSymbol] | None:
    fs = to_fs_path(params.text_document.uri)
    if fs is None:
        return None
    defs = await ls.in_index(lambda index: index.document_symbols(Path(fs)))
    return [_document_symbol(n) for n in nest(defs or [])]


@server.feature(types.WORKSPACE_SYMBOL)
async def workspace_symbol(
    ls: HushcodeServer, params: types.WorkspaceSymbolParams
) -> list[types.SymbolInformation] | None:
    index = ls.index
    if index is None:
        return None
    defs = await ls.in_index(lambda index: index.workspace_symbols(params.query))
    return [
        types.SymbolInformation(
            name=d.name,
            kind=_KINDS.get(d.kind, types.SymbolKind.Variable),
            location=types.Location(uri=index.abspath(d.path).as_uri(), range=_range(d)),
            container_name=d.container,
        )
        for d in defs or []
    ]


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(
    ls: HushcodeServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList | None:
    if not (ls.completions_enabled and ls.settings.completion.inline):
        return None
    text = await _complete(ls, params.text_document.uri, params.position)
    if not text:
        return types.InlineCompletionList(items=[])
    here = types.Range(start=params.position, end=params.position)
    return types.InlineCompletionList(
        items=[types.InlineCompletionItem(insert_text=text, range=here)]
    )


@server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
async def completion(
    ls: HushcodeServer, params: types.CompletionParams
) -> types.CompletionList | None:
    """One item carrying the completion, for clients without inline completion."""
    td = ls.client_capabilities.text_document
    if td is not None and td.inline_completion is not None:
        return None  # the client shows ghost text; a popup item would be a duplicate
    if not (ls.completions_enabled and ls.settings.completion.fallback):
        return None
    text = await _complete(ls, params.text_document.uri, params.position)
    if not text:
        return types.CompletionList(is_incomplete=True, items=[])
    first = text.strip().splitlines()[0]
    item = types.CompletionItem(
        label=first if len(first) <= 60 else first[:57] + "...",
        kind=types.CompletionItemKind.Text,
        detail="hushcode",
        text_edit=types.TextEdit(
            range=types.Range(start=params.position, end=params.position), new_text=text
        ),
        insert_text_format=types.InsertTextFormat.PlainText,
        sort_text="0",
        filter_text="",
    )
    return types.CompletionList(is_incomplete=True, items=[item])


async def _complete(ls: HushcodeServer, uri: str, position: types.Position) -> str | None:
    req = ls.document_request(uri, position)
    if req is None:
        return None
    cancel = CancelToken()
    try:
        result = await ls.engine.complete(req, cancel)
    except asyncio.CancelledError:
        cancel.cancel()  # `$/cancelRequest`: stop the generation, answer with an empty result
        return None
    return result.text if result else None


@server.command("hushcode.status")
def status_command(ls: HushcodeServer, *args: Any) -> dict[str, Any]:
    return ls.status()


@server.command("hushcode.metrics")
def metrics_command(ls: HushcodeServer, *args: Any) -> dict[str, Any]:
    return ls.engine.metrics.snapshot()


@server.command("hushcode.toggleCompletions")
def toggle_command(ls: HushcodeServer, *args: Any) -> bool:
    if args and isinstance(args[0], bool):
        ls.completions_enabled = args[0]
    else:
        ls.completions_enabled = not ls.completions_enabled
    return ls.completions_enabled


@server.command("hushcode.restart")
async def restart_command(ls: HushcodeServer, *args: Any) -> dict[str, Any]:
    """Reload the model, e.g. after `hushcode model install`; answers when loading has finished."""
    if ls._load_task is not None and not ls._load_task.done():
        await asyncio.shield(ls._load_task)
    ls._model_key = None  # force: the file behind the same name may have changed
    ls.start_model_load()
    if ls._load_task is not None:
        await asyncio.shield(ls._load_task)
    return ls.status()


@server.feature(types.SHUTDOWN)
def shutdown(ls: HushcodeServer, params: None) -> None:
    ls.stop_index()
    ls.service.close()
