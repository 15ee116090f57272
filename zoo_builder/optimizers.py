"""Per-network optimizers for population training, built from optax.

Learning rate, weight decay and momentum are injected per network
(`optax.inject_hyperparams`), so one compiled program trains networks with
different hyper-parameters; a `MIXED` group also lets each network use its own
optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from zoo_builder.config import OPTIMIZERS

MIXED = "mixed"  # the optimizer of a group whose networks each use their own (see make_group_optimizer)



def _with_l2(opt_fn):
    def make(learning_rate, weight_decay, momentum):
        del momentum
        return optax.chain(optax.add_decayed_weights(weight_decay), opt_fn(learning_rate))

    return make


def _momentum(learning_rate, weight_decay, momentum):
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.sgd(learning_rate, momentum=momentum))


def _adamw(learning_rate, weight_decay, momentum):
    del momentum
    return optax.adamw(learning_rate, weight_decay=weight_decay)


# L2 regularisation is coupled (added to the gradient) except for adamw, where it is decoupled.
OPTIMIZER_FACTORIES: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": _with_l2(optax.sgd),
    "momentum": _momentum,
    "adam": _with_l2(optax.adam),
    "adamw": _adamw,
    "rmsprop": _with_l2(optax.rmsprop),
}


def make_optimizer(name: str) -> optax.GradientTransformation:
    """The optimizer `name` with learning rate, weight decay and momentum injectable per network."""
    return optax.inject_hyperparams(OPTIMIZER_FACTORIES[name])(
        learning_rate=0.0, weight_decay=0.0, momentum=0.0)


def _set_hyperparams(opt_state, net):
    hp = dict(opt_state.hyperparams)
    hp.update(learning_rate=net.learning_rate, weight_decay=net.weight_decay, momentum=net.momentum)
    return opt_state._replace(hyperparams=hp)


class GroupOptimizer(NamedTuple):
    """``init(params, net) -> state`` and ``update(grads, state, params, net) -> (updates, state)``."""

    init: Callable
    update: Callable


def make_group_optimizer(name: str) -> GroupOptimizer:
    """The optimizer of one network of a group, with its hyper-parameters injected.

    For ``name == MIXED`` every network carries the state of each optax optimizer and
    its own `optimizer` index selects whose update it applies. The unused updates cost
    elementwise work, but one compiled program then serves every optimizer of a shape
    bucket, which on a CPU saves far more compile time than it costs.
    """
    if name != MIXED:
        opt = make_optimizer(name)
        return GroupOptimizer(
            init=lambda params, net: _set_hyperparams(opt.init(params), net),
            update=lambda grads, state, params, net: opt.update(grads, state, params),
        )
    opts = [make_optimizer(n) for n in OPTIMIZERS]

    def init(params, net):
        return tuple(_set_hyperparams(o.init(params), net) for o in opts)

    def update(grads, states, params, net):
        results = [o.update(grads, s, params) for o, s in zip(opts, states, strict=True)]
        updates = results[0][0]
        for k, (u, _) in enumerate(results[1:], start=1):
            updates = jax.tree.map(lambda acc, new, k=k: jnp.where(net.optimizer == k, new, acc), updates, u)
        return updates, tuple(new_state for _, new_state in results)

    return GroupOptimizer(init, update)


