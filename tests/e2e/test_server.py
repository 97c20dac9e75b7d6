"""The server skeleton over stdio: lifecycle, model load reporting, settings validation."""

from __future__ import annotations

import pytest
from lsprotocol import types

FIB = "def fib(n):\n    if n < 2:\n        return n\n    return \n"


async def test_initialize_reports_capabilities_and_loads_the_model(session):
    async with session() as s:
        status = await s.wait_model()
        assert status["model"]["state"] == "ready", status
        assert status["model"]["family"] == "qwen2.5-coder"
        caps = (
            s.client.protocol.server_capabilities
            if hasattr(s.client.protocol, "server_capabilities")
            else None
        )
        del caps
        # one log line says what was loaded and how
        lines = [m.message for m in s.client.log_messages if "ready (" in m.message]
        assert len(lines) == 1, [m.message for m in s.client.log_messages]
        assert "threads" in lines[0] and "loaded in" in lines[0]
        # the load was wrapped in $/progress begin ... end
        reports = [
            r
            for token, rs in s.client.progress_reports.items()
            if "model" in str(token)
            for r in rs
        ]
        assert isinstance(reports[0], types.WorkDoneProgressBegin)
        assert isinstance(reports[-1], types.WorkDoneProgressEnd)


async def test_settings_of_the_wrong_type_are_reported_and_defaults_kept(session):
    settings = {"completion": {"maxTokens": "many", "debounceMaxMs": 120}, "logLevel": 7}
    async with session(settings=settings) as s:
        status = await s.wait_model()
        wire = status["settings"]
        assert wire["completion"]["maxTokens"] == 48  # default kept
        assert wire["completion"]["debounceMaxMs"] == 120  # the good value next to it applies
        assert wire["logLevel"] == "info"
        shown = [m.message for m in s.client.messages]
        assert any("completion.maxTokens" in m and "logLevel" in m for m in shown), shown


async def test_fib_return_completes_single_line_with_fib(session):
    async with session() as s:
        await s.wait_model()
        text = "def fib(n):\n    if n < 2:\n        return n\n    return \n\n\nprint(fib(10))\n"
        uri = s.open("scratch_fib.py", text)
        result = await s.inline(uri, 3, 11)
        assert result is not None
        assert "\n" not in result
        assert "fib(" in result


async def test_a_draft_model_is_loaded_with_the_model_and_completions_work(session, model_path):
    from lsp.model.manager import installed_path

    large = installed_path("qwen2.5-coder-1.5b-instruct")
    if large is None:
        pytest.skip("the 1.5B is not installed (`make model-large`)")
    async with session(settings={"model": {"name": str(large), "draft": str(model_path)}}) as s:
        status = await s.wait_model()
        assert status["model"]["state"] == "ready", status
        uri = s.open("scratch/fib.py", FIB)
        result = await s.inline(uri, 3, 11)
        assert result and "fib(" in result, result


async def test_a_draft_model_with_another_vocabulary_is_refused(session, smollm2):
    async with session(settings={"model": {"draft": str(smollm2)}}) as s:
        status = await s.wait_model()
        assert status["model"]["state"] == "failed", status
        assert "vocabularies differ" in status["model"]["error"]
        uri = s.open("scratch/a.py", "x = \n")
        assert await s.inline(uri, 0, 4) is None  # answered, empty, at once


async def test_a_missing_model_is_shown_and_the_server_keeps_serving(session, tmp_path):
    missing = tmp_path / "nope.gguf"
    async with session(settings={"model": {"name": str(missing)}}) as s:
        status = await s.wait_model()
        assert status["model"]["state"] == "failed"
        assert "not found" in status["model"]["error"]
        errors = [m for m in s.client.messages if m.type == types.MessageType.Error]
        assert errors and str(missing) in errors[0].message
        uri = s.open("scratch/a.py", "x = \n")
        assert await s.inline(uri, 0, 4) is None  # answered, empty, at once
        assert (await s.command("hushcode.status"))["model"]["state"] == "failed"


async def test_a_file_that_is_not_gguf_is_refused_and_restart_recovers(
    session, tmp_path, model_path
):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"PK\x03\x04 not a model" * 100)
    async with session(settings={"model": {"name": str(bogus)}}) as s:
        status = await s.wait_model()
        assert status["model"]["state"] == "failed"
        assert "not a GGUF" in status["model"]["error"]
        # the user puts the real model in place and restarts
        bogus.unlink()
        bogus.symlink_to(model_path)
        status = await s.command("hushcode.restart")
        assert status["model"]["state"] == "ready", status
        uri = s.open(
            "scratch/fib.py", "def fib(n):\n    if n < 2:\n        return n\n    return \n"
        )
        assert await s.inline(uri, 3, 11)


async def test_a_truncated_gguf_is_refused(session, tmp_path, model_path):
    cut = tmp_path / "cut.gguf"
    with model_path.open("rb") as src:
        cut.write_bytes(src.read(1 << 20))
    async with session(settings={"model": {"name": str(cut)}}) as s:
        status = await s.wait_model()
        assert status["model"]["state"] == "failed"
        assert "truncated or corrupt" in status["model"]["error"]
