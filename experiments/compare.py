"""Overlay the learning curves of several runs or sweeps in one PNG, with their summaries.

    .venv/bin/python experiments/compare.py results/train/a results/train/b --out compare.png
    .venv/bin/python experiments/compare.py RUN1 RUN2 --metric grad_norm --labels lstm gru

Prints each run's final and best value of the metric as JSON.
"""

from __future__ import annotations

import json
import sys

from rnnlab import cli


def main(argv=None) -> int:
    parser = cli.Parser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help="run folders (experiments/train.py) or sweeps")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--metric", default="test_loss", help="a metrics.jsonl column")
    parser.add_argument("--labels", nargs="+", help="one legend label per path")
    arguments = parser.parse_args(argv)

    from rnnlab import runs

    try:
        table = runs.compare(
            arguments.paths, arguments.out, metric=arguments.metric, labels=arguments.labels
        )
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(table, indent=2))
    print(f"wrote {arguments.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
