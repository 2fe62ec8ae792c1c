"""The judge of the seed paper: a per-pixel uncertainty map from GFHDR's fused attention features."""
from __future__ import annotations

import torch
from torch import nn


class JudgeHead(nn.Module):
    """Three 3x3 convolutions with a skip addition and a sigmoid (the seed's Fig. 3).

    The skip adds the first hidden feature to the output of the second convolution; the sigmoid
    keeps sigma in (0, 1), the range of the HDR values it describes.

    Args:
        in_channels: width of the fused attention feature F_att.
        hidden: width of the two hidden convolutions.
    """

    def __init__(self, in_channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.conv3 = nn.Conv2d(hidden, 3, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.conv1(features))
        hidden = hidden + self.act(self.conv2(hidden))
        return torch.sigmoid(self.conv3(hidden))
