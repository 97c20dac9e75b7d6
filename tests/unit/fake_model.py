"""A scripted stand-in for the real model: for fast tests of layout and post-processing only."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lsp.model.backend import FimTokens, Generation, GenerationStats, ModelInfo, StopCheck

QWEN_FIM = FimTokens(prefix=1, suffix=2, middle=3, pad=4, repo=5, file_sep=6)
QWEN_TEXTS = {
    1: "<|fim_prefix|>",
    2: "<|fim_suffix|>",
    3: "<|fim_middle|>",
    4: "<|fim_pad|>",
    5: "<|repo_name|>",
    6: "<|file_sep|>",
}


def info(
    name: str = "fake",
    fim: FimTokens = QWEN_FIM,
    texts: dict[int, str] | None = None,
    metadata: dict[str, str] | None = None,
) -> ModelInfo:
    return ModelInfo(
        name=name,
        path="/dev/null",
        size_bytes=0,
        n_ctx=4096,
        n_threads=1,
        fim=fim,
        token_texts=QWEN_TEXTS if texts is None else texts,
        eog_texts=("<|endoftext|>",),
        chat_template=None,
        metadata=metadata or {},
    )


class FakeModel:
    """Emits `reply` one character per 'token', honouring stop rules, cancel and the limit."""

    def __init__(self, reply: str | Callable[[str], str], model_info: ModelInfo | None = None):
        self.reply = reply
        self.info = model_info or info()
        self.prompts: list[str] = []
        self.generated = 0

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return [ord(c) for c in text]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(chr(t) for t in tokens)

    def evaluate(self, tokens: Sequence[int], cancel: Callable[[], bool]) -> GenerationStats:
        self.prompts.append(self.detokenize(tokens))
        return GenerationStats(prompt_tokens=len(tokens), evaluated_tokens=len(tokens))

    def generate(
        self,
        tokens: Sequence[int],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        stop_check: StopCheck | None = None,
        cancel: Callable[[], bool] = lambda: False,
        deadline: float | None = None,
        prefix: str = "",
    ) -> Generation:
        prompt = self.detokenize(tokens)
        self.prompts.append(prompt)
        reply = self.reply(prompt) if callable(self.reply) else self.reply
        stats = GenerationStats(prompt_tokens=len(tokens), evaluated_tokens=len(tokens))
        text = ""
        stats.stop_reason = "eos"
        for ch in reply:
            if cancel():
                stats.stop_reason = "cancelled"
                break
            if stats.generated_tokens >= max_tokens:
                stats.stop_reason = "limit"
                break
            text += ch
            stats.generated_tokens += 1
            self.generated += 1
            hits = [i for s in stop if s and (i := text.find(s)) >= 0]
            if hits:
                text = text[: min(hits)]
                stats.stop_reason = "stop"
                break
            cut = stop_check(text) if stop_check else None
            if cut is not None:
                text = text[:cut]
                stats.stop_reason = "rule"
                break
        return Generation(text, stats)

    def close(self) -> None:
        pass
