"""CLI error snapshots: every experiment validates its whole config first, and a bad input
prints one line ``error: --flag: why; fix`` and exits with status 2, with no traceback and
nothing written.  Explicit flags win over ``--quick``."""
# ruff: noqa: E501  (the snapshot table reads best one message per line)

from __future__ import annotations

import re

import pytest
from conftest import load_experiment

from rnnlab import io

TINY = ["--length=4", "--hidden-size=4", "--steps=10", "--chunk-steps=10", "--quiet"]


@pytest.fixture(scope="module")
def experiments():
    return {name: load_experiment(name) for name in ("train", "sweep", "long_range", "grad_norms")}


def _error(module, argv, capsys) -> str:
    """The one line a failing CLI printed (after checking the exit status)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        module.main(argv)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    return captured.err.rstrip("\n")


CASES = [
    ("train", ["--task", "addng"], r"--task: unknown task 'addng' \(did you mean 'adding'\?\); use one of adding, .*"),
    ("train", ["--hidden-size", "0"], r"--hidden-size: must be an int >= 1, got 0"),
    ("train", ["--learning-rate", "-1"], r"--learning-rate: must be > 0, got -1.0"),
    ("train", ["--clip-norm", "0"], r"--clip-norm: must be > 0, got 0.0"),
    ("train", ["--seed", str(2**64)], r"--seed: must be an int >= 0 and <= 2147483647, got 18446744073709551616"),
    ("train", ["--cell", "lstn"], r"--cell: unknown cell 'lstn' \(did you mean 'lstm'\?\); .*"),
    ("train", ["--cell", "rnn", "--cell-option", "recurrent_init=foo"],
     r"--cell-option recurrent_init: recurrent_init='foo' is not a known initializer; use one of .*"),
    ("train", ["--cell-option", "forget_bias=nan"], r"--cell-option forget_bias: must be a finite number, got 'nan'"),
    ("train", ["--task-option", "varient=le"], r"--task-option varient: .*'varient'.*accepts \('variant',\)"),
    ("train", ["--chunk-steps", "7"], r"--chunk-steps: chunk_steps=7 must divide steps=10; e.g. chunk_steps=5"),
    ("train", ["--lenght", "3"], r"--lenght: unknown flag \(did you mean '--length'\?\) \(see --help\)"),
    ("train", ["--activation", "relu"], r"--activation: was replaced; use --cell-option activation=relu \(see --help\)"),
    ("train", ["--hidden-size", "100000000"],
     r"--hidden-size: the run needs about [\d.]+ PiB \(4e\+16 parameters .*\) but cpu memory is .*; lower hidden_size, .*"),
    ("train", ["--divergence-loss-factor", "0.5"], r"--divergence-loss-factor: must be > 1, got 0.5"),
    ("sweep", ["--learning-rate", "-1"], r"--learning-rate: must be > 0, got -1 \(configuration \w+: .*\)"),
    ("sweep", ["--cells", "lstm", "--axis", "lstm:forget_bias=nan"], r"--axis forget_bias: must be a number, got nan .*"),
    ("sweep", ["--learning-rate", "loguniform:1e-4:1e-1:100000000"], r"--learning-rate: loguniform with n=100,000,000 values exceeds .*; lower n .*"),
    ("sweep", ["--seeds", "-1"], r"--seeds: seeds needs a count >= 1; got -1"),
    ("sweep", ["--cells", "lstn"], r"--cells: unknown cell 'lstn' \(did you mean 'lstm'\?\).*"),
    ("sweep", ["--eval-every", "7"], r"--eval-every: chunk_steps=7 must divide steps=1000; e.g. chunk_steps=5 .*"),
    ("sweep", ["--hidden-size", "100000000"], r"--hidden-size: the run needs about .*"),
    ("long_range", ["--tasks", "addng"], r"--tasks: unknown task 'addng' \(did you mean 'adding'\?\).*"),
    ("long_range", ["--seeds", "0"], r"--seeds: must be > 0, got 0"),
    ("long_range", ["--cell-option", "lstm:forget_bias=nan"], r"--cell-option forget_bias: must be a finite number, got 'nan'"),
    ("long_range", ["--clip-norm", "-1"], r"--clip-norm: must be > 0, got -1.0"),
    ("grad_norms", ["--cells", "lstn"], r"--cells: unknown cell 'lstn' \(did you mean 'lstm'\?\).*"),
    ("grad_norms", ["--lengths", "1"], r"--lengths: must all be >= 2 .*"),
    ("grad_norms", ["--rhos", "nan"], r"--rhos: must be finite, got \(nan,\)"),
    ("grad_norms", ["--hidden-size", "100000000"], r"--hidden-size: the study needs about .* but the device has .*"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "argv", "pattern"), CASES, ids=[f"{name} {argv[0]}" for name, argv, _ in CASES]
)
def test_bad_arguments_print_one_error_line_and_write_nothing(
    name, argv, pattern, experiments, capsys, tmp_path
):
    """Oracle: the snapshot of each message; the --out folder is never created."""
    out = tmp_path / "out"
    extra = TINY if name == "train" else []
    line = _error(experiments[name], [*extra, *argv, "--out", str(out)], capsys)
    assert re.fullmatch("error: " + pattern, line), line
    assert not out.exists()


def test_bad_out_folders(experiments, capsys, tmp_path):
    """Oracle: the folder's nature: empty, a file, uncreatable, or another kind of run."""
    train = experiments["train"]
    assert (
        _error(train, [*TINY, "--out", ""], capsys)
        == "error: --out: is empty; name an output folder"
    )
    (tmp_path / "notes.txt").write_text("mine\n")
    line = _error(train, [*TINY, "--out", str(tmp_path / "notes.txt")], capsys)
    assert line.endswith("notes.txt is a file, not a folder; pass a folder name (new or a run's)")
    line = _error(train, [*TINY, "--out", "/proc/rnnlab/run"], capsys)
    assert line.startswith("error: --out: cannot write in /proc/rnnlab/run")
    sweep = tmp_path / "sweep"
    folder = io.RunFolder.open(sweep, "sweep", {"lr": "1e-3"})
    with folder.lock():
        folder.start()
    before = (sweep / "config.json").read_bytes()
    line = _error(train, [*TINY, "--out", str(sweep)], capsys)
    assert re.fullmatch(
        r"error: --out: .* holds a sweep run .*, not a train run; pass another folder", line
    )
    for name in ("long_range", "grad_norms"):
        assert "holds a sweep run" in _error(experiments[name], ["--out", str(sweep)], capsys)
    assert (sweep / "config.json").read_bytes() == before
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_explicit_flags_win_over_quick(experiments):
    """Oracle: the flags given: --quick changes only the defaults."""
    sweep = experiments["sweep"].parse_args(
        ["--quick", "--steps", "120", "--axis", "lstm:forget_bias=1"]
    )
    assert (sweep.steps, sweep.axis, sweep.hidden_size) == (120, ["lstm:forget_bias=1"], 16)
    assert experiments["sweep"].parse_args(["--steps", "120"]).hidden_size == 32
    grad = experiments["grad_norms"].parse_args(["--quick", "--hidden-size", "8"])
    assert (grad.hidden_size, grad.lengths, grad.seeds) == (8, [20, 40], 2)


def test_a_sweep_rerun_with_other_arguments_is_refused(experiments, capsys, tmp_path, monkeypatch):
    """Oracle: the arguments of the first session: once a sweep has results, a re-run with
    another --learning-rate is refused naming the change, while --strategy (which does not change the
    results) may differ and is recorded."""
    sweep = experiments["sweep"]

    def start_only(args, folder, builder, base, configs):  # the sweep itself is not the point
        folder.start({"configurations": len(configs)})
        (folder.path / "results.jsonl").write_text("")

    monkeypatch.setattr(sweep, "run_and_report", start_only)
    out = str(tmp_path / "sweep")
    sweep.main(["--quick", "--out", out])
    line = _error(
        sweep, ["--quick", "--learning-rate", "loguniform:1e-3:1e-1:2", "--out", out], capsys
    )
    assert re.fullmatch(
        r"error: --out: .* holds a sweep run with a different config \(learning_rate: "
        r"'loguniform:1e-3:1e-1:4' -> 'loguniform:1e-3:1e-1:2'\); re-run with the same "
        r"arguments to resume it, or pass another folder",
        line,
    ), line
    sweep.main(["--quick", "--strategy", "loop", "--out", out])
    history = io.read_json(tmp_path / "sweep" / "config.json")["history"]
    assert history[-1]["changes"] == {"strategy": ["auto", "loop"]}
