"""The training runner under faults: damaged checkpoints, torn metrics, finished and continued
runs, failed starts, explosions without NaN, and float64 (rnnlab.train.runner).

Every run here is one tiny LSTM program (compiled once: runs that differ only in the
learning rate, clipping, seed or divergence settings share it), and its oracle is the
uninterrupted run of the same config.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import chex
import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnlab import io
from rnnlab.train import TrainConfig, restore_state, run, runner
from rnnlab.train.divergence import explosion_step

CONFIG = TrainConfig(
    task="adding",
    length=4,
    cell="lstm",
    hidden_size=4,
    batch_size=4,
    steps=40,
    chunk_steps=10,
    eval_batch_size=8,
)
QUIET = dict(progress=False, plots=False)
TIMING = "steps_per_second"


def _records(out: Path) -> list[dict]:
    return [
        {k: v for k, v in r.items() if k != TIMING} for r in io.read_jsonl(out / "metrics.jsonl")
    ]


def _summary(out: Path) -> dict:
    summary = io.read_json(out / "summary.json")
    return {k: v for k, v in summary.items() if k not in ("wall_time_s", "history")}


def _assert_same_run(out: Path, reference: Path) -> None:
    assert _records(out) == _records(reference)
    assert _summary(out) == _summary(reference)
    chex.assert_trees_all_equal(restore_state(out), restore_state(reference))


def _snapshot(folder: Path) -> dict:
    """Every entry's size, modification time and content hash."""
    return {
        str(p.relative_to(folder)): (
            p.stat().st_mtime_ns,
            p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(folder.rglob("*"))
    }


def _steps(out: Path, name: str = "checkpoints") -> list[str]:
    folder = out / name
    return sorted((p.name for p in folder.iterdir()), key=int) if folder.exists() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run (checkpoints 30 and 40 kept)."""
    out = tmp_path_factory.mktemp("reference")
    run(CONFIG, out, **QUIET)
    return out


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """The same run stopped (as if killed) after 3 chunks: checkpoints 20 and 30 kept."""
    out = tmp_path_factory.mktemp("stopped")
    run(CONFIG, out, stop_after_chunks=3, **QUIET)
    assert _steps(out) == ["20", "30"]
    return out


def _copy(source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(source, tmp_path / "run"))


def _truncate_data(step: Path) -> None:
    for path in (step / "default").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(step: Path) -> None:
    path = max(
        (p for p in (step / "default").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _unmanifested_truncated_metadata(step: Path) -> None:
    (step / runner.MANIFEST).unlink()  # as a checkpoint of an older run, or one killed early
    (step / "default" / "_METADATA").write_text('{"tree_metadata": {')


DAMAGE = {
    "truncated data": _truncate_data,
    "missing _METADATA": lambda step: (step / "default" / "_METADATA").unlink(),
    "one flipped byte": _flip_a_byte,
    "no manifest, torn _METADATA": _unmanifested_truncated_metadata,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(
    damage, stopped, reference, tmp_path, capsys
):
    """Oracle: the uninterrupted run: with checkpoint 30 damaged, resuming verifies it, moves
    it to checkpoints-damaged/ (never deletes it), says so, restarts from checkpoint 20 and
    ends bit-identical to the run that was never interrupted."""
    out = _copy(stopped, tmp_path)
    DAMAGE[damage](out / "checkpoints" / "30")
    run(CONFIG, out, **QUIET)
    message = capsys.readouterr().err
    assert f"checkpoint {out / 'checkpoints' / '30'} is damaged" in message
    assert "resuming" in message and "step 20" in message
    assert _steps(out, "checkpoints-damaged") == ["30"]
    _assert_same_run(out, reference)


def test_with_every_checkpoint_damaged_the_run_starts_over(stopped, reference, tmp_path, capsys):
    """Oracle: the uninterrupted run: no restorable checkpoint left means step 0; the damaged
    ones are kept aside."""
    out = _copy(stopped, tmp_path)
    for step in ("20", "30"):
        _truncate_data(out / "checkpoints" / step)
    run(CONFIG, out, **QUIET)
    assert capsys.readouterr().err.count("is damaged") == 2
    assert _steps(out, "checkpoints-damaged") == ["20", "30"]
    _assert_same_run(out, reference)


def test_torn_and_corrupt_metrics_lines_lose_only_themselves(stopped, reference, tmp_path):
    """Oracle: the reference records: a corrupt record (step 20) and a torn tail are moved
    to metrics.jsonl.damaged on resume; every other record, before and after, survives."""
    out = _copy(stopped, tmp_path)
    path = out / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:15] + "#"
    path.write_text("\n".join(lines) + '\n{"step": 40, "train_lo')
    run(CONFIG, out, **QUIET)
    expected = [r for r in _records(reference) if r["step"] != 20]
    assert _records(out) == expected
    assert len(io.read_jsonl(out / "metrics.jsonl.damaged")) == 2
    chex.assert_trees_all_equal(restore_state(out), restore_state(reference))


def test_rerunning_a_finished_run_touches_nothing(reference, capsys, monkeypatch):
    """Oracle: the folder's bytes and modification times before the re-run, and the summary
    on disk (its wall_time_s is not rewritten).  The folder is made read-only as far as
    rnnlab can tell (os.access says no, every writer raises), as a user's archive would be."""
    before = _snapshot(reference)
    summary = io.read_json(reference / "summary.json")

    def refuse(*args, **kwargs):
        raise PermissionError("read-only folder")

    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: access(path, mode) and (
        mode == os.R_OK or not str(path).startswith(str(reference))))  # fmt: skip
    for name in ("lock_folder", "write_json", "write_text", "append_jsonl", "repair_jsonl"):
        monkeypatch.setattr(io, name, refuse)
    result = run(CONFIG, reference, **QUIET)
    assert result.already_finished and result.summary == summary
    assert "holds this run, finished at step 40" in capsys.readouterr().err
    assert _snapshot(reference) == before
    chex.assert_trees_all_equal(result.state, restore_state(reference))


def test_more_steps_continue_a_finished_run_as_if_it_had_run_on(reference, tmp_path):
    """Oracle: the uninterrupted 60-step run: continuing the finished 40-step run with
    steps=60 gives the same records, summary and state; the continuation is in the history of
    config.json and summary.json, and wall_time_s adds the sessions."""
    out = _copy(reference, tmp_path)
    first = io.read_json(out / "summary.json")["wall_time_s"]
    longer = CONFIG.replace(steps=60)
    run(longer, out, **QUIET)
    run(longer, tmp_path / "uninterrupted", **QUIET)
    _assert_same_run(out, tmp_path / "uninterrupted")
    history = io.read_json(out / "config.json")["history"]
    assert [h["from_step"] for h in history] == [0, 40]
    assert history[1]["changes"] == {"steps": [40, 60]} and history[1]["to_step"] == 60
    summary = io.read_json(out / "summary.json")
    assert summary["history"] == history
    assert summary["wall_time_s"] == pytest.approx(first + history[1]["wall_time_s"])
    with pytest.raises(ValueError, match="hidden_size: 4 -> 8"):
        run(longer.replace(hidden_size=8), out, **QUIET)


def test_continuation_rules():
    """Oracle: the rule: only steps (constant schedule, not below the steps done) and a
    chunk_steps dividing the steps done may change."""
    problem = runner._continuation_problem
    assert problem(CONFIG.replace(steps=60), {"steps": (40, 60)}, 40) is None
    assert "would undo" in problem(CONFIG.replace(steps=20), {"steps": (40, 20)}, 40)
    cosine = CONFIG.replace(steps=60, schedule="cosine")
    assert "decays over steps" in problem(cosine, {"steps": (40, 60)}, 40)
    assert "chunk_steps" in problem(CONFIG.replace(chunk_steps=20), {"chunk_steps": (10, 20)}, 30)


def test_failed_starts_write_nothing_and_bind_nothing(tmp_path):
    """Oracle: the folder's contents: a config the task or the memory rejects leaves no
    folder; a config.json without any chunk done (a start that crashed) does not stop the
    corrected command."""
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="varient") as error:
        run(CONFIG.replace(task_options={"varient": "le"}), out, **QUIET)
    assert error.value.argument == "task_options['varient']"
    with pytest.raises(ValueError, match="needs about .* PiB") as error:
        run(CONFIG.replace(hidden_size=10**8), out, **QUIET)
    assert error.value.argument == "hidden_size"
    assert not out.exists()
    folder = io.RunFolder.open(out, "train", CONFIG.replace(hidden_size=8).to_dict())
    with folder.lock():
        folder.start()  # then crashed before its first chunk
    stopped = run(CONFIG, out, stop_after_chunks=1, **QUIET)
    assert stopped.summary == {"stopped_at_step": 10}
    assert io.read_json(out / "config.json")["config"]["hidden_size"] == 4


def test_an_explosion_without_nan_in_the_first_chunk(tmp_path, capsys):
    """Oracle: the criterion on the run's own records: learning rate 1e6 without clipping
    drives the loss to ~1e12 (finite) against a baseline of 0.167; the run stops as
    diverged at step 10, says plainly that there is no checkpoint, and a re-run reports it
    without touching the folder."""
    out = tmp_path / "run"
    result = run(CONFIG.replace(learning_rate=1e6, clip_norm=None), out, **QUIET)
    summary = result.summary
    assert summary["diverged"] and summary["divergence"] == "loss explosion"
    assert summary["diverged_step"] == 10 and summary["last_good_checkpoint_step"] is None
    assert "There is no checkpoint" in summary["message"]
    records = io.read_jsonl(out / "metrics.jsonl")
    assert len(records) == 1 and np.isfinite(records[0]["train_loss"])
    assert records[0]["train_loss"] > 1000 * summary["baseline_loss"]
    assert int(result.state.diverged_step) == -1  # the engine saw no NaN
    assert _steps(out) == []
    capsys.readouterr()
    before = _snapshot(out)
    again = run(CONFIG.replace(learning_rate=1e6, clip_norm=None), out, **QUIET)
    assert again.already_finished and "diverged at step 10" in capsys.readouterr().err
    assert _snapshot(out) == before


@pytest.mark.parametrize(("patience", "inflated", "last_good"), [(1, [30], 20), (2, [20, 30], 10)])
def test_a_later_explosion_keeps_the_last_good_checkpoint(
    patience, inflated, last_good, tmp_path, monkeypatch
):
    """Oracle: the injected fault: the training loss of the chunks ending at ``inflated`` is
    multiplied by 1e6 (as an exploding run's); the run stops where ``patience`` chunks
    exceeded the bound, and no checkpoint of an exploded chunk is kept."""
    original = runner._python_row

    def inflate(row):
        row = original(row)
        if row["step"] in inflated:
            row["train_loss"] *= 1e6
        return row

    monkeypatch.setattr(runner, "_python_row", inflate)
    out = tmp_path / "run"
    summary = run(CONFIG.replace(divergence_patience=patience), out, **QUIET).summary
    assert summary["diverged_step"] == 30 and summary["last_good_checkpoint_step"] == last_good
    assert f"last good checkpoint (step {last_good})" in summary["message"]
    assert _steps(out)[-1] == str(last_good)
    assert int(restore_state(out).step) == last_good


@given(
    losses=st.lists(st.sampled_from([0.1, 1.0, 500.0, float("inf"), float("nan")]), max_size=8),
    factor=st.sampled_from([None, 2.0, 1000.0]),
    patience=st.integers(1, 3),
)
def test_explosion_step_is_the_first_window_above_the_bound(losses, factor, patience):
    """Oracle: brute force over windows: the first chunk ending ``patience`` consecutive
    chunks whose loss is not <= factor x baseline (NaN counts as above)."""
    baseline, steps = 0.25, [10 * (i + 1) for i in range(len(losses))]
    expected = None
    if factor is not None:
        for end in range(patience - 1, len(losses)):
            window = losses[end - patience + 1 : end + 1]
            if all(not loss <= factor * baseline for loss in window):
                expected = steps[end]
                break
    assert explosion_step(steps, losses, baseline, factor, patience) == expected
    assert explosion_step(steps, losses, None, factor, patience) is None


def test_float64_training_resumes_bit_identically(tmp_path):
    """Oracle: the uninterrupted run: with x64 on (as JAX_ENABLE_X64=1), training,
    checkpointing and resuming work with nothing promoted (float64 data meet the float32
    model explicitly), and the resumed run equals the uninterrupted one."""
    config = CONFIG.replace(steps=20)
    with jax.enable_x64(True):
        run(config, tmp_path / "a", stop_after_chunks=1, **QUIET)
        run(config, tmp_path / "a", **QUIET)
        result = run(config, tmp_path / "b", **QUIET)
        # One model, one dtype: the readout takes the cell's float32, not x64's default.
        dtypes = {leaf.dtype for leaf in jax.tree.leaves(result.state.params)}
        assert dtypes == {np.dtype("float32")}
        _assert_same_run(tmp_path / "a", tmp_path / "b")
    assert np.isfinite(json.loads((tmp_path / "a" / "summary.json").read_text())["final_test_loss"])
