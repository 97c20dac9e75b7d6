"""What the actions need to know per language: definitions, bodies, comments, doc style."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionLanguage:
    id: str
    name: str
    """As named in prompts ("Python")."""
    fence: str
    """The Markdown fence tag the model knows."""
    line_comment: str
    doc_style: str
    """docstring (Python) | block (`/** */`) | line (`//` or `///` lines above)."""
    doc_marker: str
    """The prefix of a doc comment line for the `line` style."""
    functions: frozenset[str]
    classes: frozenset[str]
    wrappers: frozenset[str]
    """Nodes that wrap a definition (decorators, export): a comment goes above them."""
    indent: str
    """The indentation unit when the file does not tell."""
    braces: bool = True
    tests: bool = False
    """Whether "write unit tests" is offered (a convention for the test file is known)."""


_JS_FUNCTIONS = frozenset(
    {
        "function_declaration",
        "generator_function_declaration",
        "method_definition",
        "arrow_function",
        "function_expression",
    }
)
_JS_CLASSES = frozenset({"class_declaration", "abstract_class_declaration"})
_JS_WRAPPERS = frozenset({"export_statement", "lexical_declaration", "variable_declarator"})


def _js(id: str, name: str, fence: str) -> ActionLanguage:
    return ActionLanguage(
        id=id,
        name=name,
        fence=fence,
        line_comment="//",
        doc_style="block",
        doc_marker="",
        functions=_JS_FUNCTIONS,
        classes=_JS_CLASSES | ({"interface_declaration"} if "typescript" in id else set()),
        wrappers=_JS_WRAPPERS,
        indent="  ",
        tests=True,
    )


LANGUAGES: dict[str, ActionLanguage] = {
    "python": ActionLanguage(
        id="python",
        name="Python",
        fence="python",
        line_comment="#",
        doc_style="docstring",
        doc_marker="",
        functions=frozenset({"function_definition"}),
        classes=frozenset({"class_definition"}),
        wrappers=frozenset({"decorated_definition"}),
        indent="    ",
        braces=False,
        tests=True,
    ),
    "javascript": _js("javascript", "JavaScript", "javascript"),
    "javascriptreact": _js("javascriptreact", "JavaScript (JSX)", "jsx"),
    "typescript": _js("typescript", "TypeScript", "typescript"),
    "typescriptreact": _js("typescriptreact", "TypeScript (TSX)", "tsx"),
    "go": ActionLanguage(
        id="go",
        name="Go",
        fence="go",
        line_comment="//",
        doc_style="line",
        doc_marker="//",
        functions=frozenset({"function_declaration", "method_declaration"}),
        classes=frozenset({"type_declaration"}),
        wrappers=frozenset(),
        indent="\t",
        tests=True,
    ),
    "rust": ActionLanguage(
        id="rust",
        name="Rust",
        fence="rust",
        line_comment="//",
        doc_style="line",
        doc_marker="///",
        functions=frozenset({"function_item"}),
        classes=frozenset({"struct_item", "enum_item", "trait_item"}),
        wrappers=frozenset(),
        indent="    ",
    ),
    "java": ActionLanguage(
        id="java",
        name="Java",
        fence="java",
        line_comment="//",
        doc_style="block",
        doc_marker="",
        functions=frozenset({"method_declaration", "constructor_declaration"}),
        classes=frozenset({"class_declaration", "interface_declaration", "enum_declaration"}),
        wrappers=frozenset(),
        indent="    ",
    ),
    "c": ActionLanguage(
        id="c",
        name="C",
        fence="c",
        line_comment="//",
        doc_style="block",
        doc_marker="",
        functions=frozenset({"function_definition"}),
        classes=frozenset({"struct_specifier"}),
        wrappers=frozenset(),
        indent="    ",
    ),
    "cpp": ActionLanguage(
        id="cpp",
        name="C++",
        fence="cpp",
        line_comment="//",
        doc_style="block",
        doc_marker="",
        functions=frozenset({"function_definition"}),
        classes=frozenset({"class_specifier", "struct_specifier"}),
        wrappers=frozenset({"template_declaration"}),
        indent="    ",
    ),
}


def for_id(language: str | None) -> ActionLanguage | None:
    return LANGUAGES.get(language or "")
