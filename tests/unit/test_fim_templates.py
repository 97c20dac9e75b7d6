"""FIM template choice comes from the model file's own FIM tokens; the name only breaks ties."""

from __future__ import annotations

import pytest

from lsp.completion.fim import load_templates, select_template
from lsp.model.backend import FimTokens
from tests.unit.fake_model import info

TEMPLATES = load_templates()
FIM = FimTokens(prefix=1, suffix=2, middle=3, pad=-1, repo=4, file_sep=5)


def texts(pre: str, suf: str, mid: str, *extra: str) -> dict[int, str]:
    out = {1: pre, 2: suf, 3: mid}
    out.update({4 + i: t for i, t in enumerate(extra)})
    return out


@pytest.mark.parametrize(
    ("tokens", "name", "family"),
    [
        (
            texts(
                "<|fim_prefix|>",
                "<|fim_suffix|>",
                "<|fim_middle|>",
                "<|repo_name|>",
                "<|file_sep|>",
            ),
            "x",
            "qwen2.5-coder",
        ),
        (texts("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"), "x", "deepseek-coder"),
        (
            texts("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<repo_name>", "<file_sep>"),
            "x",
            "starcoder",
        ),
        (texts("▁<PRE>", "▁<SUF>", "▁<MID>"), "x", "codellama"),
        (texts("[PREFIX]", "[SUFFIX]", "[MIDDLE]"), "x", "codestral"),
        (
            texts("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_separator|>"),
            "x",
            "codegemma",
        ),
    ],
)
def test_family_is_read_from_the_fim_tokens(tokens, name, family):
    template, warning = select_template(info(name=name, fim=FIM, texts=tokens), TEMPLATES)
    assert template.family == family
    assert warning is None


def test_the_name_breaks_a_tie_between_families_with_the_same_tokens():
    tokens = texts("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
    gemma = info(name="m.gguf", fim=FIM, texts=tokens, metadata={"general.name": "CodeGemma 2B"})
    qwen = info(name="m.gguf", fim=FIM, texts=tokens, metadata={"general.name": "Qwen2.5 Coder"})
    assert select_template(gemma, TEMPLATES)[0].family == "codegemma"
    assert select_template(qwen, TEMPLATES)[0].family == "qwen2.5-coder"


def test_a_misleading_name_does_not_override_the_tokens():
    tokens = texts("<fim_prefix>", "<fim_suffix>", "<fim_middle>")
    model = info(name="qwen-coder-renamed.gguf", fim=FIM, texts=tokens)
    assert select_template(model, TEMPLATES)[0].family == "starcoder"


def test_a_model_without_fim_tokens_gets_the_plain_fallback_and_a_warning():
    template, warning = select_template(info(fim=FimTokens(), texts={}), TEMPLATES)
    assert template.family == "plain"
    assert warning is not None and "fill-in-the-middle" in warning
    assert not template.sees_suffix


def test_unknown_fim_tokens_fall_back_with_a_warning():
    template, warning = select_template(info(fim=FIM, texts=texts("<a>", "<b>", "<c>")), TEMPLATES)
    assert template.family == "plain"
    assert warning is not None and "prompts/fim" in warning


def test_templates_render_code_with_braces_verbatim():
    qwen = next(t for t in TEMPLATES if t.family == "qwen2.5-coder")
    out = qwen.render(context="", prefix="d = {1: 2}\n", suffix="\n{x}", middle="e = {")
    assert out == "<|fim_prefix|>d = {1: 2}\n<|fim_suffix|>\n{x}<|fim_middle|>e = {"
