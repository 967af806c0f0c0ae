"""One writer per journal: an OS lock on ``<journal>.lock``, held for the whole run.

Two runs on one journal would each read "not sent yet" for the same image and both send it: the
journal's exactly-once holds only with one writer at a time. SQLite's own locking is per
transaction, not per run, so a run takes an exclusive OS lock on a sidecar file before it opens
the journal and keeps it until it has closed it. A second writer stops at once with one line
naming the holder (pid, host, start time, read from the lock file), or waits for it if asked
(``RunOptions.wait_for_journal``).

Why an OS lock and not a pid file: the operating system releases it when the holder dies, however
it dies (``kill -9``, a power cut on a local disk), so a lock is never stale and nothing has to
guess whether a recorded pid is still alive. POSIX uses ``fcntl.flock`` (per open file: two
runs in one process exclude each other too); Windows ``msvcrt.locking`` on a byte far beyond
the holder text, so that others can still read who holds it.

The lock file is never deleted: deleting it would let a waiting process lock the deleted file
while a third creates and locks a new one -- two holders. Its text is only believed while its
lock is held.

Readers (``alpolicy report``, ``compare``) take no lock: SQLite in WAL mode lets them read while a
run writes. A dry run writes (its run, its decisions) and takes the lock like any run.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
try:  # Windows
    import msvcrt
except ImportError:
    msvcrt = None  # type: ignore[assignment]

log = logging.getLogger("alpolicy.journal")

#: Where Windows locks one byte: past any holder text, which stays readable.
_WINDOWS_LOCK_OFFSET = 1 << 20
#: How often a waiting writer tries again.
_POLL = 0.2
#: How long to wait for a holder's text: it writes it just after taking the lock.
_HOLDER_TEXT_WAIT = 1.0


class JournalInUse(UsageError):
    """Another process (or another run in this one) is writing the journal."""


@dataclass(frozen=True)
class Holder:
    """Who holds a journal, as written in its lock file."""

    pid: int | None
    host: str | None
    started: float | None

    def describe(self) -> str:
        """``pid 12345, started 21:40:03`` (``on HOST`` when it is another machine's)."""
        if self.pid is None:
            return "another process"
        where = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        when = ""
        if self.started is not None:
            same_day = time.localtime(self.started)[:3] == time.localtime()[:3]
            when = ", started " + time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S",
                                                 time.localtime(self.started))
        return f"pid {self.pid}{where}{when}"


class JournalLock:
    """The exclusive writer lock of one journal file (``:memory:`` journals need none)."""

    def __init__(self, journal: str | os.PathLike[str]) -> None:
        self.journal = os.fspath(journal)
        self.path = self.journal + ".lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: float = 0.0) -> "JournalLock":
        """Take the lock, waiting up to ``wait`` seconds for a holder to finish; raise
        :class:`JournalInUse` (one line, exit 2) if it is still held then."""
        if self._fd is not None:
            return self
        fd = self._open()
        deadline = time.monotonic() + max(0.0, wait)
        announced = False
        try:
            while not _try_lock(fd, self.path):
                if time.monotonic() >= deadline:
                    raise JournalInUse(self._in_use_message(wait))
                if not announced:
                    log.warning("journal %s is in use by alpolicy run (%s): waiting up to %ss for it",
                                self.journal, self._holder().describe(), f"{wait:g}")
                    announced = True
                time.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))
            _write_holder(fd)
        except BaseException:
            os.close(fd)  # closing releases the lock if it was taken
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the next writer in (the text is cleared first, while still held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            _unlock(fd)
        except OSError as error:  # closing the file releases it anyway
            log.debug("unlocking %s: %s", self.path, error)
        finally:
            os.close(fd)

    def __enter__(self) -> "JournalLock":
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    # ------------------------------------------------------------------ internals
    def _open(self) -> int:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
        except OSError as error:
            raise UsageError(f"cannot lock the journal {self.journal} ({self.path}: {error.strerror or error}); "
                             "pass another --journal") from None

    def _holder(self) -> Holder:
        """The holder's text; it may still be writing it (it writes just after locking)."""
        deadline = time.monotonic() + _HOLDER_TEXT_WAIT
        while True:
            holder = _read_holder(self.path)
            if holder.pid is not None or time.monotonic() >= deadline:
                return holder
            time.sleep(0.05)

    def _in_use_message(self, waited: float) -> str:
        holder = self._holder().describe()
        if waited > 0:
            return (f"journal {self.journal} is still in use by alpolicy run ({holder}) after {waited:g}s; "
                    "wait longer (--wait-for-journal SECONDS) or pass another --journal")
        return f"journal {self.journal} is in use by alpolicy run ({holder}); wait for it or pass another --journal"


def lock_journal(journal: str | None, wait: float = 0.0) -> JournalLock | None:
    """The writer lock of a journal file, taken; ``None`` for an in-memory journal."""
    if not journal or journal == ":memory:":
        return None
    return JournalLock(journal).acquire(wait)


def _try_lock(fd: int, path: str) -> bool:
    """True once locked; False while another holds it. A file system that cannot lock (some
    network mounts) is warned about once and run unlocked, as before locks existed."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        elif msvcrt is not None:  # pragma: no cover - Windows
            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except (BlockingIOError, PermissionError):
        return False
    except OSError as error:
        if msvcrt is not None and fcntl is None:  # pragma: no cover - Windows: EACCES/EDEADLOCK when held
            return False
        log.warning("cannot lock %s (%s): two runs on this journal at once would each send its images",
                    path, error.strerror or error)
        return True


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    elif msvcrt is not None:  # pragma: no cover - Windows
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _write_holder(fd: int) -> None:
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode("utf-8") + b"\n")


def _read_holder(path: str) -> Holder:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.loads(handle.read(4096) or "null")
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        return Holder(None, None, None)
    pid, host, started = data.get("pid"), data.get("host"), data.get("started")
    return Holder(pid if isinstance(pid, int) else None, host if isinstance(host, str) else None,
                  float(started) if isinstance(started, (int, float)) else None)
