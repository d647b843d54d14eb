"""The experiment log of the LSTM training step against ``torch.nn.LSTM`` (issue 13).

Each entry: what was tried, the figure (ms per training step or the ratio to torch at
the standard shape ``B=32, I=32, H=128``, T as stated), whether it was kept, and where
the figure comes from.  Figures of a shared 2-core machine are noisy; the source says
whether the machine was quiet.  Add a row for every idea measured, kept or dropped.

Sources: ``PERF`` = ../shared/PERF.md (measured before rnnlab existed, quiet machine);
``README`` = the README's benchmark section (quiet machine, tuned allocator);
``issue 13`` = the hidden benchmark quoted there (default allocator); a commit hash =
that commit's message; ``bench`` = this package's report, with the command beside it.
"""

from __future__ import annotations

__all__ = ["LOG"]

#: Rows of the log, oldest first.  ``kept``: "kept", "dropped" or "open".
LOG: tuple[dict, ...] = (
    dict(
        idea="flax nn.RNN(OptimizedLSTMCell) (reference point)",
        figure="6.2 / 38.5-43.7 / 168-192 ms at T=50/200/1000; torch 2.8-3.2 / 22.7-25.8 / 161-203",
        kept="reference",
        source="PERF",
    ),
    dict(
        idea="plain lax.scan, fused gate matmul [I+H, 4H]",
        figure="6.5 / 40-48 / 196-227 ms at T=50/200/1000",
        kept="dropped (kept as path='sequential', the generic scan)",
        source="PERF",
    ),
    dict(
        idea="input projection hoisted out of the loop, fused, unroll=1",
        figure="5.5-6.0 / 46-58 / 224-259 ms: slower than the plain scan at T>=200",
        kept="dropped",
        source="PERF",
    ),
    dict(
        idea="custom_vjp, cuDNN-style backward (gate gradients in the reverse loop; "
        "dW_hh, dW_ih as one matmul each after it)",
        figure="5.4 / 42-43 / 210 ms at T=50/200/1000",
        kept="kept (rnnlab.fused)",
        source="PERF",
    ),
    dict(idea="scan unroll=4 or 8", figure="1.2-1.7x slower", kept="dropped", source="PERF"),
    dict(
        idea="tuned glibc allocator (MALLOC_* env / mallopt)",
        figure="best JAX 5.7 / 26.8 / 141 ms, torch 3.1 / 13.5 / 65.5 ms; page faults at "
        "T=1000 53k -> 7k per step, LSTM 330 -> 254 ms",
        kept="kept (rnnlab.runtime.tune_allocator, every experiment)",
        source="PERF, README",
    ),
    dict(
        idea="fused LSTM backward saves only the gates and c_{t-1}; built-in cells "
        "project inputs inside the fused loop",
        figure="not recorded in the commit",
        kept="kept",
        source="fa4bb22",
    ),
    dict(
        idea="cells declare their Recurrence; the LSTM's hand-written pointwise VJP in "
        "cells/lstm.py, shared by the fused path and the generic scan",
        figure="not recorded (a refactor)",
        kept="kept",
        source="1dc089a",
    ),
    dict(
        idea="rnnlab fused path, tuned allocator in-process",
        figure="1.47x (1.28-1.59) / 1.58x (1.58-1.62) / 1.69x (1.70-1.71) torch at "
        "T=50/200/1000; H=512, T=1000: 1.43x",
        kept="kept (current)",
        source="README",
    ),
    dict(
        idea="rnnlab fused path, default allocator, public API (hidden benchmark)",
        figure="1.50x / 1.46x / 1.26x torch at T=50/200/1000",
        kept="kept (current)",
        source="issue 13",
    ),
    dict(
        idea="XLA_FLAGS --xla_cpu_multi_thread_eigen=false / --xla_cpu_use_xnnpack=true",
        figure="see the report's XLA_FLAGS table (T=200)",
        kept="open",
        source="bench (flags section)",
    ),
    dict(
        idea="XLA_FLAGS --xla_cpu_use_thunk_runtime=false (the pre-thunk CPU runtime; a "
        "child per setting, rnnlab and torch interleaved in it), T=200, tuned allocator",
        figure="rnnlab train 118 / 175 ms without the flag, 147 / 141 ms with it (two "
        "attempts, median of 7); torch took 2.1-3.1 s in the same children at load 12 on "
        "2 cores, so the ratio to torch says nothing",
        kept="dropped (no gain visible; re-measure on a quiet machine)",
        source="bench, 2026-11-29, under load: flags_section(variants=('', "
        "'--xla_cpu_use_thunk_runtime=false')) at lengths [200], repetitions 7",
    ),
    dict(
        idea="GPU (H200, jax 0.11.2, torch 2.11 cuDNN): rnnlab fused path vs the generic "
        "scan vs torch.nn.LSTM/GRU, training step, median of 7 interleaved",
        figure="LSTM 5.45 / 24.9 ms vs cuDNN 2.16 / 5.88 ms at T=200/1000 (2.5x / 4.2x); "
        "generic scan 7.86 / 37.2 ms (fused 0.69x of it); GRU 6.33 / 29.9 ms vs 1.96 / "
        "4.27 ms (3.2x / 7.0x)",
        kept="fused kept as auto's second choice on GPU; cuDNN's fused RNN kernels stay "
        "out of reach of a per-step XLA loop (open)",
        source="device run, 2026-11-29: .device/gpu2.py (bench.time_configuration, "
        "baselines torch, one pass)",
    ),
    dict(
        idea="re-measured on the CPU with no other job running (the fused path, tuned "
        "allocator, in-process against torch, interleaved)",
        figure="1.34x (1.32-1.36) / 1.35x (1.32-1.39) / 1.72x (1.62-1.72) torch at "
        "T=50/200/1000; H=512, T=1000: 1.75x. Both systems ran 3-5x slower in absolute "
        "terms than in the README's table on the same machine, so only the ratios compare",
        kept="kept (current); the target (<= 1.0x) is not met",
        source="bench, 2026-11-30: experiments/bench.py --sections timing compile-program "
        "startup --cells lstm --baselines torch",
    ),
    dict(
        idea="XLA_FLAGS --xla_cpu_use_fusion_emitters=false (the elemental LLVM emitter; "
        "for compile time)",
        figure="whole training program (LSTM, adding T=100, 200 steps, under load): "
        "compile 7.9 -> 7.1 s, run 1.84 -> 2.17 s",
        kept="dropped for the library (slower runs); kept in tests/conftest.py, where "
        "one cell's contract program compiles in 2.4 s instead of 4.2 s",
        source="/tmp script over bench.programs.measure_programs, 2026-11-30",
    ),
)
