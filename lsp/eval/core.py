"""The work behind `hushcode eval`: mine holes, fill them with the engine in-process, score.

Holes are mined from the repository itself: single-line statements inside functions, in every
language the index knows (`lsp/index/languages.py`). Each statement is removed from its line (the
indentation stays, the cursor sits after it) and the completion engine is asked to fill it, exactly
as the language server would: the same `CompletionEngine`, `ModelService` and `LlamaModel`, the same
settings, and repository context from a `WorkspaceIndex` of the repository (which sees the file with
the hole, never the answer). Accuracy is the first line of the completion against the line that was
removed; latency is the engine's own total per request.

No protocol code here: the engine is driven in-process (the domain rule keeps pygls in server.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import tree_sitter as ts

from lsp import paths, syntax
from lsp.completion.engine import CompletionEngine, CompletionRequest, ContextProvider
from lsp.completion.fim import load_templates
from lsp.config import Settings, to_wire
from lsp.index import WorkspaceIndex, languages
from lsp.index.ignore import IgnoreMatcher
from lsp.index.languages import LanguageSpec
from lsp.index.parse import parse
from lsp.index.walk import walk
from lsp.model.service import CancelToken, ModelService

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
HOLES_PER_FILE = 3
MIN_STATEMENT_CHARS = 8
MAX_STATEMENT_CHARS = 120
MAX_FILE_BYTES = 512 * 1024

#: Node types that hold a function's statements, across the registered grammars.
_STATEMENT_PARENTS = frozenset(
    {
        "block",  # python, go (older grammars), rust, java
        "statement_list",  # go
        "statement_block",  # javascript, typescript
        "compound_statement",  # c, c++
        "constructor_body",  # java
        "switch_block_statement_group",  # java
        "expression_case",  # go
        "default_case",  # go
    }
)
_TRIVIAL = re.compile(r"^(pass|break|continue|return|else|end|\W*)\W*$")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# -- scoring -------------------------------------------------------------------------------------


def levenshtein(a: str, b: str) -> int:
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def edit_similarity(predicted: str, expected: str) -> float:
    """1 - Levenshtein distance / length of the longer string (1.0: identical)."""
    if not predicted and not expected:
        return 1.0
    return 1.0 - levenshtein(predicted, expected) / max(len(predicted), len(expected))


def first_line(text: str | None) -> str:
    """The first non-empty line of a completion, stripped (what is compared with the answer)."""
    for line in (text or "").split("\n"):
        if line.strip():
            return line.strip()
    return ""


def identifiers(text: str) -> list[str]:
    return _IDENT.findall(text)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]


# -- mining --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hole:
    path: str
    """Relative to the repository root, POSIX separators."""
    language: str
    """The language id the editor would send (as `lsp.syntax` names it)."""
    line: int
    """0-based line of the removed statement."""
    offset: int
    """The cursor: an index into `text`, just after the line's indentation."""
    expected: str
    """The removed statement (the line without its indentation)."""
    text: str
    """The file as the model and the index see it: the statement removed, indentation kept."""


def _language_id(spec: LanguageSpec, rel: str) -> str:
    return syntax.language_id_for_path(rel) or spec.ids[0]


def _inside_function(node: ts.Node, spec: LanguageSpec) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.type in spec.function_types:
            return True
        parent = parent.parent
    return False


def _is_docstring(node: ts.Node) -> bool:
    return (
        node.type == "expression_statement"
        and node.named_child_count == 1
        and node.named_children[0].type in ("string", "concatenated_string")
    )


def statements(spec: LanguageSpec, tree: ts.Tree) -> Iterator[ts.Node]:
    """Single-line statements directly inside a function's body (any depth of nesting)."""
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(reversed(node.children))
        if node.type not in _STATEMENT_PARENTS or not _inside_function(node, spec):
            continue
        for child in node.named_children:
            if (
                child.start_point.row == child.end_point.row
                and child.type not in spec.comment_types
                and child.type != "comment"
                and not child.has_error
                and not _is_docstring(child)
            ):
                yield child


def holes_in_file(rel: str, text: str, spec: LanguageSpec) -> list[Hole]:
    source = text.encode("utf-8")
    tree = parse(spec, source)
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    language = _language_id(spec, rel)
    found: dict[int, Hole] = {}
    for node in statements(spec, tree):
        row = node.start_point.row
        if row in found or row >= len(lines):
            continue
        line = lines[row].rstrip("\r")
        content = line.lstrip(" \t")
        indent = line[: len(line) - len(content)]
        if node.start_point.column != len(indent.encode("utf-8")):
            continue  # not the first thing on its line
        rest = line.encode("utf-8")[node.end_point.column :].decode("utf-8", "replace")
        if rest.strip() not in ("", ";"):
            continue  # something else shares the line
        expected = content.rstrip()
        if not (MIN_STATEMENT_CHARS <= len(expected) <= MAX_STATEMENT_CHARS):
            continue
        if _TRIVIAL.match(expected) or not _IDENT.search(expected):
            continue
        cursor = starts[row] + len(indent)
        line_end = starts[row] + len(line)
        found[row] = Hole(
            path=rel,
            language=language,
            line=row,
            offset=cursor,
            expected=expected,
            text=text[:cursor] + text[line_end:],
        )
    return [found[r] for r in sorted(found)]


def repository_files(root: Path, *, exclude: Sequence[str] = ()) -> list[str]:
    """Files of a registered language, as the index walks them (gitignore, default excludes)."""
    matcher = IgnoreMatcher(root, list(exclude))
    found, _ = walk(root, matcher, max_file_bytes=MAX_FILE_BYTES)
    return sorted(found)


def mine_holes(
    root: Path,
    *,
    limit: int,
    seed: int = 0,
    per_file: int = HOLES_PER_FILE,
    exclude: Sequence[str] = (),
    files: Sequence[str] | None = None,
) -> list[Hole]:
    """Up to `limit` holes, at most `per_file` per file, chosen deterministically from `seed`.

    Files are visited in a seeded random order (so a big repository is not parsed whole), and
    the chosen holes come back sorted by path and line.
    """
    rels = list(files) if files is not None else repository_files(root, exclude=exclude)
    rng = random.Random(seed)
    rng.shuffle(rels)
    chosen: list[Hole] = []
    for rel in rels:
        if len(chosen) >= limit:
            break
        spec = languages.for_path(rel)
        if spec is None:
            continue
        try:
            text = (root / rel).read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        candidates = holes_in_file(rel, text, spec)
        if not candidates:
            continue
        picked = rng.sample(candidates, min(per_file, len(candidates), limit - len(chosen)))
        chosen.extend(picked)
    return sorted(chosen, key=lambda h: (h.path, h.line))


# -- running the engine in-process -----------------------------------------------------------


@dataclass
class Outcome:
    completion: str | None
    metrics: dict[str, Any]
    wall_ms: float


class EngineRunner:
    """The completion engine as the server runs it, without the protocol.

    `context` replaces the index as the source of repository context (the benchmark's oracle);
    with `use_index` the repository is indexed and retrieval works as in the server.
    """

    def __init__(
        self,
        root: Path,
        settings: Settings,
        *,
        use_index: bool = True,
        context: ContextProvider | None = None,
        db_path: Path | None = None,
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self.settings = settings
        self.service = ModelService()
        self.engine = CompletionEngine(self.service, load_templates(), settings.completion)
        self.use_index = use_index and settings.index.enabled and context is None
        self.index: WorkspaceIndex | None = None
        self._paths: dict[str, Path] = {}
        self.index_seconds = 0.0
        self.index_files = 0
        self._db_path = db_path
        if context is not None:
            self.engine.context = context
            self.engine.repo_name = self.root.name
        self.model_info: Any = None
        self.load_seconds = 0.0

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        from lsp.model.llama import LlamaModel
        from lsp.model.manager import concrete_name, display_name, resolve_model

        m = self.settings.model
        name = await asyncio.to_thread(concrete_name, m.name)
        display = display_name(name)
        if progress:
            progress(f"loading model {display}")
        path = await asyncio.to_thread(resolve_model, name)
        model = await self.service.load(
            lambda: LlamaModel(path, name=display, n_ctx=m.context_size, n_threads=m.threads)
        )
        self.model_info = model.info
        self.load_seconds = self.service.load_seconds
        warning = self.engine.model_ready(model.info)
        if warning:
            log.warning(warning)
        if self.use_index:
            if progress:
                progress(f"indexing {self.root}")
            db = self._db_path if self._db_path is not None else _eval_db(self.root)
            index = WorkspaceIndex(
                self.root,
                db,
                max_file_bytes=self.settings.index.max_file_kb * 1024,
                exclude=self.settings.index.exclude,
            )
            stats = await asyncio.to_thread(index.index_all)
            self.index, self.index_seconds, self.index_files = (
                index,
                stats.seconds,
                stats.files_seen,
            )
            self.engine.context = self._retrieve
            self.engine.repo_name = self.root.name

    def _retrieve(self, req: CompletionRequest) -> list[tuple[str, str]]:
        """As `HushcodeServer.retrieve`: the index's snippets within the context budget."""
        index = self.index
        if index is None:
            return []
        budget = int(self.settings.completion.context_tokens * 3.2)
        path = self._paths.get(req.uri)
        if path is None:
            return []
        return [(s.path, s.text) for s in index.retrieve(path, req.text, req.offset, budget)]

    async def complete(self, rel: str, language: str | None, text: str, offset: int) -> Outcome:
        """Open `rel` with `text` (the index sees this buffer, not the disk); complete there."""
        path = self.root / rel
        uri = path.as_uri()
        self._paths[uri] = path
        if self.index is not None:
            await asyncio.to_thread(self.index.update_document, path, text, language)
        req = CompletionRequest(
            uri=uri, text=text, offset=offset, language_id=language, path=rel, version=1
        )
        started = time.perf_counter()
        try:
            result = await self.engine.complete(req, CancelToken())
        finally:
            wall = (time.perf_counter() - started) * 1000
            self.engine.forget(uri)
            if self.index is not None:
                await asyncio.to_thread(self.index.close_document, path)
        metrics = asdict(self.engine.metrics.recent[-1]) if self.engine.metrics.recent else {}
        return Outcome(result.text if result else None, metrics, wall)

    def close(self) -> None:
        if self.index is not None:
            self.index.stop()
            self.index = None
        self.service.close()


def _eval_db(root: Path) -> Path:
    """A database of its own: the eval's buffers (with holes) never reach the server's index."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return paths.index_dir() / f"{digest}-eval.sqlite"


# -- the report ------------------------------------------------------------------------------


@dataclass
class CaseResult:
    path: str
    language: str
    line: int
    expected: str
    completion: str | None
    exact: bool
    edit_similarity: float
    total_ms: float
    source: str
    prompt_tokens: int
    reused_tokens: int
    evaluated_tokens: int
    generated_tokens: int
    context_files: int


@dataclass
class EvalReport:
    root: str
    model: str
    settings: dict[str, Any]
    index: bool
    holes: int
    files: int
    cases: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0
    load_seconds: float = 0.0
    index_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return _summarise(self.cases)

    def by_language(self) -> dict[str, dict[str, Any]]:
        langs = sorted({c.language for c in self.cases})
        return {lang: _summarise([c for c in self.cases if c.language == lang]) for lang in langs}

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "model": self.model,
            "index": self.index,
            "holes": self.holes,
            "files": self.files,
            "seconds": round(self.seconds, 2),
            "load_seconds": round(self.load_seconds, 2),
            "index_seconds": round(self.index_seconds, 2),
            **self.summary(),
            "by_language": self.by_language(),
            "settings": self.settings,
            "cases": [asdict(c) for c in self.cases],
        }


def _summarise(cases: Sequence[CaseResult]) -> dict[str, Any]:
    n = len(cases)
    totals = [c.total_ms for c in cases]
    answered = [c for c in cases if c.completion]
    return {
        "n": n,
        "exact_match": (sum(c.exact for c in cases) / n) if n else 0.0,
        "edit_similarity": statistics.fmean(c.edit_similarity for c in cases) if n else 0.0,
        "answered": (len(answered) / n) if n else 0.0,
        "latency_ms": {
            "p50": round(percentile(totals, 0.5), 1),
            "p90": round(percentile(totals, 0.9), 1),
            "mean": round(statistics.fmean(totals), 1) if totals else 0.0,
        },
        "tokens": {
            "prompt_median": _median([c.prompt_tokens for c in cases]),
            "evaluated_median": _median([c.evaluated_tokens for c in cases]),
            "reused_median": _median([c.reused_tokens for c in cases]),
            "generated_median": _median([c.generated_tokens for c in cases]),
        },
    }


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def score(hole: Hole, outcome: Outcome) -> CaseResult:
    got = first_line(outcome.completion)
    m = outcome.metrics
    return CaseResult(
        path=hole.path,
        language=hole.language,
        line=hole.line + 1,
        expected=hole.expected,
        completion=outcome.completion,
        exact=got == hole.expected.strip(),
        edit_similarity=round(edit_similarity(got, hole.expected.strip()), 4),
        total_ms=round(float(m.get("total_ms", outcome.wall_ms)), 1),
        source=str(m.get("source", "")),
        prompt_tokens=int(m.get("prompt_tokens", 0)),
        reused_tokens=int(m.get("reused_tokens", 0)),
        evaluated_tokens=int(m.get("evaluated_tokens", 0)),
        generated_tokens=int(m.get("generated_tokens", 0)),
        context_files=int(m.get("context_files", 0)),
    )


class ProgressBar:
    """One line on stderr, redrawn in place on a terminal; sparse plain lines otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 24) -> None:
        self.total = max(1, total)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1

    def note(self, message: str) -> None:
        self._write(f"hushcode eval: {message}", final=True)

    def update(self, done: int, detail: str) -> None:
        filled = int(self.width * done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"[{bar}] {done}/{self.total} {detail}"
        if self.tty:
            self._write(line, final=done >= self.total)
            return
        decile = int(10 * done / self.total)
        if decile != self._last_decile or done >= self.total:
            self._last_decile = decile
            self._write(line, final=True)

    def _write(self, line: str, *, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


async def evaluate(
    root: Path,
    settings: Settings,
    *,
    limit: int = DEFAULT_LIMIT,
    seed: int = 0,
    use_index: bool = True,
    bar: ProgressBar | None = None,
) -> EvalReport:
    started = time.perf_counter()
    root = Path(await asyncio.to_thread(os.path.abspath, root))
    holes = await asyncio.to_thread(
        mine_holes, root, limit=limit, seed=seed, exclude=settings.index.exclude
    )
    report = EvalReport(
        root=str(root),
        model=settings.model.name,
        settings=to_wire(settings),
        index=use_index and settings.index.enabled,
        holes=len(holes),
        files=len({h.path for h in holes}),
    )
    if not holes:
        return report
    bar = bar or ProgressBar(len(holes))
    bar.total = len(holes)
    runner = EngineRunner(root, settings, use_index=use_index)
    try:
        await runner.start(progress=bar.note)
        report.load_seconds, report.index_seconds = runner.load_seconds, runner.index_seconds
        if runner.model_info is not None:
            report.model = runner.model_info.name
        exact = 0
        for i, hole in enumerate(holes, 1):
            outcome = await runner.complete(hole.path, hole.language, hole.text, hole.offset)
            case = score(hole, outcome)
            report.cases.append(case)
            exact += case.exact
            p50 = percentile([c.total_ms for c in report.cases], 0.5)
            bar.update(i, f"exact {exact}/{i}  p50 {p50:.0f} ms  {hole.path}:{hole.line + 1}")
    finally:
        runner.close()
    report.seconds = time.perf_counter() - started
    return report


def format_report(report: EvalReport) -> str:
    s = report.summary()
    lat, tok = s["latency_ms"], s["tokens"]
    langs = ", ".join(f"{k} {v['n']}" for k, v in report.by_language().items())
    c = report.settings.get("completion", {})
    lines = [
        f"hushcode eval: {report.root}",
        f"  {report.holes} holes in {report.files} files ({langs or 'none'})",
        f"  model {report.model}; prompt budget {c.get('maxPromptTokens')} tokens"
        f" ({c.get('contextTokens')} for repository context, index "
        f"{'on' if report.index else 'off'}); load {report.load_seconds:.1f} s"
        + (f", index {report.index_seconds:.1f} s" if report.index else ""),
        "",
        f"  exact match      {100 * s['exact_match']:5.1f} %"
        f"  ({sum(x.exact for x in report.cases)}/{s['n']}, first line of the completion"
        " against the removed line)",
        f"  edit similarity  {s['edit_similarity']:5.2f}",
        f"  answered         {100 * s['answered']:5.1f} %",
        f"  latency          p50 {lat['p50']:.0f} ms, p90 {lat['p90']:.0f} ms"
        " (engine total per request, first request at each hole)",
        f"  tokens (median)  prompt {tok['prompt_median']:.0f}, evaluated "
        f"{tok['evaluated_median']:.0f}, reused {tok['reused_median']:.0f}, generated "
        f"{tok['generated_median']:.0f}",
    ]
    by_lang = report.by_language()
    if len(by_lang) > 1:
        lines.append("")
        for lang, v in by_lang.items():
            lines.append(
                f"  {lang:<16} n={v['n']:<3} exact {100 * v['exact_match']:5.1f} %  "
                f"edit sim {v['edit_similarity']:.2f}  p50 {v['latency_ms']['p50']:.0f} ms"
            )
    lines.append(f"\n  {report.seconds:.0f} s in all")
    return "\n".join(lines)
