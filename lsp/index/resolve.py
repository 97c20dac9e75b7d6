"""Resolve imports to workspace files, per language family, from the set of indexed paths.

Python absolute and relative imports (packages, `__init__.py`, src layouts), JS/TS relative
specifiers (extensions, `index` files, `.js` written for a `.ts` source), Go import paths through
each module's `go.mod`, Rust `mod foo;` and `crate::`/`self::`/`super::` paths, Java imports by
package path, C/C++ `#include "..."`. Anything else (the standard library, packages from a
registry) resolves to nothing.
"""

from __future__ import annotations

import posixpath
import re
import threading
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from .model import ImportSpec

_JS_EXTS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")
_JS_OUT_EXTS = {".js": (".ts", ".tsx"), ".jsx": (".tsx",), ".mjs": (".mts",), ".cjs": (".cts",)}
_GO_MODULE = re.compile(r"^\s*module\s+(\S+)", re.M)


def _norm(path: str) -> str | None:
    out = posixpath.normpath(path)
    if out == ".":
        return ""
    if out.startswith("../") or out == ".." or out.startswith("/"):
        return None
    return out


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


class Resolver:
    """Knows the workspace's indexed files; reads `go.mod` and `Cargo.toml` locations from disk."""

    def __init__(self, root: Path, paths: Iterable[str] = ()):
        self.root = root
        self._lock = threading.Lock()
        self._paths: set[str] = set()
        self._by_name: dict[str, set[str]] = defaultdict(set)
        self._by_dir: dict[str, set[str]] = defaultdict(set)
        self._disk: dict[str, bool] = {}
        self._go_modules: dict[str, str] | None = None
        for path in paths:
            self.add(path)

    # -- the file set ---------------------------------------------------------------------

    def add(self, path: str) -> None:
        with self._lock:
            if path in self._paths:
                return
            self._paths.add(path)
            self._by_name[posixpath.basename(path)].add(path)
            self._by_dir[posixpath.dirname(path)].add(path)
            self._disk.clear()
            self._go_modules = None

    def remove(self, path: str) -> None:
        with self._lock:
            if path not in self._paths:
                return
            self._paths.discard(path)
            self._by_name[posixpath.basename(path)].discard(path)
            self._by_dir[posixpath.dirname(path)].discard(path)
            self._disk.clear()
            self._go_modules = None

    def __contains__(self, path: object) -> bool:
        return path in self._paths

    def _exists_on_disk(self, rel: str) -> bool:
        with self._lock:
            known = self._disk.get(rel)
        if known is None:
            known = (self.root / rel).is_file()
            with self._lock:
                self._disk[rel] = known
        return known

    # -- entry point ----------------------------------------------------------------------

    def resolve(self, path: str, family: str, spec: ImportSpec) -> list[str]:
        """Workspace files `spec`, written in `path`, refers to; most specific first."""
        fn = getattr(self, "_" + family, None)
        if fn is None:
            return []
        out: list[str] = fn(path, spec)
        return [p for p in dict.fromkeys(out) if p != path]

    def resolve_all(
        self, path: str, family: str, imports: Iterable[ImportSpec]
    ) -> list[tuple[ImportSpec, list[str]]]:
        return [(spec, self.resolve(path, family, spec)) for spec in imports]

    # -- Python ---------------------------------------------------------------------------

    def _py_module(self, base: str) -> list[str]:
        out = [p for p in (base + ".py", base + ".pyi") if p in self._paths]
        init = _join(base, "__init__.py")
        if init in self._paths:
            out.append(init)
        return out

    def _python_roots(self, path: str) -> list[str]:
        roots: list[str] = []
        top = posixpath.dirname(path)
        while top and _join(top, "__init__.py") in self._paths:
            top = posixpath.dirname(top)
        roots.append(top)
        roots.extend(("", "src", "lib", posixpath.dirname(path)))
        return list(dict.fromkeys(roots))

    def _python(self, path: str, spec: ImportSpec) -> list[str]:
        module = spec.module
        if module.startswith("."):
            dots = len(module) - len(module.lstrip("."))
            base: str | None = posixpath.dirname(path)
            for _ in range(dots - 1):
                if not base:
                    return []
                base = posixpath.dirname(base)
            rest = module[dots:]
            targets = [_norm(_join(base or "", *rest.split("."))) if rest else base]
        else:
            targets = [_norm(_join(r, *module.split("."))) for r in self._python_roots(path)]
        for target in targets:
            if target is None:
                continue
            found: list[str] = []
            for name in spec.names:
                if name != "*":
                    found.extend(self._py_module(_join(target, name)))
            found.extend(self._py_module(target) if target else [])
            if found:
                return found
        return []

    # -- JavaScript / TypeScript ----------------------------------------------------------

    def _js(self, path: str, spec: ImportSpec) -> list[str]:
        module = spec.module
        if not (module.startswith("./") or module.startswith("../") or module in (".", "..")):
            return []
        base = _norm(_join(posixpath.dirname(path), module))
        if base is None:
            return []
        candidates = [base]
        stem, ext = posixpath.splitext(base)
        candidates.extend(stem + alt for alt in _JS_OUT_EXTS.get(ext, ()))
        candidates.extend(base + e for e in _JS_EXTS)
        candidates.extend(_join(base, "index" + e) for e in _JS_EXTS)
        for candidate in candidates:
            if candidate in self._paths:
                return [candidate]
        return []

    # -- Go -------------------------------------------------------------------------------

    def _modules(self) -> dict[str, str]:
        """Go module path -> its directory, for every go.mod above an indexed Go file."""
        with self._lock:
            cached = self._go_modules
            dirs = [d for d, files in self._by_dir.items() if any(f.endswith(".go") for f in files)]
        if cached is not None:
            return cached
        modules: dict[str, str] = {}
        checked: set[str] = set()
        for d in dirs:
            cur: str | None = d
            while cur is not None and cur not in checked:
                checked.add(cur)
                gomod = self.root / cur / "go.mod" if cur else self.root / "go.mod"
                try:
                    match = _GO_MODULE.search(gomod.read_text("utf-8", "replace"))
                except OSError:
                    match = None
                if match:
                    modules[match.group(1)] = cur
                cur = posixpath.dirname(cur) if cur else None
        with self._lock:
            self._go_modules = modules
        return modules

    def _go(self, path: str, spec: ImportSpec) -> list[str]:
        best: tuple[str, str] | None = None
        for module, directory in self._modules().items():
            matches = spec.module == module or spec.module.startswith(module + "/")
            if matches and (best is None or len(module) > len(best[0])):
                best = (module, directory)
        if best is None:
            return []
        module, directory = best
        pkg = _join(directory, spec.module[len(module) :].strip("/"))
        files = self._by_dir.get(pkg, set())
        return sorted(f for f in files if f.endswith(".go") and not f.endswith("_test.go"))

    # -- Rust -----------------------------------------------------------------------------

    @staticmethod
    def _rust_child_dir(path: str) -> str:
        directory = posixpath.dirname(path)
        stem = posixpath.splitext(posixpath.basename(path))[0]
        return directory if stem in ("main", "lib", "mod") else _join(directory, stem)

    def _rust_module_file(self, child_dir: str) -> str | None:
        for candidate in (
            child_dir + ".rs",
            _join(child_dir, "mod.rs"),
            _join(child_dir, "lib.rs"),
            _join(child_dir, "main.rs"),
        ):
            if candidate in self._paths:
                return candidate
        return None

    def _rust_crate_src(self, path: str) -> str | None:
        cur = posixpath.dirname(path)
        while True:
            if self._exists_on_disk(_join(cur, "Cargo.toml")):
                return _join(cur, "src")
            if not cur:
                return None
            cur = posixpath.dirname(cur)

    def _rust_from(self, child_dir: str, segments: list[str]) -> list[str]:
        for k in range(len(segments), 0, -1):
            base = _join(child_dir, *segments[:k])
            for candidate in (base + ".rs", _join(base, "mod.rs")):
                if candidate in self._paths:
                    return [candidate]
        module = self._rust_module_file(child_dir)
        return [module] if module else []

    def _rust(self, path: str, spec: ImportSpec) -> list[str]:
        module = spec.module
        if module.startswith("mod:"):
            child = self._rust_child_dir(path)
            name = module[4:]
            return [
                c for c in (_join(child, name + ".rs"), _join(child, name, "mod.rs")) if c in self
            ]
        segments = [s for s in module.split("::") if s and s != "*"]
        if not segments:
            return []
        head = segments[0]
        if head == "crate":
            src = self._rust_crate_src(path)
            return self._rust_from(src, segments[1:]) if src is not None else []
        if head in ("self", "super"):
            child = self._rust_child_dir(path)
            while segments and segments[0] == "super":
                child = posixpath.dirname(child)
                segments = segments[1:]
            if segments and segments[0] == "self":
                segments = segments[1:]
            return self._rust_from(child, segments)
        return []

    # -- Java -----------------------------------------------------------------------------

    def _java(self, path: str, spec: ImportSpec) -> list[str]:
        parts = spec.module.split(".")
        if parts[-1] == "*":
            suffix = "/".join(parts[:-1])
            return sorted(
                f
                for d, files in self._by_dir.items()
                if d == suffix or d.endswith("/" + suffix)
                for f in files
                if f.endswith(".java")
            )
        for k in range(len(parts), 1, -1):
            suffix = "/".join(parts[:k]) + ".java"
            name = parts[k - 1] + ".java"
            hits = sorted(
                p for p in self._by_name.get(name, ()) if p == suffix or p.endswith("/" + suffix)
            )
            if hits:
                return hits
        return []

    # -- C / C++ --------------------------------------------------------------------------

    def _c(self, path: str, spec: ImportSpec) -> list[str]:
        module = spec.module
        system = module.startswith("<")
        name = module.strip("<>")
        bases = ["include"] if system else [posixpath.dirname(path), "", "include"]
        for base in bases:
            candidate = _norm(_join(base, name))
            if candidate is not None and candidate in self._paths:
                return [candidate]
        if system:
            return []
        hits = sorted(
            p
            for p in self._by_name.get(posixpath.basename(name), ())
            if p.endswith("/" + name) or p == name
        )
        return hits[:1]
