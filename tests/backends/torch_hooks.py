"""Contract-suite hooks shared by the two torch backends' tests (the digits MLP)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tests import models


class NetHooks:
    def make_model(self) -> Any:
        return models.trained_net()

    def make_input(self) -> Any:
        return np.random.default_rng(1).random((8, 64), dtype=np.float32)

    def load_kwargs(self) -> dict[str, Any]:
        return {"model": models.Net}

    def outputs_of(self, loaded: Any, x: Any) -> Any:
        with torch.no_grad():
            return loaded(torch.from_numpy(x)).numpy()
