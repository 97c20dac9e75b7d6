"""Parsing, extraction, gitignore matching and edit diffing, on the real grammars."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp.index import languages
from lsp.index.ignore import IgnoreMatcher, parse_rule
from lsp.index.model import Definition
from lsp.index.parse import expand_rust_use, extract, parse
from lsp.index.workspace import diff_edit

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "index_ws"


def symbols(rel: str) -> dict[str, Definition]:
    spec = languages.for_path(rel)
    assert spec is not None, rel
    data = (FIXTURE / rel).read_bytes()
    found = extract(spec, parse(spec, data), data, rel)
    return {f"{d.container + '.' if d.container else ''}{d.name}": d for d in found.definitions}


def test_every_editor_language_id_has_a_grammar() -> None:
    ids = [
        "python",
        "javascript",
        "javascriptreact",
        "typescript",
        "typescriptreact",
        "go",
        "rust",
        "java",
        "c",
        "cpp",
    ]
    for language_id in ids:
        spec = languages.for_id(language_id)
        assert spec is not None, language_id
        assert spec.tags_query.pattern_count > 0
        assert spec.imports_query.pattern_count > 0
    assert getattr(languages.for_path("a/b.tsx"), "name", None) == "tsx"
    assert getattr(languages.for_path("x.h"), "name", None) == "c"
    assert languages.for_path("notes.md") is None


def test_python_definitions_with_locations_signatures_and_docstrings() -> None:
    defs = symbols("pyapp/core.py")
    assert set(defs) == {
        "DEFAULT_CURRENCY",
        "LedgerEngine",
        "LedgerEngine.__init__",
        "LedgerEngine.post_entry",
        "start_engine",
    }
    engine = defs["LedgerEngine"]
    assert (engine.kind, engine.start_line, engine.end_line) == ("class", 5, 14)
    assert (engine.name_line, engine.name_col, engine.name_end_col) == (5, 6, 18)
    assert engine.doc == "Keeps entries in memory and reconciles them on demand."
    post = defs["LedgerEngine.post_entry"]
    assert post.kind == "method"
    assert post.signature == "def post_entry(self, amount_cents: int) -> None:"
    assert post.doc == "Append one entry, in cents."
    assert defs["DEFAULT_CURRENCY"].kind == "constant"
    money = symbols("pyapp/util/money.py")["reconcile_ledger_entries"]
    assert money.signature.startswith("def reconcile_ledger_entries(ledger: list[int], *,")
    assert money.doc == "Return True when the ledger sums to zero within the tolerance."


def test_typescript_javascript_and_tsx() -> None:
    ts_defs = symbols("web/src/math.ts")
    assert {k: d.kind for k, d in ts_defs.items()} == {
        "Vec": "interface",
        "Scalar": "type",
        "scaleVector": "function",
        "VectorStack": "class",
        "VectorStack.push": "method",
        "ORIGIN": "constant",
    }
    scale = ts_defs["scaleVector"]
    assert scale.signature == "export function scaleVector(v: Vec, factor: Scalar): Vec"
    assert scale.doc == "Multiply both components of a vector by a factor."
    assert scale.start_line == 11  # the export, not the doc comment above it
    js = symbols("web/src/components/index.js")
    assert js["formatPrice"].doc == "Format an amount of cents for display."
    assert js["priceFormatter"].kind == "function"
    assert "PriceTag" in symbols("web/src/widget.tsx")
    assert "render" in symbols("web/src/app.js")


def test_go_rust_java_c_cpp() -> None:
    go = symbols("goapp/geom/geom.go")
    assert go["EuclideanDistance"].signature == "func EuclideanDistance(a, b Point) float64"
    assert go["Point.Shift"].kind == "method"
    assert go["MaxCoordinate"].kind == "constant"
    assert go["Point"].doc == "Point is a location on the plane."

    rs = symbols("rsapp/src/shapes.rs")
    assert rs["area_of_triangle"].doc == "Area of a triangle, half base times height."
    assert rs["Triangle.area"].kind == "method"  # from `impl Shape for Triangle`
    assert rs["Shape"].kind == "interface"
    assert rs["SIDES"].kind == "constant"

    java = symbols("javaapp/src/com/example/util/Strings.java")
    assert java["Strings.capitalizeWord"].doc == "Capitalize the first letter of a word."
    assert java["Strings.MAX_GREETING"].kind == "constant"

    header = symbols("csrc/vec.h")
    assert header["vec_dot_product"].signature == (
        "int vec_dot_product(const IntVec *a, const IntVec *b, int n);"
    )
    assert header["IntVec"].kind == "type"
    assert header["VEC_MAX_LEN"].end_line == header["VEC_MAX_LEN"].start_line
    assert "VEC_H" not in header  # an include guard is not a constant

    cpp = symbols("cppapp/shapes.cpp")
    assert cpp["Circle.area"].signature == "double Circle::area() const"
    assert symbols("cppapp/shapes.hpp")["geo.Circle"].doc == "A circle with a radius."


def test_imports_as_written() -> None:
    def imports(rel: str) -> list[tuple[str, tuple[str, ...]]]:
        spec = languages.for_path(rel)
        assert spec is not None
        data = (FIXTURE / rel).read_bytes()
        return [(i.module, i.names) for i in extract(spec, parse(spec, data), data, rel).imports]

    assert imports("pyapp/service.py") == [
        ("pyapp.util.money", ("reconcile_ledger_entries",)),
        (".", ("core",)),
        (".util", ("money",)),
    ]
    assert imports("web/src/index.ts") == [
        ("./math", ("scaleVector", "Vec")),
        ("./components", ("formatPrice",)),
    ]
    assert imports("web/src/app.js") == [("./components", ())]
    assert ("example.com/goapp/geom", ("geom",)) in imports("goapp/main.go")
    assert imports("rsapp/src/main.rs") == [
        ("mod:shapes", ("shapes",)),
        ("crate::shapes::area_of_triangle", ("area_of_triangle",)),
        ("crate::shapes::Triangle", ("Triangle",)),
    ]
    assert imports("csrc/main.c") == [("<stdio.h>", ()), ("vec.h", ())]
    assert imports("javaapp/src/com/example/Greeter.java") == [
        ("com.example.util.Strings", ("Strings",))
    ]


def test_rust_use_trees_expand() -> None:
    assert expand_rust_use("crate::a::{b, c::{d as e, self}, f::*}") == [
        "crate::a::b",
        "crate::a::c::d",
        "crate::a::c",
        "crate::a::f::*",
    ]


def test_non_ascii_columns_are_utf16() -> None:
    spec = languages.for_id("python")
    assert spec is not None
    data = 's = "é😀"; TOTAL = 1\n'.encode()
    defs = {d.name: d for d in extract(spec, parse(spec, data), data, "u.py").definitions}
    # 10 code points, 11 UTF-16 units (the emoji takes two), 14 bytes before the name.
    assert (defs["TOTAL"].name_col, defs["TOTAL"].name_end_col) == (11, 16)
    assert defs["s"].end_col == 9


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "ignored"),
    [
        ("*.log", "a/b/c.log", False, True),
        ("/build", "build", True, True),
        ("/build", "src/build", True, False),
        ("build/", "src/build", True, True),
        ("build/", "src/build", False, False),
        ("doc/*.txt", "doc/notes.txt", False, True),
        ("doc/*.txt", "doc/sub/notes.txt", False, False),
        ("**/tmp", "a/b/tmp", True, True),
        ("a/**/z.py", "a/z.py", False, True),
        ("a/**/z.py", "a/b/c/z.py", False, True),
        ("logs/**", "logs/x/y", False, True),
        ("file?.py", "file1.py", False, True),
        ("file[0-9].py", "fileA.py", False, False),
        ("\\#hash", "#hash", False, True),
        ("# comment", "# comment", False, False),
    ],
)
def test_gitignore_patterns(pattern: str, path: str, is_dir: bool, ignored: bool) -> None:
    rule = parse_rule(pattern)
    matched = rule is not None and not rule.negate and rule.matches(path, is_dir)
    assert matched is ignored


def test_nested_gitignore_negation_and_parent_exclusion(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    (tmp_path / ".gitignore").write_text("*.gen.py\nvendor_x/\n")
    (tmp_path / "sub" / ".gitignore").write_text("!keep.gen.py\nlocal.py\n")
    m = IgnoreMatcher(tmp_path, extra=["*.secret.py"])
    assert m.is_ignored("a.gen.py")
    assert not m.is_ignored("sub/keep.gen.py")
    assert m.is_ignored("sub/other.gen.py")
    assert m.is_ignored("sub/local.py")
    assert not m.is_ignored("local.py")
    assert m.is_ignored("sub/deep/local.py")
    assert m.is_ignored("vendor_x/keep.gen.py")  # a file under an excluded dir stays excluded
    assert m.is_ignored("node_modules/pkg/index.js")
    assert m.is_ignored("x/.venv/lib.py")
    assert m.is_ignored("api.secret.py")
    assert not m.is_ignored("src/app.py")


def test_diff_edit_finds_the_single_changed_span() -> None:
    assert diff_edit(b"abcdef", b"abcdef") is None
    assert diff_edit(b"abcdef", b"abXYdef") == (2, 3, 4)
    assert diff_edit(b"aaaa", b"aaaaa") == (4, 4, 5)
    assert diff_edit(b"hello world", b"hello") == (5, 11, 5)
    assert diff_edit(b"", b"x") == (0, 0, 1)
