"""Sequence tasks: synthetic long-range problems and real data shipped in packages or the repo.

Every task is a :class:`Task` record: a pure, jittable ``sample(key, batch_size)``,
its loss, its headline metric and the closed-form loss of the trivial predictor
(``baseline_loss``), which plots draw.  :func:`make_task` builds one by name.
"""

from __future__ import annotations

import difflib
import inspect

from rnnlab.tasks._adding import adding, multiplication
from rnnlab.tasks._copying import copying
from rnnlab.tasks._digits import digits
from rnnlab.tasks._latch import latch
from rnnlab.tasks._mnist1d import mnist1d
from rnnlab.tasks._teacher_student import teacher_student
from rnnlab.tasks._temporal_order import temporal_order
from rnnlab.tasks.anomaly import ecg_anomaly
from rnnlab.tasks.base import Batch, Task
from rnnlab.tasks.chorales import bach_chorales
from rnnlab.tasks.forecasting import sunspots
from rnnlab.tasks.text import char_lm, dyck_text, generate, shakespeare
from rnnlab.tasks.translation import number_words_to_digits
from rnnlab.tasks.uea import basic_motions, japanese_vowels

__all__ = [
    "TASKS",
    "Batch",
    "Task",
    "adding",
    "bach_chorales",
    "basic_motions",
    "char_lm",
    "copying",
    "digits",
    "dyck_text",
    "ecg_anomaly",
    "generate",
    "japanese_vowels",
    "latch",
    "make_task",
    "mnist1d",
    "multiplication",
    "number_words_to_digits",
    "shakespeare",
    "sunspots",
    "teacher_student",
    "temporal_order",
]

#: Task factories by name.
TASKS = {
    "adding": adding,
    "multiplication": multiplication,
    "copying": copying,
    "temporal_order": temporal_order,
    "latch": latch,
    "digits": digits,
    "sunspots": sunspots,
    "char_lm": char_lm,
    # Applications on real data (rnnlab[apps]; see each module's docstring).
    "japanese_vowels": japanese_vowels,
    "basic_motions": basic_motions,
    "mnist1d": mnist1d,
    "bach_chorales": bach_chorales,
    "shakespeare": shakespeare,
    "translation": number_words_to_digits,
    "ecg_anomaly": ecg_anomaly,
    "teacher_student": teacher_student,
}


def make_task(name: str, length: int | None = None, **options) -> Task:
    """Builds the task ``name`` with sequence length ``length`` (``None``: its default).

    Raises:
      ValueError: naming ``task`` for an unknown name (with the closest match), or
        the option for an unknown or invalid option.
    """
    if name not in TASKS:
        close = difflib.get_close_matches(str(name), TASKS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"task={name!r} is unknown{hint} Known tasks: {tuple(TASKS)}")
    factory = TASKS[name]
    accepted = inspect.signature(factory).parameters
    for option in options:
        if option not in accepted or option == "length":
            raise ValueError(
                f"task_options has unknown field {option!r} for task {name!r}; "
                f"it accepts {tuple(p for p in accepted if p != 'length')}"
            )
    if length is not None:
        options["length"] = length
    return factory(**options)
