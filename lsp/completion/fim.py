"""FIM templates from `prompts/fim/`, chosen by the model file's own FIM token metadata."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lsp.model.backend import ModelInfo
from lsp.paths import prompts_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FimTemplate:
    family: str
    fim_tokens: tuple[str, ...]
    repo_tokens: tuple[str, ...]
    name_hints: tuple[str, ...]
    prompt: str
    context_header: str
    context_file: str
    context_current: str
    stop: tuple[str, ...]

    @property
    def sees_suffix(self) -> bool:
        return "{suffix}" in self.prompt

    def render(self, *, context: str, prefix: str, suffix: str, middle: str) -> str:
        # str.replace, not str.format: code is full of braces.
        out = self.prompt
        for key, value in (("{context}", context), ("{prefix}", prefix), ("{suffix}", suffix)):
            out = out.replace(key, value)
        return out.replace("{middle}", middle)

    def render_context(self, repo: str, files: list[tuple[str, str]], current_path: str) -> str:
        """The stable block before the prefix: other files' snippets, then the current file name."""
        if not files and not self.context_current:
            return ""
        parts = [self.context_header.replace("{repo}", repo)] if self.context_header else []
        for path, text in files:
            parts.append(self.context_file.replace("{path}", path).replace("{text}", text))
        if self.context_current:
            parts.append(self.context_current.replace("{path}", current_path))
        return "".join(parts)


def load_templates(directory: Path | None = None) -> list[FimTemplate]:
    directory = directory or prompts_dir() / "fim"
    templates = []
    for file in sorted(directory.glob("*.toml")):
        data = tomllib.loads(file.read_text(encoding="utf-8"))
        templates.append(
            FimTemplate(
                family=data["family"],
                fim_tokens=tuple(data.get("fim_tokens", ())),
                repo_tokens=tuple(data.get("repo_tokens", ())),
                name_hints=tuple(data.get("name_hints", ())),
                prompt=data["prompt"],
                context_header=data.get("context_header", ""),
                context_file=data.get("context_file", ""),
                context_current=data.get("context_current", ""),
                stop=tuple(data.get("stop", ())),
            )
        )
    return templates


def _norm(token: str) -> str:
    return token.strip().lstrip("▁").strip()


def select_template(
    info: ModelInfo, templates: list[FimTemplate]
) -> tuple[FimTemplate, str | None]:
    """Pick the template whose FIM tokens are the model's own; return it and a warning, if any.

    The FIM token ids come from the GGUF (llama.cpp `llama_vocab_fim_*`); their texts decide the
    family. The model's name only breaks ties between families sharing token texts (Qwen/CodeGemma),
    helped by whether the vocabulary has the family's repository tokens.
    """
    plain = next(t for t in templates if t.family == "plain")
    fim = info.fim
    if not fim.present:
        return plain, (
            f"{info.name} has no fill-in-the-middle tokens: completions only continue the text "
            "before the cursor (single line, lower quality). Use a FIM coding model such as "
            "qwen2.5-coder-0.5b-instruct."
        )
    model_tokens = {
        _norm(info.token_texts.get(fim.prefix, "")),
        _norm(info.token_texts.get(fim.suffix, "")),
        _norm(info.token_texts.get(fim.middle, "")),
    }
    vocab_texts = {_norm(t) for t in info.token_texts.values()} | {_norm(t) for t in info.eog_texts}
    name = " ".join(
        [
            info.name,
            info.metadata.get("general.name", ""),
            info.metadata.get("general.basename", ""),
        ]
    ).lower()
    best: tuple[int, FimTemplate] | None = None
    for template in templates:
        if not template.fim_tokens or {_norm(t) for t in template.fim_tokens} != model_tokens:
            continue
        score = 10
        score += sum(2 for t in template.repo_tokens if _norm(t) in vocab_texts)
        score += sum(5 for hint in template.name_hints if hint in name)
        if best is None or score > best[0]:
            best = (score, template)
    if best is None:
        return plain, (
            f"{info.name} has FIM tokens ({', '.join(sorted(model_tokens))}) of no known family: "
            "falling back to plain continuation. Add a template in prompts/fim/."
        )
    return best[1], None
