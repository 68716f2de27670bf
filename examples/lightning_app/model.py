"""A linear model fitted by SGD on synthetic data, in plain Python: the app's stand-in for a real one."""

from __future__ import annotations

import json
import random
from pathlib import Path


class LinearModel:
    """``y = w.x + b``, learning ``y = 2 x0 - x1 + 0.5`` from a fixed stream of samples."""

    def __init__(self, features: int = 2, learning_rate: float = 0.1, seed: int = 0) -> None:
        self.weights, self.bias = [0.0] * features, 0.0
        self.learning_rate, self.seed = learning_rate, seed

    def step(self, batch: int) -> float:
        """One SGD step on sample `batch` of the stream (the same sample whenever it is taken again);
        returns the squared error before the step."""
        rng = random.Random(self.seed * 1_000_003 + batch)
        x = [rng.uniform(-1, 1) for _ in self.weights]
        target = 2 * x[0] - x[1] + 0.5
        error = sum(w * xi for w, xi in zip(self.weights, x)) + self.bias - target
        self.weights = [w - self.learning_rate * error * xi for w, xi in zip(self.weights, x)]
        self.bias -= self.learning_rate * error
        return error * error

    def save(self, path: Path) -> None:
        """Write the parameters atomically: a reader never sees half a checkpoint."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps({"weights": self.weights, "bias": self.bias}))
        partial.replace(path)

    def load(self, path: Path) -> None:
        saved = json.loads(path.read_text())
        self.weights, self.bias = saved["weights"], saved["bias"]
