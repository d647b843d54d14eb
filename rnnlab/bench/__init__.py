"""The benchmark suite of ``experiments/bench.py`` (PERF.md's protocol), as a package.

- :mod:`rnnlab.bench.systems`: the systems compared (rnnlab's paths, ``torch.nn``,
  flax), built for one problem shape; torch and flax are imported only when used.
- :mod:`rnnlab.bench.harness`: interleaved timing, medians, fresh processes with a
  chosen allocator environment and their peak RSS.
- :mod:`rnnlab.bench.sections`: one function per report section.
- :mod:`rnnlab.bench.programs`: compile time of a training program against its model.
- :mod:`rnnlab.bench.report`: the markdown report and the JSON/CSV artifacts.
- :mod:`rnnlab.bench.log`: the LSTM-against-torch experiment log.

Importing this package imports neither torch nor flax.
"""

from rnnlab.bench.sections import SECTIONS

__all__ = ["SECTIONS"]
