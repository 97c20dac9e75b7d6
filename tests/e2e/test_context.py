"""Repository context from the index makes the model use names it could not guess."""

from __future__ import annotations

import asyncio
import shutil

from tests.conftest import EXAMPLES

CALL_SITE = (
    "from inventory import pricing\n\n\n"
    "def settle(shipped, unit_cents, tier):\n"
    "    owed = pricing.\n"
)


async def _complete(session, root, *, index: bool) -> str:
    async with session(root, settings={"index": {"enabled": index}}) as s:
        await s.wait_model()
        if index:  # the first indexing runs in the background: wait for it
            for _ in range(100):
                symbols = await s.client.workspace_symbol_async(
                    __import__("lsprotocol").types.WorkspaceSymbolParams(query="rebate")
                )
                if symbols:
                    break
                await asyncio.sleep(0.1)
        uri = s.open("python/settle.py", CALL_SITE)
        return await s.inline(uri, 4, len("    owed = pricing.")) or ""


async def test_the_imported_function_is_named_only_with_context(session, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLES, root)
    with_context = await _complete(session, root, index=True)
    without = await _complete(session, root, index=False)
    assert with_context.startswith(("quarterly_rebate_cents(", "price_with_tax_cents(")), (
        with_context
    )
    assert not without.startswith(("quarterly_rebate_cents", "price_with_tax_cents")), without
