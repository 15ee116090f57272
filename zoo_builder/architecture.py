"""Architecture specs and the canonical parameter format every package reads.

A network is an `ArchSpec` plus its parameters as a list of layers, each a dict
``{"kernel": array, "bias": array}`` (see docs/parameters.md):

* MLP: the input image is flattened in (H, W, C) row-major order; layer ``i`` has
  ``kernel`` of shape (fan_in, fan_out) and ``bias`` (fan_out,), the last layer is
  the classifier head.
* CNN (Small CNN Zoo style): ``depth`` conv layers with 3x3 kernels in HWIO order
  ``(k, k, c_in, c_out)``, stride 2, each followed by the activation; then global
  average pooling and a dense head ``(c_last, num_classes)``. The padding is the
  spec's: SAME (zoobench's own zoos) or VALID (Keras' default, which the Small
  CNN Zoo was trained with). Global average pooling makes the head independent
  of the last feature map's size, so parameter shapes do not depend on padding;
  the function does.

The forward pass works unchanged on parameters zero-padded to wider hidden layers
(padded units have zero incoming and outgoing weights), which the population
trainer relies on.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

FAMILIES = ("mlp", "cnn")
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "sigmoid": jax.nn.sigmoid,
    "leaky_relu": jax.nn.leaky_relu,
}
ACTIVATION_NAMES = tuple(ACTIVATIONS)
KERNEL_SIZE = 3
STRIDE = 2
# Conv padding as XLA and Keras name it: SAME pads so that out = ceil(in / stride);
# VALID does not pad, out = floor((in - k) / stride) + 1.
PADDINGS = ("SAME", "VALID")
DEFAULT_PADDING = "SAME"
# Limits of the zoo's design space; also the shape at which initial weights are drawn,
# so a network's initial weights do not depend on how wide its training bucket is.
DEPTH_RANGE = {"mlp": (1, 4), "cnn": (2, 4)}
WIDTH_RANGE = {"mlp": (4, 128), "cnn": (4, 32)}

Params = list[dict[str, jax.Array]]


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """What a network is, independent of its weights.

    Attributes:
      family: "mlp" or "cnn".
      input_shape: (H, W, C) of one input.
      hidden: widths of the hidden layers (MLP) or channels of the conv layers (CNN).
      num_classes: width of the output layer.
      activation: name in `ACTIVATIONS`.
      padding: CNN conv padding, one of `PADDINGS`; an MLP has the default.
    """

    family: str
    input_shape: tuple[int, int, int]
    hidden: tuple[int, ...]
    num_classes: int
    activation: str
    padding: str = DEFAULT_PADDING

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {ACTIVATION_NAMES}, got {self.activation!r}"
            )
        if not self.hidden or any(int(w) < 1 for w in self.hidden):
            raise ValueError(f"hidden widths must be positive integers, got {self.hidden}")
        if len(self.input_shape) != 3 or any(int(d) < 1 for d in self.input_shape):
            raise ValueError(f"input_shape must be (H, W, C) positive, got {self.input_shape}")
        object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.family == "mlp" and self.padding != DEFAULT_PADDING:
            raise ValueError(f"padding applies to CNNs; an MLP has padding {DEFAULT_PADDING!r}, "
                             f"got {self.padding!r}")
        if self.family == "cnn" and min(self.feature_sizes()[-1]) < 1:
            raise ValueError(f"input_shape {self.input_shape} is too small for {self.depth} {self.padding} "
                             f"stride-{STRIDE} {KERNEL_SIZE}x{KERNEL_SIZE} convolutions: the feature maps "
                             f"shrink to {self.feature_sizes()[1:]}")

    @property
    def depth(self) -> int:
        """Number of hidden layers (MLP) or conv layers (CNN)."""
        return len(self.hidden)

    @property
    def input_dims(self) -> tuple[int, ...]:
        """Shape of one input to `apply` (an image's (H, W, C)), for methods that run the network."""
        return self.input_shape

    @property
    def num_layers(self) -> int:
        return len(self.hidden) + 1

    def feature_sizes(self) -> list[tuple[int, int]]:
        """CNN: (H, W) of the input and of each conv layer's output, which the padding decides."""
        sizes = [self.input_shape[:2]]
        for _ in self.hidden:
            sizes.append(tuple(conv_padding(n, KERNEL_SIZE, STRIDE, self.padding)[0] for n in sizes[-1]))
        return sizes

    def layer_shapes(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """(kernel shape, bias shape) of every layer, in order."""
        h, w, c = self.input_shape
        shapes = []
        fan_in = h * w * c if self.family == "mlp" else c
        for width in self.hidden:
            if self.family == "mlp":
                shapes.append(((fan_in, width), (width,)))
            else:
                shapes.append(((KERNEL_SIZE, KERNEL_SIZE, fan_in, width), (width,)))
            fan_in = width
        shapes.append(((fan_in, self.num_classes), (self.num_classes,)))
        return shapes

    def num_params(self) -> int:
        return sum(math.prod(k) + math.prod(b) for k, b in self.layer_shapes())

    def to_dict(self) -> dict:
        """A JSON object; `padding` only when not the default, so network ids hashed from it stay put."""
        d = {
            "family": self.family,
            "input_shape": list(self.input_shape),
            "hidden": list(self.hidden),
            "num_classes": self.num_classes,
            "activation": self.activation,
        }
        if self.padding != DEFAULT_PADDING:
            d["padding"] = self.padding
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ArchSpec:
        return cls(
            family=d["family"],
            input_shape=tuple(d["input_shape"]),
            hidden=tuple(d["hidden"]),
            num_classes=int(d["num_classes"]),
            activation=d["activation"],
            padding=d.get("padding", DEFAULT_PADDING),
        )


def fan_in_out(kernel_shape: Sequence[int]) -> tuple[int, int]:
    """Fan-in and fan-out of a dense (in, out) or HWIO conv kernel."""
    receptive = math.prod(kernel_shape[:-2]) if len(kernel_shape) > 2 else 1
    return kernel_shape[-2] * receptive, kernel_shape[-1] * receptive


def conv_padding(size: int, k: int, stride: int, padding: str) -> tuple[int, int, int]:
    """(output size, padding before, padding after) of a convolution along one axis, as XLA pads.

    SAME: ceil(size / stride) outputs, the padding split with the extra one after;
    VALID: floor((size - k) / stride) + 1 outputs (0 or fewer: the input is too small), no padding.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if padding == "VALID":
        return (size - k) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2, total - total // 2


def conv_stride2(x: jax.Array, kernel: jax.Array, padding: str = DEFAULT_PADDING) -> jax.Array:
    """3x3 stride-2 convolution (cross-correlation) of NHWC `x` with an HWIO `kernel`.

    Written as im2col by strided slicing plus one matmul: under `jax.vmap` over
    networks this stays a batched matmul instead of becoming a grouped convolution,
    and slicing moves data without the k*k-fold work of
    `lax.conv_general_dilated_patches` (itself a convolution with a one-hot kernel).
    """
    k = kernel.shape[0]
    (oh, th, bh), (ow, tw, bw) = (conv_padding(x.shape[1], k, STRIDE, padding),
                                  conv_padding(x.shape[2], k, STRIDE, padding))
    xp = jnp.pad(x, ((0, 0), (th, bh), (tw, bw), (0, 0)))
    span_h, span_w = STRIDE * (oh - 1) + 1, STRIDE * (ow - 1) + 1
    # Patch features in (kh, kw, c_in) order: exactly the HWIO kernel's leading axes.
    patches = jnp.concatenate(
        [xp[:, i:i + span_h:STRIDE, j:j + span_w:STRIDE, :] for i in range(k) for j in range(k)],
        axis=-1)
    return patches @ kernel.reshape(-1, kernel.shape[-1])


def forward(
    family: str,
    params: Params,
    x: jax.Array,
    activation: Callable[[jax.Array], jax.Array],
    dropout: Callable[[int, jax.Array], jax.Array] | None = None,
    padding: str = DEFAULT_PADDING,
) -> jax.Array:
    """Logits of one network for a batch `x` of shape (B, H, W, C).

    Args:
      family: "mlp" or "cnn".
      params: canonical layer list (possibly zero-padded).
      x: inputs (B, H, W, C).
      activation: elementwise nonlinearity applied after every hidden layer.
      dropout: optional ``f(layer_index, h) -> h`` applied to hidden activations.
      padding: CNN conv padding (`ArchSpec.padding`).
    """
    if family == "mlp":
        h = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(params[:-1]):
            h = activation(h @ layer["kernel"] + layer["bias"])
            if dropout is not None:
                h = dropout(i, h)
    else:
        h = x
        for i, layer in enumerate(params[:-1]):
            h = activation(conv_stride2(h, layer["kernel"], padding) + layer["bias"])
            if dropout is not None:
                h = dropout(i, h)
        h = h.mean(axis=(1, 2))
    head = params[-1]
    return h @ head["kernel"] + head["bias"]


def apply(arch: ArchSpec, params: Params, x: jax.Array | np.ndarray) -> jax.Array:
    """Logits of network `arch` with canonical `params` on inputs (B, H, W, C)."""
    x = jnp.asarray(x, jnp.float32)
    if x.shape[1:] != arch.input_shape:
        raise ValueError(f"input shape {x.shape[1:]} does not match the network's {arch.input_shape}")
    return forward(arch.family, params, x, ACTIVATIONS[arch.activation], padding=arch.padding)


def check_params(arch: ArchSpec, params: Params) -> None:
    """Raise ValueError naming the layer if `params` does not fit `arch`."""
    shapes = arch.layer_shapes()
    if len(params) != len(shapes):
        raise ValueError(f"expected {len(shapes)} layers, got {len(params)}")
    for i, (layer, (ks, bs)) in enumerate(zip(params, shapes, strict=True)):
        if set(layer) != {"kernel", "bias"}:
            raise ValueError(f"layer {i}: expected keys kernel and bias, got {sorted(layer)}")
        if tuple(layer["kernel"].shape) != ks or tuple(layer["bias"].shape) != bs:
            raise ValueError(
                f"layer {i}: expected kernel {ks} and bias {bs}, got "
                f"{tuple(layer['kernel'].shape)} and {tuple(layer['bias'].shape)}"
            )
