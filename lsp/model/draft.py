"""Draft tokens for greedy decoding that the target model then verifies in one batch.

Prompt lookup: code completions copy identifiers, argument lists and whole lines from the prompt
(the file, its suffix, repository context), so the tokens that followed an earlier occurrence of
the last few tokens are a good guess for what comes next. Drafts never decide the output: the
verifier keeps only the drafted tokens that greedy decoding picks itself.

No llama.cpp here: pure logic over token ids, unit-tested without a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_NGRAM = 3
"""The longest n-gram looked up; the suffix of this length is tried first."""
MIN_NGRAM = 1
"""The shortest n-gram looked up (a single token matches often, and is often wrong)."""
MATCH_CAP = 32
"""Matches are measured backwards up to this many tokens (a confidence signal, not a lookup)."""
CANDIDATES = 8
"""How many of the most recent occurrences of the n-gram are compared by match length."""


@dataclass(frozen=True)
class Draft:
    tokens: tuple[int, ...]
    """The guessed continuation (possibly empty)."""
    ngram: int
    """Length of the n-gram that matched (0: no match)."""
    match: int
    """How many tokens before the cursor agree with the tokens before the copied text."""
    source: int
    """Position in the sequence the draft was copied from (-1: none)."""


NO_DRAFT = Draft((), 0, 0, -1)


class NgramDrafter:
    """Looks up the last n-gram of the sequence (prompt + generated) in the sequence itself.

    Incremental: `extend` indexes each new token in O(MAX_NGRAM); `draft` is a dict lookup plus a
    short backwards comparison. The most recent occurrence with the longest backward match wins.
    """

    def __init__(
        self,
        tokens: Iterable[int] = (),
        *,
        max_ngram: int = MAX_NGRAM,
        min_ngram: int = MIN_NGRAM,
    ) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError("need 1 <= min_ngram <= max_ngram")
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.tokens: list[int] = []
        self._index: dict[tuple[int, ...], list[int]] = {}
        self.extend(tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def extend(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            self.tokens.append(token)
            end = len(self.tokens)
            for n in range(self.min_ngram, min(self.max_ngram, end) + 1):
                key = tuple(self.tokens[end - n : end])
                # The value is where the continuation starts: the position after the n-gram.
                self._index.setdefault(key, []).append(end)

    def draft(self, k: int) -> Draft:
        """Up to `k` tokens that followed the best earlier occurrence of the sequence's tail."""
        seq = self.tokens
        end = len(seq)
        if k <= 0 or end == 0:
            return NO_DRAFT
        for n in range(min(self.max_ngram, end), self.min_ngram - 1, -1):
            starts = self._index.get(tuple(seq[end - n : end]))
            if not starts:
                continue
            best: tuple[int, int] | None = None  # (match length, start)
            seen = 0
            for start in reversed(starts):
                if start >= end:
                    continue  # the tail itself: nothing follows it yet
                seen += 1
                match = _backward_match(seq, start, end)
                if best is None or match > best[0]:
                    best = (match, start)
                if seen >= CANDIDATES:
                    break
            if best is not None:
                match, start = best
                return Draft(tuple(seq[start : start + k]), n, match, start)
        return NO_DRAFT


def _backward_match(seq: Sequence[int], start: int, end: int) -> int:
    """How many tokens before `start` equal those before `end` (capped at MATCH_CAP)."""
    m = 0
    while m < MATCH_CAP and start - 1 - m >= 0 and seq[start - 1 - m] == seq[end - 1 - m]:
        m += 1
    return m


def accepted_prefix(drafts: Sequence[int], predictions: Sequence[int]) -> int:
    """How many drafts greedy decoding confirms: `predictions[i]` is the argmax after the batch's
    row i (row 0 is the last accepted token, row i + 1 is drafts[i])."""
    n = 0
    while n < len(drafts) and n < len(predictions) and predictions[n] == drafts[n]:
        n += 1
    return n
