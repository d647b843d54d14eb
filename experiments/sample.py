"""Sample text from a saved character-model run (``--task char_lm`` or ``shakespeare``).

    .venv/bin/python experiments/sample.py results/train/shakespeare --chars 600 \
        --temperature 0.8 --prompt "ROMEO:"
"""

from __future__ import annotations

import sys

from rnnlab import cli


def main(argv=None) -> int:
    parser = cli.Parser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a run folder written by experiments/train.py")
    parser.add_argument("--chars", type=int, default=400, help="characters to sample")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax(logits / T)")
    parser.add_argument("--prompt", help="text to condition on (default: a newline)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint-step",
        type=int,
        help="the checkpoint of this optimizer step (default: the latest)",
    )
    arguments = parser.parse_args(argv)

    from rnnlab import runs

    try:
        text = runs.load(arguments.run).sample(
            arguments.chars, prompt=arguments.prompt, temperature=arguments.temperature,
            seed=arguments.seed, step=arguments.checkpoint_step,
        )  # fmt: skip
    except ValueError as error:
        parser.error(str(error))
    print((arguments.prompt or "") + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
