"""The only module that speaks LSP: handlers turn protocol types into calls on domain objects."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

import attrs
import cattrs
from lsprotocol import types
from pygls.exceptions import (
    FeatureRequestError,
    JsonRpcException,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
)
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.uris import from_fs_path, to_fs_path
from pygls.workspace import TextDocument, Workspace

from lsp import __version__, paths, syntax
from lsp import log as logsetup
from lsp.actions import (
    ActionCancelled,
    ActionEdit,
    ActionEngine,
    ActionError,
    ActionKind,
    Diagnostic,
    Document,
    StaleDocument,
    Target,
)
from lsp.completion.engine import CompletionEngine, CompletionRequest
from lsp.completion.fim import load_templates
from lsp.config import Settings, parse_settings, to_wire
from lsp.index import Definition, SymbolNode, WorkspaceIndex, nest
from lsp.model.backend import ModelError, ModelInfo, ModelState
from lsp.model.manager import concrete_name, display_name
from lsp.model.service import CancelToken, ModelService

log = logging.getLogger(__name__)
T = TypeVar("T")

_LEVELS = {
    logging.ERROR: types.MessageType.Error,
    logging.WARNING: types.MessageType.Warning,
    logging.INFO: types.MessageType.Info,
    logging.DEBUG: types.MessageType.Log,
}


class _Unreadable:
    """A message whose params do not fit their type: answered with InvalidParams, never run."""

    def __init__(self, msg_id: Any, method: str, problems: str) -> None:
        self.msg_id, self.method, self.problems = msg_id, method, problems

    def __repr__(self) -> str:
        return f"<{self.method} with invalid params>"


_LSP_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _TextDocument(TextDocument):
    """Lines as LSP counts them: only LF, CRLF and CR end one.

    pygls uses `str.splitlines`, which also breaks at form feed, vertical tab, U+001C-U+001E,
    U+0085, U+2028 and U+2029: every position after one is off, and incremental edits land in the
    wrong place.
    Unpaired surrogates (valid JSON, not text) become U+FFFD, one UTF-16 unit as well: the
    tokenizer and the index encode UTF-8, which has no form for them.
    """

    @property
    def _source(self) -> str | None:
        return self.__dict__["_hushcode_source"]

    @_source.setter
    def _source(self, text: str | None) -> None:
        if text and not text.isascii() and _SURROGATE.search(text):
            text = _SURROGATE.sub("\ufffd", text)
        self.__dict__["_hushcode_source"] = text

    @property
    def lines(self) -> Sequence[str]:
        source = self.source
        lines = source.splitlines(True)
        breaks = source.count("\n") + source.count("\r") - source.count("\r\n")
        if len(lines) != breaks + (1 if source and source[-1] not in "\r\n" else 0):
            lines = _LSP_LINES.findall(source)
        return tuple(lines)


class _Workspace(Workspace):
    def _create_text_document(
        self,
        doc_uri: str,
        source: str | None = None,
        version: int | None = None,
        language_id: str | None = None,
    ) -> TextDocument:
        return _TextDocument(
            doc_uri,
            source=source,
            version=version,
            language_id=language_id,
            sync_kind=self._sync_kind,
            position_codec=self._position_codec,
        )


def _problem(exc: BaseException, kind: Any) -> str:
    text = str(exc)
    if isinstance(exc, ValueError) and " should be in range " in text:
        return text.rstrip(".")  # lsprotocol's range checks: numbers only
    return cattrs.v.format_exception(exc, kind)


class HushcodeProtocol(LanguageServerProtocol):
    """pygls leaves a request whose params fail to deserialise unanswered (the editor waits for
    ever) and pops up "Error in server"; here it gets an InvalidParams answer naming the field.
    A second `initialize` or `initialized` is refused: pygls would start the session over."""

    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        self._seen: set[str] = set()

    def structure_message(self, data: dict[str, Any]) -> Any:
        method = data.get("method")
        if "jsonrpc" in data and isinstance(method, str) and "error" not in data:
            kind = self.get_message_type(method)
            if kind is not None:
                try:
                    return self._converter.structure(data, kind)
                except Exception as exc:  # paths and expected types only, never the values
                    problems = "; ".join(cattrs.transform_error(exc, "$", _problem))
                    return _Unreadable(data.get("id"), method, problems)
        return super().structure_message(data)

    def handle_message(self, message: Any) -> None:
        method = getattr(message, "method", None)
        if method in (types.INITIALIZE, types.INITIALIZED):
            if method in self._seen:  # pygls would start over: a new workspace, a second index
                log.warning("%s was sent again; ignored", method)
                msg_id = getattr(message, "id", None)
                if msg_id is not None:
                    error = JsonRpcInvalidRequest(f"{method} may be sent only once")
                    self._send_response(msg_id, error=error.to_response_error())
                return
            self._seen.add(method)
        if not isinstance(message, _Unreadable):
            super().handle_message(message)
            return
        text = f"{message.method}: invalid params: {message.problems}"
        log.warning("%s", text)
        if message.msg_id is not None:
            self._send_response(
                message.msg_id, error=JsonRpcInvalidParams(text).to_response_error()
            )


class HushcodeServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("hushcode", __version__, protocol_cls=HushcodeProtocol)
        self.settings = Settings()
        self.service = ModelService()
        self.engine = CompletionEngine(self.service, load_templates(), self.settings.completion)
        self.completions_enabled = True
        self.root: Path | None = None
        self._model_key: tuple[Any, ...] | None = None
        self.model_name: str | None = None
        """The model the settings stand for (`auto` resolved), once a load has started."""
        self._load_task: asyncio.Task[None] | None = None
        self._reload_wanted = False
        self.cli_log_level: str | None = None
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
        logsetup.setup(self.cli_log_level or settings.log_level, settings.log_file)
        if self._client_log is not None:
            self._client_log.setLevel(max(logging.INFO, logging.getLogger("lsp").level))

    def model_key(self) -> tuple[Any, ...]:
        """Everything whose change needs a reload (name, threads, backend, URL, ...)."""
        return attrs.astuple(self.settings.model)

    # -- messages -------------------------------------------------------------------------------

    def show(self, kind: types.MessageType, message: str) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Logged, not popped up: the user cannot act on it (pygls shows "Error in server").

        Bytes that are no message get the JSON-RPC parse error (id null) the spec asks for.
        """
        if source is JsonRpcException:
            log.warning("a message from the editor could not be read: %s", error)
            code = JsonRpcParseError.CODE
            message = f"hushcode could not read a message: {error}"
            self.protocol._send_data(  # by hand: pygls would drop the null id
                {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
            )
            return
        if source is not FeatureRequestError:  # a request's error is in its answer already
            log.error("%s: %s", getattr(source, "__name__", source), error)

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
        from lsp.model.remote import make_loader

        m = self.settings.model
        self.model_name = display_name(m.name)
        token = f"hushcode-model-{uuid.uuid4()}"
        progress = await self._progress_begin(token, "hushcode: loading model", self.model_name)
        try:
            if m.backend != "http":  # `auto`: the model this machine serves best, named from now on
                m = attrs.evolve(m, name=await asyncio.to_thread(concrete_name, m.name))
                self.model_name = display_name(m.name)
            # model.backend: local (in-process), daemon (shared by windows) or http (a server)
            loader = await asyncio.to_thread(make_loader, m, service=self.service)
            model = await self.service.load(loader)
            info = model.info
            warning = self.engine.model_ready(info)
            family = self.engine.template.family if self.engine.template else "?"
            self.window_log_message(
                types.LogMessageParams(
                    type=types.MessageType.Info,
                    message=(
                        f"hushcode: model {info.name} ready ({_describe(info, family)}) "
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
        except Exception as exc:  # a bug, not a bad file: still said, and the server serves on
            message = f"the model could not be loaded ({type(exc).__name__}: {exc})"
            self.service.state, self.service.error = ModelState.FAILED, message
            log.exception("model not loaded")
            self.show(types.MessageType.Error, f"hushcode: {message}")
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
            return await loop.run_in_executor(self._index_thread, _then_recover, fn, index)
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
            # Watching first: a file created or renamed during the walk is then not missed (its
            # event waits for the walk to finish).
            await loop.run_in_executor(None, index.start_watching)
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
            future = self._index_thread.submit(_then_recover, fn, index)
            future.add_done_callback(_log_failure)

    def document_request(self, uri: str, position: types.Position) -> CompletionRequest | None:
        """Validate a request position and build the engine's request (None: nothing to serve)."""
        doc = self.workspace.get_text_document(uri)
        if unquote(uri) not in self.workspace.text_documents:  # pygls keys them unquoted
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
                # the model loaded (or being loaded); `setting` may say `auto` for it
                "name": self.model_name or self.settings.model.name,
                "setting": self.settings.model.name,
                "error": self.service.error,
                "family": self.engine.template.family if self.engine.template else None,
            },
            "completionsEnabled": self.completions_enabled,
            "settings": to_wire(self.settings),
        }


def _describe(info: ModelInfo, family: str) -> str:
    """Size, threads, context and FIM family; a remote server's unknowns are left out."""
    parts = [f"{info.size_bytes / 1e6:.0f} MB"] if info.size_bytes else []
    parts += [f"{info.n_threads} threads"] if info.n_threads else []
    parts += [f"context {info.n_ctx}", f"FIM {family}"]
    return ", ".join(parts)


def _then_recover(fn: Callable[[WorkspaceIndex], T], index: WorkspaceIndex) -> T:
    """Run `fn`; if its write lost the database (locked, full), refill the new one."""
    try:
        return fn(index)
    finally:
        if index.needs_reindex:
            index.recover()


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
    ls.workspace.__class__ = _Workspace  # pygls made it just now; no document is open yet
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
        return types.InlineCompletionList(items=[])  # empty, not null: clients clear old ghost text
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
        # A snippet, escaped: some clients insert only the first word of a plain-text item.
        text_edit=types.TextEdit(
            range=types.Range(start=params.position, end=params.position), new_text=_snippet(text)
        ),
        insert_text_format=types.InsertTextFormat.Snippet,
        sort_text="0",
        filter_text="",
    )
    return types.CompletionList(is_incomplete=True, items=[item])


def _snippet(text: str) -> str:
    return text.replace("\\", "\\\\").replace("$", "\\$").replace("}", "\\}")


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
    if result is None:
        return None
    if ls.workspace.get_text_document(uri).version != req.version:
        # The document changed while this was generated: it was for text that is gone. (A
        # suggestion the user typed into comes back from the cache on the next request.)
        result.metrics.source = "superseded"
        return None
    return result.text


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


# -- code actions (domain: lsp/actions/) -----------------------------------------------------------


def _read_file(path: Path) -> str | None:
    """An open document's text, else the file on disk (an existing test file)."""
    doc = server.workspace.text_documents.get(unquote(from_fs_path(str(path)) or ""))
    if doc is not None:
        return doc.source
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


actions = ActionEngine(
    server.service, lambda: server.settings.actions, index=lambda: server.index, read=_read_file
)


def _action_document(ls: HushcodeServer, uri: str) -> Document | None:
    if unquote(uri) not in ls.workspace.text_documents:
        return None
    doc = ls.workspace.get_text_document(uri)
    fs = to_fs_path(uri)
    language = syntax.normalise_language_id(doc.language_id, fs or uri)
    disabled = ls.settings.disabled_languages
    if language in disabled or doc.language_id in disabled:
        return None
    return Document(uri, doc.source, language, doc.version, Path(fs) if fs else None, ls.root)


def _position(text: str, offset: int, codec: Any) -> types.Position:
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return types.Position(line=line, character=codec.client_num_units(text[start:offset]))


@server.feature(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(
        code_action_kinds=[
            types.CodeActionKind.QuickFix,
            types.CodeActionKind.RefactorRewrite,
            types.CodeActionKind.Source,
        ],
        resolve_provider=True,
    ),
)
def code_action(ls: HushcodeServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    """Titles only, from the tree-sitter tree: the model runs on resolve (or the command)."""
    uri = params.text_document.uri
    doc = _action_document(ls, uri)
    if doc is None:
        return []
    text_doc = ls.workspace.get_text_document(uri)
    by_key: dict[tuple[str, int], types.Diagnostic] = {}
    diagnostics = []
    for d in params.context.diagnostics:
        start = text_doc.offset_at_position(d.range.start)
        diagnostics.append(
            Diagnostic(d.message, start, text_doc.offset_at_position(d.range.end), d.source)
        )
        by_key[(d.message.strip(), d.range.start.line)] = d
    offers = actions.list_actions(
        doc,
        text_doc.offset_at_position(params.range.start),
        text_doc.offset_at_position(params.range.end),
        diagnostics,
        params.context.only,
    )
    resolve = ls.client_capabilities.text_document
    code_action_caps = resolve.code_action if resolve else None
    resolves_edit = bool(
        code_action_caps
        and code_action_caps.resolve_support
        and "edit" in code_action_caps.resolve_support.properties
    )
    r = params.range
    unavailable = actions.unavailable()
    listed = []
    for offer in offers:
        data = {
            "uri": uri,
            "range": {
                "start": {"line": r.start.line, "character": r.start.character},
                "end": {"line": r.end.line, "character": r.end.character},
            },
            "version": doc.version,
            **offer.target.to_data(),
        }
        fixed = by_key.get((offer.target.message, offer.target.line))
        action = types.CodeAction(
            title=offer.title,
            kind=offer.kind.lsp_kind,
            data=data,
            diagnostics=[fixed] if fixed is not None and offer.kind is ActionKind.FIX else None,
        )
        if unavailable and code_action_caps and code_action_caps.disabled_support:
            action.disabled = types.CodeActionDisabled(reason=f"hushcode: {unavailable}")
        if not resolves_edit:
            action.command = types.Command(
                title=offer.title,
                command="hushcode.applyAction",
                arguments=[{**data, "title": offer.title}],
            )
        listed.append(action)
    return listed


@server.feature(types.CODE_ACTION_RESOLVE)
async def code_action_resolve(ls: HushcodeServer, action: types.CodeAction) -> types.CodeAction:
    action.edit = await _run_action(ls, action.data, action.title)
    return action


@server.command("hushcode.applyAction")
async def apply_action_command(ls: HushcodeServer, *args: Any) -> dict[str, Any]:
    """For clients without `codeAction/resolve` support: generate, then `workspace/applyEdit`."""
    data = args[0] if args else None
    title = str(data.get("title", "hushcode")) if isinstance(data, dict) else "hushcode"
    edit = await _run_action(ls, data, title)
    result = await ls.workspace_apply_edit_async(
        types.ApplyWorkspaceEditParams(edit=edit, label=title)
    )
    return {"applied": result.applied, "failureReason": result.failure_reason}


@server.command("hushcode.actionMetrics")
def action_metrics_command(ls: HushcodeServer, *args: Any) -> dict[str, Any]:
    return actions.metrics.snapshot()


async def _run_action(ls: HushcodeServer, data: Any, title: str) -> types.WorkspaceEdit:
    if not isinstance(data, dict) or not isinstance(data.get("uri"), str):
        raise JsonRpcInvalidParams("not a hushcode code action: `data` is missing")
    uri = data["uri"]
    doc = _action_document(ls, uri)
    cancel = CancelToken()
    token = f"hushcode-action-{uuid.uuid4()}"
    progress = False
    try:
        if doc is None:
            raise StaleDocument(
                f"hushcode: {ls.display_path(uri)} was closed since the action was listed; "
                "nothing was changed"
            )
        try:
            target = Target.from_data(data, data.get("version"))
        except ValueError as exc:
            raise JsonRpcInvalidParams(str(exc)) from exc
        progress = await _action_progress_begin(ls, token, title, cancel)

        def report(message: str, percentage: int | None) -> None:
            if progress:
                value = types.WorkDoneProgressReport(message=message, percentage=percentage)
                ls.work_done_progress.report(token, value)

        result = await actions.resolve(doc, target, cancel, report)
        now = ls.workspace.get_text_document(uri).version
        if now != doc.version:
            raise StaleDocument(
                f"hushcode: {doc.rel} changed while the action was generating; nothing was "
                "changed: ask for code actions again"
            )
        return _workspace_edit(ls, result, uri, doc.version)
    except asyncio.CancelledError:
        cancel.cancel()  # `$/cancelRequest`: the generation stops at its next token
        raise
    except ActionCancelled as exc:
        raise JsonRpcException(str(exc), code=-32800) from exc
    except ActionError as exc:
        stale = isinstance(exc, StaleDocument)
        ls.show(types.MessageType.Warning if stale else types.MessageType.Error, str(exc))
        raise JsonRpcException(str(exc), code=-32803) from exc  # RequestFailed
    finally:
        if progress:
            ls.work_done_progress.end(token, types.WorkDoneProgressEnd())


async def _action_progress_begin(
    ls: HushcodeServer, token: str, title: str, cancel: CancelToken
) -> bool:
    """A cancellable `$/progress`: the editor's cancel button stops the generation."""
    caps = ls.client_capabilities.window
    if not (caps and caps.work_done_progress):
        return False
    try:
        await ls.work_done_progress.create_async(token)
    except Exception:
        log.debug("client refused a progress token", exc_info=True)
        return False
    future = ls.work_done_progress.tokens.get(token)
    if future is not None:
        future.add_done_callback(lambda _: cancel.cancel())
    ls.work_done_progress.begin(
        token, types.WorkDoneProgressBegin(title=title, message="generating", cancellable=True)
    )
    return True


def _workspace_edit(
    ls: HushcodeServer, edit: ActionEdit, uri: str, version: int | None
) -> types.WorkspaceEdit:
    caps = ls.client_capabilities.workspace
    we = caps.workspace_edit if caps else None
    ops = (we.resource_operations or []) if we else []
    document_changes: list[types.TextDocumentEdit | types.CreateFile] = []
    for file in edit.files:
        if file.create:
            if types.ResourceOperationKind.Create not in ops:
                raise ActionError(
                    f"hushcode: {ls.display_path(file.uri)} would be created, but the editor does "
                    "not support creating files in an edit; create it, then try again"
                )
            document_changes.append(
                types.CreateFile(
                    uri=file.uri, options=types.CreateFileOptions(ignore_if_exists=True)
                )
            )
        codec = ls.workspace.get_text_document(file.uri).position_codec
        text = file.text
        edits: list[types.TextEdit | types.AnnotatedTextEdit | types.SnippetTextEdit] = [
            types.TextEdit(
                range=types.Range(
                    start=_position(text, c.start, codec), end=_position(text, c.end, codec)
                ),
                new_text=c.text,
            )
            for c in file.changes
        ]
        if file.uri == uri:
            file_version = version
        elif unquote(file.uri) in ls.workspace.text_documents:
            file_version = ls.workspace.get_text_document(file.uri).version
        else:
            file_version = None
        document_changes.append(
            types.TextDocumentEdit(
                text_document=types.OptionalVersionedTextDocumentIdentifier(
                    uri=file.uri, version=file_version
                ),
                edits=edits,
            )
        )
    if ops or (we is not None and we.document_changes):  # resource operations imply them
        return types.WorkspaceEdit(document_changes=document_changes)
    return types.WorkspaceEdit(
        changes={
            c.text_document.uri: [e for e in c.edits if isinstance(e, types.TextEdit)]
            for c in document_changes
            if isinstance(c, types.TextDocumentEdit)
        }
    )


@server.feature(types.SHUTDOWN)
def shutdown(ls: HushcodeServer, params: None) -> None:
    ls.stop_index()
    ls.service.close()
