"""Named weight initializers for recurrent cells.

Every initializer has the signature ``init(key, shape, dtype) -> array``, as in
``jax.nn.initializers``, so a user may pass any such callable instead of a name.

Names (``H`` is the hidden size of the cell being built):

- ``"orthogonal"``: a (block-wise) orthogonal matrix, all singular values 1
  (Saxe et al. 2014).  Recurrent matrices ``[H, k*H]`` get one orthogonal
  ``[H, H]`` block per gate.
- ``"identity"``: the identity, one block per gate (IRNN; Le et al. 2015).
- ``"normal"``: ``N(0, 1/fan_in)`` entries, so a recurrent ``[H, H]`` matrix has
  spectral radius close to 1 (circular law).
- ``"uniform"``: ``U(-1/sqrt(H), 1/sqrt(H))``, torch.nn's RNN/LSTM/GRU default.
- ``"lecun_normal"``, ``"glorot_uniform"``: as in ``jax.nn.initializers``.
- ``"zeros"``.
- ``"smart_tanh"``: Pascanu et al. 2013's "smart tanh" recurrent init (their code,
  pascanur/trainingRNNs): ``N(0, 0.01^2)`` entries, all but 15 per row zeroed (a
  sparse init in the manner of Sutskever et al. 2013), then rescaled to spectral radius
  0.95 (:func:`sparse_spectral`); one block per gate.
- ``"small_normal"``: ``N(0, 0.01^2)`` entries, their input and output weights.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]


def _blockwise(block_init: Callable[[jax.Array, int, jnp.dtype], jax.Array]) -> Initializer:
    """Lifts an ``[n, n]`` initializer to ``[n, k*n]`` gate-stacked matrices."""

    def init(key, shape, dtype=jnp.float32):
        rows, cols = shape
        if cols % rows:
            raise ValueError(
                f"block-wise initializer needs a [H, k*H] matrix, got shape {shape}; "
                "use it for recurrent weights only"
            )
        keys = jax.random.split(key, cols // rows)
        return jnp.concatenate([block_init(k, rows, dtype) for k in keys], axis=1)

    return init


def _orthogonal_block(key, n, dtype):
    return jax.nn.initializers.orthogonal()(key, (n, n), dtype)


def _identity_block(key, n, dtype):
    del key
    return jnp.eye(n, dtype=dtype)


def _normal(key, shape, dtype=jnp.float32):
    return jax.random.normal(key, shape, dtype) / jnp.sqrt(jnp.asarray(shape[0], dtype))


def _zeros(key, shape, dtype=jnp.float32):
    del key
    return jnp.zeros(shape, dtype)


def sparse_spectral(
    nonzeros_per_row: int = 15, spectral_radius: float = 0.95, scale: float = 0.01
) -> Initializer:
    """A square ``[n, n]`` matrix with ``min(nonzeros_per_row, n)`` ``N(0, scale^2)`` entries
    per row at random columns and the rest zero, rescaled so that its largest eigenvalue
    modulus is ``spectral_radius`` (Pascanu et al. 2013's "smart tanh" with the defaults).

    The spectral radius comes from ``jnp.linalg.eigvals`` (non-symmetric eigenvalues).
    """

    def init(key, shape, dtype=jnp.float32):
        rows, cols = shape
        if rows != cols:
            raise ValueError(f"sparse_spectral needs a square matrix, got shape {shape}")
        k_values, k_columns = jax.random.split(key)
        values = scale * jax.random.normal(k_values, shape, dtype)
        # The columns kept in each row: the first `nonzeros_per_row` of a random permutation.
        rank = jnp.argsort(jnp.argsort(jax.random.uniform(k_columns, shape), axis=1), axis=1)
        matrix = jnp.where(rank < nonzeros_per_row, values, jnp.zeros_like(values))
        radius = jnp.max(jnp.abs(jnp.linalg.eigvals(matrix)))
        return (spectral_radius * matrix / radius).astype(dtype)

    return init


def _small_normal(key, shape, dtype=jnp.float32):
    return 0.01 * jax.random.normal(key, shape, dtype)


def torch_uniform(hidden_size: int) -> Initializer:
    """torch.nn's default: ``U(-1/sqrt(H), 1/sqrt(H))`` for weights and biases."""
    bound = 1.0 / hidden_size**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


NAMES = (
    "orthogonal",
    "identity",
    "normal",
    "uniform",
    "lecun_normal",
    "glorot_uniform",
    "zeros",
    "smart_tanh",
    "small_normal",
)


def resolve(init: str | Initializer, hidden_size: int, *, argument: str) -> Initializer:
    """Returns the initializer for a name (see module doc) or passes a callable through.

    Raises:
      ValueError: naming ``argument`` if the name is unknown.
    """
    if callable(init):
        return init
    table = {
        "orthogonal": _blockwise(_orthogonal_block),
        "identity": _blockwise(_identity_block),
        "normal": _normal,
        "uniform": torch_uniform(hidden_size),
        "lecun_normal": jax.nn.initializers.lecun_normal(),
        "glorot_uniform": jax.nn.initializers.glorot_uniform(),
        "zeros": _zeros,
        "smart_tanh": _blockwise(lambda key, n, dtype: sparse_spectral()(key, (n, n), dtype)),
        "small_normal": _small_normal,
    }
    if init not in table:
        raise ValueError(
            f"{argument}={init!r} is not a known initializer; use one of {NAMES} "
            "or a callable init(key, shape, dtype)"
        )
    return table[init]
