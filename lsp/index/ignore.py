"""`.gitignore` matching (nested files, negation, anchoring, `**`) and the default exclusions.

A small own implementation of gitignore(5), so the index needs no extra dependency. Paths are
POSIX strings relative to the workspace root.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

#: Directories never indexed: version control, virtualenvs, caches, vendored and build output.
DEFAULT_EXCLUDED_DIRS: frozenset[str] = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".jj",
        "node_modules",
        "bower_components",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        ".eggs",
        "site-packages",
        "target",
        "build",
        "dist",
        "out",
        ".next",
        ".nuxt",
        ".svelte-kit",
        ".gradle",
        ".idea",
        ".cache",
        "vendor",
        "third_party",
        "coverage",
        ".direnv",
    }
)


@dataclass(frozen=True, slots=True)
class Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool

    def matches(self, rel: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        return self.regex.fullmatch(rel) is not None


def _translate(pattern: str) -> str:
    """A glob of gitignore(5) as a regex over a `/`-separated relative path."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                at_start = i == 0 or pattern[i - 1] == "/"
                j = i + 2
                if at_start and j < n and pattern[j] == "/":
                    out.append("(?:.*/)?")
                    i = j + 1
                    continue
                if at_start and j == n:
                    out.append(".*")
                    i = j
                    continue
                out.append("[^/]*")
                i = j
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                body = body.replace("\\", "\\\\").replace("^", "\\^")
                out.append(("[^/" if negate else "[") + body + "]")
                i = j
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def parse_rule(line: str) -> Rule | None:
    """One line of a .gitignore, or None for blanks and comments."""
    line = line.rstrip("\n").rstrip("\r")
    if not line or line.startswith("#"):
        return None
    while line.endswith(" ") and not line.endswith("\\ "):
        line = line[:-1]
    if not line:
        return None
    negate = line.startswith("!")
    if negate or line.startswith(("\\!", "\\#")):
        line = line[1:]
    dir_only = line.endswith("/") and not line.endswith("\\/")
    if dir_only:
        line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    if line.startswith("/"):
        line = line[1:]
    body = _translate(line)
    regex = body if anchored else "(?:.*/)?" + body
    try:
        return Rule(re.compile(regex, re.S), negate, dir_only)
    except re.error:
        return None


def parse_lines(lines: list[str]) -> list[Rule]:
    return [rule for rule in map(parse_rule, lines) if rule is not None]


class IgnoreMatcher:
    """Decides whether a workspace path is excluded: default dirs, .gitignore files, extras.

    `.gitignore` files are read lazily per directory and cached; `reload()` forgets them.
    Thread-safe: the watcher thread and the indexing thread both ask.
    """

    def __init__(
        self,
        root: Path,
        extra: list[str] | None = None,
        excluded_dirs: frozenset[str] = DEFAULT_EXCLUDED_DIRS,
    ):
        self.root = root
        self.excluded_dirs = excluded_dirs
        self._extra = parse_lines(list(extra or []))
        self._rules: dict[str, list[Rule]] = {}
        self._dir_cache: dict[str, bool] = {}
        self._lock = threading.Lock()

    def reload(self) -> None:
        with self._lock:
            self._rules.clear()
            self._dir_cache.clear()

    def rules_for(self, rel_dir: str) -> list[Rule]:
        """The rules of `rel_dir/.gitignore` ("" is the root, which adds .git/info/exclude)."""
        with self._lock:
            rules = self._rules.get(rel_dir)
        if rules is not None:
            return rules
        base = self.root / rel_dir if rel_dir else self.root
        lines: list[str] = []
        files = [base / ".gitignore"]
        if not rel_dir:
            files.insert(0, base / ".git" / "info" / "exclude")
        for file in files:
            try:
                lines.extend(file.read_text("utf-8", "replace").splitlines())
            except OSError:
                continue
        rules = parse_lines(lines)
        with self._lock:
            self._rules[rel_dir] = rules
        return rules

    def match(self, rel: str, is_dir: bool) -> bool:
        """Whether `rel` itself is excluded, its parent directories assumed not to be."""
        name = rel.rsplit("/", 1)[-1]
        if is_dir and name in self.excluded_dirs:
            return True
        ignored = False
        parts = rel.split("/")
        for depth in range(len(parts)):
            base = "/".join(parts[:depth])
            rules = self.rules_for(base)
            if not rules:
                continue
            sub = "/".join(parts[depth:])
            for rule in rules:
                if rule.negate == ignored and rule.matches(sub, is_dir):
                    ignored = not rule.negate
        for rule in self._extra:
            if rule.negate == ignored and rule.matches(rel, is_dir):
                ignored = not rule.negate
        return ignored

    def is_ignored(self, rel: str, is_dir: bool = False) -> bool:
        """Whether `rel` or any directory above it is excluded."""
        if not rel or rel == ".":
            return False
        if rel.startswith("../") or rel == "..":
            return True
        parts = rel.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            with self._lock:
                cached = self._dir_cache.get(prefix)
            if cached is None:
                cached = self.match(prefix, True)
                with self._lock:
                    if len(self._dir_cache) > 20000:
                        self._dir_cache.clear()
                    self._dir_cache[prefix] = cached
            if cached:
                return True
        return self.match(rel, is_dir)
