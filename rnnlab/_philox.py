"""Philox-2x32-10 as a JAX PRNG implementation written with plain integer ops.

The counter-based generator of Salmon et al. 2011 ("Parallel random numbers: as easy
as 1, 2, 3"), key 32 bits, counter 64 bits, ten rounds of::

    hi, lo = mulhilo(0xD256D193, x0)
    x0, x1 = hi ^ x1 ^ k, lo
    k = k + 0x9E3779B9

:data:`PHILOX` gives bit for bit the streams of JAX's own ``impl="philox2x32"`` (the
same seed, split, fold_in and random_bits; tested).  It exists because JAX lowers
``lax.mulhi`` to an op that its sharding partitioner cannot convert (jax 0.10.2: "Unable
to convert MHLO to StableHLO" for any ``NamedSharding``), so ``philox2x32`` keys fail
inside a sharded sweep; here the high half of the 32x32-bit product is assembled from
16-bit limbs.  Why Philox rather than JAX's default threefry: see
:data:`rnnlab.train.engine.DRAW_IMPL`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.random import define_prng_impl

__all__ = ["PHILOX", "philox2x32"]

_MULTIPLIER = 0xD256D193
_WEYL = 0x9E3779B9
_ROUNDS = 10
_LOW16 = np.uint32(0xFFFF)
_SIXTEEN = np.uint32(16)


def _u32(value) -> np.uint32:
    return np.uint32(value & 0xFFFFFFFF)


def _mulhi(x: jax.Array, constant: int) -> jax.Array:
    """The high 32 bits of the 64-bit product ``x * constant`` (uint32), from 16-bit limbs."""
    c0, c1 = _u32(constant & 0xFFFF), _u32(constant >> 16)
    x0, x1 = x & _LOW16, lax.shift_right_logical(x, _SIXTEEN)
    p00, p01, p10, p11 = x0 * c0, x0 * c1, x1 * c0, x1 * c1
    middle = lax.shift_right_logical(p00, _SIXTEEN) + (p01 & _LOW16) + (p10 & _LOW16)
    return (
        p11
        + lax.shift_right_logical(p01, _SIXTEEN)
        + lax.shift_right_logical(p10, _SIXTEEN)
        + lax.shift_right_logical(middle, _SIXTEEN)
    )


def philox2x32(key: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Philox-2x32-10 of the counter ``(x0, x1)`` under ``key``; uint32, broadcast together."""
    shape = jnp.broadcast_shapes(jnp.shape(key), jnp.shape(x0), jnp.shape(x1))
    # The round keys are vectors, so XLA fuses them into the rounds' kernel.
    key = jnp.broadcast_to(jnp.asarray(key, jnp.uint32), shape)
    x0 = jnp.broadcast_to(jnp.asarray(x0, jnp.uint32), shape)
    x1 = jnp.broadcast_to(jnp.asarray(x1, jnp.uint32), shape)
    for round_index in range(_ROUNDS):
        round_key = key + _u32(round_index * _WEYL)
        x0, x1 = _mulhi(x0, _MULTIPLIER) ^ x1 ^ round_key, x0 * _u32(_MULTIPLIER)
    return x0, x1


def _counters(shape) -> tuple[jax.Array, jax.Array]:
    """``(hi, lo)`` words of the row-major element index of ``shape`` (JAX's counter)."""
    size = int(np.prod(shape, dtype=np.int64))
    if size >= 2**32:
        raise NotImplementedError(f"at most 2^32 random values per draw, got shape {shape}")
    low = lax.iota(jnp.uint32, size).reshape(shape)
    return jnp.zeros(shape, jnp.uint32), low


def _seed(seed: jax.Array) -> jax.Array:
    seed = jnp.asarray(seed)
    if seed.shape or not jnp.issubdtype(seed.dtype, jnp.integer):
        raise TypeError(f"PRNG key seed must be an integer scalar; got {seed!r}")
    high = (
        lax.shift_right_logical(seed, jnp.asarray(32, seed.dtype)).astype(jnp.uint32)
        if seed.dtype.itemsize > 4
        else jnp.zeros((), jnp.uint32)
    )
    low = seed.astype(jnp.uint32)
    return philox2x32(jnp.uint32(0), high, low)[0][None]


def _split(key: jax.Array, shape) -> jax.Array:
    hi, lo = _counters(tuple(shape))
    return philox2x32(key[0], hi, lo)[0][..., None]


def _fold_in(key: jax.Array, data) -> jax.Array:
    return philox2x32(key[0], jnp.uint32(0), jnp.asarray(data).astype(jnp.uint32))[0][None]


def _random_bits(key: jax.Array, bit_width: int, shape) -> jax.Array:
    if bit_width not in (8, 16, 32, 64):
        raise TypeError(f"requires 8-, 16-, 32- or 64-bit field width, got {bit_width}")
    hi, lo = _counters(tuple(shape))
    out0, out1 = philox2x32(key[0], hi, lo)
    if bit_width == 64:
        wide = jnp.uint64
        return lax.shift_left(out0.astype(wide), jnp.asarray(32, wide)) | out1.astype(wide)
    bits = out0 ^ out1
    return bits if bit_width == 32 else bits.astype(jnp.dtype(f"uint{bit_width}"))


#: The implementation, for ``jax.random.key(seed, impl=PHILOX)`` and
#: ``jax.random.wrap_key_data(data, impl=PHILOX)``; keys are ``uint32[1]``.
PHILOX = define_prng_impl(
    key_shape=(1,),
    seed=_seed,
    split=_split,
    random_bits=_random_bits,
    fold_in=_fold_in,
    name="rnnlab_philox2x32",
    tag="rphx2",
)
