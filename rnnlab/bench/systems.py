"""The systems the benchmark compares, each built for one problem shape.

- :func:`rnnlab_system`: ``rnnlab.unroll`` on its default path (the fused
  ``custom_vjp`` for dense cells) or on the generic scan (``path="sequential"``),
  optionally with ``remat``.
- :func:`flax_system`: flax ``nn.RNN(OptimizedLSTMCell)`` (LSTM only).
- :func:`torch_system`: ``torch.nn.{RNN,LSTM,GRU}``, read off the cell's
  ``exports["torch"]``.  torch is a dev extra: it is imported only here, when called.

The JAX builders return ``{"train": (lowered, args), "infer": (lowered, args)}``;
:func:`compile_jax` turns them into blocking callables and compile seconds.  The
training step is forward and backward through time with a mean-squared loss over
all outputs ``[B, T, H]``.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = [
    "compile_jax",
    "flax_system",
    "gpu_available",
    "make_problem",
    "rnnlab_system",
    "torch_system",
    "training_flops",
]


def make_problem(cell_name, batch_size, length, input_size, hidden_size, seed=0):
    """Inputs ``xs: [B, T, I]`` and regression targets ``[B, T, H]`` (float32, NumPy).

    ``cell_name`` is unused (every cell's problem is the same) and kept so that a
    cell-specific problem can be added without changing the callers.
    """
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((batch_size, length, input_size), dtype=np.float32)
    target = rng.standard_normal((batch_size, length, hidden_size), dtype=np.float32)
    return xs, target


def rnnlab_system(cell_name, xs, target, hidden_size, *, fused_path=True, remat=False):
    """Returns ``{"train": (lowered, args), "infer": (lowered, args)}`` of rnnlab.

    ``fused_path=False`` selects the generic scan (``path="sequential"``); ``remat``
    recomputes each step in the backward pass (the sequential scan).
    """
    import jax
    import jax.numpy as jnp

    import rnnlab

    cell = rnnlab.cells.make(cell_name, hidden_size)
    params = cell.init(jax.random.key(0), xs.shape[-1])
    xs, target = jnp.asarray(xs), jnp.asarray(target)

    path = "auto" if fused_path else "sequential"

    def infer(params, xs):
        return rnnlab.unroll(cell, params, xs, remat=remat, path=path)[0]

    def loss(params, xs, target):
        return jnp.mean((infer(params, xs) - target) ** 2)

    train = jax.jit(jax.value_and_grad(loss)).lower(params, xs, target)
    infer_lowered = jax.jit(infer).lower(params, xs)
    return {"train": (train, (params, xs, target)), "infer": (infer_lowered, (params, xs))}


def flax_system(cell_name, xs, target, hidden_size):
    """flax ``nn.RNN(OptimizedLSTMCell)``, or ``None`` for cells other than the LSTM."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    if cell_name != "lstm":
        return None
    model = nn.RNN(nn.OptimizedLSTMCell(hidden_size))
    xs, target = jnp.asarray(xs), jnp.asarray(target)
    variables = model.init(jax.random.key(0), xs)

    def loss(variables, xs, target):
        return jnp.mean((model.apply(variables, xs) - target) ** 2)

    train = jax.jit(jax.value_and_grad(loss)).lower(variables, xs, target)
    infer = jax.jit(model.apply).lower(variables, xs)
    return {"train": (train, (variables, xs, target)), "infer": (infer, (variables, xs))}


def compile_jax(system):
    """Compiles the lowered functions; returns blocking callables and compile seconds.

    Each callable's ``compiled`` attribute is its compiled program.
    """
    import jax

    callables, seconds = {}, {}
    for mode, (lowered, args) in system.items():
        start = time.perf_counter()
        compiled = lowered.compile()
        seconds[mode] = time.perf_counter() - start

        def run(compiled=compiled, args=args):
            jax.block_until_ready(compiled(*args))

        run.compiled = compiled  # for memory_analysis() without compiling again
        callables[mode] = run
    return callables, seconds


def torch_system(cell_name, xs, target, hidden_size, device="cpu"):
    """``{"train": f, "infer": f}``: blocking calls of the matching ``torch.nn`` module."""
    import torch

    import rnnlab

    module_type = getattr(torch.nn, rnnlab.cells.make(cell_name, hidden_size).exports["torch"])
    module = module_type(xs.shape[-1], hidden_size, batch_first=True).to(device)
    xs, target = torch.from_numpy(xs).to(device), torch.from_numpy(target).to(device)
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)

    def train():
        module.zero_grad(set_to_none=True)
        loss = torch.mean((module(xs)[0] - target) ** 2)
        loss.backward()
        sync()

    def infer():
        with torch.no_grad():
            module(xs)
        sync()

    return {"train": train, "infer": infer}


def training_flops(cell_name, batch_size, length, input_size, hidden_size) -> float:
    """Matmul FLOPs of one training step: ``6 * B * T * G * H * (I + H)``.

    Forward: ``2 B G H (I + H)`` per step for ``x W_ih`` and ``h W_hh``.  Backward:
    twice that (the input gradients and the weight gradients).  The pointwise work
    is left out, so this is a lower bound on the work done.
    """
    gates = _gates(cell_name, hidden_size)
    return 6.0 * batch_size * length * gates * hidden_size * (input_size + hidden_size)


def _gates(cell_name, hidden_size) -> int:
    """``G`` of a dense gated cell, read off its recurrent weight ``[H, G*H]``."""
    import jax

    import rnnlab

    cell = rnnlab.cells.make(cell_name, hidden_size)
    shapes = jax.eval_shape(lambda key: cell.init(key, 1), jax.random.key(0))
    return shapes["weight_hh"].shape[-1] // hidden_size


def gpu_available() -> tuple[bool, str]:
    """Whether both JAX and torch see a GPU, and why not."""
    import jax

    backend = jax.default_backend()
    try:
        import torch
    except ImportError:
        return False, f"jax backend {backend!r}, torch not installed"
    cuda = torch.cuda.is_available()
    return backend == "gpu" and cuda, f"jax backend {backend!r}, torch.cuda {cuda}"
