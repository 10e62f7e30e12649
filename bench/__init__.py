"""ccpbench: GBDT vs neural multi-task ranking models on Ali-CCP, measured honestly."""

__version__ = "0.1.0"
