"""Result files and run folders under faults: torn and corrupt JSONL lines, concurrent and
crashed lock holders, folders of another kind or config, bad --out paths (rnnlab.io).

No JAX program is compiled here; the lock holder is a separate Python process that loads
``rnnlab.io`` without the package's heavy ``__init__``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rnnlab import io

ROOT = Path(__file__).resolve().parents[1]
RECORDS = [{"step": 10 * (i + 1), "loss": 1.0 / (i + 1)} for i in range(16)]


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def test_torn_tail_is_skipped_then_cut_before_the_next_append(tmp_path, capsys):
    """Oracle: the records written: a writer killed mid-line leaves a fragment; reading skips
    it, and the next append starts on a fresh line instead of joining the fragment, which
    is kept in ``.damaged``."""
    path = tmp_path / "metrics.jsonl"
    io.append_jsonl(path, RECORDS[:3])
    with open(path, "a") as handle:
        handle.write('{"step": 40, "lo')  # killed here
    assert io.read_jsonl(path) == RECORDS[:3]
    assert "metrics.jsonl: 1 unreadable line (4) skipped" in capsys.readouterr().err
    io.append_jsonl(path, [RECORDS[3]])
    assert io.read_jsonl(path, quiet=True) == RECORDS[:4]
    assert path.read_text().endswith("\n") and path.read_text().count("\n") == 4
    aside = json.loads((tmp_path / "metrics.jsonl.damaged").read_text())
    assert aside == {"line": 4, "text": '{"step": 40, "lo'}


def test_a_corrupt_middle_line_hides_nothing_and_is_moved_aside(tmp_path, capsys):
    """Oracle: the 16 records written: a corrupt line 4 loses that record only; repairing
    moves it to ``.damaged`` and keeps the other 15 in order; a second repair finds nothing."""
    path = tmp_path / "results.jsonl"
    lines = [json.dumps(record) for record in RECORDS]
    lines[3] = lines[3][:9] + "\x00garbage"
    _write_lines(path, lines)
    expected = RECORDS[:3] + RECORDS[4:]
    assert io.read_jsonl(path) == expected
    assert io.repair_jsonl(path) == 1
    assert "results.jsonl: 1 unreadable line (4) moved to" in capsys.readouterr().err
    assert io.read_jsonl(path) == expected and capsys.readouterr().err == ""
    assert json.loads((tmp_path / "results.jsonl.damaged").read_text())["line"] == 4
    assert io.repair_jsonl(path) == 0
    non_objects = tmp_path / "other.jsonl"
    _write_lines(non_objects, ["[1, 2]", "17", json.dumps(RECORDS[0])])
    assert io.read_jsonl(non_objects, quiet=True) == [RECORDS[0]]


HOLDER = textwrap.dedent(
    """
    import sys, time, types
    package = types.ModuleType("rnnlab")  # rnnlab.io without the package's heavy __init__
    package.__path__ = [sys.argv[1] + "/rnnlab"]
    sys.modules["rnnlab"] = package
    from rnnlab import io
    with io.lock_folder(sys.argv[2]):
        print("locked", flush=True)
        time.sleep(300)
    """
)


def _hold_lock(folder: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(ROOT), str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert holder.stdout.readline() == b"locked\n", holder.stderr.read().decode()
    return holder


def test_a_second_run_is_refused_and_a_killed_holder_frees_the_folder(tmp_path):
    """Oracle: the holder's pid and the kernel's lock semantics: while another process holds
    the folder, locking it (and starting a training run in it) fails naming that pid and
    writes nothing; once the holder is killed with SIGKILL the lock is free."""
    from rnnlab.train import TrainConfig, run

    folder = tmp_path / "run"
    holder = _hold_lock(folder)
    try:
        with pytest.raises(io.FolderBusy, match=f"in use by another run \\(pid {holder.pid} "):
            with io.lock_folder(folder):
                pass
        config = TrainConfig(task="adding", length=4, hidden_size=4, steps=10, chunk_steps=10)
        with pytest.raises(io.FolderBusy, match=str(holder.pid)) as error:
            run(config, folder, progress=False)
        assert error.value.argument == "out"
        assert sorted(p.name for p in folder.iterdir()) == [io.LOCK_FILE]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with io.lock_folder(folder):
        info = json.loads((folder / io.LOCK_FILE).read_text())
        assert info["pid"] == os.getpid()
        with io.lock_folder(folder):  # re-entrant within a process
            pass


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("", "out is empty"),
        ("file", "is a file, not a folder"),
        ("file/below", "lies under the file"),
        ("/proc/rnnlab-test/run", "cannot write in"),
    ],
)
def test_bad_out_paths_are_refused_before_anything_is_written(tmp_path, out, message):
    """Oracle: the path's nature: empty, a file, under a file, or uncreatable."""
    (tmp_path / "file").write_text("a user's file\n")
    target = out if out in ("",) or out.startswith("/") else str(tmp_path / out)
    with pytest.raises(io.ArgumentError, match=message):
        folder = io.RunFolder.open(target, "train", {"a": 1})
        with folder.lock():
            pass
    assert (tmp_path / "file").read_text() == "a user's file\n"


def test_run_folders_refuse_other_kinds_other_configs_and_foreign_files(tmp_path):
    """Oracle: what each folder holds: another kind of run and another config (with results)
    are refused naming the difference; a config without results (a failed start) binds
    nothing; files without a config.json are not a run folder; a finished identical run
    is reported as finished."""
    train = tmp_path / "train"
    folder = io.RunFolder.open(train, "train", {"hidden_size": 8, "steps": 10})
    with folder.lock():
        folder.start({"note": 1})
    assert not folder.finished
    # Nothing ran yet (no work files), so another config may take the folder over.
    replaced = io.RunFolder.open(train, "train", {"hidden_size": 16, "steps": 10})
    assert replaced.changes == {"hidden_size": (8, 16)} and not replaced.binding
    (train / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(io.FolderConflict, match=r"hidden_size: 8 -> 16"):
        io.RunFolder.open(train, "train", {"hidden_size": 16, "steps": 10}, work=["metrics.jsonl"])
    with pytest.raises(io.FolderConflict, match="holds a train run .* not a sweep run"):
        io.RunFolder.open(train, "sweep", {"hidden_size": 8, "steps": 10})
    allowed = io.RunFolder.open(
        train,
        "train",
        {"hidden_size": 8, "steps": 20},
        may_change=["steps"],
        work=["metrics.jsonl"],
    )
    assert allowed.changes == {"steps": (10, 20)} and allowed.binding
    with allowed.lock():
        document = allowed.start()
        allowed.finish(wall_time_s=1.5)
    history = io.read_json(train / "config.json")["history"]
    assert [entry.get("changes") for entry in history] == [None, {"steps": [10, 20]}]
    assert history[-1]["wall_time_s"] == 1.5 and "finished" in history[-1]
    assert document["kind"] == "train" and "numpy" in document["versions"]
    (train / "summary.json").write_text("{}\n")
    again = io.RunFolder.open(
        train, "train", {"hidden_size": 8, "steps": 20}, work=["summary.json"]
    )
    assert again.finished and "nothing to do" in again.finished_message()

    foreign = tmp_path / "papers"
    foreign.mkdir()
    (foreign / "draft.tex").write_text("\\section{}\n")
    with pytest.raises(io.FolderConflict, match="draft.tex.*not an rnnlab run folder"):
        io.RunFolder.open(foreign, "sweep", {})
    old_train = tmp_path / "old"  # a config.json of a run from before kinds were recorded
    old_train.mkdir()
    (old_train / "config.json").write_text(json.dumps({"config": {}, "hparams": {}}))
    with pytest.raises(io.FolderConflict, match="holds a train run"):
        io.RunFolder.open(old_train, "sweep", {})
    (old_train / "config.json").write_text('{"config": {"a": 1')  # damaged
    with pytest.raises(io.FolderConflict, match="unreadable"):
        io.RunFolder.open(old_train, "train", {})
