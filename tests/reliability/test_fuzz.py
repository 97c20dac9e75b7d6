"""Hypothesis-driven LSP traffic against one real server over stdio: no crash, no hang.

Each example is a short burst of messages: requests of known and unknown methods with params of
any shape, positions and URIs from near the document to absurd, didOpen/didChange/didClose with
random edits, cancels of random ids. Every request must be answered within `HANG` seconds and
the process must be alive (and answering `hushcode.status`) after each burst.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.reliability.conftest import FIB, Live, serve

pytestmark = [pytest.mark.model, pytest.mark.slow]

FUZZ_SETTINGS: dict[str, Any] = {
    "completion": {
        "warmup": False,
        "maxTokens": 8,
        "maxBlockTokens": 8,
        "timeBudgetMs": 3000,
        "maxPromptTokens": 256,
        "contextTokens": 64,
    },
    "actions": {"maxTokens": 8, "timeBudgetMs": 3000},
}
FUZZ_HANG = 90.0

METHODS = [
    types.TEXT_DOCUMENT_INLINE_COMPLETION,
    types.TEXT_DOCUMENT_COMPLETION,
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CODE_ACTION_RESOLVE,
    types.TEXT_DOCUMENT_DOCUMENT_SYMBOL,
    types.WORKSPACE_SYMBOL,
    types.WORKSPACE_EXECUTE_COMMAND,
    types.TEXT_DOCUMENT_HOVER,
    "hushcode/unknown",
    "$/unknown",
]
NOTIFICATIONS = [
    types.TEXT_DOCUMENT_DID_OPEN,
    types.TEXT_DOCUMENT_DID_CHANGE,
    types.TEXT_DOCUMENT_DID_CLOSE,
    types.TEXT_DOCUMENT_DID_SAVE,
    types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
    types.WORKSPACE_DID_CHANGE_CONFIGURATION,
    types.CANCEL_REQUEST,
    "$/setTrace",
    "hushcode/unknownNotification",
]
WEIGHTED = (
    [types.TEXT_DOCUMENT_INLINE_COMPLETION, types.TEXT_DOCUMENT_DID_CHANGE] * 4
    + [types.TEXT_DOCUMENT_CODE_ACTION, types.TEXT_DOCUMENT_COMPLETION] * 2
    + METHODS
    + NOTIFICATIONS
)
"""What an editor sends most, most often."""
COMMANDS = [
    "hushcode.status",
    "hushcode.metrics",
    "hushcode.toggleCompletions",
    "hushcode.applyAction",
    "hushcode.actionMetrics",
    "hushcode.nope",
]

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
number = st.one_of(
    st.integers(min_value=0, max_value=8),
    st.integers(min_value=-3, max_value=2**31 + 3),
    st.sampled_from([None, "1", 1.5, [], {}]),
)
near = st.fixed_dictionaries({"line": st.integers(0, 5), "character": st.integers(0, 14)})
far = st.fixed_dictionaries({"line": number, "character": number})
position = st.one_of(near, near, near, far, json_value)  # mostly inside the document
span = st.fixed_dictionaries({"start": position, "end": position})
text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\n", "\r\n", "\r", "\x00", "\ud800", "\u2028", "\f", "    ", "def ", "("]),
    st.just(FIB),
)


def uris(root: Path) -> st.SearchStrategy[Any]:
    docs = [root / "fuzz" / f"doc{i}.py" for i in range(3)]
    doc0 = st.just(docs[0].as_uri())  # opened before each burst
    return st.one_of(
        doc0,
        doc0,
        doc0,
        st.sampled_from([p.as_uri() for p in docs]),
        st.sampled_from(
            [
                (root / "python" / "textutils.py").as_uri(),
                "untitled:Untitled-1",
                "file:///",
                "file:///etc/passwd",
                "http://example.invalid/x.py",
                "",
            ]
        ),
        st.text(max_size=12),
    )


def messages(root: Path) -> st.SearchStrategy[dict[str, Any]]:
    uri = uris(root)
    doc = st.fixed_dictionaries({"uri": uri})
    versioned = st.fixed_dictionaries({"uri": uri, "version": number})
    change = st.one_of(
        st.fixed_dictionaries({"range": span, "text": text}), st.fixed_dictionaries({"text": text})
    )
    params = {
        types.TEXT_DOCUMENT_INLINE_COMPLETION: st.fixed_dictionaries(
            {"textDocument": doc, "position": position, "context": st.just({"triggerKind": 1})}
        ),
        types.TEXT_DOCUMENT_COMPLETION: st.fixed_dictionaries(
            {"textDocument": doc, "position": position}
        ),
        types.TEXT_DOCUMENT_CODE_ACTION: st.fixed_dictionaries(
            {"textDocument": doc, "range": span, "context": st.just({"diagnostics": []})}
        ),
        types.CODE_ACTION_RESOLVE: st.fixed_dictionaries(
            {
                "title": st.text(max_size=10),
                "data": st.one_of(
                    json_value,
                    st.fixed_dictionaries(
                        {"uri": uri, "range": span, "version": number, "kind": st.text(max_size=9)}
                    ),
                ),
            }
        ),
        types.TEXT_DOCUMENT_DOCUMENT_SYMBOL: st.fixed_dictionaries({"textDocument": doc}),
        types.WORKSPACE_SYMBOL: st.fixed_dictionaries({"query": st.text(max_size=6)}),
        types.WORKSPACE_EXECUTE_COMMAND: st.fixed_dictionaries(
            {
                "command": st.sampled_from(COMMANDS),
                "arguments": st.lists(json_value, max_size=2),
            }
        ),
        types.TEXT_DOCUMENT_DID_OPEN: st.fixed_dictionaries(
            {
                "textDocument": st.fixed_dictionaries(
                    {
                        "uri": uri,
                        "languageId": st.sampled_from(["python", "javascript", "c", "", "xyz"]),
                        "version": number,
                        "text": text,
                    }
                )
            }
        ),
        types.TEXT_DOCUMENT_DID_CHANGE: st.fixed_dictionaries(
            {"textDocument": versioned, "contentChanges": st.lists(change, max_size=3)}
        ),
        types.TEXT_DOCUMENT_DID_CLOSE: st.fixed_dictionaries({"textDocument": doc}),
        types.CANCEL_REQUEST: st.fixed_dictionaries(
            {"id": st.one_of(st.integers(), st.text(max_size=6), st.just("fuzz-0"))}
        ),
    }

    def build(method: str, shaped: bool, data: st.DataObject) -> dict[str, Any]:
        strategy = params.get(method, json_value) if shaped else json_value
        return {"method": method, "params": data.draw(strategy)}

    return st.builds(
        build,
        st.sampled_from(WEIGHTED),
        st.sampled_from([True, True, True, False]),  # mostly the right shape, to get deeper
        st.data(),
    )


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_random_lsp_traffic_never_crashes_or_hangs(
    tmp_path: Path, workspace: Path, model_path: Path
):
    loop = asyncio.new_event_loop()
    session = serve(workspace, home=tmp_path / "home", model=model_path, settings=FUZZ_SETTINGS)
    s: Live = loop.run_until_complete(session.__aenter__())
    try:
        loop.run_until_complete(s.wait_model())
        sent = [0]

        @settings(
            max_examples=60,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(st.lists(messages(workspace), min_size=1, max_size=6))
        def burst(batch: list[dict[str, Any]]) -> None:
            loop.run_until_complete(_send(s, batch, sent))

        burst()
        assert s.alive()
        status = loop.run_until_complete(s.answer(s.command("hushcode.status")))
        assert status["model"]["state"] == "ready"
        metrics = loop.run_until_complete(s.metrics())
        sources = [m["source"] for m in metrics["recent"]]
        print(f"fuzz: {sent[0]} messages, completions {dict.fromkeys(sources)} {len(sources)}")
    finally:
        loop.run_until_complete(session.__aexit__(None, None, None))
        loop.close()


async def _send(s: Live, batch: list[dict[str, Any]], sent: list[int]) -> None:
    s.open("fuzz/doc0.py", FIB)  # something real to aim at (a reopen replaces it)
    pending = []
    for message in batch:
        sent[0] += 1
        if message["method"] in NOTIFICATIONS:
            s.raw_notify(message["method"], message["params"])
        else:
            pending.append(asyncio.ensure_future(_request(s, message)))
    for future in pending:
        await future
    assert s.alive(), f"the server died after {json.dumps(batch)[:2000]}"
    await s.answer(s.command("hushcode.status"), timeout=FUZZ_HANG)


async def _request(s: Live, message: dict[str, Any]) -> None:
    try:
        await s.raw_request(message["method"], message["params"], timeout=FUZZ_HANG)
    except JsonRpcException as exc:
        assert exc.code != -32603, f"internal error for {message}: {exc.message[:500]}"
