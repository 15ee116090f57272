"""Architecture specs and the canonical parameter format every package reads.

A network is an `ArchSpec` plus its parameters as a list of layers, each a dict
``{"kernel": array, "bias": array}`` (see docs/parameters.md):

* MLP: the input image is flattened in (H, W, C) row-major order; layer ``i`` has
  ``kernel`` of shape (fan_in, fan_out) and ``bias`` (fan_out,), the last layer is
  the classifier head.
* SIREN (an implicit neural representation of one image): an MLP from a pixel's
  coordinates in [-1, 1]^2 to its intensity, ``h = sin(omega0 * (h @ kernel + bias))``
  after every hidden layer, then a linear head plus the spec's constant
  ``output_offset`` (0.5 for DWSNets' INRs; part of the function, not a parameter).
  ``input_shape`` is the (H, W, C) of the image it represents; it outputs C channels.
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

FAMILIES = ("mlp", "cnn", "siren")
CLASSIFIER_FAMILIES = ("mlp", "cnn")  # what a classifier zoo config draws; SIRENs are INR zoos
# sin(x) to float32 accuracy (see `sine`); odd, like tanh, so a SIREN has sign-flip symmetries.
SINE = "sine"
# The SIREN paper's omega0: hidden pre-activations are scaled by it before the sine.
DEFAULT_OMEGA0 = 30.0
COORDINATE_DIMS = 2  # a SIREN's input: one pixel's (row, column) in [-1, 1]^2

# Cody-Waite range reduction by 2*pi: the high part has 8 significant bits, so k * high is
# exact for |k| < 2^16 (|x| < 4e5).
_TWO_PI_HIGH = np.float32(6.28125)
_TWO_PI_LOW = np.float32(2 * np.pi - 6.28125)
_INV_TWO_PI = np.float32(1 / (2 * np.pi))
_PI, _HALF_PI = np.float32(np.pi), np.float32(np.pi / 2)
# Taylor coefficients of sin on [-pi/2, pi/2] up to x^11: error under 6e-8 there.
_SINE_TERMS = tuple(np.float32(1 / math.factorial(n)) for n in (3, 5, 7, 9, 11))


def sine(x: jax.Array) -> jax.Array:
    """sin(x) in float32 arithmetic only: within 3e-7 of sin for |x| < 300.

    Why not `jnp.sin`: XLA's CPU sine is its slowest elementwise op, and fitting
    SIRENs is mostly sines (2.5x faster fits on a CPU). Range reduction to
    [-pi, pi], a fold onto [-pi/2, pi/2] and an odd polynomial; autodiff through it
    gives cos to within 6e-7. The same on every backend.
    """
    k = jnp.round(x * _INV_TWO_PI)
    r = (x - k * _TWO_PI_HIGH) - k * _TWO_PI_LOW
    r = jnp.where(r > _HALF_PI, _PI - r, jnp.where(r < -_HALF_PI, -_PI - r, r))
    r2 = r * r
    p = _SINE_TERMS[-1]
    for c in reversed(_SINE_TERMS[:-1]):
        p = c - r2 * p
    return r - r * r2 * p


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "sigmoid": jax.nn.sigmoid,
    "leaky_relu": jax.nn.leaky_relu,
    SINE: sine,
}
ACTIVATION_NAMES = tuple(ACTIVATIONS)
# What a classifier (MLP, CNN) may use; a SIREN uses `SINE` only.
CLASSIFIER_ACTIVATIONS = tuple(a for a in ACTIVATION_NAMES if a != SINE)
KERNEL_SIZE = 3
STRIDE = 2
# Conv padding as XLA and Keras name it: SAME pads so that out = ceil(in / stride);
# VALID does not pad, out = floor((in - k) / stride) + 1.
PADDINGS = ("SAME", "VALID")
DEFAULT_PADDING = "SAME"
# Limits of the zoo's design space; also the shape at which initial weights are drawn,
# so a network's initial weights do not depend on how wide its training bucket is.
DEPTH_RANGE = {"mlp": (1, 4), "cnn": (2, 4), "siren": (1, 4)}
WIDTH_RANGE = {"mlp": (4, 128), "cnn": (4, 32), "siren": (4, 256)}

Params = list[dict[str, jax.Array]]


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """What a network is, independent of its weights.

    Attributes:
      family: "mlp", "cnn" or "siren".
      input_shape: (H, W, C) of one input; of a SIREN, of the image it represents
        (its inputs are coordinates: `input_dims`).
      hidden: widths of the hidden layers (MLP, SIREN) or channels of the conv layers (CNN).
      num_classes: width of the output layer (a SIREN's: the image's C channels).
      activation: name in `ACTIVATIONS` ("sine" for a SIREN, and only there).
      padding: CNN conv padding, one of `PADDINGS`; an MLP or SIREN has the default.
      omega0: SIREN only: the frequency scale of every hidden layer, sin(omega0 * z).
      output_offset: SIREN only: a constant added to the output (0.5 in DWSNets' INRs).
    """

    family: str
    input_shape: tuple[int, int, int]
    hidden: tuple[int, ...]
    num_classes: int
    activation: str
    padding: str = DEFAULT_PADDING
    omega0: float = DEFAULT_OMEGA0
    output_offset: float = 0.0

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {ACTIVATION_NAMES}, got {self.activation!r}"
            )
        if (self.family == "siren") != (self.activation == SINE):
            raise ValueError(f"a SIREN has activation {SINE!r} and only a SIREN has it; got family "
                             f"{self.family!r} with activation {self.activation!r}")
        object.__setattr__(self, "omega0", float(self.omega0))
        object.__setattr__(self, "output_offset", float(self.output_offset))
        if self.family != "siren" and (self.omega0, self.output_offset) != (DEFAULT_OMEGA0, 0.0):
            raise ValueError(f"omega0 and output_offset apply to SIRENs; a {self.family} has the defaults "
                             f"({DEFAULT_OMEGA0}, 0.0), got ({self.omega0}, {self.output_offset})")
        if not (math.isfinite(self.omega0) and self.omega0 > 0 and math.isfinite(self.output_offset)):
            raise ValueError(f"omega0 must be positive and output_offset finite, got {self.omega0} and "
                             f"{self.output_offset}")
        if not self.hidden or any(int(w) < 1 for w in self.hidden):
            raise ValueError(f"hidden widths must be positive integers, got {self.hidden}")
        if len(self.input_shape) != 3 or any(int(d) < 1 for d in self.input_shape):
            raise ValueError(f"input_shape must be (H, W, C) positive, got {self.input_shape}")
        object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.family != "cnn" and self.padding != DEFAULT_PADDING:
            raise ValueError(f"padding applies to CNNs; a {self.family} has padding {DEFAULT_PADDING!r}, "
                             f"got {self.padding!r}")
        if self.family == "siren" and self.num_classes != self.input_shape[2]:
            raise ValueError(f"a SIREN outputs its image's {self.input_shape[2]} channel(s) "
                             f"(input_shape {self.input_shape}), got num_classes {self.num_classes}")
        if self.family == "cnn" and min(self.feature_sizes()[-1]) < 1:
            raise ValueError(f"input_shape {self.input_shape} is too small for {self.depth} {self.padding} "
                             f"stride-{STRIDE} {KERNEL_SIZE}x{KERNEL_SIZE} convolutions: the feature maps "
                             f"shrink to {self.feature_sizes()[1:]}")

    @property
    def depth(self) -> int:
        """Number of hidden layers (MLP, SIREN) or conv layers (CNN)."""
        return len(self.hidden)

    @property
    def input_dims(self) -> tuple[int, ...]:
        """The shape of one input to `apply`: `input_shape`, but a SIREN's is one coordinate pair (2,)."""
        return (COORDINATE_DIMS,) if self.family == "siren" else self.input_shape

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
        fan_in = {"mlp": h * w * c, "cnn": c, "siren": COORDINATE_DIMS}[self.family]
        for width in self.hidden:
            if self.family != "cnn":
                shapes.append(((fan_in, width), (width,)))
            else:
                shapes.append(((KERNEL_SIZE, KERNEL_SIZE, fan_in, width), (width,)))
            fan_in = width
        shapes.append(((fan_in, self.num_classes), (self.num_classes,)))
        return shapes

    def num_params(self) -> int:
        return sum(math.prod(k) + math.prod(b) for k, b in self.layer_shapes())

    def to_dict(self) -> dict:
        """A JSON object; `padding` only when not the default and `omega0`, `output_offset` only for a
        SIREN, so the ids of networks hashed from it stay put."""
        d = {
            "family": self.family,
            "input_shape": list(self.input_shape),
            "hidden": list(self.hidden),
            "num_classes": self.num_classes,
            "activation": self.activation,
        }
        if self.padding != DEFAULT_PADDING:
            d["padding"] = self.padding
        if self.family == "siren":
            d["omega0"], d["output_offset"] = self.omega0, self.output_offset
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
            omega0=d.get("omega0", DEFAULT_OMEGA0),
            output_offset=d.get("output_offset", 0.0),
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


def siren_forward(params: Params, x: jax.Array, omega0: float, output_offset: float = 0.0) -> jax.Array:
    """A SIREN's output (B, C) at coordinates `x` (B, 2): sine layers, a linear head, the offset."""
    h = x
    for layer in params[:-1]:
        h = sine(omega0 * (h @ layer["kernel"] + layer["bias"]))
    head = params[-1]
    return h @ head["kernel"] + head["bias"] + output_offset


def apply(arch: ArchSpec, params: Params, x: jax.Array | np.ndarray) -> jax.Array:
    """Outputs of network `arch` with canonical `params` on inputs of shape (B, *arch.input_dims).

    A classifier's logits for images (B, H, W, C); a SIREN's intensities (B, C) at
    coordinates (B, 2) in [-1, 1]^2. Differentiable in `x` and `params`.
    """
    x = jnp.asarray(x, jnp.float32)
    if x.shape[1:] != arch.input_dims:
        raise ValueError(f"input shape {x.shape[1:]} does not match the network's {arch.input_dims}")
    if arch.family == "siren":
        return siren_forward(params, x, arch.omega0, arch.output_offset)
    return forward(arch.family, params, x, ACTIVATIONS[arch.activation], padding=arch.padding)


def neuron_activations(arch: ArchSpec, params: Params, x: jax.Array | np.ndarray) -> list[jax.Array]:
    """Every neuron's value on inputs `x`, one (B, width) array per layer of neurons.

    The layers are those of the neural graph: the inputs, each hidden layer after
    its nonlinearity, the outputs (`apply`'s). A CNN's neuron is a channel: its
    feature map averaged over space (the inputs' too). Permuting hidden units
    permutes these columns; the values themselves are what the network computes.
    """
    x = jnp.asarray(x, jnp.float32)
    if x.shape[1:] != arch.input_dims:
        raise ValueError(f"input shape {x.shape[1:]} does not match the network's {arch.input_dims}")
    pool = (lambda h: h.mean(axis=(1, 2))) if arch.family == "cnn" else (lambda h: h)  # noqa: E731
    h = x if arch.family == "cnn" else x.reshape(x.shape[0], -1)
    values = [pool(h)]
    for layer in params[:-1]:
        if arch.family == "siren":
            h = sine(arch.omega0 * (h @ layer["kernel"] + layer["bias"]))
        elif arch.family == "mlp":
            h = ACTIVATIONS[arch.activation](h @ layer["kernel"] + layer["bias"])
        else:
            h = ACTIVATIONS[arch.activation](conv_stride2(h, layer["kernel"], arch.padding) + layer["bias"])
        values.append(pool(h))
    values.append(apply(arch, params, x))
    return values


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
