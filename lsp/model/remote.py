"""What the out-of-process backends share: the backend factory, stop handling on streamed text, and
working out a model's FIM tokens from a tokenizer that is not ours.

`make_loader` is the one entry point the server uses: it picks the backend from `model.backend`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from lsp.config import ModelSettings
from lsp.model.backend import FimTokens, Model, ModelError, StopCheck, find_stop

log = logging.getLogger(__name__)

COMPLETION, ACTION, WARMUP = 0, 1, 2
"""Request classes, as `lsp.model.service.Priority` numbers them (the daemon schedules by them)."""


def make_loader(m: ModelSettings, *, service: Any = None) -> Callable[[], Model]:
    """The loader for `ModelService.load` for the configured backend.

    Runs on a worker thread (it may resolve a model file); raises ModelError with a fix in it.
    `service`, when given, tells the daemon client what kind of request is running.
    """
    if m.backend == "http":
        from lsp.model.http import HttpModel, HttpOptions

        options = HttpOptions.from_settings(m)
        return lambda: HttpModel(options)

    from lsp.model.manager import concrete_name, display_name, resolve_model

    name = concrete_name(m.name)  # `auto`: the model this machine serves best
    path = resolve_model(name)
    display = display_name(name)
    if m.backend == "daemon":
        from lsp.model.daemon import DaemonModel

        if m.draft.strip():
            log.warning("model.draft applies to the local backend only; the daemon decodes alone")

        priority = (lambda: running_priority(service)) if service is not None else None
        return lambda: DaemonModel(
            path,
            name=display,
            n_ctx=m.context_size,
            n_threads=m.threads,
            slots=m.daemon_slots,
            idle_seconds=m.daemon_idle_seconds,
            priority=priority,
        )
    from lsp.model.llama import LlamaModel

    draft = concrete_name(m.draft.strip()) if m.draft.strip() else ""
    if not draft:
        return lambda: LlamaModel(path, name=display, n_ctx=m.context_size, n_threads=m.threads)
    draft_path = resolve_model(draft)
    if draft_path.resolve() == path.resolve():
        raise ModelError(
            f"model.draft names the model itself ({display}): a draft model must be a smaller "
            "one of the same family, or clear model.draft"
        )

    def with_draft() -> LlamaModel:
        """Speculative decoding (measured slower than plain decoding on small CPUs: see the
        README's Performance section); the draft model is closed with the main one."""
        model = LlamaModel(path, name=display, n_ctx=m.context_size, n_threads=m.threads)
        try:
            helper = LlamaModel(
                draft_path, name=display_name(draft), n_ctx=m.context_size, n_threads=m.threads
            )
        except BaseException:
            model.close()
            raise
        try:
            model.attach_draft(helper)
        except BaseException:
            helper.close()
            model.close()
            raise
        return model

    return with_draft


def running_priority(service: Any) -> int:
    """The priority of the job the model service is running now (COMPLETION when unknown)."""
    getter = getattr(service, "running_priority", None)
    priority = getter() if callable(getter) else None
    return int(priority) if isinstance(priority, int) else COMPLETION


class Cutter:
    """Applies the stop strings, the end-of-generation texts and the stop rules to streamed text,
    exactly as the in-process backend does between tokens."""

    def __init__(
        self, stop: Sequence[str], stop_check: StopCheck | None, eog_texts: Sequence[str] = ()
    ) -> None:
        self.stop = tuple(s for s in stop if s)
        self.eog = tuple(t for t in eog_texts if t and t not in self.stop)
        self.stop_check = stop_check
        self.text = ""
        self.reason = ""

    def feed(self, delta: str) -> bool:
        """Add generated text; True when generation must stop (`text` is then already cut)."""
        if not delta:
            return False
        self.text += delta
        # A chunk may hold several tokens: the earliest cut wins, as it would have token by token.
        cuts = [
            (cut, reason)
            for cut, reason in (
                (find_stop(self.text, self.stop), "stop"),
                (find_stop(self.text, self.eog), "eos"),
                (self.stop_check(self.text) if self.stop_check else None, "rule"),
            )
            if cut is not None
        ]
        if not cuts:
            return False
        cut, self.reason = min(cuts, key=lambda c: c[0])
        self.text = self.text[:cut]
        return True


# -- FIM tokens from someone else's tokenizer ------------------------------------------------

KNOWN_EOG = ("<|endoftext|>", "<|im_end|>", "</s>", "<eos>", "<|eot_id|>", "<|end|>", "<EOT>")

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""The ChatML template, used when a server's model has the ChatML tokens but says no template."""

# Model-name fragments that identify a FIM family when the server cannot tokenize (Ollama,
# LM Studio): first match wins.
NAME_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("codegemma",), "codegemma"),
    (("qwen", "coder"), "qwen2.5-coder"),
    (("starcoder",), "starcoder"),
    (("deepseek", "coder"), "deepseek-coder"),
    (("codellama",), "codellama"),
    (("code-llama",), "codellama"),
    (("codestral",), "codestral"),
)


def family_from_name(name: str) -> str | None:
    lowered = name.lower()
    for parts, family in NAME_HINTS:
        if all(p in lowered for p in parts):
            return family
    return None


class FimProbe:
    """What the FIM template selection needs (see `lsp.completion.fim.select_template`)."""

    def __init__(self) -> None:
        self.fim = FimTokens()
        self.token_texts: dict[int, str] = {}
        self.eog_texts: tuple[str, ...] = ()
        self.family: str | None = None
        self.chatml = False


def probe_fim(single: Callable[[str], int | None], model_name: str, override: str = "") -> FimProbe:
    """Work out the FIM tokens through `single(text)`: the id if `text` is one token, else None.

    With `override` (the `model.fim` setting) that family is taken without asking the tokenizer
    whether it knows it; a `single` that is only an estimate should be used that way too.
    """
    from lsp.completion.fim import load_templates

    templates = [t for t in load_templates() if t.fim_tokens]
    probe = FimProbe()
    chosen = None
    if override:
        chosen = next((t for t in templates if t.family == override), None)
        if chosen is None:
            known = ", ".join(sorted(t.family for t in templates))
            raise ModelError(f"model.fim is {override!r}: not a known FIM family ({known})")
    texts: dict[int, str] = {}
    eog: set[str] = set()
    ids_cache: dict[str, int | None] = {}

    def one(text: str) -> int | None:
        if text not in ids_cache:
            ids_cache[text] = single(text)
        return ids_cache[text]

    candidates = []
    for template in [chosen] if chosen is not None else templates:
        found = [one(t) for t in template.fim_tokens[:3]]
        ids = [i for i in found if i is not None]
        if len(ids) == 3:
            candidates.append((template, ids))
    if candidates:
        name = model_name.lower()
        hinted = [c for c in candidates if any(h in name for h in c[0].name_hints)]
        template, ids = (hinted or candidates)[0]
        probe.family = template.family
        probe.fim = FimTokens(prefix=ids[0], suffix=ids[1], middle=ids[2])
        for cand, cand_ids in candidates:
            texts.update(zip(cand_ids, cand.fim_tokens[:3], strict=True))
            for repo_token in cand.repo_tokens:
                if (rid := one(repo_token)) is not None:
                    texts[rid] = repo_token
            eog.update(s for s in cand.stop if one(s) is not None)
    # Only `<|...|>` texts: others ("</s>") may be ordinary tokens of an ordinary vocabulary.
    eog.update(t for t in KNOWN_EOG if t.startswith("<|") and one(t) is not None)
    probe.token_texts = texts
    probe.eog_texts = tuple(sorted(eog))
    probe.chatml = one("<|im_start|>") is not None and one("<|im_end|>") is not None
    return probe
