"""Bad input over the real protocol: each gets a clear error or an empty result, and the server
keeps serving (a normal completion works after each).

One server for the module: every case below goes to the same process, so "keeps serving" also
means "survives all of them in a row".
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.conftest import EXAMPLES
from tests.reliability.conftest import FIB, QUICK, Live, serve

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="module")]

INVALID_PARAMS, METHOD_NOT_FOUND, PARSE_ERROR = -32602, -32601, -32700
BIG_MB = 50


@pytest.fixture(scope="module")
def bad_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/ plus the files an index must skip: non-UTF-8, binary, 50 MB, deeply nested."""
    root = tmp_path_factory.mktemp("bad") / "ws"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "latin1.py").write_bytes(b"def caf\xe9_latin1():\n    return '\xe9'\n")
    (root / "blob.py").write_bytes(b"def blob_with_nul():\n\x00\x01\x02" + bytes(range(256)) * 64)
    (root / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64)
    (root / "truncated_utf8.py").write_bytes(
        "def tronqué_utf8():\n    pass\n".encode()[:-9] + b"\xc3"
    )
    line = "def generated_big_{:07d}(x):\n    return x + 1\n"
    with (root / "big.py").open("w") as f:
        size, i = 0, 0
        while size < BIG_MB * 1024 * 1024:
            size += f.write(line.format(i))
            i += 1
    (root / "nested.py").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n\ndef after_nesting():\n")
    return root


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(
    bad_workspace: Path, tmp_path_factory: pytest.TempPathFactory, model_path: Path
) -> AsyncIterator[Live]:
    home = tmp_path_factory.mktemp("bad-home")
    async with serve(bad_workspace, home=home, model=model_path, settings=QUICK) as s:
        status = await s.wait_model()
        assert status["model"]["state"] == "ready", status
        await s.wait_indexed()
        yield s


def _position(line: Any, character: Any) -> dict[str, Any]:
    return {"line": line, "character": character}


def _inline(uri: str, line: Any, character: Any) -> dict[str, Any]:
    return {
        "textDocument": {"uri": uri},
        "position": _position(line, character),
        "context": {"triggerKind": 1},
    }


async def _error(live: Live, method: str, params: Any) -> JsonRpcException:
    with pytest.raises(JsonRpcException) as info:
        await live.raw_request(method, params)
    return info.value


async def test_positions_past_the_end_of_a_line_or_the_document_are_clear_errors(live: Live):
    uri = live.open("scratch/positions.py", FIB)
    for line, character, why in [
        (0, 500, "past the end of line 0"),
        (3, 12, "past the end of line 3"),
        (4, 1, "past the end of the document"),
        (40, 0, "past the end of the document"),
        (2**31 - 1, 2**31 - 1, "past the end of the document"),
    ]:
        error = await _error(
            live, types.TEXT_DOCUMENT_INLINE_COMPLETION, _inline(uri, line, character)
        )
        assert error.code == INVALID_PARAMS and why in error.message, (line, character, error)
    # the end of the document is a position, not an error
    answer = await live.inline_at(uri, 4, 0)
    assert answer is None or isinstance(answer, str)
    actions = await live.raw_request(
        types.TEXT_DOCUMENT_CODE_ACTION,
        {
            "textDocument": {"uri": uri},
            "range": {"start": _position(0, 0), "end": _position(900, 900)},
            "context": {"diagnostics": []},
        },
    )
    assert isinstance(actions, list)
    await live.still_serves()


async def test_negative_and_out_of_range_positions_are_invalid_params(live: Live):
    uri = live.open("scratch/negative.py", FIB)
    for line, character in [(-1, 0), (0, -5), (2**31, 0), (None, 0), ({}, 0)]:
        params = _inline(uri, line, character)
        error = await _error(live, types.TEXT_DOCUMENT_INLINE_COMPLETION, params)
        assert error.code == INVALID_PARAMS and "position" in error.message, (line, error)
    # numbers in other clothes are read as numbers (lsprotocol's converter): answered either way
    for line, character in [(1.5, 0), ("3", 11)]:
        params = _inline(uri, line, character)
        answer = await live.raw_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params)
        assert answer is not None and hasattr(answer, "items"), answer
    error = await _error(
        live,
        types.TEXT_DOCUMENT_CODE_ACTION,
        {
            "textDocument": {"uri": uri},
            "range": {"start": _position(-3, 0), "end": _position(0, 0)},
            "context": {"diagnostics": []},
        },
    )
    assert error.code == INVALID_PARAMS
    await live.still_serves()


async def test_unknown_and_never_opened_uris(live: Live):
    never = (live.root / "python" / "never_opened.py").as_uri()
    for uri in [never, "untitled:Untitled-1", "file:///no/such/dir/x.py", "not a uri", ""]:
        error = await _error(live, types.TEXT_DOCUMENT_INLINE_COMPLETION, _inline(uri, 0, 0))
        assert error.code == INVALID_PARAMS and "not open" in error.message, (uri, error)
        symbols = await live.raw_request(
            types.TEXT_DOCUMENT_DOCUMENT_SYMBOL, {"textDocument": {"uri": uri}}
        )
        assert symbols == [] or symbols is None, (uri, symbols)
        actions = await live.raw_request(
            types.TEXT_DOCUMENT_CODE_ACTION,
            {
                "textDocument": {"uri": uri},
                "range": {"start": _position(0, 0), "end": _position(0, 0)},
                "context": {"diagnostics": []},
            },
        )
        assert actions == [], (uri, actions)
    # changes and closes for documents that were never opened are ignored, not fatal
    live.raw_notify(
        types.TEXT_DOCUMENT_DID_CHANGE,
        {
            "textDocument": {"uri": never, "version": 2},
            "contentChanges": [{"text": "x = 1\n"}],
        },
    )
    live.raw_notify(types.TEXT_DOCUMENT_DID_CLOSE, {"textDocument": {"uri": never}})
    # documents that are not files on disk, or whose URI is percent-encoded, are served
    for uri in ["untitled:Untitled-7", (live.root / "dir with space" / "é.py").as_uri()]:
        live.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=FIB
                )
            )
        )
        text = await live.inline_at(uri, 3, 11)
        last = (await live.metrics())["last"]
        assert text or last["source"] == "empty", f"{uri}: {last}"
    await live.still_serves()


async def test_non_utf8_and_binary_files_are_skipped_by_the_index(live: Live):
    for name in ["caf", "blob_with_nul", "tronqu"]:
        assert not [s.name for s in await live.symbols(name) if name in s.name], name
    assert await live.symbols("generated_big_0000001") == []  # 50 MB: over the size limit
    for rel in ["latin1.py", "blob.py", "picture.png", "truncated_utf8.py"]:
        symbols = await live.raw_request(
            types.TEXT_DOCUMENT_DOCUMENT_SYMBOL, {"textDocument": {"uri": live.uri(rel)}}
        )
        assert not symbols, (rel, symbols)
    # the good files next to them are indexed
    assert await live.symbols("word_count")
    await live.still_serves()


async def test_a_binary_looking_document_is_answered(live: Live):
    controls = "".join(chr(c) for c in range(32) if c not in (10, 13))
    header = (
        "\ufeff# a BOM first\n"
        "x = '\x00\x01\x02\x7f'\n"
        f"c = '{controls}'\n"
        "s = '\ud800\udfff\ud83d'  # unpaired surrogates: valid JSON, not text\n"
        "emoji = '🧪🧪🧪'\n"
    )
    uri = live.open("scratch/binary_ish.py", header + FIB)
    live.type(uri, 1, 5, "\x00")
    answer = await live.inline_at(uri, 8, 11)
    assert answer is None or isinstance(answer, str)
    live.type(uri, 4, 9, "🧪")  # two UTF-16 units, before the others (same column both ways)
    answer = await live.inline_at(uri, 8, 11)
    assert answer is None or isinstance(answer, str)
    await live.still_serves()


async def test_positions_agree_with_the_editor_after_unusual_line_separators(live: Live):
    """Only LF, CRLF and CR end a line in LSP; form feed, U+2028 and friends do not."""
    header = "s = '\f\v\x1c\x1d\x1e\x85\u2028\u2029'  # page\f break\n"
    uri = live.open("scratch/separators.py", header + FIB)
    live.type(uri, 5, 0, "def after_separators():\n    pass\n")  # an incremental edit on line 5
    symbols = await live.answer(
        live.client.text_document_document_symbol_async(
            types.DocumentSymbolParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
    )
    lines = {s.name: s.range.start.line for s in symbols or []}
    assert lines == {"s": 0, "fib": 1, "after_separators": 5}, lines
    with pytest.raises(JsonRpcException, match="past the end of line 0"):
        await live.raw_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, _inline(uri, 0, 200))
    answer = await live.inline_at(uri, 4, 11)
    assert answer is None or "\n" not in answer  # fib's `return` line: one line


async def test_a_document_larger_than_a_pipe_buffer_arrives_whole(live: Live):
    """A didOpen of 400 KB is read in full (a raw read of stdin returns 64 KB at a time)."""
    body = "".join(f"def filler_{i}(x):\n    return x + {i}\n\n" for i in range(12_000))
    text = body + "def the_last_one():\n    pass\n"
    assert len(text) > 400_000
    uri = live.open("scratch/large_normal.py", text)
    symbols = await live.answer(
        live.client.text_document_document_symbol_async(
            types.DocumentSymbolParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
    )
    assert symbols and symbols[-1].name == "the_last_one", (symbols or [])[-1:]
    with pytest.raises(JsonRpcException, match="past the end of the document"):
        await live.raw_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, _inline(uri, 36_003, 0))
    await live.still_serves()


async def test_a_second_initialize_is_refused(live: Live):
    error = await _error(
        live,
        types.INITIALIZE,
        {"processId": None, "rootUri": None, "capabilities": {}},
    )
    assert "only once" in error.message
    loads = sum("ready (" in m for m in live.logged())
    live.raw_notify(types.INITIALIZED, {})
    await live.still_serves()
    assert sum("ready (" in m for m in live.logged()) == loads, "the model was loaded again"


async def test_a_50_mb_file_on_disk_and_open(live: Live):
    big = live.root / "big.py"
    assert big.stat().st_size >= BIG_MB * 1024 * 1024
    text = big.read_text()
    uri = live.open("big.py", text)
    lines = text.count("\n")
    answer = await live.answer(live.inline(uri, lines, 0), timeout=300)
    assert answer is None or isinstance(answer, str)
    live.type(uri, lines, 0, "def ")
    answer = await live.answer(live.inline(uri, lines, 4), timeout=300)
    assert answer is None or isinstance(answer, str)
    live.client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    await live.still_serves()


async def test_pathologically_deep_nesting(live: Live):
    depth = 5000
    docs = {
        "scratch/deep.py": ("x = " + "[" * depth + "]" * depth + "\n" + FIB, "python"),
        "scratch/open.py": ("x = " + "(" * depth + "\n" + FIB, "python"),
        "scratch/deep.js": ("let x = " + "{a:" * depth + "1" + "}" * depth + ";\n", "javascript"),
        "scratch/deep.c": ("int f() " + "{" * depth + "\n", "c"),
    }
    for rel, (text, language) in docs.items():
        uri = live.open(rel, text, language)
        lines = text.split("\n")
        answer = await live.answer(live.inline(uri, len(lines) - 1, 0))
        assert answer is None or isinstance(answer, str), rel
        symbols = await live.raw_request(
            types.TEXT_DOCUMENT_DOCUMENT_SYMBOL, {"textDocument": {"uri": uri}}
        )
        assert symbols is None or isinstance(symbols, list)
    # a JSON-RPC message nested beyond any parser's recursion limit: a parse error, not a crash
    deep = (
        '{"jsonrpc": "2.0", "id": 1, "method": "workspace/symbol", "params": {"query": "x", "n": '
    )
    live.frame(deep + "[" * 100_000 + "]" * 100_000 + "}}")
    await live.still_serves()
    assert (await live.command("hushcode.status"))["model"]["state"] == "ready"


async def test_malformed_json_rpc_is_survived(live: Live):
    garbage: list[tuple[bytes, bytes | None]] = [
        (b"\x00\xff\xfe garbage \x89PNG\r\n\r\n", b""),  # bytes with no frame at all
        (b"not json at all", None),  # a frame whose body is not JSON
        (b'{"jsonrpc": "2.0", "id": 5, "method": ', None),  # truncated JSON
        (b"\xff\xfe\xfd", None),  # not UTF-8
        (b"[1, 2, 3]", None),  # JSON, not an object
        (b'"a string"', None),
        (b"{}", None),  # an object that is no message
        (b'{"jsonrpc": "1.0", "id": 7, "method": "shutdown"}', None),  # wrong version
        (b'{"jsonrpc": "2.0", "id": 8}', None),  # neither request nor response
        (b'{"jsonrpc": "2.0", "id": 9, "method": 42, "params": {}}', None),
        (b'{"jsonrpc": "2.0", "method": "x"}', b"Content-Length: abc\r\n\r\n"),
        (b'{"jsonrpc": "2.0", "method": "x"}', b"Content-Length: -5\r\n\r\n"),
        (b'{"jsonrpc": "2.0", "method": "x"}', b"Content-Length: 3\r\n\r\n"),  # too short
        (b'{"jsonrpc": "2.0", "method": "x"}', b"Content-Length: 1000000000000\r\n\r\n"),
        (b'{"jsonrpc": "2.0", "method": "x"}', b"Content-Length: 99999999999999999999\r\n\r\n"),
        (b"", b"Content-Type: application/json\r\n\r\n"),  # no length at all
    ]
    for body, header in garbage:
        live.frame(body, header=header)
        live.frame(b"\r\n\r\n", header=b"")  # lets a reader that lost the framing find it again
        status = await live.answer(live.command("hushcode.status"), timeout=60)
        assert status["model"]["state"] == "ready", (body, header)
    assert live.alive()
    await live.still_serves()


async def test_unknown_methods(live: Live):
    for method in ["hushcode/doesNotExist", "textDocument/teleport", "$/unknownRequest", ""]:
        error = await _error(live, method, {})
        assert error.code == METHOD_NOT_FOUND, (method, error)
    live.raw_notify("hushcode/unknownNotification", {"x": 1})
    live.raw_notify("$/unknownNotification", None)
    with pytest.raises(JsonRpcException):
        await live.command("hushcode.noSuchCommand")
    await live.still_serves()


async def test_parameters_of_the_wrong_type(live: Live):
    uri = live.open("scratch/types.py", FIB)
    requests: list[tuple[str, Any]] = [
        (types.TEXT_DOCUMENT_INLINE_COMPLETION, {"textDocument": uri, "position": [3, 11]}),
        (types.TEXT_DOCUMENT_INLINE_COMPLETION, "fib"),
        (types.TEXT_DOCUMENT_INLINE_COMPLETION, None),
        (types.TEXT_DOCUMENT_INLINE_COMPLETION, ...),  # no params at all
        (types.TEXT_DOCUMENT_COMPLETION, {"textDocument": {"uri": 5}, "position": {}}),
        (types.TEXT_DOCUMENT_CODE_ACTION, {"textDocument": {"uri": uri}, "range": "all"}),
        (types.CODE_ACTION_RESOLVE, {"title": 5}),
        (types.TEXT_DOCUMENT_DOCUMENT_SYMBOL, {"textDocument": None}),
        (types.WORKSPACE_EXECUTE_COMMAND, {"command": ["hushcode.status"]}),
        (types.WORKSPACE_EXECUTE_COMMAND, {"command": "hushcode.status", "arguments": 5}),
    ]
    for method, params in requests:
        try:
            answer = await live.raw_request(method, params)
        except JsonRpcException as exc:
            error = exc
        else:
            pytest.fail(f"{method} {params!r}: answered {answer!r}, not an error")
        assert error.code == INVALID_PARAMS, (method, params, error)
    # lsprotocol's converter reads anything as a string: answered either way
    assert await live.raw_request(types.WORKSPACE_SYMBOL, {"query": {"$regex": ".*"}}) == []
    # commands get what they get: an answer either way, never a crash
    for command, arguments in [
        ("hushcode.toggleCompletions", [{"on": "yes"}]),
        ("hushcode.applyAction", [5]),
        ("hushcode.applyAction", [{"uri": 5}]),
        ("hushcode.applyAction", [{"uri": uri, "range": "x", "version": "new"}]),
        ("hushcode.restart", ["now", 1, None]),
    ]:
        try:
            await live.raw_request(
                types.WORKSPACE_EXECUTE_COMMAND, {"command": command, "arguments": arguments}
            )
        except JsonRpcException as exc:
            assert exc.code != -32603 or "Traceback" not in exc.message, (command, exc)
    assert (await live.command("hushcode.toggleCompletions", True)) is True
    # notifications of the wrong shape have no answer; the server goes on
    for method, params in [
        (types.TEXT_DOCUMENT_DID_OPEN, {"textDocument": {"uri": 1, "text": None}}),
        (types.TEXT_DOCUMENT_DID_CHANGE, {"textDocument": {"uri": uri}, "contentChanges": 5}),
        (types.TEXT_DOCUMENT_DID_CHANGE, {"textDocument": {"uri": uri, "version": "two"}}),
        (
            types.TEXT_DOCUMENT_DID_CHANGE,
            {
                "textDocument": {"uri": uri, "version": 9},
                "contentChanges": [
                    {"range": {"start": _position(99, 0), "end": _position(-1, 0)}, "text": "z"}
                ],
            },
        ),
        (types.TEXT_DOCUMENT_DID_CLOSE, [uri]),
        (types.WORKSPACE_DID_CHANGE_WATCHED_FILES, {"changes": [{"uri": 3, "type": 99}]}),
        (types.INITIALIZED, "again"),
    ]:
        live.raw_notify(method, params)
    await live.still_serves()
    noisy = [m for m in live.shown() if m.startswith("Error in server")]
    assert not noisy, f"internal errors shown to the user: {noisy}"


async def test_settings_of_the_wrong_type_keep_the_defaults(start: Any, workspace: Path):
    settings = {
        "completion": {
            **QUICK["completion"],
            "maxTokens": "many",
            "debounceMaxMs": 120,
            "inline": "yes",
        },
        "index": {"exclude": "node_modules", "maxFileKb": -1},
        "disabledLanguages": 5,
        "logLevel": 7,
        "unknownSection": {"x": 1},
    }
    async with start(workspace, settings=settings) as s:
        status = await s.wait_model()
        wire = status["settings"]
        assert wire["completion"]["maxTokens"] == 48  # defaults kept for the bad values
        assert wire["completion"]["inline"] is True and wire["logLevel"] == "info"
        assert wire["index"]["maxFileKb"] == 512 and wire["disabledLanguages"] == []
        assert wire["completion"]["debounceMaxMs"] == 120  # a good value next to them applies
        (shown,) = [m for m in s.client.messages if m.type == types.MessageType.Warning]
        for name in ["completion.maxTokens", "completion.inline", "logLevel", "index.maxFileKb"]:
            assert name in shown.message, (name, shown.message)
        await s.still_serves()
        # the same at run time, and settings that are not an object at all
        for value in [{"hushcode": {"completion": {"maxTokens": [1], "prefixRatio": "half"}}}, 5]:
            s.client.workspace_did_change_configuration(
                types.DidChangeConfigurationParams(settings=value)
            )
        await s.still_serves()
        status = await s.command("hushcode.status")
        assert status["settings"]["completion"]["prefixRatio"] == 0.75
        assert any("prefixRatio" in m for m in s.shown())


async def test_initialization_options_that_are_not_an_object(
    start: Any, workspace: Path, model_path: Path
):
    """Reported, and the editor's `workspace/configuration` (which comes next) still counts."""
    config = {
        "model": {"name": str(model_path)},
        "completion": {**QUICK["completion"], "timeBudgetMs": 30000},
    }
    async with start(workspace, init_options="fast please", configuration=config) as s:
        status = await s.wait_model()
        assert any("settings must be an object" in m for m in s.shown()), s.shown()
        assert status["settings"]["completion"]["maxTokens"] == 16
        await s.still_serves()
