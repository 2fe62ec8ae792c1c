"""One configuration object for the network, stored with every set of weights."""
from __future__ import annotations

import functools
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from smarthdr_cli.errors import InputError

T = TypeVar("T")

# Far above any network this project trains (the published one has 1.25 M parameters), far below
# what a machine can hold: a config from an untrusted file cannot ask for an unbounded network.
MAX_PARAMETERS = 1 << 30
LIMITS: dict[str, tuple[int, int]] = {
    "in_channels": (1, 64), "embed_dim": (1, 2048), "window_size": (2, 64), "reduction": (1, 2048), "judge_channels": (1, 1024),
}
MAX_BLOCKS, MAX_DEPTH = 64, 128


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _kind(hint: Any) -> str:
    """`hint` in the words of a config file."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_kind(arg) for arg in args)
    if hint is type(None):
        return "null"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_kind(args[0]).removeprefix('a ').removeprefix('an ')}s"
        return f"a list of {len(args)} {_kind(args[0]).removeprefix('a ').removeprefix('an ')}s"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a table"}.get(origin or hint, str(hint))


def _fits(value: Any, hint: Any) -> bool:
    """Whether a value read from JSON, TOML or safetensors metadata has the type of a field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and not (isinstance(value, float) and not math.isfinite(value))
    if hint is str:
        return isinstance(value, str)
    if (origin or hint) is dict:
        return isinstance(value, dict)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(item, args[0]) for item in value)
        return len(value) == len(args) and all(_fits(item, arg) for item, arg in zip(value, args))
    return True  # a type this checker does not know: the dataclass checks it


def from_fields(cls: type[T], data: dict[str, Any], where: str, what: str) -> T:
    """A config dataclass from a dict (JSON, TOML, safetensors metadata): unknown keys and bad
    values are the user's file problem, one InputError naming `where`.

    Values are checked against the field types first: a file is untrusted, and a string where a
    number belongs would otherwise fail far from the file that holds it."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: the {what} must be a table (a JSON object), not {type(data).__name__}")
    unknown = sorted(set(data) - {f.name for f in fields(cls)})  # type: ignore[arg-type]
    if unknown:
        raise InputError(f"{where}: unknown {what} {', '.join(map(str, unknown))}")
    hints = _hints(cls)
    for name, value in data.items():
        if not _fits(value, hints[name]):
            raise InputError(f"{where}: {name} must be {_kind(hints[name])}, not {value!r:.60}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class GFHDRConfig:
    """Width and depth of GFHDR and its judge head.

    Args:
        in_channels: channels per input frame: LDR x and gamma-corrected x~ (eq. 1), 3 + 3.
        embed_dim: feature width C of every stage (60 in the published network).
        depths: context-aware ViT layers in each context-aware transformer block (CTB).
        num_heads: attention heads per CTB; embed_dim must divide evenly.
        window_size: side of the square attention windows; shifted by half on every second layer.
        mlp_ratio: hidden width of the MLP relative to embed_dim.
        reduction: channel reduction of the local context extractor and its channel attention.
        drop_path_rate: stochastic depth at the last layer, rising linearly from 0.
        judge_channels: width of the judge head's hidden convolutions (the seed leaves it open).
        judge_detach: the judge reads F_att without passing gradients back into it, so L^k's
            sigma path trains the judge and not the features it judges (the seed says nothing
            either way). Measured (bench/README.md): that path is about 2% of L^k's trunk
            gradient, and two paired seeds of the miniature ablation moved by +0.6 and -3.3 dB,
            within the seed spread. A training choice, not part of the architecture: weights
            trained either way load into either.
    """

    in_channels: int = 6
    embed_dim: int = 60
    depths: tuple[int, ...] = (6, 6, 6)
    num_heads: tuple[int, ...] = (6, 6, 6)
    window_size: int = 8
    mlp_ratio: float = 2.0
    reduction: int = 8
    drop_path_rate: float = 0.1
    judge_channels: int = 32
    judge_detach: bool = field(default=True, compare=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        for name, (low, high) in LIMITS.items():
            if not low <= getattr(self, name) <= high:
                raise InputError(f"model config: {name} {getattr(self, name)} is outside {low}..{high}")
        if len(self.depths) != len(self.num_heads) or not self.depths:
            raise InputError("model config: depths and num_heads need one entry per block")
        if len(self.depths) > MAX_BLOCKS or any(not 0 <= d <= MAX_DEPTH for d in self.depths):
            raise InputError(f"model config: depths {list(self.depths)}: at most {MAX_BLOCKS} blocks of 0..{MAX_DEPTH} layers")
        if any(not 1 <= heads <= self.embed_dim for heads in self.num_heads):
            raise InputError(f"model config: num_heads {list(self.num_heads)}: each between 1 and embed_dim {self.embed_dim}")
        if any(self.embed_dim % heads for heads in self.num_heads):
            raise InputError(f"model config: embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.window_size < 2 or self.embed_dim // self.reduction < 1:
            raise InputError("model config: window_size must be >= 2 and embed_dim >= reduction")
        if not 0 < self.mlp_ratio <= 16 or int(self.embed_dim * self.mlp_ratio) < 1:
            raise InputError(f"model config: mlp_ratio {self.mlp_ratio} must be in (0, 16] and give an MLP at least 1 wide")
        if not 0 <= self.drop_path_rate < 1:
            raise InputError(f"model config: drop_path_rate {self.drop_path_rate} must be in [0, 1)")
        count = self.parameter_count()
        if count > MAX_PARAMETERS:
            raise InputError(f"model config: the network would have {count:,} parameters, more than the {MAX_PARAMETERS:,} allowed")

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name and shape of every tensor of `GFHDR(self).state_dict()`, without building it.

        Weights are untrusted files: their stored config is checked against the tensors they
        hold before a network of that config is allocated (tests/test_faults_weights.py keeps
        this in step with gfhdr.py)."""
        c, inner, hidden, judge = self.embed_dim, self.embed_dim // self.reduction, int(self.embed_dim * self.mlp_ratio), self.judge_channels

        def conv(name: str, out: int, into: int, k: int = 3) -> dict[str, tuple[int, ...]]:
            return {f"{name}.weight": (out, into, k, k), f"{name}.bias": (out,)}

        def vector(name: str, width: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
            return {f"{name}.weight": (width,), **({f"{name}.bias": (width,)} if bias else {})}

        def linear(name: str, out: int, into: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
            return {f"{name}.weight": (out, into), **({f"{name}.bias": (out,)} if bias else {})}

        shapes: dict[str, tuple[int, ...]] = {}
        for i in (1, 2, 3):
            shapes.update(conv(f"conv_f{i}", c, self.in_channels))
        for side in ("att_short", "att_long"):
            shapes.update({**conv(f"{side}.conv1", 2 * c, 2 * c), **conv(f"{side}.conv2", c, 2 * c)})
        shapes.update({**conv("conv_fuse", c, 3 * c), **vector("norm_in", c)})
        for b, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
            for n in range(depth):
                p = f"blocks.{b}.layers.{n}"
                shapes.update({
                    **vector(f"{p}.norm1", c), **linear(f"{p}.attn.qkv", 3 * c, c), **linear(f"{p}.attn.proj", c, c),
                    f"{p}.attn.relative_position_bias_table": ((2 * self.window_size - 1) ** 2, heads),
                    **conv(f"{p}.local_context.conv.0", inner, c, 1), **conv(f"{p}.local_context.conv.1", inner, inner),
                    **conv(f"{p}.local_context.conv.2", c, inner, 1),
                    **linear(f"{p}.local_context.fc.0", inner, c, bias=False), **linear(f"{p}.local_context.fc.2", c, inner, bias=False),
                    **vector(f"{p}.norm2", c), **linear(f"{p}.mlp.fc1", hidden, c), **linear(f"{p}.mlp.fc2", c, hidden),
                })
            shapes.update(conv(f"blocks.{b}.conv", c, c))
        shapes.update({**vector("norm_out", c), **conv("conv_after_body", c, c), **conv("conv_last", 3, c)})
        shapes.update({**conv("judge.conv1", judge, c), **conv("judge.conv2", judge, judge), **conv("judge.conv3", 3, judge)})
        return shapes

    def parameter_count(self) -> int:
        """Number of values in the network's state (its parameters: it has no stored buffers)."""
        return sum(math.prod(shape) for shape in self.tensor_shapes().values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["depths"], data["num_heads"] = list(self.depths), list(self.num_heads)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GFHDRConfig":
        return from_fields(cls, data, "model config", "fields")


PRESETS: dict[str, GFHDRConfig] = {
    # The published network: 1,222,113 parameters without the judge.
    "full": GFHDRConfig(),
    # 32 wide, 2-2-2 layers: about 7x faster to train on a CPU.
    "small": GFHDRConfig(embed_dim=32, depths=(2, 2, 2), num_heads=(4, 4, 4), reduction=4, judge_channels=16),
    # For tests: a few thousand parameters.
    "tiny": GFHDRConfig(embed_dim=8, depths=(2, 1), num_heads=(2, 2), window_size=4, reduction=4, judge_channels=4),
}
