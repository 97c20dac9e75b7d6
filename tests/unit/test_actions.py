"""Code actions with a fake model: listing, prompt layout, reply → edit, retry, scheduling.

The fake model replays scripted replies token by token (3 characters a token) after whatever the
prompt's assistant turn already holds, so yields and continuations behave as with llama.cpp. The
real model is exercised by tests/e2e/test_actions.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from lsp.actions import (
    ActionCancelled,
    ActionEngine,
    ActionError,
    ActionKind,
    Diagnostic,
    Document,
    Offer,
    StaleDocument,
    Target,
    TextChange,
)
from lsp.actions.languages import LANGUAGES
from lsp.actions.reply import apply_changes
from lsp.actions.tree import parse
from lsp.config import ActionSettings
from lsp.index import Definition
from lsp.model.backend import FimTokens, Generation, GenerationStats, ModelInfo
from lsp.model.service import CancelToken, ModelService, Priority

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ASSISTANT = "<|im_start|>assistant\n"

PY = '''"""Module."""


def add(a, b=1):
    return a + b


def stub(x: int) -> int:
    """Twice x."""
    pass


def later(x: int) -> int:
    raise NotImplementedError("soon")


class Greeter:
    def greet(self, name: str) -> str:
        return "hi " + name

    def wave(self) -> None:
        ...  # TODO
'''


class FakeModel:
    """A `Model` that replays `replies[attempt]` (the text after the prefill)."""

    def __init__(self, replies: Sequence[str], *, delay: float = 0.0) -> None:
        self.replies = list(replies)
        self.delay = delay
        self.prompts: list[str] = []
        self.calls = 0
        self._emitted: dict[int, str] = {}
        self.info = ModelInfo(
            name="fake",
            path="/models/fake.gguf",
            size_bytes=0,
            n_ctx=16384,
            n_threads=1,
            fim=FimTokens(),
            token_texts={},
            eog_texts=("<|im_end|>",),
            chat_template=CHATML,
            metadata={"tokenizer.ggml.eos_token_id": "0"},
        )

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return [ord(c) for c in text]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join("<|im_end|>" if t == 0 else chr(t) for t in tokens)

    def evaluate(self, tokens: Sequence[int], cancel: Callable[[], bool]) -> GenerationStats:
        return GenerationStats(prompt_tokens=len(tokens), stop_reason="warmup")

    def generate(
        self,
        tokens: Sequence[int],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        stop_check: Callable[[str], int | None] | None = None,
        cancel: Callable[[], bool] = lambda: False,
        deadline: float | None = None,
    ) -> Generation:
        self.calls += 1
        prompt = self.detokenize(tokens)
        self.prompts.append(prompt)
        attempt = prompt.count(ASSISTANT) - 1
        reply = self.replies[min(attempt, len(self.replies) - 1)]
        emitted = self._emitted.get(attempt, "")
        assert prompt.endswith(emitted), "a continuation must resend the text so far"
        rest = reply[len(emitted) :]
        stats = GenerationStats(prompt_tokens=len(tokens), stop_reason="eos")
        text = ""
        for i in range(0, len(rest), 3):
            if cancel():
                stats.stop_reason = "cancelled"
                break
            if deadline is not None and time.monotonic() > deadline:
                stats.stop_reason = "time"
                break
            if stats.generated_tokens >= max_tokens:
                stats.stop_reason = "limit"
                break
            if self.delay:
                time.sleep(self.delay)
            text += rest[i : i + 3]
            stats.generated_tokens += 1
            cut = stop_check(text) if stop_check else None
            if cut is not None:
                text = text[:cut]
                stats.stop_reason = "rule"
                break
        self._emitted[attempt] = emitted + text
        return Generation(text, stats)

    def close(self) -> None:
        pass


class FakeIndex:
    def __init__(self, defs: list[Definition]) -> None:
        self.defs = defs

    def definitions(self, name: str) -> list[Definition]:
        return [d for d in self.defs if d.name == name]


def _doc(
    tmp_path: Path, text: str = PY, name: str = "pkg_mod.py", lang: str = "python"
) -> Document:
    path = tmp_path / name
    path.write_text(text)
    return Document(path.as_uri(), text, lang, 3, path, tmp_path)


async def _engine(
    replies: Sequence[str], *, delay: float = 0.0, index: FakeIndex | None = None, **settings: int
) -> tuple[ActionEngine, FakeModel, ModelService]:
    model = FakeModel(replies, delay=delay)
    service = ModelService()
    await service.load(lambda: model)
    engine = ActionEngine(service, lambda: ActionSettings(**settings), index=lambda: index)
    return engine, model, service


def _offer(
    engine: ActionEngine, doc: Document, needle: str, kind: ActionKind, end: str = ""
) -> Offer:
    start = doc.text.index(needle)
    stop = doc.text.index(end) + len(end) if end else start
    offers = [o for o in engine.list_actions(doc, start, stop) if o.kind is kind]
    assert offers, f"{kind} not listed at {needle!r}"
    return offers[0]


def _applied(edit_text: str, changes: Sequence[TextChange]) -> str:
    return apply_changes(edit_text, list(changes))


# -- listing --------------------------------------------------------------------------------------


async def test_listing_fits_the_range_and_never_calls_the_model(tmp_path):
    engine, model, service = await _engine(["unused"])
    doc = _doc(tmp_path)

    def kinds(needle: str, end: str = "", diags: Sequence[Diagnostic] = ()) -> list[str]:
        start = doc.text.index(needle)
        stop = doc.text.index(end) + len(end) if end else start
        return [o.kind.value for o in engine.list_actions(doc, start, stop, diags)]

    assert kinds("def add") == ["docstring", "type_hints", "explain", "tests"]
    assert kinds("def stub") == ["implement", "explain", "tests"]  # documented and typed
    assert "implement" in kinds("raise NotImplementedError")
    assert kinds("...  # TODO")[:2] == ["implement", "docstring"]
    assert kinds("return a + b", "return a + b")[-3:] == ["simplify", "explain", "tests"]
    at = doc.text.index("a + b")
    diag = Diagnostic("undefined name 'c'", at, at + 5)
    fix = engine.list_actions(doc, at, at, [diag])[0]
    assert fix.kind is ActionKind.FIX and fix.target.message == "undefined name 'c'"
    assert fix.title == "hushcode: fix “undefined name 'c'” (line 5)"
    assert all(o.title.startswith("hushcode: ") for o in engine.list_actions(doc, 0, len(PY)))
    only = engine.list_actions(doc, at, at, [diag], only=["quickfix"])
    assert [o.kind for o in only] == [ActionKind.FIX]
    assert model.calls == 0 and engine.metrics.model_calls == 0
    assert engine.metrics.listings == 8
    service.close()


async def test_listing_reads_stubs_and_doc_comments_in_other_languages(tmp_path):
    engine, _, service = await _engine(["unused"])
    cases = {
        ("lib.rs", "rust"): ("fn area(w: f64) -> f64 {\n    todo!()\n}\n", "fn area"),
        ("main.go", "go"): (
            'package main\n\nfunc Add(a int) int {\n\tpanic("TODO")\n}\n',
            "func Add",
        ),
        ("util.ts", "typescript"): (
            "/** Adds. */\nexport function add(a: number): number {\n  // TODO\n}\n",
            "function add",
        ),
    }
    found = {}
    for (name, lang), (text, needle) in cases.items():
        doc = _doc(tmp_path, text, name, lang)
        at = text.index(needle)
        found[lang] = [o.kind.value for o in engine.list_actions(doc, at, at)]
    assert found["rust"][:2] == ["implement", "docstring"]
    assert found["go"][:2] == ["implement", "docstring"] and "tests" in found["go"]
    assert "docstring" not in found["typescript"] and found["typescript"][0] == "implement"
    service.close()


def test_listing_a_2000_line_file_is_fast(tmp_path):
    body = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(500))
    assert body.count("\n") >= 2000
    engine = ActionEngine(ModelService(), lambda: ActionSettings())
    doc = _doc(tmp_path, body)
    at = body.index("def f250")
    engine.list_actions(doc, at, at)  # parses once
    began = time.perf_counter()
    for i in range(20):
        at = body.index(f"def f{200 + i}(")
        assert engine.list_actions(doc, at, at)
    per_listing_ms = (time.perf_counter() - began) * 1000 / 20
    assert per_listing_ms < 20, per_listing_ms
    assert engine.metrics.model_calls == 0


# -- resolve ---------------------------------------------------------------------------------------


async def test_docstring_lands_inside_the_method_at_its_indentation(tmp_path):
    engine, model, service = await _engine(['Greet someone by name."""\n'])
    doc = _doc(tmp_path)
    edit = await engine.resolve(
        doc, _offer(engine, doc, "def greet", ActionKind.DOCSTRING).target, CancelToken()
    )
    (file,) = edit.files
    new = _applied(file.text, file.changes)
    assert (
        "    def greet(self, name: str) -> str:\n"
        '        """Greet someone by name."""\n'
        "        return"
    ) in new
    prompt = model.prompts[0]
    # the GGUF's chat template, then the prefill opening the docstring inside the signature
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt.endswith(ASSISTANT + '```python\ndef greet(self, name: str) -> str:\n    """')
    assert "It is a method of the class `Greeter`." in prompt
    service.close()


async def test_implement_replaces_only_the_body(tmp_path):
    engine, _, service = await _engine(["    y = x * 2\n    return y\n\n\ndef other():\n"])
    doc = _doc(tmp_path)
    edit = await engine.resolve(
        doc, _offer(engine, doc, "def stub", ActionKind.IMPLEMENT).target, CancelToken()
    )
    (file,) = edit.files
    new = _applied(file.text, file.changes)
    head, tail = PY.split("    pass\n")
    assert new == head + "    y = x * 2\n    return y\n" + tail
    service.close()


async def test_type_hints_change_the_signature_only_and_keep_defaults(tmp_path):
    engine, _, service = await _engine(["a: int, b: int = 2) -> int:\n    return a + b\n"])
    doc = _doc(tmp_path)
    edit = await engine.resolve(
        doc, _offer(engine, doc, "def add", ActionKind.TYPE_HINTS).target, CancelToken()
    )
    new = _applied(edit.files[0].text, edit.files[0].changes)
    assert "def add(a: int, b: int = 1) -> int:\n    return a + b\n" in new
    service.close()


async def test_a_reply_that_does_not_parse_is_retried_once_then_refused(tmp_path):
    doc = _doc(tmp_path)
    broken = "    return (x *\n\n"
    engine, model, service = await _engine([broken, "    return x * 2\n"])
    edit = await engine.resolve(
        doc, _offer(engine, doc, "def stub", ActionKind.IMPLEMENT).target, CancelToken()
    )
    assert "return x * 2" in edit.files[0].changes[0].text
    assert engine.metrics.resolves[-1].retries == 1
    retry_prompt = model.prompts[-1]
    assert "That reply could not be used: a syntax error at line" in retry_prompt
    service.close()

    engine, model, service = await _engine([broken, broken])
    with pytest.raises(ActionError, match="Nothing was changed") as info:
        await engine.resolve(
            doc, _offer(engine, doc, "def stub", ActionKind.IMPLEMENT).target, CancelToken()
        )
    assert "syntax error" in str(info.value)
    assert model.calls == 2 and engine.metrics.resolves[-1].outcome == "failed"
    service.close()


async def test_a_changed_document_is_refused_before_any_model_call(tmp_path):
    engine, model, service = await _engine(['Doc."""\n'])
    doc = _doc(tmp_path)
    target = _offer(engine, doc, "def greet", ActionKind.DOCSTRING).target
    changed = Document(doc.uri, doc.text + "\n", doc.language, 4, doc.path, doc.root)
    with pytest.raises(StaleDocument, match="changed since this action was listed"):
        await engine.resolve(changed, target, CancelToken())
    assert model.calls == 0 and engine.metrics.resolves[-1].outcome == "stale"
    service.close()


async def test_fix_rewrites_only_the_changed_lines_with_repository_context(tmp_path):
    helper = Definition(
        name="scale", kind="function", path="lib/scale.py", start_line=0, start_col=0,
        end_line=1, end_col=0, name_line=0, name_col=4, name_end_col=9,
        source="def scale(v: int) -> int:\n    return v * 10",
    )  # fmt: skip
    text = "def total(xs):\n    s = 0\n    for x in xs:\n        s += scale(y)\n    return s\n"
    engine, model, service = await _engine(
        ["def total(xs):\n    s = 0\n    for x in xs:\n        s += scale(x)\n    return s\n```"],
        index=FakeIndex([helper]),
    )
    doc = _doc(tmp_path, text)
    at = text.index("scale(y)")
    offer = engine.list_actions(doc, at, at, [Diagnostic("undefined name 'y'", at + 6, at + 7)])[0]
    edit = await engine.resolve(doc, offer.target, CancelToken())
    (change,) = edit.files[0].changes
    assert change.text == "        s += scale(x)\n"
    assert "`lib/scale.py`:\n```python\ndef scale(v: int)" in model.prompts[0]
    assert "has a problem on the line `s += scale(y)`:\nundefined name 'y'" in model.prompts[0]
    service.close()


async def test_tests_go_to_a_new_file_that_imports_the_module(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    engine, _, service = await _engine(
        ["():\n    assert add(1) == 2\n\n\ndef test_add_two():\n    assert add(1, 2) == 3\n```"]
    )
    doc = _doc(tmp_path, PY, "pkg/pkg_mod.py")
    edit = await engine.resolve(
        doc, _offer(engine, doc, "def add", ActionKind.TESTS).target, CancelToken()
    )
    (file,) = edit.files
    assert file.create and file.uri == (tmp_path / "tests" / "test_pkg_mod.py").as_uri()
    text = file.changes[0].text
    assert text.startswith("from pkg.pkg_mod import add\n\n\ndef test_add():\n")
    parsed = parse(LANGUAGES["python"], text)
    assert parsed is not None and parsed.errors == 0
    service.close()


async def test_tests_are_appended_to_an_existing_test_file(tmp_path):
    (tmp_path / "tests").mkdir()
    existing = "import math\n\n\ndef test_old():\n    assert math.pi\n"
    (tmp_path / "tests" / "test_pkg_mod.py").write_text(existing)
    engine, _, service = await _engine(["():\n    assert add(1) == 2\n```"])
    doc = _doc(tmp_path)
    edit = await engine.resolve(
        doc, _offer(engine, doc, "def add", ActionKind.TESTS).target, CancelToken()
    )
    (file,) = edit.files
    assert not file.create
    new = _applied(file.text, file.changes)
    assert new == (
        "import math\nfrom pkg_mod import add\n\n\ndef test_old():\n    assert math.pi\n"
        "\n\ndef test_add():\n    assert add(1) == 2\n"
    )
    service.close()


async def test_explain_inserts_a_comment_block_above_the_code(tmp_path):
    engine, _, service = await _engine(["It **greets** a person. It adds hi.\n\nMore detail"])
    doc = _doc(tmp_path)
    edit = await engine.resolve(
        doc, _offer(engine, doc, "def greet", ActionKind.EXPLAIN).target, CancelToken()
    )
    new = _applied(edit.files[0].text, edit.files[0].changes)
    assert (
        "class Greeter:\n"
        "    # Explanation (hushcode): It greets a person. It adds hi.\n"
        "    def greet"
    ) in new
    service.close()


async def test_doc_comments_for_typescript_and_go_go_above_the_declaration(tmp_path):
    ts = "export function add(a: number): number {\n  return a + 1;\n}\n"
    engine, _, service = await _engine(["Adds one.\n */\nexport function"])
    doc = _doc(tmp_path, ts, "util.ts", "typescript")
    edit = await engine.resolve(
        doc, _offer(engine, doc, "function add", ActionKind.DOCSTRING).target, CancelToken()
    )
    assert _applied(ts, edit.files[0].changes).startswith("/**\n * Adds one.\n */\nexport function")
    service.close()

    go = "package m\n\nfunc Add(a int) int {\n\treturn a + 1\n}\n"
    engine, model, service = await _engine(["adds one to a.\nfunc Add"])
    doc = _doc(tmp_path, go, "m.go", "go")
    edit = await engine.resolve(
        doc, _offer(engine, doc, "func Add", ActionKind.DOCSTRING).target, CancelToken()
    )
    assert _applied(go, edit.files[0].changes) == go.replace("func", "// Add adds one to a.\nfunc")
    assert model.prompts[0].endswith("```go\n// Add ")
    service.close()


# -- scheduling, cancel, time cap ------------------------------------------------------------------


async def test_an_action_yields_to_a_completion_between_tokens(tmp_path):
    words = " ".join(f"word{i}" for i in range(40))
    engine, model, service = await _engine([f'{words}."""\n'], delay=0.01, max_tokens=1000)
    doc = _doc(tmp_path)
    target = _offer(engine, doc, "def greet", ActionKind.DOCSTRING).target
    action = asyncio.create_task(engine.resolve(doc, target, CancelToken()))
    await asyncio.sleep(0.3)  # the action is generating (about 100 tokens of 10 ms each)
    assert not action.done()
    asked = time.perf_counter()
    served = await service.run(Priority.COMPLETION, lambda m: time.perf_counter(), CancelToken())
    waited_ms = (served - asked) * 1000
    assert not action.done(), "the completion ran while the action was still generating"
    edit = await action
    assert waited_ms < 300, f"the completion waited {waited_ms:.0f} ms behind the action"
    record = engine.metrics.resolves[-1]
    assert record.yields >= 1 and record.slices >= 2
    # the continuation was seamless: the docstring is whole
    assert f'"""{words}."""' in edit.files[0].changes[0].text
    first, second = model.prompts[0], model.prompts[1]  # the resubmitted continuation
    assert second.startswith(first) and words.startswith(second[len(first) :])
    service.close()


async def test_cancel_stops_the_generation_and_no_edit_is_made(tmp_path):
    engine, _, service = await _engine(["x " * 500], delay=0.01, max_tokens=1000)
    doc = _doc(tmp_path)
    cancel = CancelToken()
    target = _offer(engine, doc, "def greet", ActionKind.DOCSTRING).target
    action = asyncio.create_task(engine.resolve(doc, target, cancel))
    await asyncio.sleep(0.1)
    cancel.cancel()
    with pytest.raises(ActionCancelled):
        await asyncio.wait_for(action, 2)
    assert engine.metrics.resolves[-1].outcome == "cancelled"
    service.close()


async def test_the_time_cap_stops_runaway_output_with_a_clear_message(tmp_path):
    engine, _, service = await _engine(["x " * 2000], delay=0.005, max_tokens=5000)
    engine.settings = lambda: ActionSettings(max_tokens=5000, time_budget_ms=1000)
    doc = _doc(tmp_path)
    target = _offer(engine, doc, "def stub", ActionKind.IMPLEMENT).target
    began = time.monotonic()
    with pytest.raises(ActionError, match="timeBudgetMs"):
        await engine.resolve(doc, target, CancelToken())
    assert time.monotonic() - began < 3
    service.close()


async def test_implement_in_braces_replaces_the_inside_of_the_block(tmp_path):
    ts = "export class Box {\n  size(w: number): number {\n    // TODO\n  }\n}\n"
    engine, model, service = await _engine(["  return w * 2;\n}\n\nfunction x() {"])
    doc = _doc(tmp_path, ts, "box.ts", "typescript")
    target = _offer(engine, doc, "size(", ActionKind.IMPLEMENT).target
    edit = await engine.resolve(doc, target, CancelToken())
    new = _applied(ts, edit.files[0].changes)
    assert new == "export class Box {\n  size(w: number): number {\n    return w * 2;\n  }\n}\n"
    assert model.prompts[0].endswith("```typescript\nsize(w: number): number {\n")
    service.close()


async def test_go_tests_go_next_to_the_file_in_the_same_package(tmp_path):
    go = "package stats\n\nfunc Sum(xs []int) int {\n\treturn 0\n}\n"
    engine, _, service = await _engine(
        ['(t *testing.T) {\n\tif Sum(nil) != 0 {\n\t\tt.Fatal("sum")\n\t}\n}\n```']
    )
    doc = _doc(tmp_path, go, "stats.go", "go")
    edit = await engine.resolve(
        doc, _offer(engine, doc, "func Sum", ActionKind.TESTS).target, CancelToken()
    )
    (file,) = edit.files
    assert file.create and file.uri.endswith("/stats_test.go")
    assert file.changes[0].text.startswith('package stats\n\nimport "testing"\n\nfunc TestSum(t')
    service.close()


def test_the_cursor_on_export_or_a_decorator_finds_the_definition(tmp_path):
    engine = ActionEngine(ModelService(), lambda: ActionSettings())
    ts = "export const double = (x: number): number => {\n  return x * 2;\n};\n"
    doc = _doc(tmp_path, ts, "d.ts", "typescript")
    assert [o.target.name for o in engine.list_actions(doc, 0, 0)][:1] == ["double"]
    py = "@cache\ndef f(x):\n    return x\n"
    doc = _doc(tmp_path, py, "d.py")
    assert {o.target.name for o in engine.list_actions(doc, 1, 1)} == {"f"}


def test_target_data_round_trips_and_malformed_data_is_refused():
    target = Target(ActionKind.FIX, 3, 9, version=2, message="bad", line=1)
    assert Target.from_data(target.to_data(), 2) == target
    with pytest.raises(ValueError, match="malformed"):
        Target.from_data({"kind": "nonsense", "start": 0, "end": 1}, 1)


def test_actions_listed_before_the_model_is_ready_say_why_they_cannot_run():
    engine = ActionEngine(ModelService(), lambda: ActionSettings())
    assert engine.unavailable() == "the model is unloaded"
