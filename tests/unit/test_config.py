"""Settings: camelCase on the wire; each wrong value is reported and only it falls back."""

from __future__ import annotations

from lsp.config import Settings, parse_settings, to_wire


def test_defaults_and_round_trip():
    settings, problems = parse_settings(None)
    assert problems == []
    assert settings == Settings()
    again, problems = parse_settings(to_wire(settings))
    assert again == settings and problems == []


def test_camel_case_keys_apply():
    settings, problems = parse_settings(
        {"model": {"contextSize": 8192}, "completion": {"maxPromptTokens": 900}}
    )
    assert problems == []
    assert settings.model.context_size == 8192
    assert settings.completion.max_prompt_tokens == 900


def test_a_wrong_type_keeps_only_that_default():
    settings, problems = parse_settings(
        {"model": {"threads": "four", "contextSize": 2048}, "completion": {"inline": "yes"}}
    )
    assert settings.model.threads == 0
    assert settings.model.context_size == 2048
    assert settings.completion.inline is True
    assert any("model.threads" in p for p in problems)
    assert any("completion.inline" in p for p in problems)


def test_out_of_range_values_are_reported():
    settings, problems = parse_settings({"completion": {"prefixRatio": 3.0, "maxTokens": 0}})
    assert settings.completion.prefix_ratio == 0.75
    assert settings.completion.max_tokens == 48
    assert len(problems) == 2


def test_not_an_object():
    settings, problems = parse_settings(["x"])
    assert settings == Settings()
    assert problems


def test_unknown_keys_are_ignored():
    settings, problems = parse_settings({"server": {"command": ["x"]}, "model": {"name": "m.gguf"}})
    assert problems == []
    assert settings.model.name == "m.gguf"


def test_a_list_setting_must_be_a_list_of_strings():
    for wrong in ({"python": False}, "python"):
        settings, problems = parse_settings({"disabledLanguages": wrong})
        assert settings.disabled_languages == []
        assert any("disabledLanguages" in p for p in problems)
    settings, problems = parse_settings({"disabledLanguages": ["go"]})
    assert settings.disabled_languages == ["go"] and problems == []
