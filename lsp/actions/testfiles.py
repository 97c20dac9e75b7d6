"""Where the tests of a file go, by each language's convention, and how they import it.

Python: `tests/test_<module>.py` in the nearest `tests/` directory between the source root (the
first directory above the package) and the workspace root, else a new `tests/` at the source
root; the module is imported by its dotted name. JavaScript/TypeScript: `<stem>.test.<ext>` next
to the file. Go: `<stem>_test.go` in the same package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lsp.actions.languages import ActionLanguage


@dataclass(frozen=True)
class TestFile:
    path: Path
    module: str
    """What the test imports: a dotted module (Python) or the file stem (JS/TS)."""
    stem: str


def is_test_file(lang: ActionLanguage, path: Path) -> bool:
    name = path.name
    if lang.id == "python":
        return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"
    if lang.id == "go":
        return name.endswith("_test.go")
    return ".test." in name or ".spec." in name


def locate(lang: ActionLanguage, path: Path, root: Path | None) -> TestFile | None:
    """The test file for the source file `path`, or None when no convention applies."""
    if not lang.tests or is_test_file(lang, path):
        return None
    stem = path.stem
    if lang.id == "python":
        parts = [stem]
        source_root = path.parent
        while (source_root / "__init__.py").exists() and source_root.parent != source_root:
            parts.insert(0, source_root.name)
            source_root = source_root.parent
        tests_dir = _nearest_tests_dir(source_root, root) or source_root / "tests"
        return TestFile(tests_dir / f"test_{stem}.py", ".".join(parts), stem)
    if lang.id == "go":
        return TestFile(path.with_name(f"{stem}_test.go"), stem, stem)
    return TestFile(path.with_name(f"{stem}.test{path.suffix}"), stem, stem)


def _nearest_tests_dir(start: Path, root: Path | None) -> Path | None:
    here = start
    top = (root or start).resolve()
    while True:
        candidate = here / "tests"
        if candidate.is_dir():
            return candidate
        resolved = here.resolve()
        if resolved == top or here.parent == here or top not in resolved.parents:
            return None
        here = here.parent
