"""Renamed flags (issue 14's one vocabulary): an old spelling is a usage error naming the new
flag, never a silent alias, and every experiment parses through :class:`rnnlab.cli.Parser`.

Nothing here compiles: every case stops in the parser."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from conftest import load_experiment

from rnnlab import cli

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
#: Scripts allowed a bare ``argparse.ArgumentParser`` (none).
NOT_YET: set[str] = set()


def _usage_error(parse, argv, capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        parse(argv)
    assert exit_.value.code == cli.USAGE
    return capsys.readouterr().err


@pytest.mark.parametrize(("old", "new"), sorted(cli.RENAMED_FLAGS.items()))
def test_every_renamed_flag_names_its_new_spelling(old, new, capsys):
    """Oracle: the table itself — ``OLD 1`` and ``OLD=1`` both fail naming NEW, though plain
    argparse would take some of them (``--hidden``) as abbreviations of the new flag."""
    parser = cli.Parser()
    parser.add_argument(new, type=int)
    for argv in ([old, "1"], [f"{old}=1"]):
        assert _usage_error(parser.parse_args, argv, capsys) == (
            f"error: {old} was renamed {new} (see --help)\n"
        )
    assert parser.parse_args([new, "1"]) == argparse.Namespace(**{new[2:].replace("-", "_"): 1})


def test_a_flag_a_parser_defines_is_not_renamed(capsys):
    """Oracle: the rule — an entry applies only where the new flag exists and the old one does
    not; past ``--`` nothing is a flag; a program's own renames join the table."""
    parser = cli.Parser()
    parser.add_argument("--step", type=int)
    assert parser.parse_args(["--step", "3"]).step == 3  # no --checkpoint-step here
    positional = cli.Parser()
    positional.add_argument("--hidden-size", type=int)
    positional.add_argument("words", nargs="*")
    assert positional.parse_args(["--", "--hidden"]).words == ["--hidden"]
    bench = cli.Parser(renamed={"--steps": "--lengths"})
    bench.add_argument("--lengths", type=int, nargs="+")
    assert "--steps was renamed --lengths" in _usage_error(
        bench.parse_args, ["--steps", "5"], capsys
    )


def test_every_experiment_parses_through_the_shared_parser():
    """Oracle: the scripts' text — none builds a bare ``argparse.ArgumentParser``."""
    scripts = sorted(EXPERIMENTS.glob("*.py")) + sorted(EXPERIMENTS.glob("apps/*.py"))
    bare = [p.name for p in scripts if "argparse.ArgumentParser(" in p.read_text()]
    assert set(bare) <= NOT_YET, bare
    assert len(scripts) > 15


@pytest.mark.parametrize(
    ("script", "argv", "new"),
    [
        ("pascanu2013", ["--hidden", "8"], "--hidden-size"),
        ("online_learning", ["--batch", "8"], "--batch-size"),
        ("gradient_quality", ["--cost-hidden", "8"], "--cost-hidden-size"),
        ("sweep", ["--lr", "1e-3"], "--learning-rate"),
        ("evaluate", ["run", "--step", "2"], "--checkpoint-step"),
        ("sample", ["run", "--step", "2"], "--checkpoint-step"),
        ("cliff", ["--steps", "3"], "--length"),
        ("edge_of_chaos", ["--steps", "3"], "--lyapunov-length"),
        ("sweep", ["--threshold", "0.1"], "--success-fraction"),
        ("curse_of_memory", ["--hessian-batch", "4"], "--hessian-batch-size"),
        ("apps/language", ["--num-chars", "3"], "--chars"),
        ("apps/make_data", ["chorales", "--out-dir", "x"], "--out"),
    ],
)
def test_experiments_answer_old_flags_with_the_new_one(script, argv, new, capsys):
    """Oracle: VOCAB.md's flag list, through each script's own ``main``."""
    error = _usage_error(load_experiment(script).main, argv, capsys)
    assert error == f"error: {argv[-2]} was renamed {new} (see --help)\n"
