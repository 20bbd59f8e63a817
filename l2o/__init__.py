"""l2o: a learning-to-optimize model zoo.

* :mod:`l2o.rules` — update rules (pure, batched, differentiable).
* :mod:`l2o.optim` — drop-in ``torch.optim`` optimizers built on the rules.
* :mod:`l2o.eval` — rollouts, metrics, tables and plots.
* :mod:`problems` (top-level package) — problem families with certified optima.
"""

__version__ = "0.1.0"
