"""The server skeleton over stdio: lifecycle, model load reporting, settings validation."""

from __future__ import annotations

from lsprotocol import types


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
