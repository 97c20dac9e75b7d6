"""Repository-level cases mined from real PyPI packages' sources.

A case is a single-line statement inside a function that calls a function defined (with `def`) in
another module of the same package, imported by name (`from .x import f`) or through its module
(`from . import x` ... `x.f(...)`). The wheels are downloaded once (`pip download --no-deps`) into a
cache outside the repository; the selection is seeded and the versions pinned, so the cases are the
same on every machine.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import tree_sitter as ts

from lsp.eval.core import holes_in_file
from lsp.index import languages
from lsp.index.parse import parse

PACKAGES: dict[str, str] = {
    "click": "8.5.1",
    "flask": "3.1.3",
    "jinja2": "3.1.6",
    "requests": "2.34.2",
    "attrs": "26.1.0",
    "pydantic": "2.14.4",
    "black": "26.10.1",
}
DJANGO = ("django", "5.2.19")
# `hushcode serve` reads stdio unbuffered (lsp/cli.py `_private_stdio`, buffering=0), so one
# `read(n)` on the pipe returns at most ~64 KB and a bigger message (a didOpen of a large file)
# is cut, which wedges the server for good. Until that is fixed, cases come from files whose
# didOpen fits; `BENCH_MAX_OPEN_BYTES=0` lifts the cap.
MAX_OPEN_BYTES = int(os.environ.get("BENCH_MAX_OPEN_BYTES", "60000"))


def fits_stdio(text: str) -> bool:
    return MAX_OPEN_BYTES <= 0 or len(json.dumps(text)) + 400 <= MAX_OPEN_BYTES


def cache_dir() -> Path:
    base = os.environ.get("HUSHCODE_BENCH_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "hushcode-bench"


def _wheel(package: str, version: str) -> Path | None:
    wheels = cache_dir() / "wheels"
    stem = package.replace("-", "_").lower()
    for whl in sorted(wheels.glob("*.whl")):
        name, _, rest = whl.name.partition("-")
        if name.lower() == stem and rest.startswith(version + "-"):
            return whl
    return None


def fetch(package: str, version: str) -> Path:
    """The package's sources, extracted from its wheel (downloaded once); returns the root."""
    src = cache_dir() / "src" / f"{package}-{version}"
    stamp = src / ".extracted"
    if stamp.exists():
        return src
    whl = _wheel(package, version)
    if whl is None:
        wheels = cache_dir() / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-q",
                "-d",
                str(wheels),
                f"{package}=={version}",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        whl = _wheel(package, version)
        if whl is None:
            raise RuntimeError(f"no wheel for {package}=={version} after pip download")
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    with zipfile.ZipFile(whl) as z:
        names = [
            n
            for n in z.namelist()
            if ".dist-info/" not in n and not n.endswith((".so", ".pyd", "/"))
        ]
        z.extractall(src, names)
    stamp.write_text(whl.name)
    return src


def workspace(package: str, version: str, base: Path) -> Path:
    """A fresh copy of the sources the benchmark may write holes into."""
    src = fetch(package, version)
    dest = base / f"{package}-{version}"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".extracted"))
    return dest


# -- mining ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepoCase:
    package: str
    path: str
    line: int
    offset: int
    expected: str
    text: str
    """The file with the answer line's statement removed (indentation kept)."""
    original: str
    callee: str
    callee_path: str
    oracle: str
    """The callee's `def` line(s) and docstring."""

    @property
    def case_id(self) -> str:
        return f"{self.package}:{self.path}:{self.line + 1}"


@dataclass
class _Module:
    path: str
    name: str
    is_package: bool
    functions: dict[str, str]
    """Top-level `def` name -> its signature and docstring (the oracle)."""


def _module_name(rel: str) -> tuple[str, bool]:
    parts = rel[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _text(node: ts.Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")


def _oracle(func: ts.Node, source: bytes) -> str:
    body = func.child_by_field_name("body")
    header_end = body.start_byte if body is not None else func.end_byte
    header = source[func.start_byte : header_end].decode("utf-8", "replace").rstrip()
    doc = ""
    if body is not None and body.named_child_count:
        first = body.named_children[0]
        if (
            first.type == "expression_statement"
            and first.named_child_count == 1
            and first.named_children[0].type == "string"
        ):
            doc = "    " + _text(first).strip()
    return header + "\n" + (doc + "\n" if doc else "    ...\n")


def _top_level_functions(root: ts.Node, source: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in root.named_children:
        func = node
        if node.type == "decorated_definition":
            func = node.child_by_field_name("definition") or node
        if func.type == "function_definition":
            name = func.child_by_field_name("name")
            if name is not None:
                out[_text(name)] = _oracle(func, source)
    return out


def _resolve(current: _Module, dots: int, name: str) -> str:
    if dots == 0:
        return name
    package = current.name if current.is_package else current.name.rpartition(".")[0]
    parts = package.split(".") if package else []
    if dots > 1:
        parts = parts[: len(parts) - (dots - 1)]
    return ".".join([*parts, name] if name else parts)


def _imports(
    root: ts.Node, current: _Module, modules: dict[str, _Module]
) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """(local function name -> (module, def name), local module alias -> module)."""
    functions: dict[str, tuple[str, str]] = {}
    aliases: dict[str, str] = {}
    for node in root.named_children:
        if node.type == "import_from_statement":
            mod = node.child_by_field_name("module_name")
            if mod is None:
                continue
            raw = _text(mod)
            dots = len(raw) - len(raw.lstrip("."))
            base = _resolve(current, dots, raw.lstrip("."))
            for child in node.children_by_field_name("name"):
                if child.type == "aliased_import":
                    orig_node = child.child_by_field_name("name")
                    alias_node = child.child_by_field_name("alias")
                    if orig_node is None or alias_node is None:
                        continue
                    orig, local = _text(orig_node), _text(alias_node)
                else:
                    orig = local = _text(child)
                sub = f"{base}.{orig}" if base else orig
                if sub in modules:
                    aliases[local] = sub
                elif base in modules and orig in modules[base].functions:
                    functions[local] = (base, orig)
        elif node.type == "import_statement":
            for child in node.named_children:
                if child.type == "aliased_import":
                    name_node = child.child_by_field_name("name")
                    alias_node = child.child_by_field_name("alias")
                    if name_node is not None and alias_node is not None:
                        target = _text(name_node)
                        if target in modules:
                            aliases[_text(alias_node)] = target
    return functions, aliases


def mine(root: Path, package: str) -> list[RepoCase]:
    """Every candidate case of a package's sources, in a stable order."""
    spec = languages.for_id("python")
    assert spec is not None
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py") if p.is_file())
    modules: dict[str, _Module] = {}
    trees: dict[str, tuple[ts.Tree, str]] = {}
    for rel in files:
        try:
            text = (root / rel).read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        source = text.encode("utf-8")
        tree = parse(spec, source)
        name, is_package = _module_name(rel)
        modules[name] = _Module(rel, name, is_package, _top_level_functions(tree.root_node, source))
        trees[rel] = (tree, text)
    cases: list[RepoCase] = []
    by_path = {m.path: m for m in modules.values()}
    for rel, (tree, text) in trees.items():
        current = by_path[rel]
        functions, aliases = _imports(tree.root_node, current, modules)
        if not functions and not aliases:
            continue
        for hole in holes_in_file(rel, text, spec):
            hit = _callee(hole.expected, functions, aliases, modules)
            if hit is None:
                continue
            module, func = hit
            target = modules[module]
            if target.path == rel:
                continue
            cases.append(
                RepoCase(
                    package=package,
                    path=rel,
                    line=hole.line,
                    offset=hole.offset,
                    expected=hole.expected,
                    text=hole.text,
                    original=text,
                    callee=func,
                    callee_path=target.path,
                    oracle=target.functions[func],
                )
            )
    return cases


_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?\s*\(")


def _callee(
    statement: str,
    functions: dict[str, tuple[str, str]],
    aliases: dict[str, str],
    modules: dict[str, _Module],
) -> tuple[str, str] | None:
    code = re.sub(r"(['\"]).*?\1", '""', statement)  # no calls inside string literals
    for m in _CALL.finditer(code):
        head, attr = m.group(1), m.group(2)
        if attr is None and head in functions:
            return functions[head]
        if attr is not None and head in aliases:
            module = aliases[head]
            if attr in modules[module].functions:
                return module, attr
    return None


def candidates(root: Path, package: str) -> int:
    """How many cases the package offers (within the stdio cap)."""
    return sum(fits_stdio(c.text) for c in mine(root, package))


def select(
    root: Path, package: str, n: int, seed: int, *, smallest: bool = False
) -> list[RepoCase]:
    """`n` cases of one package, seeded, at most one per file while other files have some.

    `smallest`: the cases in the smallest files instead (short prompts, for the smoke run).
    """
    cases = [c for c in mine(root, package) if fits_stdio(c.text)]
    if smallest:
        return sorted(cases, key=lambda c: (len(c.text), c.path, c.line))[:n]
    rng = random.Random(f"{seed}-{package}")
    rng.shuffle(cases)
    chosen: list[RepoCase] = []
    seen: set[str] = set()
    for case in cases:
        if case.path not in seen and len(chosen) < n:
            chosen.append(case)
            seen.add(case.path)
    for case in cases:
        if len(chosen) >= n:
            break
        if case not in chosen:
            chosen.append(case)
    return chosen
