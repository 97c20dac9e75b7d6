"""The small interface every inference backend implements; only `lsp/model/` knows which."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class ModelState(enum.Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class ModelError(Exception):
    """A problem the user can act on; the message says how."""


@dataclass(frozen=True)
class FimTokens:
    """FIM token ids read from the model file (llama.cpp `llama_vocab_fim_*`); -1 when absent."""

    prefix: int = -1
    suffix: int = -1
    middle: int = -1
    pad: int = -1
    repo: int = -1
    file_sep: int = -1

    @property
    def present(self) -> bool:
        return min(self.prefix, self.suffix, self.middle) >= 0


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: str
    size_bytes: int
    n_ctx: int
    n_threads: int
    fim: FimTokens
    token_texts: dict[int, str]
    """Text of the FIM and end-of-generation tokens, by id (used to pick the FIM template)."""
    eog_texts: tuple[str, ...]
    """Texts of every end-of-generation/control token; a completion never contains them."""
    chat_template: str | None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    reused_tokens: int = 0
    evaluated_tokens: int = 0
    generated_tokens: int = 0
    eval_ms: float = 0.0
    generate_ms: float = 0.0
    stop_reason: str = ""
    """eos | stop | limit | time | cancelled | rule | warmup"""


@dataclass
class Generation:
    text: str
    stats: GenerationStats


StopCheck = Callable[[str], int | None]
"""Given the text generated so far: the length to keep if generation must stop now, else None."""


class Model(Protocol):
    """A loaded model with one long-lived KV cache; not thread-safe (the scheduler serialises)."""

    info: ModelInfo

    def tokenize(self, text: str, *, special: bool = True) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def evaluate(self, tokens: Sequence[int], cancel: Callable[[], bool]) -> GenerationStats:
        """Bring the KV cache to exactly `tokens`, reusing the longest common prefix (warm-up)."""
        ...

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
        """Greedy generation after `tokens`; checks `cancel` and `deadline` between tokens.

        `prefix`: text the output must begin with (what the user typed at the cursor and the
        prompt leaves out, such as a blank line's indentation: tokenizers glue whitespace to
        the next word). A backend that can constrain decoding picks, until the output covers
        it, the best token consistent with it ("token healing"); one that cannot ignores it.
        """
        ...

    def close(self) -> None: ...


def find_stop(text: str, stop: Sequence[str]) -> int | None:
    """Where the first of the `stop` strings occurs in `text` (None: none does)."""
    best: int | None = None
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (best is None or i < best):
            best = i
    return best
