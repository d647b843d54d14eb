"""``python -m rnnlab.bench TASK OPTIONS_JSON``: the benchmark's work in a fresh process.

Tasks: ``timing`` (the ``timing`` section, for the allocator and XLA_FLAGS sections)
and ``train-step`` (one training step's temporary memory, for ``peak_memory``).  Prints
one JSON line last.  Not a user command: run ``experiments/bench.py``.
"""

import json
import os
import sys
import types


def main(argv):
    task, options = argv[0], json.loads(argv[1])
    if task == "timing":
        if options.get("allocator") == "tuned":
            from rnnlab import runtime

            runtime.tune_allocator()
        import torch

        from rnnlab.bench import sections

        torch.set_num_threads(os.cpu_count() or 1)
        result = {"timing": sections.timing_section(types.SimpleNamespace(**options))}
    elif task == "train-step":
        from rnnlab.bench import sections

        result = sections.train_step_child(options)
    else:
        raise SystemExit(f"error: unknown task {task!r}; use timing or train-step")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
