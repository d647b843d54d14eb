"""One config writer (issue 14): every experiment's ``config.json`` goes through
:func:`rnnlab.io.write_config` (the full resolved config, the package versions), and the
shared parser's one range check.

Nothing here compiles or trains."""

from __future__ import annotations

import argparse
import ast
from importlib import metadata
from pathlib import Path

import pytest

from rnnlab import cli, io, runs

ROOT = Path(__file__).resolve().parents[1]
#: Calls that would write a file by hand.
WRITERS = {"write_json", "write_text", "atomic_open", "open"}


def _hand_written_configs(source: str) -> list[int]:
    """The lines of every call in ``source`` that writes ``config.json`` by hand or
    collects package versions itself (instead of leaving both to ``io.write_config``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        target = ast.unparse(node.args[0]) if node.args else ""
        writes_config = name in WRITERS and ("config.json" in target or "CONFIG_FILE" in target)
        if writes_config or name == "package_versions":
            found.append(node.lineno)
    return found


def test_no_experiment_writes_config_json_by_hand():
    """Oracle: the scripts' syntax trees — outside ``rnnlab/io.py`` (the writer itself), no
    call writes ``config.json`` or gathers package versions."""
    files = sorted((ROOT / "experiments").rglob("*.py")) + sorted((ROOT / "rnnlab").rglob("*.py"))
    found = [
        f"{f.relative_to(ROOT)}:{line}"
        for f in files
        if f != ROOT / "rnnlab" / "io.py"
        for line in _hand_written_configs(f.read_text())
    ]
    assert found == []
    assert len(files) > 40
    # the check can fail: the hand-written form it forbids is recognized
    by_hand = 'io.write_json(out / "config.json", {"versions": package_versions()})'
    assert _hand_written_configs(by_hand) == [1, 1]


def test_write_config_holds_config_details_and_versions(tmp_path, monkeypatch):
    """Oracle: ``importlib.metadata`` for the versions, the arguments for the rest."""
    monkeypatch.setattr("sys.argv", ["cliff.py", "--quick"])
    config = {"out": tmp_path, "lengths": (2, 3)}
    written = io.write_config(
        tmp_path, "cliff", config, details={"dtype": "float64"}, packages=("pytest",)
    )
    document = io.read_json(tmp_path / "config.json")
    assert document == written
    assert document["kind"] == "cliff" and document["dtype"] == "float64"
    assert document["config"] == {"out": str(tmp_path), "lengths": [2, 3]}
    assert document["versions"]["jax"] == metadata.version("jax")
    assert document["versions"]["pytest"] == metadata.version("pytest")
    assert document["history"][-1]["command"] == ["cliff.py", "--quick"]
    with pytest.raises(ValueError, match="holds a cliff run, not a training run"):
        runs.load(tmp_path)


def _parser() -> cli.Parser:
    parser = cli.Parser()
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--hidden-size", type=int, default=1)
    parser.add_argument("--lengths", type=int, nargs="+", default=[2])
    return parser


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "0"], "--steps: must be >= 1, got 0"),
        (["--hidden-size", "-2"], "--hidden-size: must be >= 1, got -2"),
        (["--lengths", "5", "1"], "--lengths: must all be >= 2 (T >= 2), got [5, 1]"),
    ],
)
def test_check_at_least_names_the_flag(argv, message, capsys):
    """Oracle: the rule by hand — the first value below its minimum is a usage error (exit
    status 2) naming its flag; the minimum itself passes."""
    parser = _parser()
    arguments = parser.parse_args(argv)
    with pytest.raises(SystemExit) as exit_:
        parser.check_at_least(arguments, 1, "steps", "hidden_size")
        parser.check_at_least(arguments, 2, "lengths", reason="T >= 2")
    assert exit_.value.code == cli.USAGE
    assert capsys.readouterr().err == f"error: {message} (see --help)\n"
    fine = argparse.Namespace(steps=1, hidden_size=1, lengths=[2, 9])
    parser.check_at_least(fine, 1, "steps", "hidden_size")
    parser.check_at_least(fine, 2, "lengths")


def test_preset_switch_names_the_preset_flags_and_explicit_flags_win():
    """Oracle: the preset itself — the help lists its flags; ``--quick`` takes its values
    except where a flag is given."""
    parser = _parser()
    preset = {"steps": 3, "hidden_size": 4}
    cli.add_preset_switch(parser, preset, "a smoke run")
    assert parser._option_string_actions["--quick"].help == (
        "a smoke run: smaller defaults for --steps, --hidden-size; flags you give explicitly win"
    )
    arguments = cli.parse_with_preset(parser, ["--quick", "--steps", "7"], preset)
    assert (arguments.steps, arguments.hidden_size) == (7, 4)
