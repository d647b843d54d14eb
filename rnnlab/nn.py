"""Flax NNX front door: thin modules over rnnlab's pure cells and layers.

Every module holds its weights as a pytree of ``nnx.Param`` (the same pytree the
pure functions take) and a static :class:`rnnlab.layers.Layer`; ``__call__``
reads the values and calls ``Layer.apply``, i.e. :func:`rnnlab.unroll`.  So the
modules compute exactly what the pure path computes, and work with ``nnx.jit``,
``nnx.Optimizer`` and orbax (``nnx.state(module)`` holds only ``Param``s).

No RNG state is stored (flax issue #4509): ``rngs`` is used once, at
construction, and dropout in :class:`Stacked` takes ``key=`` at call time.

Modules:

- :class:`LSTM`, :class:`GRU`, :class:`RNN`: one cell unrolled over time
  (:class:`Recurrent` wraps any cell and params, e.g. from :mod:`rnnlab.interop`).
- :class:`Bidirectional`: two of those, merged per step.
- :class:`Stacked`: a deep RNN with inter-layer dropout.
- :class:`SequenceLayer`: any :class:`rnnlab.layers.Layer` with its params.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
from flax import nnx

from rnnlab import cells
from rnnlab.cells import Cell
from rnnlab.cells._gru import gru
from rnnlab.cells._lstm import lstm
from rnnlab.cells._rnn import rnn
from rnnlab.layers import Layer, bidirectional, recurrent, stacked

__all__ = ["GRU", "LSTM", "RNN", "Bidirectional", "Recurrent", "SequenceLayer", "Stacked"]


def _is_variable(node) -> bool:
    return isinstance(node, nnx.Variable)


class SequenceLayer(nnx.Module):
    """An rnnlab :class:`~rnnlab.layers.Layer` with its params as ``nnx.Param``.

    Args:
      layer: the pure layer (static).
      params: its params; plain arrays are wrapped in ``nnx.Param``, and existing
        ``nnx.Param`` leaves are shared, not copied.

    Example::

        >>> import jax.numpy as jnp, torch
        >>> from rnnlab import nn
        >>> from rnnlab.interop import from_torch
        >>> model = nn.SequenceLayer(*from_torch(torch.nn.GRU(3, 8, num_layers=2)))
        >>> model(jnp.ones((4, 10, 3))).shape
        (4, 10, 8)
    """

    def __init__(self, layer: Layer, params):
        self.layer = layer
        self.output_size = layer.output_size
        self.params = nnx.data(
            jax.tree.map(
                lambda leaf: leaf if _is_variable(leaf) else nnx.Param(leaf),
                params,
                is_leaf=_is_variable,
            )
        )
        self.deterministic = False

    def param_values(self):
        """The params as the plain pytree of arrays the pure functions take."""
        return jax.tree.map(lambda variable: variable[...], self.params, is_leaf=_is_variable)

    def initial_carry(self, batch_shape=()):
        """The zero carry for inputs ``[*batch_shape, T, F]``."""
        return self.layer.initial_carry(batch_shape)

    def __call__(
        self,
        xs: jax.Array,
        *,
        carry=None,
        lengths: jax.Array | None = None,
        resets: jax.Array | None = None,
        return_carry: bool = False,
        key: jax.Array | None = None,
        deterministic: bool | None = None,
        unroll: int = 1,
        remat: bool = False,
    ):
        """Runs the layer over ``xs: [..., T, F]``.

        Args:
          xs: inputs, time second-to-last, any leading batch dimensions.
          carry: initial carry (default zeros; see :meth:`initial_carry`).
          lengths: integer ``[...]`` valid lengths; padded outputs are exact zeros
            and the final carry is taken at each sequence's last valid step.
          resets: bool ``[..., T]`` carry resets, as in :func:`rnnlab.unroll`.
          return_carry: also return the final carry.
          key: PRNG key for dropout (only :class:`Stacked` with a rate > 0 uses it).
          deterministic: disable dropout; default the module's ``deterministic``
            attribute, which ``module.eval()`` / ``module.train()`` set.
          unroll, remat: passed to :func:`rnnlab.unroll`.

        Returns:
          ``ys: [..., T, output_size]``, or ``(ys, final_carry)`` if ``return_carry``.
        """
        return self._apply(
            self.layer, xs, carry, lengths, resets, return_carry, key, deterministic, unroll, remat
        )

    def _apply(
        self, layer, xs, carry, lengths, resets, return_carry, key, deterministic, unroll, remat
    ):
        ys, final = layer.apply(
            self.param_values(),
            xs,
            carry=carry,
            lengths=lengths,
            key=key,
            deterministic=self.deterministic if deterministic is None else deterministic,
            resets=resets,
            unroll=unroll,
            remat=remat,
        )
        return (ys, final) if return_carry else ys


class Recurrent(SequenceLayer):
    """One rnnlab :class:`~rnnlab.cells.Cell` unrolled over time, with its params.

    Args:
      cell: the pure cell (static).
      params: its params, e.g. ``cell.init(key, F)`` or from :mod:`rnnlab.interop`.

    Example::

        >>> import jax, jax.numpy as jnp, rnnlab
        >>> from rnnlab import nn
        >>> cell = rnnlab.gru(8)
        >>> model = nn.Recurrent(cell, cell.init(jax.random.key(0), 3))
        >>> model(jnp.ones((4, 10, 3)), reverse=True).shape
        (4, 10, 8)
    """

    def __init__(self, cell: Cell, params):
        super().__init__(recurrent(cell), params)
        self.cell = cell
        self.input_size = (
            cell.input_size(self.param_values()) if cell.input_size is not None else None
        )

    @classmethod
    def create(
        cls, name: str, input_size: int, hidden_size: int, *, rngs: nnx.Rngs, **hyperparameters
    ) -> Recurrent:
        """Any registered cell by name: ``Recurrent.create("lru", 3, 16, rngs=rngs, r_min=0.9)``.

        ``hyperparameters`` go to :func:`rnnlab.cells.make`; one ``params`` key is drawn
        from ``rngs`` and nothing is stored.
        """
        module = cls(*_initialized(cells.make(name, hidden_size, **hyperparameters),
                                   input_size, rngs))  # fmt: skip
        module.input_size = input_size
        return module

    def __call__(
        self,
        xs: jax.Array,
        *,
        carry=None,
        lengths: jax.Array | None = None,
        reverse: bool = False,
        resets: jax.Array | None = None,
        return_carry: bool = False,
        key: jax.Array | None = None,
        deterministic: bool | None = None,
        unroll: int = 1,
        remat: bool = False,
    ):
        """As :meth:`SequenceLayer.__call__`, plus ``reverse``.

        ``reverse=True`` runs each sequence from its last valid step back to step 0
        (outputs stay aligned with the inputs), as ``rnnlab.unroll(reverse=True)``.
        """
        layer = recurrent(self.cell, reverse=reverse) if reverse else self.layer
        return self._apply(
            layer, xs, carry, lengths, resets, return_carry, key, deterministic, unroll, remat
        )


def _initialized(cell: Cell, input_size: int, rngs: nnx.Rngs):
    """``(cell, params)`` with params from one ``rngs.params()`` key; no RNG is kept."""
    return cell, cell.init(rngs.params(), input_size)


class LSTM(Recurrent):
    r"""LSTM layer (Hochreiter & Schmidhuber 1997) over ``[..., T, F]`` inputs.

    Equations, gate order and options are those of :func:`rnnlab.lstm`::

        [i, f, g, o] = x_t W_ih + b_ih + h_{t-1} W_hh + b_hh
        c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g);  h_t = sigmoid(o) * tanh(c_t)

    Params ``weight_ih [F, 4H]``, ``weight_hh [H, 4H]``, ``bias_ih``, ``bias_hh
    [4H]``; carry :class:`rnnlab.LSTMCarry` ``(h, c)``, each ``[..., H]``.

    Args:
      input_size: ``F``.
      hidden_size: ``H``.
      forget_bias: added to the forget-gate bias at init (Gers et al. 2000).
      rngs: ``nnx.Rngs``; one ``params`` key is drawn, nothing is stored.
      **options: ``recurrent_init``, ``recurrent_scale``, ``input_init``,
        ``bias_init``, ``param_dtype``, passed to :func:`rnnlab.lstm`.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab import nn
        >>> model = nn.LSTM(3, 16, rngs=nnx.Rngs(0))
        >>> ys, final = model(jnp.ones((4, 10, 3)), lengths=jnp.array([10, 7, 3, 1]),
        ...                   return_carry=True)
        >>> ys.shape, final.c.shape
        ((4, 10, 16), (4, 16))
    """

    def __init__(
        self, input_size: int, hidden_size: int, forget_bias=1.0, *, rngs: nnx.Rngs, **options
    ):
        super().__init__(
            *_initialized(lstm(hidden_size, forget_bias=forget_bias, **options), input_size, rngs)
        )


class GRU(Recurrent):
    r"""GRU layer (Cho et al. 2014) over ``[..., T, F]`` inputs, torch's equations.

    As :func:`rnnlab.gru`::

        r = sigmoid(x W_ir + b_ir + h W_hr + b_hr);  z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
        n = tanh(x W_in + b_in + r * (h W_hn + b_hn));  h_t = (1 - z) * n + z * h_{t-1}

    Params ``weight_ih [F, 3H]``, ``weight_hh [H, 3H]``, biases ``[3H]``; carry
    ``h: [..., H]``.

    Args:
      input_size: ``F``.
      hidden_size: ``H``.
      rngs: ``nnx.Rngs``; one ``params`` key is drawn, nothing is stored.
      **options: ``recurrent_init``, ``recurrent_scale``, ``input_init``,
        ``bias_init``, ``param_dtype``, passed to :func:`rnnlab.gru`.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab import nn
        >>> nn.GRU(3, 16, rngs=nnx.Rngs(0))(jnp.ones((10, 3))).shape
        (10, 16)
    """

    def __init__(self, input_size: int, hidden_size: int, *, rngs: nnx.Rngs, **options):
        super().__init__(*_initialized(gru(hidden_size, **options), input_size, rngs))


class RNN(Recurrent):
    r"""Elman RNN layer, ``h_t = sigma(x_t W_ih + b_ih + h_{t-1} W_hh + b_hh)``.

    As :func:`rnnlab.rnn`; params ``weight_ih [F, H]``, ``weight_hh [H, H]``,
    biases ``[H]``; carry ``h: [..., H]``.  ``activation="relu"`` with
    ``recurrent_init="identity"`` is the IRNN of Le et al. 2015.

    Args:
      input_size: ``F``.
      hidden_size: ``H``.
      activation: ``"tanh"``, ``"relu"``, ``"linear"`` or ``"sigmoid"``.
      rngs: ``nnx.Rngs``; one ``params`` key is drawn, nothing is stored.
      **options: ``recurrent_init``, ``recurrent_scale``, ``input_init``,
        ``bias_init``, ``param_dtype``, passed to :func:`rnnlab.rnn`.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab import nn
        >>> model = nn.RNN(3, 16, "relu", rngs=nnx.Rngs(0), recurrent_init="identity")
        >>> model(jnp.ones((4, 10, 3))).shape
        (4, 10, 16)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        activation: str = "tanh",
        *,
        rngs: nnx.Rngs,
        **options,
    ):
        super().__init__(
            *_initialized(rnn(hidden_size, activation=activation, **options), input_size, rngs)
        )


def _check_recurrent(module, argument: str) -> None:
    if not isinstance(module, Recurrent):
        raise ValueError(
            f"{argument} must be an rnnlab.nn LSTM, GRU, RNN or Recurrent module, "
            f"got {type(module).__name__}"
        )


class Bidirectional(SequenceLayer):
    """Forward and reverse runs of two recurrent modules, merged per step.

    Delegates to :func:`rnnlab.layers.bidirectional`: the reverse direction starts
    at each sequence's last valid step, as torch's bidirectional RNNs on packed
    sequences do.  Params ``{"forward": ..., "backward": ...}`` share the given
    modules' ``nnx.Param`` objects; carry :class:`rnnlab.layers.BidirectionalCarry`.

    Args:
      forward: an :class:`LSTM`, :class:`GRU`, :class:`RNN` or :class:`Recurrent`.
      backward: another one with the same ``input_size`` (separate weights).
      merge: ``"concat"`` (``[..., T, 2H]``), ``"sum"``, ``"mean"`` or a callable.
      merged_size: the output size of a callable ``merge``.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab import nn
        >>> rngs = nnx.Rngs(0)
        >>> model = nn.Bidirectional(nn.GRU(3, 8, rngs=rngs), nn.GRU(3, 8, rngs=rngs))
        >>> model(jnp.ones((4, 10, 3))).shape
        (4, 10, 16)
    """

    def __init__(
        self,
        forward: Recurrent,
        backward: Recurrent,
        *,
        merge: str | Callable[[jax.Array, jax.Array], jax.Array] = "concat",
        merged_size: int | None = None,
    ):
        _check_recurrent(forward, "forward")
        _check_recurrent(backward, "backward")
        if forward.input_size != backward.input_size:
            raise ValueError(
                f"forward takes {forward.input_size} features but backward takes "
                f"{backward.input_size}; build both with the same input_size"
            )
        layer = bidirectional(forward.cell, backward.cell, merge=merge, merged_size=merged_size)
        super().__init__(layer, {"forward": forward.params, "backward": backward.params})
        self.input_size = forward.input_size


class Stacked(SequenceLayer):
    """Deep RNN: each module consumes the previous one's outputs.

    Delegates to :func:`rnnlab.layers.stacked`.  Inter-layer dropout (torch's
    ``dropout``) applies to every output but the last when ``dropout_rate > 0``
    and the call is not deterministic; it then needs ``key=`` at call time,
    because no RNG state is kept in the module.  ``module.eval()`` sets
    ``deterministic=True``, ``module.train()`` back to ``False``.  Params are a
    tuple sharing the given modules' ``nnx.Param`` objects; the carry is a tuple.

    Args:
      layers: :class:`LSTM`, :class:`GRU`, :class:`RNN`, :class:`Recurrent` or
        :class:`Bidirectional` modules, bottom first; each takes the previous
        one's ``output_size`` features.
      dropout_rate: in ``[0, 1)``.

    Example::

        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab import nn
        >>> rngs = nnx.Rngs(0)
        >>> model = nn.Stacked([nn.LSTM(3, 16, rngs=rngs), nn.LSTM(16, 16, rngs=rngs)],
        ...                    dropout_rate=0.1)
        >>> model(jnp.ones((4, 10, 3)), key=jax.random.key(1)).shape
        (4, 10, 16)
    """

    def __init__(self, layers: Sequence[SequenceLayer], *, dropout_rate=0.0):
        layers = tuple(layers)
        for index, module in enumerate(layers):
            if not isinstance(module, Recurrent | Bidirectional):
                raise ValueError(
                    f"layers[{index}] must be an rnnlab.nn LSTM, GRU, RNN, Recurrent or "
                    f"Bidirectional module, got {type(module).__name__}"
                )
            if index and module.input_size != layers[index - 1].output_size:
                raise ValueError(
                    f"layers[{index}] takes {module.input_size} features but "
                    f"layers[{index - 1}] outputs {layers[index - 1].output_size}; "
                    f"build layers[{index}] with input_size={layers[index - 1].output_size}"
                )
        layer = stacked([module.layer for module in layers], dropout_rate=dropout_rate)
        super().__init__(layer, tuple(module.params for module in layers))
        self.input_size = layers[0].input_size
