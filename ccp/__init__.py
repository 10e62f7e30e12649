"""The foundation every model family and the application import: the data (schema, readers,
encoders, splits, the synthetic generator), the tasks and metrics, the statistics of the
protocol, the model contract (spec, fit context), budgets and settings, run folders. It
imports no model family and nothing of the application (tests/test_layers.py)."""
