"""HumanEval infilling (single-line and multi-line, MIT, ../shared/bench-data) and its sandbox.

A case becomes an editor situation: the hole's lines are replaced by one line holding the hole's
indentation, the cursor after it (as after Enter with auto-indent). Whatever the system shows is
inserted at the cursor; the program (prompt + completion + suffix + test + `check(entry_point)`)
runs in a subprocess with CPU, memory, file-size and wall-clock limits and no network.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FILES = {
    "single": "HumanEval-SingleLineInfilling.jsonl.gz",
    "multi": "HumanEval-MultiLineInfilling.jsonl.gz",
}
MAX_MULTI_LINES = 6
CPU_SECONDS = 10
WALL_SECONDS = 15
MEMORY_BYTES = 1 << 30
FILE_BYTES = 16 << 20

# Defence in depth next to `unshare -n`: no sockets at all inside the program.
_NET_GUARD = """\
import socket as _s
def _no_network(*a, **k):
    raise OSError("network disabled in the benchmark sandbox")
_s.socket = _no_network
_s.create_connection = _no_network
_s.getaddrinfo = _no_network
del _s
"""


def data_dir() -> Path:
    return Path(os.environ.get("HUSHCODE_BENCH_DATA", REPO.parent / "shared" / "bench-data"))


@dataclass(frozen=True)
class Case:
    task_id: str
    kind: str
    text: str
    """The document as the editor has it: the hole is one line of indentation."""
    offset: int
    """The cursor, after that indentation."""
    expected: str
    """The hole's text as it would be inserted at the cursor (first line without indentation)."""
    prompt: str
    suffix: str
    indent: str
    test: str
    entry_point: str
    canonical: str

    @property
    def path(self) -> str:
        return "humaneval/" + self.task_id.split("/", 1)[-1].replace("/", "_") + ".py"

    def program(self, completion: str | None) -> str:
        body = self.text[: self.offset] + (completion or "") + self.text[self.offset :]
        return f"{_NET_GUARD}\n{body}\n{self.test}\ncheck({self.entry_point})\n"


def data_present() -> bool:
    return all((data_dir() / f).is_file() for f in FILES.values())


def load(kind: str) -> list[dict[str, str]]:
    path = data_dir() / FILES[kind]
    if not path.is_file():
        raise FileNotFoundError(
            f"HumanEval infilling data not found: {path} (set HUSHCODE_BENCH_DATA to the folder "
            "with the MIT-licensed files from github.com/openai/human-eval-infilling)"
        )
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def make_case(row: dict[str, str], kind: str) -> Case | None:
    prompt, middle, suffix = row["prompt"], row["canonical_solution"], row["suffix"]
    if not prompt.endswith("\n") or not middle.strip() or not middle.endswith("\n"):
        return None
    first = middle.split("\n", 1)[0]
    indent = first[: len(first) - len(first.lstrip())]
    text = prompt + indent + "\n" + suffix
    return Case(
        task_id=row["task_id"],
        kind=kind,
        text=text,
        offset=len(prompt) + len(indent),
        expected=middle[len(indent) :].rstrip("\n"),
        prompt=prompt,
        suffix=suffix,
        indent=indent,
        test=row["test"],
        entry_point=row["entry_point"],
        canonical=middle,
    )


def select(kind: str, n: int, seed: int) -> list[Case]:
    """`n` cases, seeded; one per HumanEval problem; multi-line holes of 2..6 lines."""
    cases = [c for c in (make_case(r, kind) for r in load(kind)) if c is not None]
    if kind == "multi":
        cases = [c for c in cases if 2 <= c.canonical.count("\n") <= MAX_MULTI_LINES]
    rng = random.Random(f"{seed}-{kind}")
    rng.shuffle(cases)
    chosen: list[Case] = []
    problems: set[str] = set()
    for case in cases:
        problem = case.task_id.split("/")[-2]
        if problem in problems:
            continue
        problems.add(problem)
        chosen.append(case)
        if len(chosen) >= n:
            break
    return chosen


# -- the sandbox -----------------------------------------------------------------------------


@cache
def network_isolation() -> list[str]:
    """`unshare -n` when it works here (a new, empty network namespace), else nothing."""
    tool = shutil.which("unshare")
    if tool is None:
        return []
    try:
        ok = subprocess.run([tool, "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    if ok:
        return [tool, "-n"]
    try:
        ok = subprocess.run([tool, "-rn", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return [tool, "-rn"] if ok else []


def sandbox_description() -> str:
    iso = " ".join(Path(network_isolation()[0]).name.split() + network_isolation()[1:])
    net = f"`{iso}` + socket guard" if network_isolation() else "socket guard only"
    return (
        f"subprocess, {net}, RLIMIT_CPU {CPU_SECONDS} s, RLIMIT_AS {MEMORY_BYTES >> 20} MB, "
        f"RLIMIT_FSIZE {FILE_BYTES >> 20} MB, wall {WALL_SECONDS} s, `python -I`, empty temp cwd"
    )


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_program(source: str) -> tuple[bool, str]:
    """Run `source`; (passed, short reason)."""
    with tempfile.TemporaryDirectory(prefix="hushcode-exec-") as tmp:
        file = Path(tmp) / "program.py"
        file.write_text(source, encoding="utf-8")
        cmd = [*network_isolation(), sys.executable, "-I", str(file)]
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.Popen(
            cmd,
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_limits,
            start_new_session=True,
        )
        try:
            _, err = proc.communicate(timeout=WALL_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return False, "timeout"
        if proc.returncode == 0:
            return True, "passed"
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return False, (lines[-1][:160] if lines else f"exit {proc.returncode}")


def self_check() -> dict[str, bool]:
    """The sandbox passes a correct program, fails a wrong one, and has no network."""
    ok, _ = run_program("assert 1 + 1 == 2\n")
    bad, _ = run_program("assert 1 + 1 == 3\n")
    net, _ = run_program(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
        "s.settimeout(2)\ns.connect(('1.1.1.1', 80))\n"
    )
    raw, _ = run_program(
        "import _socket\ns = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
        "s.settimeout(2)\ns.connect(('1.1.1.1', 80))\n"
    )
    return {
        "passes_correct": ok,
        "fails_wrong": not bad,
        "blocks_socket": not net,
        "blocks_raw_socket": not raw,
    }
