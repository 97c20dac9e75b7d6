"""Disk changes through watchdog, debounced into batches.

Events are filtered first (ignored paths and `.git` churn never reset the timer), then gathered
until the tree has been quiet for `quiet` seconds, so a `git checkout` of a thousand files arrives
as one batch. When inotify cannot start (its watch or instance limits), a polling observer that
skips excluded directories takes over, with a warning.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS

log = logging.getLogger(__name__)

_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]


def native_observer() -> BaseObserver:
    """The platform observer (inotify on Linux); a seam for tests."""
    return Observer()


class _Handler(FileSystemEventHandler):
    def __init__(self, sink: Callable[[str, bool], None]):
        self._sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("created", "modified", "deleted", "moved"):
            return
        if event.event_type == "modified" and event.is_directory:
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                path = os.fsdecode(raw)
                self._sink(path, event.is_directory)


class Watcher:
    """Watches `root` recursively and calls `on_batch(paths)` from its own thread.

    `accept(path, is_dir)` drops uninteresting events before they count towards a batch.
    A batch is flushed after `quiet` seconds without a new event, or `max_delay` seconds after
    its first event whatever happens.
    """

    def __init__(
        self,
        root: Path,
        accept: Callable[[str, bool], bool],
        on_batch: Callable[[list[Path]], None],
        *,
        quiet: float = 0.2,
        max_delay: float = 10.0,
        poll_interval: float = 0.5,
        keep_dir: Callable[[str], bool] | None = None,
    ):
        self.root = root
        self._accept = accept
        self._on_batch = on_batch
        self._quiet = quiet
        self._max_delay = max_delay
        self._poll_interval = poll_interval
        self._keep_dir = keep_dir or (lambda path: True)
        self._cond = threading.Condition()
        self._pending: dict[str, None] = {}
        self._first = 0.0
        self._last = 0.0
        self._stopped = False
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None
        #: "native" or "polling", once started.
        self.mode = ""

    def start(self) -> None:
        handler = _Handler(self._event)
        try:
            observer = native_observer()
            observer.schedule(handler, str(self.root), recursive=True, event_filter=_EVENTS)
            observer.start()
            self.mode = "native"
        except OSError as exc:
            log.warning(
                "file watching through inotify failed (%s); polling every %.1f s instead. "
                "Raise fs.inotify.max_user_watches / max_user_instances to avoid this.",
                exc,
                self._poll_interval,
            )
            observer = PollingObserverVFS(
                os.stat, self._listdir, polling_interval=self._poll_interval
            )
            observer.schedule(handler, str(self.root), recursive=True, event_filter=_EVENTS)
            observer.start()
            self.mode = "polling"
        self._observer = observer
        self._thread = threading.Thread(target=self._run, name="hushcode-index-watch", daemon=True)
        self._thread.start()

    def _listdir(self, path: str | None) -> Iterator[os.DirEntry[str]]:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False) and not self._keep_dir(entry.path):
                        continue
                except OSError:
                    continue
                yield entry

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _event(self, path: str, is_dir: bool) -> None:
        try:
            if not self._accept(path, is_dir):
                return
        except Exception:
            log.exception("index watcher filter failed for %s", path)
            return
        now = time.monotonic()
        with self._cond:
            if not self._pending:
                self._first = now
            self._pending[path] = None
            self._last = now
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                while True:
                    now = time.monotonic()
                    due = min(self._last + self._quiet, self._first + self._max_delay)
                    if now >= due or self._stopped:
                        break
                    self._cond.wait(due - now)
                if self._stopped:
                    return
                batch = [Path(p) for p in self._pending]
                self._pending = {}
            try:
                self._on_batch(batch)
            except Exception:
                log.exception("index update for %d changed paths failed", len(batch))
