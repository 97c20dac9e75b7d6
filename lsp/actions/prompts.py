"""Action prompts from `prompts/actions/`, rendered through the model file's own chat template.

One TOML file per action (`title`, `system`, `user`, `prefill`, ...), with overrides in
`[lang.<language id>]` and `[style.<doc style>]` tables; `common.toml` holds what all share.
Placeholders are `{name}`; values are substituted in one pass, so braces in code are safe.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsp.actions.languages import ActionLanguage
from lsp.actions.model import ActionKind
from lsp.model.backend import Model
from lsp.paths import prompts_dir

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill(template: str, values: dict[str, str]) -> str:
    """Replace the known `{name}` placeholders; unknown ones and braces in values stay as is."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


@dataclass(frozen=True)
class ActionPrompt:
    kind: ActionKind
    title: str
    system: str
    user: str
    prefill: str
    extra: dict[str, str]


class PromptBook:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or prompts_dir() / "actions"
        self.common: dict[str, Any] = self._load("common")
        self._actions = {kind: self._load(kind.value) for kind in ActionKind}
        self.chat_fallback = (self.directory / "chatml.jinja").read_text(encoding="utf-8")

    def _load(self, name: str) -> dict[str, Any]:
        path = self.directory / f"{name}.toml"
        return tomllib.loads(path.read_text(encoding="utf-8"))

    def get(self, kind: ActionKind, lang: ActionLanguage) -> ActionPrompt:
        data = self._actions[kind]
        merged: dict[str, Any] = {k: v for k, v in data.items() if isinstance(v, str)}
        merged.update(_strings(data.get("style", {}).get(lang.doc_style, {})))
        merged.update(_strings(data.get("lang", {}).get(lang.id, {})))
        known = ("title", "system", "user", "prefill")
        return ActionPrompt(
            kind=kind,
            title=merged.get("title", f"hushcode: {kind.value}"),
            system=merged.get("system", self.common["system"]),
            user=merged["user"],
            prefill=merged.get("prefill", ""),
            extra={k: v for k, v in merged.items() if k not in known},
        )

    def text(self, key: str) -> str:
        value = self.common[key]
        assert isinstance(value, str)
        return value


def _strings(table: Any) -> dict[str, str]:
    return {k: v for k, v in table.items() if isinstance(v, str)} if isinstance(table, dict) else {}


class ChatFormat:
    """The GGUF's own Jinja chat template (or a ChatML fallback), rendered by llama-cpp-python.

    Built on the model thread at first use per model, since the end/begin token texts come from
    the tokenizer.
    """

    def __init__(self, fallback: str) -> None:
        self.fallback = fallback
        self._key: tuple[str, str] | None = None
        self._formatter: Any = None

    def render(self, model: Model, messages: list[dict[str, str]]) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        info = model.info
        template = info.chat_template or self.fallback
        key = (info.path, template)
        if key != self._key:
            eos = _token_text(model, info.metadata.get("tokenizer.ggml.eos_token_id"))
            bos = _token_text(model, info.metadata.get("tokenizer.ggml.bos_token_id"))
            self._formatter = Jinja2ChatFormatter(
                template, eos_token=eos, bos_token=bos, add_generation_prompt=True
            )
            self._key = key
        prompt: str = self._formatter(messages=messages).prompt
        return prompt


def _token_text(model: Model, token_id: str | None) -> str:
    if token_id is None:
        return ""
    try:
        return model.detokenize([int(token_id)])
    except Exception:  # a backend without a local tokenizer: the template rarely needs them
        return ""
