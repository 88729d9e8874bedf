"""Constants and a small model shared by the benchmark tests."""

from __future__ import annotations

import torch
from torch import nn

# A few hundred milliseconds per measurement: enough calls for percentiles, short enough for CI.
FAST_BENCH = [
    "bench=quick",
    "bench.duration_s=0.3",
    "bench.repeats=2",
    "bench.warmup_s=0.1",
    "bench.warmup_calls=1",
    "logger=none",
]
IMAGE_SIZE = 32


class TinyNet(nn.Module):
    """Two convolutions and a classifier without BatchNorm, so export keeps every weight as is."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.head = nn.Linear(16, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.conv2(torch.relu(self.conv1(images))))
        return self.head(features.mean(dim=(2, 3)))
