"""GFHDR: ghost-free HDR imaging with context-aware transformers (Liu et al., ECCV 2022).

A clean-room implementation from the published description, with the judge head of
"Semi-Supervised HDR Image Reconstructing via Bi-Level Uncertain Area Masking" (AAAI 2026):

    frames (3 x 6 ch) -> shallow 3x3 convs -> spatial attention of frames 1 and 3 against the
    reference -> fused feature F_att -> tokens (LayerNorm) -> context-aware transformer blocks
    (each: context-aware ViT layers, then a dilated 3x3 conv, with a residual) -> LayerNorm ->
    3x3 conv on (body + F_att) -> 3x3 conv on (reference feature + that) -> sigmoid = HDR;
    judge(F_att) = per-pixel uncertainty.

Any image size: the input is padded (reflect) to a multiple of the window and the output
cropped back; the shifted-window mask and the list of windows that need it are computed once per
padded size and cached. Attention runs through PyTorch's fused `scaled_dot_product_attention`
over all windows at once.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from smarthdr_cli.model.config import GFHDRConfig
from smarthdr_cli.model.judge import JudgeHead


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/w * W/w, w*w, C), windows in row-major order per image."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `window_partition`: (B * nW, w*w, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def relative_position_index(window: int) -> torch.Tensor:
    """(w*w, w*w) index into the (2w-1)^2 table of relative-position biases."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[:, :, 0] * (2 * window - 1) + relative[:, :, 1]


@dataclass(frozen=True)
class ShiftMask:
    """The additive mask of the windows that need one after a cyclic shift, for one image size.

    After the shift, windows along the bottom and right edges hold pixels from opposite sides of
    the image, which must not attend to each other. Only those border windows get a mask; the
    others run unmasked, so no (windows x heads x N x N) tensor is ever built for the whole image.
    """

    mask: torch.Tensor  # (border windows, N, N), 0 or -inf
    border: torch.Tensor  # row-major numbers of the border windows within one image
    windows: int  # windows per image

    def batch_index(self, images: int) -> torch.Tensor:
        offsets = torch.arange(images, device=self.border.device)[:, None] * self.windows
        return (self.border[None, :] + offsets).flatten()


def shift_regions(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """(H, W) labels of the regions a cyclic shift brings together: equal labels may attend."""
    label = torch.zeros(height, width)
    count = 0
    for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for cols in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            label[rows, cols] = count
            count += 1
    return label


def shifted_window_mask(height: int, width: int, window: int, shift: int, device: torch.device) -> ShiftMask:
    """The `ShiftMask` of a (height x width) map whose windows are shifted by `shift`."""
    label = shift_regions(height, width, window, shift)
    windows = window_partition(label[None, :, :, None], window).squeeze(-1)  # (nW, N)
    differs = windows[:, None, :] != windows[:, :, None]
    border = torch.nonzero(differs.flatten(1).any(dim=1)).flatten()
    mask = torch.zeros(differs[border].shape).masked_fill(differs[border], float("-inf"))
    return ShiftMask(mask.to(device), border.to(device), windows.shape[0])


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples while training."""

    def __init__(self, probability: float) -> None:
        super().__init__()
        self.probability = probability

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.probability == 0.0:
            return x
        keep = 1.0 - self.probability
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep) / keep


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative-position bias.

    Args:
        dim: token width.
        window: window side.
        heads: attention heads.
        qkv_bias: learn biases for the query, key and value projections.
    """

    def __init__(self, dim: int, window: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def position_bias(self) -> torch.Tensor:
        n = self.relative_position_index.shape[0]
        bias = self.relative_position_bias_table[self.relative_position_index.flatten()]
        return bias.view(n, n, self.heads).permute(2, 0, 1).unsqueeze(0)  # (1, heads, N, N)

    def forward(self, windows: torch.Tensor, shift: ShiftMask | None) -> torch.Tensor:
        count, n, dim = windows.shape
        qkv = self.qkv(windows).view(count, n, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        bias = self.position_bias().to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        if shift is not None and shift.border.numel():
            index = shift.batch_index(count // shift.windows)
            masked = (bias + shift.mask[:, None].to(q.dtype)).repeat(count // shift.windows, 1, 1, 1)
            edge = F.scaled_dot_product_attention(q[index], k[index], v[index], attn_mask=masked)
            out = out.index_copy(0, index, edge)
        return self.proj(out.transpose(1, 2).reshape(count, n, dim))


class Mlp(nn.Module):
    """Two linear layers with GELU between them."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LocalContextExtractor(nn.Module):
    """Convolutional local context with squeeze-excitation channel attention (NCHW in and out).

    Args:
        dim: feature width.
        reduction: bottleneck factor (dim // reduction channels inside).
    """

    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        inner = dim // reduction
        self.conv = nn.Sequential(
            nn.Conv2d(dim, inner, 1),
            nn.Conv2d(inner, inner, 3, padding=1),
            nn.Conv2d(inner, dim, 1),
            nn.LeakyReLU(0.2),
        )
        self.fc = nn.Sequential(nn.Linear(dim, inner, bias=False), nn.ReLU(), nn.Linear(inner, dim, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        weights = self.fc(x.mean(dim=(2, 3)))
        return x * weights[:, :, None, None]


class ContextAwareViTLayer(nn.Module):
    """Window attention (shifted on every second layer) plus local context, then an MLP.

    Args:
        dim: token width.
        heads: attention heads.
        window: window side.
        shift: cyclic shift of the windows (0 or window // 2).
        mlp_ratio: MLP hidden width relative to dim.
        reduction: bottleneck of the local context extractor.
        drop_path: stochastic depth of both residual branches.
    """

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float, reduction: int, drop_path: float) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.local_context = LocalContextExtractor(dim, reduction)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, shift_mask: ShiftMask) -> torch.Tensor:
        _, height, width, _ = x.shape
        shortcut = x
        x = self.norm1(x)
        context = self.local_context(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        attended = self.attn(window_partition(x, self.window), shift_mask if self.shift else None)
        x = window_reverse(attended, self.window, height, width)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + self.drop_path(x + context)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ContextAwareTransformerBlock(nn.Module):
    """A stack of context-aware ViT layers, a dilated 3x3 conv, and a residual around both."""

    def __init__(self, config: GFHDRConfig, depth: int, heads: int, drop_paths: list[float]) -> None:
        super().__init__()
        dim, window = config.embed_dim, config.window_size
        self.layers = nn.ModuleList(
            ContextAwareViTLayer(dim, heads, window, 0 if i % 2 == 0 else window // 2, config.mlp_ratio, config.reduction, drop_paths[i])
            for i in range(depth)
        )
        self.conv = nn.Conv2d(dim, dim, 3, padding=2, dilation=2)
        self.checkpointing = False

    def forward(self, x: torch.Tensor, shift_mask: ShiftMask) -> torch.Tensor:
        y = x
        for layer in self.layers:
            if self.checkpointing and torch.is_grad_enabled():
                # keep only each layer's input; recompute its activations in the backward pass
                y = torch.utils.checkpoint.checkpoint(layer, y, shift_mask, use_reentrant=False)
            else:
                y = layer(y, shift_mask)
        return self.conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1) + x


class SpatialAttention(nn.Module):
    """Attention map of a non-reference frame's features against the reference's."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2 * dim, 2 * dim, 3, padding=1)
        self.act = nn.LeakyReLU(0.01)
        self.conv2 = nn.Conv2d(2 * dim, dim, 3, padding=1)

    def forward(self, other: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv2(self.act(self.conv1(torch.cat((other, reference), dim=1)))))


class GFHDR(nn.Module):
    """GFHDR with the judge head: (x1, x2, x3) -> (HDR in [0, 1], uncertainty in (0, 1) or None).

    Inputs are NCHW tensors of `config.in_channels` channels (concat(x, x^gamma / t), eq. 1),
    frames short -> long with x2 the reference.
    """

    def __init__(self, config: GFHDRConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or GFHDRConfig()
        dim = config.embed_dim
        self.conv_f1 = nn.Conv2d(config.in_channels, dim, 3, padding=1)
        self.conv_f2 = nn.Conv2d(config.in_channels, dim, 3, padding=1)
        self.conv_f3 = nn.Conv2d(config.in_channels, dim, 3, padding=1)
        self.att_short = SpatialAttention(dim)
        self.att_long = SpatialAttention(dim)
        self.conv_fuse = nn.Conv2d(3 * dim, dim, 3, padding=1)
        self.norm_in = nn.LayerNorm(dim)
        rates = torch.linspace(0, config.drop_path_rate, sum(config.depths)).tolist()
        starts = [sum(config.depths[:i]) for i in range(len(config.depths))]
        self.blocks = nn.ModuleList(
            ContextAwareTransformerBlock(config, depth, heads, rates[start : start + depth])
            for depth, heads, start in zip(config.depths, config.num_heads, starts)
        )
        self.norm_out = nn.LayerNorm(dim)
        self.conv_after_body = nn.Conv2d(dim, dim, 3, padding=1)
        self.conv_last = nn.Conv2d(dim, 3, 3, padding=1)
        self.judge = JudgeHead(dim, config.judge_channels)
        self._shift_masks: dict[tuple[int, int, str], ShiftMask] = {}
        self.apply(_init_weights)

    def set_checkpointing(self, enabled: bool) -> None:
        """Activation checkpointing of the transformer layers for training: less than half the
        memory for about a third more time (full network, batch 4 on the CPU: 6.8 -> 3.1 GiB peak,
        1.55 -> 1.13 patches/s); gradients are unchanged."""
        for block in self.blocks:
            block.checkpointing = enabled

    def shift_mask(self, height: int, width: int, device: torch.device) -> ShiftMask:
        """The shifted-window mask for a padded size, built once and cached."""
        key = (height, width, str(device))
        if key not in self._shift_masks:
            window = self.config.window_size
            self._shift_masks[key] = shifted_window_mask(height, width, window, window // 2, device)
        return self._shift_masks[key]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        window = self.config.window_size
        bottom, right = -x.shape[2] % window, -x.shape[3] % window
        if not bottom and not right:
            return x
        mode = "reflect" if bottom < x.shape[2] and right < x.shape[3] else "replicate"
        return F.pad(x, (0, right, 0, bottom), mode=mode)

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor, with_uncertainty: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        height, width = x2.shape[2:]
        x1, x2, x3 = self._pad(x1), self._pad(x2), self._pad(x3)
        f1, f2, f3 = self.conv_f1(x1), self.conv_f2(x2), self.conv_f3(x3)
        f1 = f1 * self.att_short(f1, f2)
        f3 = f3 * self.att_long(f3, f2)
        f_att = self.conv_fuse(torch.cat((f1, f2, f3), dim=1))

        tokens = self.norm_in(f_att.permute(0, 2, 3, 1))
        shift_mask = self.shift_mask(tokens.shape[1], tokens.shape[2], tokens.device)
        for block in self.blocks:
            tokens = block(tokens, shift_mask)
        body = self.norm_out(tokens).permute(0, 3, 1, 2)
        residual = self.conv_after_body(body + f_att)
        hdr = torch.sigmoid(self.conv_last(f2 + residual))[:, :, :height, :width]
        judged = f_att.detach() if self.config.judge_detach else f_att
        uncertainty = self.judge(judged)[:, :, :height, :width] if with_uncertainty else None
        return hdr, uncertainty


def _init_weights(module: nn.Module) -> None:
    """Swin's initialisation: truncated normal linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
