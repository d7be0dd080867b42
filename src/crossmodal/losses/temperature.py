"""A learnable softmax temperature, the one every loss here uses (InfoNCE, CSA, USA)."""

from __future__ import annotations

import math

import torch
from torch import nn


class Temperature(nn.Module):
    """tau stored as log(1/tau); calling it gives the logit scale 1/tau, clamped to
    [1/max_tau, 1/min_tau].

    The clamp in ``forward`` has zero gradient outside the range, so a stored value that an
    optimiser step pushed past a bound would stay stuck there. Whoever steps the optimiser
    calls ``clamp_()`` after each step (the trainer does, as CUSA's code does), which puts the
    stored value back on the bound, from where gradients can move it away again."""

    def __init__(self, tau: float, learnable: bool = True, min_tau: float = 0.01,
                 max_tau: float = 1.0):
        super().__init__()
        if not 0 < min_tau <= max_tau:
            raise ValueError(f"need 0 < min_tau <= max_tau, got {min_tau}, {max_tau}")
        log_scale = torch.tensor(math.log(1.0 / tau))
        self.log_scale = nn.Parameter(log_scale) if learnable else nn.Buffer(log_scale)
        self.initial_tau, self.learnable = tau, learnable
        self.min_tau, self.max_tau = min_tau, max_tau

    def _bounds(self) -> tuple[float, float]:
        return math.log(1.0 / self.max_tau), math.log(1.0 / self.min_tau)

    def forward(self) -> torch.Tensor:
        # Clamped in log space, with the very bounds of clamp_(): a stored value on a bound
        # is inside the clamp (whose gradient counts its ends), so gradients still reach it.
        # Clamping exp() instead, float rounding puts exp(log(1/min_tau)) just past 1/min_tau.
        return self.log_scale.clamp(*self._bounds()).exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp the stored value in place to the range (call after ``optimizer.step()``)."""
        self.log_scale.clamp_(*self._bounds())

    def get_config_dict(self) -> dict[str, float | bool]:
        return {"tau": self.initial_tau, "learnable": self.learnable,
                "min_tau": self.min_tau, "max_tau": self.max_tau}
