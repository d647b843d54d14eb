"""The command-line layer of the experiments: one error format, one exit status.

Every experiment validates its whole configuration before it does anything; a bad
input prints one line and exits with status 2, without a traceback::

    error: --hidden-size: must be an int >= 1, got 0
    error: --task: unknown task 'addng' (did you mean 'adding'?); use one of adding, ...
    error: --out: results/x is a file, not a folder; pass a folder name (new or a run's)

Library functions raise :class:`rnnlab._checks.ArgumentError` naming the argument
(``hidden_size``, ``cell_options['forget_bias']``, ``out``); :func:`flag_of` turns
that name into the flag, and :func:`usage_errors` turns the error into the line.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from rnnlab._checks import ArgumentError, did_you_mean

__all__ = [
    "RENAMED_FLAGS",
    "Parser",
    "add_preset_switch",
    "fail",
    "flag_of",
    "parse_with_preset",
    "usage_errors",
]

#: Exit status of a usage error (argparse's).
USAGE = 2

#: Old spellings of flags (issue 14's one vocabulary): old flag -> new flag.  A parser
#: that defines the new flag (and not the old one) answers the old one with
#: ``error: --hidden was renamed --hidden-size`` and exit status 2, never a silent alias
#: (argparse would otherwise take ``--hidden`` as an abbreviation of ``--hidden-size``).
RENAMED_FLAGS: dict[str, str] = {
    "--hidden": "--hidden-size",
    "--batch": "--batch-size",
    "--lr": "--learning-rate",
    "--reps": "--repetitions",
    "--out-dir": "--out",
    "--num-chars": "--chars",
    "--step": "--checkpoint-step",
}


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are ``error: --flag: why; fix`` lines.

    argparse's own messages (``argument --task: invalid ...``) lose their
    ``argument`` prefix; the usage text is left to ``--help``.  An old spelling in
    :data:`RENAMED_FLAGS` (or in ``renamed``, one program's own renames such as the
    benchmark's ``{"--steps": "--lengths"}``) is a usage error naming the new flag.
    """

    def __init__(self, *args, renamed: Mapping[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.renamed = {**RENAMED_FLAGS, **(renamed or {})}

    def parse_known_args(self, args=None, namespace=None):
        arguments = sys.argv[1:] if args is None else list(args)
        flags = {o for action in self._actions for o in action.option_strings}
        for token in arguments:
            if token == "--":
                break
            old = token.split("=", 1)[0]
            new = self.renamed.get(old)
            if new is not None and new in flags and old not in flags:
                self.exit(USAGE, f"error: {old} was renamed {new} (see --help)\n")
        return super().parse_known_args(arguments, namespace)

    def check_at_least(
        self, arguments: argparse.Namespace, minimum: float, *names: str, reason: str = ""
    ) -> None:
        """Usage error unless each named value (every element, for a list) is ``>= minimum``.

        ``parser.check_at_least(args, 1, "steps", "hidden_size")`` answers ``--steps 0``
        with ``error: --steps: must be >= 1, got 0`` and exit status 2; ``reason`` is
        added in parentheses.
        """
        for name in names:
            value = getattr(arguments, name)
            several = isinstance(value, (list, tuple))
            if (min(value, default=minimum) if several else value) < minimum:
                why = f" ({reason})" if reason else ""
                must = "must all be" if several else "must be"
                self.error(f"{flag_of(name)}: {must} >= {minimum}{why}, got {value}")

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument ([^:]+): ", r"\1: ", message)
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if unknown:
            flag = unknown[1].split("=")[0]
            known = [o for action in self._actions for o in action.option_strings]
            message = f"{flag}: unknown flag{did_you_mean(flag, known)}"
        self.exit(USAGE, f"error: {message} (see --help)\n")


def flag_of(argument: str, flags: Mapping[str, str] | None = None) -> str:
    """The flag of a library argument: ``hidden_size`` -> ``--hidden-size``.

    ``cell_options['forget_bias']`` -> ``--cell-option forget_bias``; ``flags`` maps
    names an experiment spells differently (``{"seed": "--seeds"}``).
    """
    flags = flags or {}
    if argument in flags:
        return flags[argument]
    option = re.fullmatch(r"(cell|task)_options\[['\"]?(\w+)['\"]?\]", argument)
    if option:
        return flags.get(option[2]) or f"--{option[1]}-option {option[2]}"
    if argument in ("cell_options", "task_options"):
        return f"--{argument[:4]}-option"
    if argument.startswith("-"):
        return argument
    return "--" + argument.replace("_", "-")


def fail(flag: str, message: str) -> NoReturn:
    """Prints ``error: FLAG: MESSAGE`` to stderr and exits with status 2."""
    print(f"error: {flag}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(USAGE)


def _message(error: ArgumentError) -> str:
    """The message without the argument's own name in front (the flag replaces it)."""
    text = str(error)
    prefix = error.argument + " "
    return text[len(prefix) :] if text.startswith(prefix) else text


@contextlib.contextmanager
def usage_errors(
    flags: Mapping[str, str] | None = None,
    *,
    default_flag: str | None = None,
    plain: bool = True,
):
    """Turns argument errors raised inside into ``error: --flag: ...`` and exit status 2.

    Args:
      flags: library argument names an experiment spells differently.
      default_flag: the flag of a plain ``ValueError`` (without an argument name);
        without it such errors print as ``error: MESSAGE``.
      plain: also turn plain ``ValueError`` s into usage errors.  Use ``False`` around
        calls that validate and then work (``rnnlab.train.run``): they raise
        :class:`ArgumentError` for bad input, and a ``ValueError`` from the work
        itself is a bug that keeps its traceback.
    """
    try:
        yield
    except ArgumentError as error:
        fail(flag_of(error.argument, flags), _message(error))
    except ValueError as error:
        if not plain:
            raise
        if default_flag is None:
            print(f"error: {error}", file=sys.stderr, flush=True)
            raise SystemExit(USAGE) from None
        fail(default_flag, str(error))


def add_preset_switch(
    parser: argparse.ArgumentParser, preset: Mapping[str, object], what: str, switch: str = "quick"
) -> None:
    """Adds the ``--{switch}`` flag of :func:`parse_with_preset`; its help names the flags
    ``preset`` sets (read from the preset, so it cannot drift), after ``what`` it is for."""
    flags = ", ".join(flag_of(name) for name in preset)
    parser.add_argument(
        f"--{switch}",
        action="store_true",
        help=f"{what}: smaller defaults for {flags}; flags you give explicitly win",
    )


def parse_with_preset(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    preset: Mapping[str, object],
    switch: str = "quick",
) -> argparse.Namespace:
    """Parses ``argv``; when the ``--{switch}`` flag is given, ``preset`` replaces the
    defaults, so flags the user gave explicitly still win over the preset.

    A repeatable (``append``) flag given explicitly replaces the preset's list.
    """
    first, _ = parser.parse_known_args(argv)
    if not getattr(first, switch):
        return parser.parse_args(argv)
    appends = {
        action.dest: action.default
        for action in parser._actions
        if isinstance(action, argparse._AppendAction) and action.dest in preset
    }
    parser.set_defaults(**{k: v for k, v in preset.items() if k not in appends})
    arguments = parser.parse_args(argv)
    for name, default in appends.items():
        if getattr(arguments, name) == default:
            setattr(arguments, name, list(preset[name]))
    return arguments
