"""Score a saved run's checkpoint on its task, at any sequence length or on a held-out split.

    .venv/bin/python experiments/evaluate.py results/train/adding_lstm --length 400
    .venv/bin/python experiments/evaluate.py RUN --split validation --checkpoint-step 2000

Prints the loss, the task's metric and its trivial baseline as JSON; ``--out FILE``
also writes them (atomically).
"""

from __future__ import annotations

import json
import sys

from rnnlab import cli


def main(argv=None) -> int:
    parser = cli.Parser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a run folder written by experiments/train.py")
    parser.add_argument("--length", type=int, help="sequence length T (default: the run's)")
    parser.add_argument("--split", default="test", choices=("test", "validation", "fresh"))
    parser.add_argument("--batch-size", type=int, help="sequences of a synthetic task")
    parser.add_argument("--seed", type=int, default=0, help="seeds --split fresh")
    parser.add_argument(
        "--checkpoint-step",
        type=int,
        help="the checkpoint of this optimizer step (default: the latest)",
    )
    parser.add_argument("--out", help="also write the result to this JSON file")
    arguments = parser.parse_args(argv)

    from rnnlab import io, runs

    try:
        result = runs.load(arguments.run).evaluate(
            length=arguments.length, split=arguments.split, batch_size=arguments.batch_size,
            seed=arguments.seed, step=arguments.checkpoint_step,
        )  # fmt: skip
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(result, indent=2))
    if arguments.out:
        io.write_json(arguments.out, {"run": arguments.run, **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
