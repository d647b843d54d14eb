"""rnnlab._philox: Philox-2x32-10 from integer ops, against published vectors and JAX's own."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnlab._philox import PHILOX, philox2x32

WORD = st.integers(0, 2**32 - 1)


def _numpy_philox(key: int, x0: int, x1: int) -> tuple[int, int]:
    """Salmon et al. 2011, Philox-2x32-10, transcribed with Python's exact integers."""
    for _ in range(10):
        product = 0xD256D193 * x0
        x0, x1 = ((product >> 32) ^ x1 ^ key) & 0xFFFFFFFF, product & 0xFFFFFFFF
        key = (key + 0x9E3779B9) & 0xFFFFFFFF
    return x0, x1


def test_known_answers_of_random123():
    """Oracle: the known-answer vectors shipped with Random123 (kat_vectors, philox2x32 10)."""
    vectors = [
        ((0x00000000, 0x00000000, 0x00000000), (0xFF1DAE59, 0x6CD10DF2)),
        ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0x2C3F628B, 0xAB4FD7AD)),
        ((0x13198A2E, 0x243F6A88, 0x85A308D3), (0xDD7CE038, 0xF62A4C12)),
    ]
    for (key, x0, x1), expected in vectors:
        got = philox2x32(np.uint32(key), np.uint32(x0), np.uint32(x1))
        assert (int(got[0]), int(got[1])) == expected
        assert _numpy_philox(key, x0, x1) == expected


@given(st.lists(st.tuples(WORD, WORD, WORD), min_size=1, max_size=16))
def test_blocks_match_exact_integer_transcription(blocks):
    """Oracle: the rounds in Python integers (the 64-bit product exactly, no 16-bit limbs)."""
    key, x0, x1 = (np.array(column, np.uint32) for column in zip(*blocks, strict=True))
    got0, got1 = jax.jit(philox2x32)(key, x0, x1)
    expected = np.array([_numpy_philox(*block) for block in blocks], np.uint32)
    np.testing.assert_array_equal(np.asarray(got0), expected[:, 0])
    np.testing.assert_array_equal(np.asarray(got1), expected[:, 1])


@given(st.integers(0, 2**31 - 1), WORD)
def test_streams_equal_jax_philox2x32(seed, data):
    """Oracle: JAX's built-in ``impl="philox2x32"`` (lax.mulhi): seed, split, fold_in and
    every draw agree bit for bit."""
    ours, theirs = jax.random.key(seed, impl=PHILOX), jax.random.key(seed, impl="philox2x32")

    def streams(key):
        folded = jax.random.fold_in(key, np.uint32(data))
        return (
            jax.random.key_data(key),
            jax.random.key_data(jax.random.split(key, 3)),
            jax.random.key_data(folded),
            jax.random.bits(folded, (5,), jnp.uint32),
            jax.random.bits(folded, (3,), jnp.uint8),
            jax.random.uniform(folded, (2, 3)),
            jax.random.normal(key, (4,)),
            jax.random.randint(key, (4,), 0, 10),
        )

    for a, b in zip(streams(ours), streams(theirs), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_64_bit_draws_and_bad_seeds():
    """Oracle: JAX's philox2x32 for 64-bit words; a non-integer seed raises TypeError."""
    with jax.enable_x64(True):
        ours = jax.random.bits(jax.random.key(3, impl=PHILOX), (4,), jnp.uint64)
        theirs = jax.random.bits(jax.random.key(3, impl="philox2x32"), (4,), jnp.uint64)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
        big = 2**40 + 5
        np.testing.assert_array_equal(
            np.asarray(jax.random.key_data(jax.random.key(big, impl=PHILOX))),
            np.asarray(jax.random.key_data(jax.random.key(big, impl="philox2x32"))),
        )
    with pytest.raises(TypeError, match="integer"):
        jax.random.key(1.5, impl=PHILOX)
