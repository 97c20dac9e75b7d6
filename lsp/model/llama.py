"""The in-process backend: llama-cpp-python with one long-lived context whose KV cache is reused."""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lsp.model.backend import (
    FimTokens,
    Generation,
    GenerationStats,
    ModelError,
    ModelInfo,
    StopCheck,
)

log = logging.getLogger(__name__)

_CONTROL_ATTRS = 1 << 3  # LLAMA_TOKEN_ATTR_CONTROL


def default_threads() -> int:
    """Physical cores are what matter for llama.cpp; `os.cpu_count()` counts SMT siblings too."""
    try:
        cores = set()
        for cpu in Path("/sys/devices/system/cpu").glob("cpu[0-9]*"):
            core = cpu / "topology" / "core_id"
            package = cpu / "topology" / "physical_package_id"
            if core.exists():
                cores.add((package.read_text().strip(), core.read_text().strip()))
        if cores:
            return max(1, len(cores))
    except OSError:
        pass
    return max(1, (os.cpu_count() or 2) // 2)


def check_gguf(path: Path) -> None:
    """Refuse anything that is not a readable GGUF file before llama.cpp sees it."""
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc}") from exc
    if magic != b"GGUF":
        raise ModelError(f"{path} is not a GGUF model file (bad magic {magic!r})")


class LlamaModel:
    """A `Model` (see backend.py) on llama-cpp-python. Call from one thread at a time."""

    def __init__(self, path: Path, *, name: str, n_ctx: int, n_threads: int) -> None:
        import llama_cpp

        check_gguf(path)
        threads = n_threads or default_threads()
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=threads,
                n_threads_batch=threads,
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                f"llama.cpp could not load {path} ({exc}); the file may be truncated or corrupt: "
                "run `hushcode model verify`"
            ) from exc
        self._lib = llama_cpp
        self._vocab = self._llm._model.vocab
        self._piece_buf = ctypes.create_string_buffer(256)
        self._n_vocab = self._llm.n_vocab()
        self._stop_ids = self._collect_stop_ids()
        fim = FimTokens(
            prefix=llama_cpp.llama_vocab_fim_pre(self._vocab),
            suffix=llama_cpp.llama_vocab_fim_suf(self._vocab),
            middle=llama_cpp.llama_vocab_fim_mid(self._vocab),
            pad=llama_cpp.llama_vocab_fim_pad(self._vocab),
            repo=llama_cpp.llama_vocab_fim_rep(self._vocab),
            file_sep=llama_cpp.llama_vocab_fim_sep(self._vocab),
        )
        texts = {
            tid: self._piece(tid)
            for tid in (fim.prefix, fim.suffix, fim.middle, fim.pad, fim.repo, fim.file_sep)
            if tid >= 0
        }
        metadata: dict[str, str] = dict(self._llm.metadata)
        self.info = ModelInfo(
            name=name,
            path=str(path),
            size_bytes=path.stat().st_size,
            n_ctx=self._llm.n_ctx(),
            n_threads=threads,
            fim=fim,
            token_texts=texts,
            eog_texts=tuple(sorted({self._piece(t) for t in self._stop_ids} - {""})),
            chat_template=metadata.get("tokenizer.chat_template"),
            metadata=metadata,
        )

    def _piece_bytes(self, token: int, *, special: bool) -> bytes:
        """One token's bytes (llama-cpp-python's own helper pads them with NULs)."""
        buf = self._piece_buf
        n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def _piece(self, token: int) -> str:
        return self._piece_bytes(token, special=True).decode("utf-8", errors="replace")

    def _collect_stop_ids(self) -> frozenset[int]:
        """Every end-of-generation and control token: none of them belongs in inserted text."""
        lib = self._lib
        ids = set()
        for tid in range(self._n_vocab):
            if lib.llama_vocab_is_eog(self._vocab, tid) or (
                lib.llama_vocab_get_attr(self._vocab, tid) & _CONTROL_ATTRS
            ):
                ids.add(tid)
        return frozenset(ids)

    # -- the Model interface -------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def detokenize(self, tokens: Sequence[int]) -> str:
        data = b"".join([self._piece_bytes(t, special=True) for t in tokens])
        return data.decode("utf-8", errors="replace")

    def _sync(self, tokens: Sequence[int], cancel: Callable[[], bool]) -> tuple[int, int, bool]:
        """Make the KV cache hold exactly `tokens`; return (reused, evaluated, completed)."""
        llm = self._llm
        if len(tokens) >= llm.n_ctx():
            raise ModelError(f"prompt of {len(tokens)} tokens does not fit the context")
        cached = llm.input_ids[: llm.n_tokens]
        n = 0
        limit = min(len(cached), len(tokens))
        while n < limit and cached[n] == tokens[n]:
            n += 1
        if n == len(tokens):
            n -= 1  # the last token is evaluated again so its logits are current
        n = max(n, 0)
        llm.n_tokens = n
        llm._ctx.kv_cache_seq_rm(-1, n, -1)
        evaluated = 0
        chunk = 64  # small chunks keep a cancel responsive during long prompt evaluation
        rest = list(tokens[n:])
        for i in range(0, len(rest), chunk):
            if cancel():
                return n, evaluated, False
            llm.eval(rest[i : i + chunk])
            evaluated += len(rest[i : i + chunk])
        return n, evaluated, True

    def evaluate(self, tokens: Sequence[int], cancel: Callable[[], bool]) -> GenerationStats:
        start = time.perf_counter()
        reused, evaluated, done = self._sync(tokens, cancel)
        return GenerationStats(
            prompt_tokens=len(tokens),
            reused_tokens=reused,
            evaluated_tokens=evaluated,
            eval_ms=(time.perf_counter() - start) * 1000,
            stop_reason="warmup" if done else "cancelled",
        )

    def _argmax(self) -> int:
        ptr = self._lib.llama_get_logits_ith(self._llm._ctx.ctx, -1)
        logits: Any = np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self._n_vocab,)
        )
        return int(np.argmax(logits))

    def generate(
        self,
        tokens: Sequence[int],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        stop_check: StopCheck | None = None,
        cancel: Callable[[], bool] = lambda: False,
        deadline: float | None = None,
    ) -> Generation:
        start = time.perf_counter()
        reused, evaluated, done = self._sync(tokens, cancel)
        stats = GenerationStats(
            prompt_tokens=len(tokens), reused_tokens=reused, evaluated_tokens=evaluated
        )
        stats.eval_ms = (time.perf_counter() - start) * 1000
        if not done:
            stats.stop_reason = "cancelled"
            return Generation("", stats)
        raw = bytearray()
        text = ""
        gen_start = time.perf_counter()
        stats.stop_reason = "limit"
        while stats.generated_tokens < max_tokens:
            if cancel():
                stats.stop_reason = "cancelled"
                break
            if deadline is not None and time.monotonic() > deadline:
                stats.stop_reason = "time"
                break
            token = self._argmax()
            if token in self._stop_ids:
                stats.stop_reason = "eos"
                break
            stats.generated_tokens += 1
            raw += self._piece_bytes(token, special=False)
            text = raw.decode("utf-8", errors="ignore")
            cut = _find_stop(text, stop)
            if cut is None and stop_check is not None:
                cut = stop_check(text)
                if cut is not None:
                    stats.stop_reason = "rule"
            elif cut is not None:
                stats.stop_reason = "stop"
            if cut is not None:
                text = text[:cut]
                # The sampled token is not in the cache; the next request's prefix match is exact.
                break
            self._llm.eval([token])
        stats.generate_ms = (time.perf_counter() - gen_start) * 1000
        return Generation(text, stats)

    def close(self) -> None:
        try:
            self._llm.close()
        except Exception:  # pragma: no cover - best effort at shutdown
            log.debug("closing the model failed", exc_info=True)


def _find_stop(text: str, stop: Sequence[str]) -> int | None:
    best: int | None = None
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (best is None or i < best):
            best = i
    return best
