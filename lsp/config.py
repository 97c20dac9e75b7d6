"""Typed settings; on the wire camelCase JSON (initializationOptions, workspace/configuration)."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override


@attrs.define
class ModelSettings:
    name: str = "auto"
    """A registry name (`hushcode model list`), a path to a local GGUF file, or `auto`: the
    1.5B when `hushcode model bench` measured it within the latency budget here, else the 0.5B."""
    threads: int = 0
    """Threads for inference; 0 picks the number of physical cores."""
    context_size: int = 4096
    """KV-cache size in tokens; the prompt budget must fit well inside it."""
    draft: str = ""
    """local: a model with the same vocabulary drafting for this one (speculative decoding, e.g.
    the 0.5B for the 1.5B); empty: none, the default (on a small CPU it is slower, see README)."""
    backend: str = "local"
    """local (in-process) | daemon (one model shared by this user's windows) | http (a server)."""
    url: str = ""
    """http: the inference server's base URL, e.g. http://127.0.0.1:8080 (llama-server, vLLM)."""
    api: str = "auto"
    """http: auto | llama-server | openai (`/v1/completions`)."""
    served_model: str = ""
    """http: the model id sent to an OpenAI-compatible server; empty: the first of `/v1/models`."""
    api_key_env: str = ""
    """http: the name of an environment variable holding the API key (the key is never logged)."""
    allow_remote: bool = False
    """http: allow a non-loopback URL (it must be https): code is then sent off this machine."""
    fim: str = ""
    """http: the FIM template family (e.g. qwen2.5-coder) when the server cannot tokenize."""
    connect_timeout_ms: int = 3000
    """http: how long to wait for a connection."""
    read_timeout_ms: int = 30000
    """http: how long to wait for the server's next bytes."""
    retries: int = 2
    """http: connection attempts after the first, with backoff, before the server counts as down."""
    daemon_slots: int = 4
    """daemon: KV-cache sequences, one per window (more windows share them)."""
    daemon_idle_seconds: int = 10
    """daemon: how long the daemon waits after its last window closed before it exits."""


@attrs.define
class CompletionSettings:
    inline: bool = True
    """Serve `textDocument/inlineCompletion` (ghost text)."""
    fallback: bool = True
    """Serve `textDocument/completion` with one item, for clients without inline completion."""
    max_prompt_tokens: int = 1500
    """Token budget for prefix + suffix + repository context."""
    prefix_ratio: float = 0.75
    """Share of the prefix/suffix budget given to the prefix."""
    context_tokens: int = 400
    """Part of the budget given to repository context from the index."""
    max_tokens: int = 48
    """Most tokens generated for a single-line completion."""
    max_block_tokens: int = 128
    """Most tokens generated for a multi-line completion."""
    time_budget_ms: int = 4000
    """Stop generating this long after the first token and return what is there."""
    debounce_min_ms: int = 25
    """Shortest debounce, used when the user types slowly."""
    debounce_max_ms: int = 250
    """Longest debounce, used during fast typing."""
    warmup: bool = True
    """Evaluate the prompt in the background after open/change so the next request is warm."""


@attrs.define
class IndexSettings:
    enabled: bool = True
    """Index the workspace with tree-sitter for repository context and symbols."""
    max_file_kb: int = 512
    """Files larger than this are not indexed."""
    exclude: list[str] = attrs.Factory(list)
    """Extra gitignore-style patterns to skip."""


@attrs.define
class ActionSettings:
    enabled: bool = True
    """Offer code actions."""
    max_tokens: int = 512
    """Most tokens generated for one code action."""
    time_budget_ms: int = 60000
    """Stop a runaway action after this long."""
    context_tokens: int = 384
    """Budget for the repository definitions the action's code uses (from the index)."""


@attrs.define
class Settings:
    model: ModelSettings = attrs.Factory(ModelSettings)
    completion: CompletionSettings = attrs.Factory(CompletionSettings)
    index: IndexSettings = attrs.Factory(IndexSettings)
    actions: ActionSettings = attrs.Factory(ActionSettings)
    disabled_languages: list[str] = attrs.Factory(list)
    """Language ids (as the editor names them) for which nothing is suggested."""
    log_level: str = "info"
    """debug | info | warning | error. Document text is logged only at debug."""
    log_file: str | None = None
    """Also write the log to this file."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)

    def structure_factory(cls: type) -> Any:
        renames: dict[str, Any] = {
            a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)
        }
        return make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=False, **renames)

    def unstructure_factory(cls: type) -> Any:
        renames: dict[str, Any] = {
            a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)
        }
        return make_dict_unstructure_fn(cls, conv, **renames)

    conv.register_structure_hook_factory(attrs.has, structure_factory)
    conv.register_unstructure_hook_factory(attrs.has, unstructure_factory)

    def strict_bool(value: Any, _: type) -> bool:
        if isinstance(value, bool):
            return value
        raise TypeError(f"expected true or false, got {value!r}")

    def strict_int(value: Any, _: type) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected a whole number, got {value!r}")
        return value

    def strict_float(value: Any, _: type) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)

    def strict_str(value: Any, _: type) -> str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value

    conv.register_structure_hook(bool, strict_bool)
    conv.register_structure_hook(int, strict_int)
    conv.register_structure_hook(float, strict_float)
    conv.register_structure_hook(str, strict_str)

    def strict_str_list(value: Any, _: type) -> list[str]:
        # cattrs would read a dict as its keys and a string as its characters
        if not isinstance(value, list):
            raise TypeError(f"expected a list of strings, got {value!r}")
        return [strict_str(v, str) for v in value]

    conv.register_structure_hook_func(lambda t: t == list[str], strict_str_list)
    return conv


converter = _make_converter()

_PATH = re.compile(r"@ \$((?:\.[A-Za-z_]\w*|\[\d+\])*)")


def _validate(settings: Settings) -> list[str]:
    """Range checks that types alone cannot express; each bad value is reset to its default."""
    problems: list[str] = []
    defaults = Settings()
    checks: list[tuple[str, bool]] = [
        ("model.threads", 0 <= settings.model.threads <= 256),
        ("model.contextSize", 512 <= settings.model.context_size <= 131072),
        ("model.draft", settings.model.draft.strip().lower() != "auto"),
        ("model.backend", settings.model.backend in {"local", "daemon", "http"}),
        ("model.api", settings.model.api in {"auto", "llama-server", "openai"}),
        ("model.connectTimeoutMs", 100 <= settings.model.connect_timeout_ms <= 120000),
        ("model.readTimeoutMs", 1000 <= settings.model.read_timeout_ms <= 600000),
        ("model.retries", 0 <= settings.model.retries <= 10),
        ("model.daemonSlots", 1 <= settings.model.daemon_slots <= 16),
        ("model.daemonIdleSeconds", 1 <= settings.model.daemon_idle_seconds <= 86400),
        ("completion.maxPromptTokens", 64 <= settings.completion.max_prompt_tokens <= 32768),
        ("completion.prefixRatio", 0.0 < settings.completion.prefix_ratio <= 1.0),
        ("completion.contextTokens", 0 <= settings.completion.context_tokens <= 16384),
        ("completion.maxTokens", 1 <= settings.completion.max_tokens <= 1024),
        ("completion.maxBlockTokens", 1 <= settings.completion.max_block_tokens <= 2048),
        ("completion.timeBudgetMs", 50 <= settings.completion.time_budget_ms <= 120000),
        ("completion.debounceMinMs", 0 <= settings.completion.debounce_min_ms <= 5000),
        ("completion.debounceMaxMs", 0 <= settings.completion.debounce_max_ms <= 5000),
        ("index.maxFileKb", 1 <= settings.index.max_file_kb <= 65536),
        ("actions.maxTokens", 1 <= settings.actions.max_tokens <= 8192),
        ("actions.timeBudgetMs", 1000 <= settings.actions.time_budget_ms <= 600000),
        ("actions.contextTokens", 0 <= settings.actions.context_tokens <= 16384),
        ("logLevel", settings.log_level.lower() in {"debug", "info", "warning", "error"}),
    ]
    for dotted, ok in checks:
        if ok:
            continue
        section, _, leaf = dotted.rpartition(".")
        target: Any = getattr(settings, section) if section else settings
        source: Any = getattr(defaults, section) if section else defaults
        field = _snake(leaf)
        problems.append(f"{dotted}: {getattr(target, field)!r} is out of range")
        setattr(target, field, getattr(source, field))
    url_problem = check_url(settings.model.url, allow_remote=settings.model.allow_remote)
    if url_problem:
        problems.append(f"model.url: {url_problem}")
        settings.model.url = defaults.model.url
    if settings.completion.debounce_min_ms > settings.completion.debounce_max_ms:
        problems.append("completion.debounceMinMs is larger than completion.debounceMaxMs")
        settings.completion.debounce_min_ms = defaults.completion.debounce_min_ms
        settings.completion.debounce_max_ms = defaults.completion.debounce_max_ms
    return problems


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (names other than localhost are not resolved: not loopback)."""
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_remote: bool) -> str | None:
    """Why an inference server URL is refused, or None. Code sent to a remote host leaves the
    machine: that needs `allowRemote` and TLS."""
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return f"{url!r} is not an http:// or https:// URL"
    if parts.username or parts.password:
        return "credentials in the URL are not accepted: use model.apiKeyEnv"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return f"{url!r} has a bad port"
    if is_loopback_host(parts.hostname):
        return None
    if not allow_remote:
        return (
            f"{parts.hostname} is not a loopback address: code would leave this machine; "
            "set model.allowRemote to true (and use https) if that is intended"
        )
    if parts.scheme != "https":
        return f"{parts.hostname} is remote: only https is allowed off this machine"
    return None


def _camel_path(path: str) -> str:
    return re.sub(r"[A-Za-z_]\w*", lambda m: _camel(m.group(0)), path)


def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), name)


def _drop(data: dict[str, Any], path: str) -> bool:
    keys = [k for k in re.split(r"\.|\[|\]", path) if k]
    node: Any = data
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.get(key)
        if not isinstance(node, dict | list):
            return False
    leaf = keys[-1] if keys else None
    if leaf is None:
        return False
    if isinstance(node, dict) and leaf in node:
        del node[leaf]
        return True
    if isinstance(node, list):
        # A bad element spoils the whole list: drop the list at its parent instead.
        return _drop(data, path[: path.rfind("[")])
    return False


def parse_settings(raw: Any) -> tuple[Settings, list[str]]:
    """Turn wire settings into `Settings`, keeping the default for every value that is wrong.

    Returns the settings and a list of human-readable problems (empty when all was well).
    """
    if raw is None:
        return Settings(), []
    if not isinstance(raw, dict):
        return Settings(), [f"settings must be an object, got {type(raw).__name__}"]
    data = _deepcopy(raw)
    problems: list[str] = []
    for _ in range(64):
        try:
            settings = converter.structure(data, Settings)
            break
        except Exception as exc:  # cattrs raises ClassValidationError groups
            messages = cattrs.transform_error(exc)
            dropped = False
            for message in messages:
                match = _PATH.search(message)
                path = _camel_path(match.group(1).lstrip(".")) if match else ""
                problems.append(
                    _PATH.sub(lambda m: "@ " + _camel_path(m.group(1).lstrip(".")), message)
                )
                if path and _drop(data, path):
                    dropped = True
            if not dropped:
                return Settings(), problems
    else:  # pragma: no cover - only with absurd inputs
        return Settings(), problems
    problems.extend(_validate(settings))
    return settings, problems


def _deepcopy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


def to_wire(settings: Settings) -> dict[str, Any]:
    result: dict[str, Any] = converter.unstructure(settings)
    return result
