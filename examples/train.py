"""A tiny training program: fit y = 3x + 1 (+ 0.5x^2 for 'quadratic') by gradient descent.

Takes ``key=value`` arguments (model, lr, epochs, seed) as sweepflow hands them over and
prints the final loss. Pure standard library, so the example runs anywhere.
"""

from __future__ import annotations

import random
import sys


def fit(args: list[str]) -> dict[str, float]:
    """Train with the ``key=value`` items in ``args``; return the final metrics."""
    params = dict(item.split("=", 1) for item in args if "=" in item)
    model = params.get("model", "linear")
    lr, epochs = float(params.get("lr", 0.01)), int(params.get("epochs", 50))
    rng = random.Random(int(params.get("seed", 0)))
    xs = [rng.uniform(-1, 1) for _ in range(64)]
    ys = [3 * x + 1 + (0.5 * x * x if model == "quadratic" else 0) for x in xs]
    w, b, c = 0.0, 0.0, 0.0
    loss = 0.0
    for _ in range(epochs):
        gw = gb = gc = loss = 0.0
        for x, y in zip(xs, ys, strict=False):
            err = w * x + b + (c * x * x if model == "quadratic" else 0) - y
            loss += err * err / len(xs)
            gw, gb, gc = (
                gw + 2 * err * x / len(xs),
                gb + 2 * err / len(xs),
                gc + 2 * err * x * x / len(xs),
            )
        w, b, c = w - lr * gw, b - lr * gb, c - lr * gc
    return {"loss": loss, "w": w, "b": b}


if __name__ == "__main__":
    import sweepflow

    metrics = fit(sys.argv[1:])
    sweepflow.log_metrics(metrics)
    print(" ".join(f"{k}={v:.6g}" for k, v in metrics.items()))
