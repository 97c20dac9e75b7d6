"""The language registry: adding a language is one `LanguageSpec` entry and its query files.

Each grammar comes from its own wheel (`tree_sitter_python`, ...). Tags queries start from the
grammar's own `TAGS_QUERY` (or its packaged `queries/tags.scm`) and add `queries/<name>-tags.scm`;
imports come from `queries/<name>-imports.scm`.
"""

from __future__ import annotations

import importlib
import importlib.resources
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePath

import tree_sitter as ts

QUERY_DIR = Path(__file__).resolve().parent / "queries"

#: Node types that may carry an identifier worth looking up; each language keeps those it has.
_IDENTIFIER_TYPES = (
    "identifier",
    "type_identifier",
    "field_identifier",
    "property_identifier",
    "shorthand_property_identifier",
    "shorthand_property_identifier_pattern",
    "namespace_identifier",
)


def _grammar(module: str, attr: str = "language") -> Callable[[], object]:
    def load() -> object:
        return getattr(importlib.import_module(module), attr)()

    return load


def _module_query(module: str) -> Callable[[], str]:
    """The grammar's `TAGS_QUERY`, or its packaged `queries/tags.scm`, or nothing."""

    def load() -> str:
        mod = importlib.import_module(module)
        text = getattr(mod, "TAGS_QUERY", None)
        if isinstance(text, str):
            return text
        try:
            return (importlib.resources.files(module) / "queries" / "tags.scm").read_text("utf-8")
        except (FileNotFoundError, OSError):
            return ""

    return load


def _file_query(name: str) -> Callable[[], str]:
    def load() -> str:
        return (QUERY_DIR / name).read_text("utf-8")

    return load


@dataclass(eq=False)
class LanguageSpec:
    """How to parse and read one language.

    `family` selects the import reader (parse.py) and resolver (resolve.py) shared by related
    languages (`js` for JavaScript/TypeScript/TSX, `c` for C/C++).
    """

    name: str
    ids: tuple[str, ...]
    extensions: tuple[str, ...]
    family: str
    grammar: Callable[[], object]
    tags: tuple[Callable[[], str], ...]
    imports: Callable[[], str]
    comment_types: frozenset[str] = frozenset({"comment"})
    #: "docstring" (first string in the body) or "comment" (comments just above).
    doc_style: str = "comment"
    #: How a rendered doc comment starts: "/**", "//" or "///"; unused for docstrings.
    doc_prefix: str = "//"
    #: Wrappers climbed when they hold nothing but the definition (export, decorators, ...).
    wrap_single: frozenset[str] = frozenset()
    #: Wrappers always climbed (a C `function_declarator` sits inside its `function_definition`).
    wrap_always: frozenset[str] = frozenset()
    #: Node types that are a definition's body; the signature is the text before it.
    body_types: frozenset[str] = frozenset()
    #: Node types of functions, for "the enclosing function" of a cursor.
    function_types: frozenset[str] = frozenset()
    #: Siblings skipped between a doc comment and its definition (attributes, decorators).
    doc_skip_types: frozenset[str] = frozenset()
    #: "python" elides a body as an indented `...`, "brace" as `{ ... }`.
    elision: str = "brace"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @cached_property
    def language(self) -> ts.Language:
        return ts.Language(self.grammar())

    @cached_property
    def tags_query(self) -> ts.Query:
        with self._lock:
            text = "\n".join(load() for load in self.tags)
            return ts.Query(self.language, text)

    @cached_property
    def imports_query(self) -> ts.Query:
        with self._lock:
            return ts.Query(self.language, self.imports())

    @cached_property
    def identifier_query(self) -> ts.Query:
        kinds = [k for k in _IDENTIFIER_TYPES if self.language.id_for_node_kind(k, True)]
        return ts.Query(self.language, "[" + " ".join(f"({k})" for k in kinds) + "] @id")


_PY_BODY = frozenset({"block"})
_JS_BODY = frozenset(
    {"statement_block", "class_body", "interface_body", "object_type", "enum_body"}
)
_JS_FUNCS = frozenset(
    {
        "function_declaration",
        "function_expression",
        "arrow_function",
        "method_definition",
        "generator_function_declaration",
        "generator_function",
    }
)
_JS_WRAP = frozenset({"export_statement", "lexical_declaration", "variable_declaration"})
_C_WRAP_ALWAYS = frozenset(
    {
        "function_definition",
        "declaration",
        "field_declaration",
        "pointer_declarator",
        "reference_declarator",
    }
)
_C_BODY = frozenset({"compound_statement", "field_declaration_list", "enumerator_list"})

_JS_TAGS = (_module_query("tree_sitter_javascript"), _file_query("javascript-tags.scm"))
_JSX_TAGS = _file_query("jsx-tags.scm")
_TS_TAGS = (*_JS_TAGS, _module_query("tree_sitter_typescript"), _file_query("typescript-tags.scm"))


def _js(
    name: str,
    ids: tuple[str, ...],
    extensions: tuple[str, ...],
    grammar: Callable[[], object],
    tags: tuple[Callable[[], str], ...],
) -> LanguageSpec:
    return LanguageSpec(
        name=name,
        ids=ids,
        extensions=extensions,
        family="js",
        grammar=grammar,
        tags=tags,
        imports=_file_query("javascript-imports.scm"),
        doc_prefix="/**",
        wrap_single=_JS_WRAP,
        body_types=_JS_BODY,
        function_types=_JS_FUNCS,
        doc_skip_types=frozenset({"decorator"}),
    )


LANGUAGES: tuple[LanguageSpec, ...] = (
    LanguageSpec(
        name="python",
        ids=("python",),
        extensions=(".py", ".pyi"),
        family="python",
        grammar=_grammar("tree_sitter_python"),
        tags=(_module_query("tree_sitter_python"), _file_query("python-tags.scm")),
        imports=_file_query("python-imports.scm"),
        doc_style="docstring",
        wrap_single=frozenset({"decorated_definition"}),
        body_types=_PY_BODY,
        function_types=frozenset({"function_definition", "lambda"}),
        elision="python",
    ),
    _js(
        "javascript",
        ("javascript", "javascriptreact"),
        (".js", ".jsx", ".mjs", ".cjs"),
        _grammar("tree_sitter_javascript"),
        (*_JS_TAGS, _JSX_TAGS),
    ),
    _js(
        "typescript",
        ("typescript",),
        (".ts", ".mts", ".cts"),
        _grammar("tree_sitter_typescript", "language_typescript"),
        _TS_TAGS,
    ),
    _js(
        "tsx",
        ("typescriptreact",),
        (".tsx",),
        _grammar("tree_sitter_typescript", "language_tsx"),
        (*_TS_TAGS, _JSX_TAGS),
    ),
    LanguageSpec(
        name="go",
        ids=("go",),
        extensions=(".go",),
        family="go",
        grammar=_grammar("tree_sitter_go"),
        tags=(_module_query("tree_sitter_go"), _file_query("go-tags.scm")),
        imports=_file_query("go-imports.scm"),
        wrap_single=frozenset({"type_declaration", "const_declaration", "var_declaration"}),
        body_types=frozenset({"block", "field_declaration_list", "interface_type"}),
        function_types=frozenset({"function_declaration", "method_declaration", "func_literal"}),
    ),
    LanguageSpec(
        name="rust",
        ids=("rust",),
        extensions=(".rs",),
        family="rust",
        grammar=_grammar("tree_sitter_rust"),
        tags=(_module_query("tree_sitter_rust"), _file_query("rust-tags.scm")),
        imports=_file_query("rust-imports.scm"),
        comment_types=frozenset({"line_comment", "block_comment"}),
        doc_prefix="///",
        body_types=frozenset(
            {"block", "field_declaration_list", "declaration_list", "enum_variant_list"}
        ),
        function_types=frozenset({"function_item", "closure_expression"}),
        doc_skip_types=frozenset({"attribute_item"}),
    ),
    LanguageSpec(
        name="java",
        ids=("java",),
        extensions=(".java",),
        family="java",
        grammar=_grammar("tree_sitter_java"),
        tags=(_module_query("tree_sitter_java"), _file_query("java-tags.scm")),
        imports=_file_query("java-imports.scm"),
        comment_types=frozenset({"line_comment", "block_comment"}),
        doc_prefix="/**",
        body_types=frozenset(
            {"block", "class_body", "interface_body", "enum_body", "constructor_body"}
        ),
        function_types=frozenset(
            {"method_declaration", "constructor_declaration", "lambda_expression"}
        ),
    ),
    LanguageSpec(
        name="c",
        ids=("c",),
        extensions=(".c", ".h"),
        family="c",
        grammar=_grammar("tree_sitter_c"),
        tags=(_module_query("tree_sitter_c"), _file_query("c-tags.scm")),
        imports=_file_query("c-imports.scm"),
        wrap_single=frozenset({"type_definition"}),
        wrap_always=_C_WRAP_ALWAYS,
        body_types=_C_BODY,
        function_types=frozenset({"function_definition"}),
    ),
    LanguageSpec(
        name="cpp",
        ids=("cpp",),
        extensions=(".cpp", ".cc", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp"),
        family="c",
        grammar=_grammar("tree_sitter_cpp"),
        tags=(
            _module_query("tree_sitter_cpp"),
            _file_query("c-tags.scm"),
            _file_query("cpp-tags.scm"),
        ),
        imports=_file_query("c-imports.scm"),
        doc_prefix="///",
        wrap_single=frozenset({"type_definition", "template_declaration"}),
        wrap_always=_C_WRAP_ALWAYS,
        body_types=_C_BODY | {"declaration_list"},
        function_types=frozenset({"function_definition", "lambda_expression"}),
    ),
)

_BY_EXT: dict[str, LanguageSpec] = {ext: spec for spec in LANGUAGES for ext in spec.extensions}
_BY_ID: dict[str, LanguageSpec] = {
    key: spec for spec in LANGUAGES for key in (spec.name, *spec.ids)
}
EXTENSIONS: frozenset[str] = frozenset(_BY_EXT)


def for_path(path: str | PurePath) -> LanguageSpec | None:
    """The language of a file by its extension (`.h` is C)."""
    suffix = PurePath(path).suffix.lower()
    return _BY_EXT.get(suffix)


def for_id(language_id: str) -> LanguageSpec | None:
    """The language an editor names (`typescriptreact`, `cpp`, ...), or None."""
    return _BY_ID.get(language_id)
