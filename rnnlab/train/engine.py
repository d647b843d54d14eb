"""The compiled training engine: ``make_train(config)`` returns pure, vmappable functions.

purejaxrl-style: one optimizer step is a pure function, a chunk of steps is one
``lax.scan``, and a whole run is a scan over chunks with an evaluation after
each, so ``jax.jit(jax.vmap(trainer.train))(keys, hparams)`` trains a sweep in
one program.  Data are sampled on the device inside the loop.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from rnnlab import unrolling
from rnnlab.diagnostics import gradient_statistics
from rnnlab.layers import Layer, bidirectional, recurrent, stacked
from rnnlab.tasks import Batch, Task, make_task
from rnnlab.train import estimation
from rnnlab.train.config import TrainConfig
from rnnlab.unrolling import tree_where

__all__ = [
    "MODELS",
    "OPTIMIZER_HPARAMS",
    "REGULARIZER_HPARAMS",
    "Model",
    "TrainState",
    "Trainer",
    "encoder_decoder_model",
    "init_readout",
    "make_model",
    "make_train",
    "recurrent_model",
]

#: The optimizer's values a sweep may vary; the cell's sweepable hyperparameters
#: (:attr:`rnnlab.cells.CellSpec.sweepable`) join them in ``hparams``.
OPTIMIZER_HPARAMS = ("learning_rate", "clip_norm", "weight_decay", "momentum")
#: Joins ``hparams`` when ``config.pascanu_alpha > 0`` (which compiles Omega in).
REGULARIZER_HPARAMS = ("pascanu_alpha",)


class TrainState(NamedTuple):
    """The whole state of a run: saving it and restoring it resumes bit for bit.

    Attributes:
      params: ``{"cell": cell params, "readout": {"weight": [H, O], "bias": [O]}}``
        (``"cell"`` is a tuple of per-layer params when ``num_layers > 1``).
      opt_state: the optax state of the params raveled into one vector
        (:func:`jax.flatten_util.ravel_pytree`).
      step: int32 scalar, optimizer steps taken.
      key: the run's PRNG key.  It never changes: the minibatch of step ``t`` is drawn
        from ``(key, t)`` (:meth:`Trainer.batch`).
      eval_key: the key of the evaluation sequences of synthetic tasks
        (:meth:`Trainer.eval_batch`); :meth:`Trainer.init` sets it to ``key``, whose
        evaluation stream is independent of its training stream.
      diverged_step: int32 scalar, the first step whose loss or gradient norm was
        non-finite, or -1.  From then on params and opt_state are frozen.
      best_params: the selected params: those of the evaluation with the lowest
        validation loss so far (:meth:`Trainer.select`), or the latest evaluated ones
        when the task has no validation split.  Never selected on the test split.
      best_validation_loss: float32 scalar, that loss (``inf`` before the first
        evaluation and without a validation split).
      best_step: int32 scalar, the step of ``best_params``.  With
        ``config.patience``, params and opt_state freeze once ``step - best_step``
        reaches ``patience * chunk_steps`` (early stopping).
      stream: ``None`` for plain BPTT; else a
        :class:`rnnlab.train.estimation.StreamState`: the gradient estimator's carried
        state and, for a stateful run, the position of each training stream.
    """

    params: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array
    eval_key: jax.Array
    diverged_step: jax.Array
    best_params: Any
    best_validation_loss: jax.Array
    best_step: jax.Array
    stream: Any = None


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A recurrent layer and a linear readout, for one task.

    Attributes:
      layer: the :class:`rnnlab.layers.Layer` (one cell or a stack); its ``step``
        serves per-step generation.
      init: ``init(key) -> params``.
      apply: ``apply(params, inputs [B, T, F], lengths=None) -> outputs``,
        ``[B, O]`` for readout ``"last"`` and ``[B, T, O]`` for ``"every"``.
      initial_carry: ``initial_carry(batch_shape=()) -> carry``.
      step: ``step(params, carry, x [..., F]) -> (carry, outputs [..., O])``, one
        time step including the readout (used for sampling text); ``None`` for
        models that read the whole input first (bidirectional, encoder-decoder).
      apply_batch: ``apply_batch(params, batch) -> outputs``, what the loss and the
        evaluations see; by default ``apply(params, batch.inputs, batch.lengths)``.
        The encoder-decoder decodes teacher-forced from ``batch.targets`` here and
        greedily in ``apply``.
      encoder_decoder: the :class:`rnnlab.seq2seq.EncoderDecoder` of
        ``model="encoder_decoder"`` (its ``greedy_decode`` returns attention weights).
      readout: ``readout(params, y [..., H]) -> outputs [..., O]`` of a recurrent model
        (what the gradient estimators of :mod:`rnnlab.train.estimation` read), else ``None``.
    """

    layer: Layer
    init: Callable
    apply: Callable
    initial_carry: Callable
    step: Callable | None
    apply_batch: Callable | None = None
    encoder_decoder: Any = None
    readout: Callable | None = None

    def __post_init__(self):
        if self.apply_batch is None:
            apply = self.apply

            def apply_batch(params, batch: Batch):
                return apply(params, batch.inputs, batch.lengths)

            object.__setattr__(self, "apply_batch", apply_batch)


def _make_cell(config: TrainConfig, hparams: Mapping[str, jax.Array]):
    """The configured cell, its sweepable hyperparameters taken (traced) from ``hparams``."""
    spec = config.cell_spec
    options = {k: v for k, v in config.cell_options.items() if k not in spec.sweepable}
    options.update({name: hparams[name] for name in spec.sweepable})
    return spec.make(config.hidden_size, **options)


def make_model(config: TrainConfig, task: Task, hparams: Mapping[str, jax.Array]) -> Model:
    """The :class:`Model` of ``config.model`` (:data:`MODELS`) for ``task``.

    The cells are built from ``hparams`` (their sweepable values may be traced).
    """
    return MODELS[config.model](config, task, hparams)


def _last_step(ys: jax.Array, lengths: jax.Array | None, backward_from: int | None):
    """``[..., T, H] -> [..., H]``: the outputs at each sequence's last valid step.

    For a bidirectional layer (``backward_from``: where the backward half of the
    features starts) the backward half is read at step 0, where that direction has
    seen the whole sequence.
    """
    if lengths is None:
        last = ys[..., -1, :]
    else:
        last = jnp.take_along_axis(ys, (lengths - 1)[..., None, None], axis=-2)[..., 0, :]
    if backward_from is None:
        return last
    return jnp.concatenate([last[..., :backward_from], ys[..., 0, backward_from:]], axis=-1)


def init_readout(key: jax.Array, input_size: int, output_size: int, dtype=None) -> dict:
    """A linear readout ``y W + b``: ``W [input_size, output_size]`` drawn
    ``N(0, 1/input_size)`` and ``b = 0``, in ``dtype`` (default: JAX's default float)."""
    options = {} if dtype is None else {"dtype": dtype}
    weight = jax.random.normal(key, (input_size, output_size), **options)
    weight = weight / jnp.sqrt(jnp.asarray(input_size, weight.dtype))
    return {"weight": weight, "bias": jnp.zeros((output_size,), **options)}


def recurrent_model(config: TrainConfig, task: Task, hparams: Mapping[str, jax.Array]) -> Model:
    """One or ``num_layers`` stacked recurrent layers (bidirectional with
    ``config.bidirectional``) and a linear readout.

    The readout is ``y W + b`` with ``W [H, O]`` drawn ``N(0, 1/H)`` and ``b = 0``,
    applied to every step (task readout ``"every"``) or, for readout ``"last"``, to
    the last valid step (:func:`_last_step`) or to all ``T`` steps' outputs
    flattened (``config.sequence_readout="flatten"``, ``W [T H, O]``).
    """
    cells = tuple(_make_cell(config, hparams) for _ in range(config.num_layers))
    if config.bidirectional:
        layers = tuple(bidirectional(cell) for cell in cells)
        backward_from = layers[-1].children[0].output_size
    else:
        layers, backward_from = tuple(recurrent(cell) for cell in cells), None
    layer = layers[0] if len(layers) == 1 else stacked(layers)
    flatten = task.readout == "last" and config.sequence_readout == "flatten"
    hidden = layer.output_size * (task.length if flatten else 1)

    def init(key):
        cell_key, readout_key = jax.random.split(key)
        cell_params = layer.init(cell_key, task.input_size)
        # The readout takes the precision the layer computes in (unroll's dtype policy),
        # not JAX's default float, which is float64 under x64: nothing is promoted.
        dtype = unrolling._compute_dtype(cell_params, jnp.zeros((), jnp.float32))
        return {
            "cell": cell_params,
            "readout": init_readout(readout_key, hidden, task.output_size, dtype),
        }

    def readout(params, ys):
        return ys @ params["readout"]["weight"] + params["readout"]["bias"]

    def apply(params, inputs, lengths=None):
        ys, _ = layer.apply(params["cell"], inputs, lengths=lengths)
        if flatten:
            ys = ys.reshape(*ys.shape[:-2], -1)
        elif task.readout == "last":
            ys = _last_step(ys, lengths, backward_from)
        return readout(params, ys)

    def step(params, carry, x):
        carry, y = layer.step(params["cell"], carry, x)
        return carry, readout(params, y)

    return Model(
        layer, init, apply, layer.initial_carry, None if layer.step is None else step,
        readout=readout,
    )  # fmt: skip


def encoder_decoder_model(
    config: TrainConfig, task: Task, hparams: Mapping[str, jax.Array]
) -> Model:
    """:func:`rnnlab.seq2seq.encoder_decoder` with ``config.cell`` as the encoder's two
    directions and the decoder, ``hidden_size`` units each, and ``config.attention``.

    ``apply_batch`` is teacher-forced: the decoder reads
    ``shift_right(batch.targets, task.extras["bos"])``; ``apply(params, inputs,
    lengths)`` decodes greedily for ``task.extras["target_steps"]`` steps (tokens
    after ``extras["eos"]`` become ``padding_label``) and returns the logits.
    """
    from rnnlab import seq2seq

    network = seq2seq.encoder_decoder(
        config.hidden_size,
        attention=config.attention,
        encoder_cell=_make_cell(config, hparams),
        decoder_cell=_make_cell(config, hparams),
    )
    start, end = task.extras["bos"], task.extras.get("eos")
    pad = 0 if task.padding_label is None else task.padding_label
    steps = task.extras.get("target_steps", task.length)

    def init(key):
        return network.init(key, task.input_size, task.output_size)

    def apply(params, inputs, lengths=None):
        _, logits, _ = network.greedy_decode(
            params, inputs, lengths, max_length=steps, start_token=start, end_token=end,
            pad_token=pad,
        )  # fmt: skip
        return logits

    def apply_batch(params, batch: Batch):
        decoder_inputs = seq2seq.shift_right(batch.targets, start)
        logits, _ = network.apply(params, batch.inputs, batch.lengths, decoder_inputs)
        return logits

    encoder = network.encoder
    return Model(encoder, init, apply, encoder.initial_carry, None, apply_batch, network)


#: Model families by :attr:`TrainConfig.model`.
MODELS: dict[str, Callable[[TrainConfig, Task, Mapping[str, jax.Array]], Model]] = {
    "recurrent": recurrent_model,
    "encoder_decoder": encoder_decoder_model,
}


def learning_rate_factor(config: TrainConfig, count: jax.Array) -> jax.Array:
    """The schedule's multiplier of ``hparams["learning_rate"]`` at optimizer step ``count``.

    Linear warm-up over ``warmup_steps``, then ``"constant"`` 1, ``"cosine"``
    ``(1 + cos(pi p))/2`` or ``"linear"`` ``1 - p`` with ``p`` the fraction of the
    remaining steps done.
    """
    count = jnp.asarray(count, jnp.float32)
    warmup = config.warmup_steps
    factor = jnp.minimum(1.0, (count + 1.0) / warmup) if warmup else jnp.float32(1.0)
    progress = jnp.clip((count - warmup) / max(config.steps - warmup, 1), 0.0, 1.0)
    if config.schedule == "cosine":
        factor = factor * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    elif config.schedule == "linear":
        factor = factor * (1.0 - progress)
    return factor


def make_optimizer(config: TrainConfig, hparams: Mapping[str, jax.Array]):
    """The optax transformation for ``config.optimizer`` with array hyperparameters.

    Built inside the traced function, so ``learning_rate``, ``momentum`` and
    ``weight_decay`` may be vmapped.  Clipping is applied before (see
    :meth:`Trainer.train_chunk`).
    """

    def learning_rate(count):
        return hparams["learning_rate"] * learning_rate_factor(config, count)

    if config.optimizer == "adamw":
        return _standard_promotion(optax.adamw(learning_rate, weight_decay=hparams["weight_decay"]))
    if config.optimizer == "sgd":
        base = optax.sgd(learning_rate, momentum=hparams["momentum"])
    elif config.optimizer == "adam":
        base = optax.adam(learning_rate)
    else:
        base = optax.rmsprop(learning_rate, momentum=hparams["momentum"])
    return _standard_promotion(
        optax.chain(optax.add_decayed_weights(hparams["weight_decay"]), base)
    )


def _standard_promotion(
    transformation: optax.GradientTransformation,
) -> optax.GradientTransformation:
    """``transformation`` with its update traced under standard dtype promotion.

    optax mixes its ``int32`` step count with Python floats (Adam's bias correction
    ``1 - b1**count``), which ``jax_numpy_dtype_promotion="strict"`` rejects; the exemption
    covers optax's code only, so training runs for a user who turns strict promotion on.
    """

    def update(updates, state, params=None):
        with jax.numpy_dtype_promotion("standard"):
            return transformation.update(updates, state, params)

    return optax.GradientTransformation(transformation.init, update)


def _as_key(key: jax.Array) -> jax.Array:
    """Accepts new-style typed keys and raw ``uint32[2]`` keys."""
    key = jnp.asarray(key) if not hasattr(key, "dtype") else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


#: The independent streams of a run (see :func:`draw_key`); ``STREAM_STREAM`` starts
#: the stateful estimators' data stream (``config.stateful``).
INIT_STREAM, DATA_STREAM, EVAL_STREAM, STREAM_STREAM = 0, 1, 2, 3


def draw_key(key: jax.Array, stream: int, step=None) -> jax.Array:
    """The key of ``stream`` (and ``step``) of the run key ``key``: ``fold_in``, no split.

    ``key`` may be typed or raw ``uint32[2]`` data, of the run's PRNG implementation.
    Step ``t`` of the data stream draws from ``fold_in(fold_in(key, DATA_STREAM), t)``:
    a pure function of the run key and the step, so any step's minibatch can be drawn
    again without replaying the run, and the training loop carries no key.

    (A Philox-2x32 variant cut the training program's XLA kernels from 377 to 142, but
    the form of it that compiles under sharding, a 32x32-bit high product from 16-bit
    limbs, made LLVM take 283 s instead of 19 s on a 7-configuration vmapped sweep, so
    the draws stay on JAX's default threefry.)
    """
    drawn = jax.random.fold_in(_as_key(key), stream)
    if step is not None:
        drawn = jax.random.fold_in(drawn, step)
    return drawn


def _check_hparams(names: tuple[str, ...], hparams: Mapping[str, Any]) -> None:
    missing = [name for name in names if name not in hparams]
    unknown = [name for name in hparams if name not in names]
    if missing or unknown:
        raise ValueError(
            f"hparams must have exactly the keys {names}; missing {missing}, "
            f"unknown {unknown}.  Start from trainer.default_hparams()"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
    """The pure functions of one training configuration (see :func:`make_train`)."""

    config: TrainConfig
    task: Task

    @property
    def hparam_names(self) -> tuple[str, ...]:
        """The keys of ``hparams``: :data:`OPTIMIZER_HPARAMS`, the cell's sweepable ones, then
        :data:`REGULARIZER_HPARAMS` if ``config.pascanu_alpha > 0``."""
        names = OPTIMIZER_HPARAMS + self.config.cell_spec.sweepable
        return names + REGULARIZER_HPARAMS if self.config.pascanu_alpha else names

    def default_hparams(self) -> dict[str, jax.Array]:
        """The config's defaults as float32 scalars; ``clip_norm`` is ``inf`` when off.

        The cell's sweepable hyperparameters come from ``config.cell_options`` or, where
        absent, the factory's defaults.
        """
        config = self.config
        spec = config.cell_spec
        values = {
            "learning_rate": config.learning_rate,
            "clip_norm": float("inf") if config.clip_norm is None else config.clip_norm,
            "weight_decay": config.weight_decay,
            "momentum": config.resolved_momentum,
        }
        for name in spec.sweepable:
            values[name] = config.cell_options.get(name, spec.defaults[name])
        if config.pascanu_alpha:
            values["pascanu_alpha"] = config.pascanu_alpha
        return {name: jnp.asarray(value, jnp.float32) for name, value in values.items()}

    def model(self, hparams: Mapping[str, jax.Array]) -> Model:
        return make_model(self.config, self.task, hparams)

    def init(self, key: jax.Array, hparams: Mapping[str, jax.Array]) -> TrainState:
        """A fresh state: model params from ``key`` and the init values in ``hparams``."""
        _check_hparams(self.hparam_names, hparams)
        key = _as_key(key)
        model = self.model(hparams)
        params = model.init(draw_key(key, INIT_STREAM))
        opt_state = make_optimizer(self.config, hparams).init(ravel_pytree(params)[0])
        stream_key = draw_key(key, STREAM_STREAM)
        return TrainState(
            params=params,
            opt_state=opt_state,
            step=jnp.zeros((), jnp.int32),
            key=key,
            eval_key=key,
            diverged_step=jnp.full((), -1, jnp.int32),
            best_params=params,
            best_validation_loss=jnp.full((), jnp.inf, jnp.float32),
            best_step=jnp.zeros((), jnp.int32),
            stream=estimation.init_stream(self.config, self.task, model, params, stream_key),
        )

    def _loss(self, model: Model, params, batch: Batch, step: jax.Array) -> jax.Array:
        loss = self.task.loss(model.apply_batch(params, batch), batch)
        return self._inject_nan(loss, step)

    def _inject_nan(self, tree, step: jax.Array):
        if self.config.inject_nan_at_step is None:
            return tree
        factor = jnp.where(step == self.config.inject_nan_at_step, jnp.nan, 1.0)
        return jax.tree.map(lambda leaf: leaf * factor.astype(leaf.dtype), tree)

    def train_step(self, state: TrainState, hparams: Mapping[str, jax.Array]):
        """One optimizer step on a fresh minibatch.

        The gradient is BPTT through :func:`rnnlab.unroll`, or ``config.gradient``'s
        estimator on the minibatch or the stream's next chunk
        (:mod:`rnnlab.train.estimation`); ``pascanu_alpha > 0`` adds ``alpha grad
        Omega``.  Gradients are clipped by global norm (Pascanu et al. 2013, Alg. 1: if
        ``||g|| > tau`` then ``g <- tau g / ||g||``).  If the loss or ``||g||`` is
        non-finite, or the run diverged earlier, params, optimizer and stream state are
        kept (``jnp.where``) and ``diverged_step`` records the first such step.

        The optimizer works on the params raveled into one vector
        (:func:`jax.flatten_util.ravel_pytree`): every optimizer here is elementwise,
        so this computes the same update as per-leaf optax, in a handful of compiled
        kernels instead of several per parameter array (``make bench``, section
        ``compile``).

        Returns:
          ``(state, metrics)`` with scalar ``loss``, ``grad_norm`` (before
          clipping), ``clipped`` and ``finite``.
        """
        model = self.model(hparams)
        optimizer = make_optimizer(self.config, hparams)
        batch_key = draw_key(state.key, DATA_STREAM, state.step)  # as in Trainer.batch
        if state.stream is None:
            batch = self.task.sample(batch_key, self.config.batch_size)
            loss, grads = jax.value_and_grad(functools.partial(self._loss, model))(
                state.params, batch, state.step
            )
        else:
            loss, grads, stream, chunk, carry = estimation.estimated_gradient(
                self.config, self.task, model, state.params, state.stream, batch_key
            )
            loss, grads = self._inject_nan((loss, grads), state.step)
        if self.config.pascanu_alpha:
            if state.stream is None:
                chunk, carry = estimation.minibatch_chunk(self.task, batch), None
            grads = estimation.add_pascanu_gradient(
                self.task, model, state.params, grads, chunk, carry, hparams["pascanu_alpha"]
            )
        flat_params, unravel = ravel_pytree(state.params)
        flat_grads, _ = ravel_pytree(grads)
        statistics = gradient_statistics(flat_grads, hparams["clip_norm"])
        norm, clipped = statistics["global_norm"], statistics["clipped"]
        scale = jnp.where(clipped, hparams["clip_norm"] / norm, 1.0)
        flat_grads = flat_grads * scale.astype(flat_grads.dtype)
        updates, opt_state = optimizer.update(flat_grads, state.opt_state, flat_params)
        finite = jnp.isfinite(loss) & jnp.isfinite(norm)
        healthy = state.diverged_step < 0
        keep = finite & healthy & ~self.stopped(state)
        state = TrainState(
            params=unravel(jnp.where(keep, flat_params + updates, flat_params)),
            opt_state=tree_where(keep, opt_state, state.opt_state),
            step=state.step + 1,
            key=state.key,
            eval_key=state.eval_key,
            diverged_step=jnp.where(healthy & ~finite, state.step, state.diverged_step),
            best_params=state.best_params,
            best_validation_loss=state.best_validation_loss,
            best_step=state.best_step,
            stream=None if state.stream is None else tree_where(keep, stream, state.stream),
        )
        return state, {"loss": loss, "grad_norm": norm, "clipped": clipped, "finite": finite}

    def train_chunk(self, state: TrainState, hparams: Mapping[str, jax.Array]):
        """``config.chunk_steps`` steps as one ``lax.scan``; metrics are ``[chunk_steps]``."""
        return jax.lax.scan(
            lambda s, _: self.train_step(s, hparams), state, length=self.config.chunk_steps
        )

    def batch(self, state: TrainState) -> Batch:
        """The minibatch that :meth:`train_step` trains ``state`` on.

        ``batch_size`` fresh sequences drawn with ``draw_key(state.key, DATA_STREAM,
        state.step)``: a pure function of the run's key and the step, so any step's data
        can be drawn again without replaying the run.
        """
        key = draw_key(state.key, DATA_STREAM, state.step)
        return self.task.sample(key, self.config.batch_size)

    def eval_batch(self, key: jax.Array) -> Batch:
        """The held-out split, or ``eval_batch_size`` sequences drawn from ``key``."""
        if self.task.test_set is not None:
            return self.task.test_set()
        return self.task.sample(draw_key(key, EVAL_STREAM), self.config.eval_batch_size)

    def evaluate(self, state: TrainState, hparams: Mapping[str, jax.Array], *, key: jax.Array):
        """Loss and metric on the held-out split, or on ``eval_batch_size`` fresh sequences.

        Returns:
          ``{"loss": scalar, task.metric_name: scalar}``.
        """
        return self._evaluate_on(state, hparams, self.eval_batch(key))

    def _evaluate_on(self, state: TrainState, hparams, batch: Batch):
        return self.evaluate_batch(state.params, hparams, batch)

    def evaluate_batch(self, params, hparams: Mapping[str, jax.Array], batch: Batch):
        """``{"loss": scalar, task.metric_name: scalar}`` of ``params`` on ``batch``."""
        task = self.task
        outputs = self.model(hparams).apply_batch(params, batch)
        return {"loss": task.loss(outputs, batch), task.metric_name: task.metric(outputs, batch)}

    def select(self, state: TrainState, hparams: Mapping[str, jax.Array]):
        """Model selection after a chunk, on the validation split (never on test).

        Where the validation loss is below ``best_validation_loss``, ``best_params``,
        ``best_validation_loss`` and ``best_step`` take the current values
        (``jnp.where``, so it vmaps).  Without a validation split the latest params
        are selected.

        Returns:
          ``(state, metrics)``: ``{"validation_loss", "validation_metric"}``, or
          ``{}`` without a validation split.
        """
        task = self.task
        if task.validation_set is None:
            return state._replace(best_params=state.params, best_step=state.step), {}
        scores = self.evaluate_batch(state.params, hparams, task.validation_set())
        loss = scores["loss"].astype(jnp.float32)
        improved = loss < state.best_validation_loss
        state = state._replace(
            best_params=tree_where(improved, state.params, state.best_params),
            best_validation_loss=jnp.where(improved, loss, state.best_validation_loss),
            best_step=jnp.where(improved, state.step, state.best_step),
        )
        return state, {"validation_loss": loss, "validation_metric": scores[task.metric_name]}

    def stopped(self, state: TrainState) -> jax.Array:
        """Whether early stopping has frozen the run: ``config.patience`` evaluations
        (``patience * chunk_steps`` steps) since the best validation loss."""
        if self.config.patience is None:
            return jnp.zeros((), bool)
        return state.step - state.best_step >= self.config.patience * self.config.chunk_steps

    def train(self, key: jax.Array, hparams: Mapping[str, jax.Array]):
        """The whole run as one pure function: nested scans over chunks and steps.

        Every evaluation uses the same sequences (``state.eval_key`` is fixed), so they
        are drawn once, before the loop.

        Returns:
          ``(state, history)``; ``history`` has ``[num_chunks]`` arrays ``step``,
          ``train_loss`` (chunk mean), ``test_loss``, ``test_metric``, ``grad_norm``
          (chunk mean), ``clip_rate``, with a validation split also
          ``validation_loss`` and ``validation_metric``, and scalars ``diverged``,
          ``diverged_step``, ``stopped`` (early stopping), ``final_test_loss`` and
          ``final_test_metric``: the test scores of ``state.best_params``, the
          best-validation params (the last ones without a validation split), and
          with a validation split ``best_step`` and ``best_validation_loss``.
        """
        state = self.init(key, hparams)
        eval_batch = self.eval_batch(state.eval_key)

        def chunk(state, _):
            state, metrics = self.train_chunk(state, hparams)
            evals = self._evaluate_on(state, hparams, eval_batch)
            state, validation = self.select(state, hparams)
            return state, {**summarize_chunk(self.task, state, metrics, evals), **validation}

        state, history = jax.lax.scan(chunk, state, length=self.config.num_chunks)
        history["diverged"] = state.diverged_step >= 0
        history["diverged_step"] = state.diverged_step
        history["stopped"] = self.stopped(state)
        if self.task.validation_set is None:
            history["final_test_loss"] = history["test_loss"][-1]
            history["final_test_metric"] = history["test_metric"][-1]
        else:
            # best_params are some chunk's params, whose test scores that chunk recorded
            # (none if no validation loss was finite: then nan).
            at_best = history["step"] == state.best_step
            for name in ("loss", "metric"):
                scores = history[f"test_{name}"]
                history[f"final_test_{name}"] = jnp.where(
                    jnp.any(at_best), scores[jnp.argmax(at_best)], jnp.nan
                ).astype(scores.dtype)
            history["best_step"] = state.best_step
            history["best_validation_loss"] = state.best_validation_loss
        return state, history


def summarize_chunk(task: Task, state: TrainState, metrics, evals) -> dict[str, jax.Array]:
    """One history row: chunk means of the step metrics, and the evaluation."""
    return {
        "step": state.step,
        "train_loss": jnp.mean(metrics["loss"]),
        "test_loss": evals["loss"],
        "test_metric": evals[task.metric_name],
        "grad_norm": jnp.mean(metrics["grad_norm"]),
        "clip_rate": jnp.mean(metrics["clipped"].astype(jnp.float32)),
    }


def make_train(config: TrainConfig) -> Trainer:
    """Builds the task and returns the :class:`Trainer` of ``config``.

    Example::

        trainer = make_train(TrainConfig(task="adding", length=100, steps=3000))
        hparams = trainer.default_hparams()
        keys = jax.random.split(jax.random.key(0), 4)
        batched = jax.tree.map(lambda v: jnp.full((4,), v), hparams)
        state, history = jax.jit(jax.vmap(trainer.train))(keys, batched)
    """
    task = make_task(config.task, config.length, **config.task_options)
    _check_model_fits_task(config, task)
    trainer = Trainer(config=config, task=task)
    if estimation.uses_estimator(config) or config.pascanu_alpha:
        model = trainer.model(trainer.default_hparams())
        params = jax.eval_shape(model.init, jax.random.key(0))
        estimation.check_gradient(config, task, model, params)
    return trainer


def _check_model_fits_task(config: TrainConfig, task: Task) -> None:
    """The config's model options that depend on the task (ValueError naming the option)."""
    if task.readout != "last":
        for name, value in (("bidirectional", True), ("sequence_readout", "flatten")):
            if getattr(config, name) == value:
                raise ValueError(
                    f"{name}={value!r} needs a task with one prediction per sequence (readout "
                    f"'last'); {task.name!r} predicts at every step"
                )
    if config.model == "encoder_decoder" and "bos" not in task.extras:
        raise ValueError(
            f"model='encoder_decoder' needs a sequence-to-sequence task (one with "
            f"extras['bos'], e.g. 'translation'); {task.name!r} is not one"
        )
    if config.patience is not None and task.validation_set is None:
        raise ValueError(
            f"patience={config.patience} stops on the validation loss, but task {task.name!r} "
            "has no validation split"
        )
