"""Result files and run folders: atomic writes, damage-tolerant JSONL, locks, one config writer.

- Files are written atomically (a temporary file in the same folder, then rename):
  a reader, or a killed run, never sees a half-written ``config.json``,
  ``summary.json``, CSV or PNG.
- JSONL records are appended line by line and flushed, so a killed run keeps every
  complete line.  Reading skips (and reports) lines that do not parse; before a
  writer appends, a torn last line is cut off, and :func:`repair_jsonl` moves every
  unreadable line to ``<name>.damaged``, so nothing is glued onto a fragment and
  nothing is lost.
- :class:`RunFolder` is the contract of an ``--out`` folder: validated before anything
  is written, refused when it holds another kind of run or another configuration
  (naming the difference), locked against a second concurrent run (``fcntl.flock``:
  the kernel drops the lock when its holder dies, even by ``kill -9``), and given one
  ``config.json`` (:func:`write_config`: the full resolved config, the package
  versions, and the history of the sessions that worked in it).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import json
import math
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rnnlab._checks import ArgumentError

try:
    import fcntl
except ImportError:  # not POSIX: folders are not locked
    fcntl = None

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".rnnlab.lock"
#: Suffix of the file that keeps the unreadable lines cut out of a JSONL file.
DAMAGED_SUFFIX = ".damaged"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "rnnlab")


def to_jsonable(value: Any) -> Any:
    """Converts numpy/jax scalars and arrays, paths and tuples into JSON values.

    Non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` so the
    output is strict JSON.
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        array = np.asarray(value)
        return to_jsonable(array.item() if array.ndim == 0 else array.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w"):
    """Opens a temporary file beside ``path``; renames it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600 files; give the result the mode a plain open() would.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text: str) -> Path:
    with atomic_open(path) as handle:
        handle.write(text)
    return Path(path)


def write_json(path, data: Any) -> Path:
    return write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def read_json(path) -> Any:
    return json.loads(Path(path).read_text())


def package_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of python and the packages a result depends on (:data:`PACKAGES`, then
    ``extra``, e.g. an application's data packages)."""
    versions = {"python": platform.python_version()}
    for name in dict.fromkeys([*PACKAGES, *extra]):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_csv(path, rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str] | None = None):
    """Writes ``rows`` (dicts) as CSV; columns default to the union of keys in order."""
    if fieldnames is None:
        fieldnames = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: to_jsonable(v) for k, v in row.items()})
    return write_text(path, buffer.getvalue())


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class JsonlContents(NamedTuple):
    """What :func:`scan_jsonl` found: the readable records and the unreadable lines.

    ``bad`` holds ``(line_number, text)`` (1-based); ``torn`` is true when the file does
    not end with a newline (a writer was killed mid-line).
    """

    records: list[dict]
    bad: list[tuple[int, str]]
    torn: bool


def scan_jsonl(path) -> JsonlContents:
    """Every line of ``path`` that is a JSON object, and the lines that are not."""
    path = Path(path)
    if not path.exists():
        return JsonlContents([], [], False)
    data = path.read_bytes()
    records, bad = [], []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif raw.strip():
            bad.append((number, raw.decode("utf-8", errors="replace")))
    return JsonlContents(records, bad, bool(data) and not data.endswith(b"\n"))


def _describe_bad(path: Path, bad: list[tuple[int, str]]) -> str:
    numbers = ", ".join(str(number) for number, _ in bad[:5]) + (", ..." if len(bad) > 5 else "")
    plural = "s" if len(bad) > 1 else ""
    return f"{path}: {len(bad)} unreadable line{plural} ({numbers})"


def read_jsonl(path, *, quiet: bool = False) -> list[dict]:
    """The records of a JSONL file; unreadable lines (torn, corrupt) are skipped.

    Skipped lines are reported on stderr unless ``quiet``; the file is not changed
    (see :func:`repair_jsonl`).
    """
    contents = scan_jsonl(path)
    if contents.bad and not quiet:
        _warn(f"{_describe_bad(Path(path), contents.bad)} skipped")
    return contents.records


def repair_jsonl(path) -> int:
    """Moves the unreadable lines of ``path`` to ``<path>.damaged``; returns how many.

    The readable records are rewritten atomically in their order; the cut lines are
    appended to the ``.damaged`` file with their line numbers, so nothing is lost.
    """
    path = Path(path)
    contents = scan_jsonl(path)
    if not contents.bad:
        if contents.torn:  # a complete last record without its newline
            with open(path, "ab") as handle:
                handle.write(b"\n")
        return 0
    aside = path.with_name(path.name + DAMAGED_SUFFIX)
    with open(aside, "a") as handle:
        for number, text in contents.bad:
            handle.write(json.dumps({"line": number, "text": text}) + "\n")
    write_text(path, "".join(json.dumps(record) + "\n" for record in contents.records))
    _warn(f"{_describe_bad(path, contents.bad)} moved to {aside}")
    return len(contents.bad)


def _ends_torn(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except (FileNotFoundError, OSError):  # missing or empty
        return False


def append_jsonl(path, records: Iterable[Mapping[str, Any]]) -> None:
    """Appends one JSON object per line and flushes to disk.

    A torn last line (a writer killed mid-line) is repaired first
    (:func:`repair_jsonl`), so the new records never join a fragment.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _ends_torn(path):
        repair_jsonl(path)
    with open(path, "a") as handle:
        for record in records:
            handle.write(json.dumps(to_jsonable(record)) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# --------------------------------------------------------------------------------------
# Run folders
# --------------------------------------------------------------------------------------


class FolderBusy(ArgumentError):
    """Another live process holds the folder's lock."""


class FolderConflict(ArgumentError):
    """The folder holds another kind of run, another configuration, or foreign files."""


def check_out(out, argument: str = "out") -> Path:
    """``out`` as a :class:`Path` if it can be a run folder; writes nothing.

    An existing folder is accepted even if read-only (a finished run in it is only
    read); :func:`lock_folder`, the first write, reports an unwritable one.

    Raises:
      ArgumentError: for an empty name, a path that names a file (or lies under one),
        or a folder that cannot be created.
    """
    if out is None or not str(out).strip():
        raise ArgumentError(argument, f"{argument} is empty; name an output folder")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ArgumentError(
            argument, f"{path} is a file, not a folder; pass a folder name (new or a run's)"
        )
    if path.is_dir():  # may be read-only: a finished run in it is reported, not written
        return path
    existing = path.parent
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise ArgumentError(argument, f"{path} lies under the file {existing}; pass a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ArgumentError(
            argument,
            f"cannot create {path}: {existing} is not writable; pass a writable folder",
        )
    return path


def read_config(out, argument: str = "out") -> dict | None:
    """``out/config.json`` as a dict, or ``None`` if there is none.

    Raises:
      FolderConflict: if the file is not a JSON object (damaged or foreign).
    """
    path = Path(out) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        document = read_json(path)
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as error:
        document = error
    if not isinstance(document, dict):
        why = document if isinstance(document, Exception) else "not a JSON object"
        raise FolderConflict(
            argument,
            f"{path} is unreadable ({why}); move it away if the folder is yours, or pass "
            "another folder",
        )
    return document


def config_kind(document: Mapping) -> str:
    """The kind of run a ``config.json`` describes (``"train"``, ``"sweep"``, ...)."""
    if "kind" in document:
        return str(document["kind"])
    # config.json files written before kinds were recorded
    if "config" in document and "hparams" in document:
        return "train"
    if "base" in document and "args" in document:
        return "sweep"
    if "arguments" in document and "cell_options" in document:
        return "long_range"
    return "unknown"


_MISSING = "<absent>"


def differences(saved: Mapping, wanted: Mapping) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved, wanted)}`` for every key whose JSON value differs."""
    saved, wanted = to_jsonable(saved), to_jsonable(wanted)
    keys = list(dict.fromkeys([*saved, *wanted]))
    return {
        key: (saved.get(key, _MISSING), wanted.get(key, _MISSING))
        for key in keys
        if saved.get(key, _MISSING) != wanted.get(key, _MISSING)
    }


def describe_differences(changes: Mapping[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items())


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def write_config(
    out,
    kind: str,
    config: Mapping[str, Any],
    *,
    details: Mapping[str, Any] | None = None,
    history: Sequence[Mapping] = (),
    session: Mapping[str, Any] | None = None,
    packages: Iterable[str] = (),
) -> dict:
    """Writes ``out/config.json``: the one config writer of every experiment.

    The file holds ``kind`` (which experiment), ``config`` (the full resolved config:
    what a re-run is compared against), the ``details`` keys (derived facts, e.g. the
    task's baseline, the devices), ``versions`` (python, :data:`PACKAGES` and
    ``packages``), ``backend`` and ``history``: one entry per session that worked in the
    folder (when, the command, what changed).

    Returns:
      The document written.
    """
    entry = {"started": _now(), "command": [Path(sys.argv[0]).name, *sys.argv[1:]]}
    entry.update(session or {})
    document = {"kind": kind, "config": to_jsonable(config), **to_jsonable(details or {})}
    document["versions"] = package_versions(packages)
    if "jax" in sys.modules:
        document["backend"] = sys.modules["jax"].default_backend()
    document["history"] = [*history, to_jsonable(entry)]
    write_json(Path(out) / CONFIG_FILE, document)
    return document


class RunFolder:
    """An experiment's ``--out`` folder, checked before anything is written.

    :meth:`open` validates the path and compares it with what the folder holds;
    :meth:`lock` takes the folder for this process; :meth:`start` writes ``config.json``
    when the work really starts; :meth:`finish` marks the session finished, so a
    re-run reports the finished run and touches nothing.

    Example::

        folder = RunFolder.open(out, "long_range", resolved_config)
        if folder.finished:
            print(folder.finished_message())
            return
        with folder.lock():
            folder.start()
            ...  # write results
            folder.finish()
    """

    def __init__(self, path, kind, config, previous, changes, binding, argument):
        self.path, self.kind, self.config = path, kind, config
        self.previous, self.changes, self.binding = previous, changes, binding
        self.argument = argument
        self.document: dict | None = None

    @classmethod
    def open(
        cls,
        out,
        kind: str,
        config: Mapping[str, Any],
        *,
        may_change: Iterable[str] = (),
        work: Iterable[str] = (SUMMARY_FILE,),
        normalize: Callable[[Mapping], Mapping] | None = None,
        argument: str = "out",
    ) -> RunFolder:
        """Checks that ``out`` can hold this run; writes nothing.

        Args:
          out: the folder (new, empty, or one this kind of run wrote).
          kind: the experiment, e.g. ``"train"`` or ``"sweep"``.
          config: the full resolved config (JSON-able).
          may_change: config keys that may differ from the folder's (settings that do
            not change the results, e.g. a sweep's strategy); they are recorded.
          work: names of files (or folders) whose presence means the folder holds
            results; a ``config.json`` without any of them binds nothing (a failed
            start) and is replaced.
          normalize: maps the saved config to the current schema (new defaults).
          argument: the name of ``out`` in messages (``"--out"`` for a CLI).

        Raises:
          ArgumentError: for a path that cannot be a folder.
          FolderConflict: when the folder holds another kind of run, a different
            config (naming each difference), or files but no ``config.json``.
        """
        path = check_out(out, argument)
        previous = read_config(path, argument) if path.is_dir() else None
        if previous is None:
            if path.is_dir():
                foreign = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
                if foreign:
                    shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
                    raise FolderConflict(
                        argument,
                        f"{path} holds files ({shown}) but no {CONFIG_FILE}, so it is not an "
                        "rnnlab run folder; pass a new or empty folder",
                    )
            return cls(path, kind, dict(config), None, {}, False, argument)
        found = config_kind(previous)
        if found != kind:
            raise FolderConflict(
                argument,
                f"{path} holds a {found} run ({CONFIG_FILE} kind {found!r}), not a {kind} run; "
                "pass another folder",
            )
        saved = previous.get("config", {})
        if normalize is not None:
            saved = normalize(saved)
        changes = differences(saved, config)
        binding = any((path / name).exists() for name in work)
        fixed = {k: v for k, v in changes.items() if k not in set(may_change)}
        if fixed and binding:
            raise FolderConflict(
                argument,
                f"{path} holds a {kind} run with a different config "
                f"({describe_differences(fixed)}); re-run with the same arguments to resume "
                "it, or pass another folder",
            )
        return cls(path, kind, dict(config), previous, changes, binding, argument)

    @property
    def finished(self) -> bool:
        """A previous session finished this exact config (see :meth:`finish`)."""
        history = (self.previous or {}).get("history") or [{}]
        return self.binding and not self.changes and "finished" in history[-1]

    def finished_message(self) -> str:
        history = (self.previous or {}).get("history") or [{}]
        return (
            f"{self.path} holds this {self.kind} run, finished at {history[-1].get('finished')}; "
            "nothing to do (pass another folder to run it again)"
        )

    @contextlib.contextmanager
    def lock(self):
        """Holds ``out/.rnnlab.lock`` (created with the folder) for this process.

        Raises:
          FolderBusy: naming the live process that holds it.
          ArgumentError: when the folder cannot be created or written.
        """
        with lock_folder(self.path, self.argument):
            yield self

    def start(
        self, details: Mapping[str, Any] | None = None, session: Mapping[str, Any] | None = None
    ) -> dict:
        """Writes ``config.json`` with a new history entry (the changes, if any)."""
        history = list((self.previous or {}).get("history") or []) if self.binding else []
        entry = dict(session or {})
        if self.changes and self.binding:
            entry["changes"] = {k: list(v) for k, v in self.changes.items()}
        self.document = write_config(
            self.path, self.kind, self.config, details=details, history=history, session=entry
        )
        return self.document

    def finish(self, **fields) -> list[dict]:
        """Marks this session finished in ``config.json`` (with ``fields``, e.g. wall time).

        Returns:
          The history of sessions, this one last.
        """
        if self.document is None:
            raise RuntimeError("RunFolder.finish() before start()")
        self.document["history"][-1].update(finished=_now(), **to_jsonable(fields))
        write_json(self.path / CONFIG_FILE, self.document)
        return self.document["history"]


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another process"
    return f"pid {info['pid']} on {info.get('host', '?')}, since {info.get('since', '?')}"


#: Folders this process has locked, with how many holders (the lock is re-entrant).
_HELD: dict[str, int] = {}


@contextlib.contextmanager
def lock_folder(out, argument: str = "out"):
    """Creates ``out`` if needed and holds an exclusive lock on ``out/.rnnlab.lock``.

    The lock is ``fcntl.flock``: the kernel releases it when the holding process
    exits or is killed, so a crashed run never leaves it stuck.  The file records the
    holder's pid, host and start time for the message a second run gets.  Within one
    process the lock is re-entrant.

    Raises:
      FolderBusy: when a live process holds the lock.
      ArgumentError: when the folder cannot be created or written.
    """
    path = Path(out)
    key = os.path.realpath(path)
    if key in _HELD:  # this process holds it already (a sweep CLI around run_sweep)
        _HELD[key] += 1
        try:
            yield path
        finally:
            _HELD[key] -= 1
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise ArgumentError(
            argument, f"cannot write in {path}: {error.strerror}; pass a writable folder"
        ) from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FolderBusy(
                    argument,
                    f"{path} is in use by another run ({_holder(path / LOCK_FILE)}); wait for "
                    "it to finish or pass another folder",
                ) from None
        info = {"pid": os.getpid(), "host": platform.node(), "since": _now()}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(info).encode(), 0)
        _HELD[key] = 1
        try:
            yield path
        finally:
            del _HELD[key]
    finally:
        os.close(descriptor)  # releases the lock
