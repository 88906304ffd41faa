"""A plain nn.Module twin of the digits CNN (for DeepLift, which cannot hook TorchScript), importable by path."""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.reshape(-1, 1, 8, 8)))


def from_torchscript(path: str) -> DigitsCNN:
    """The served TorchScript model's weights in a Python module."""
    module = DigitsCNN()
    module.load_state_dict(torch.jit.load(path).state_dict())
    return module.eval()
