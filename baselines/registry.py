"""Non-neural models. Names are `baselines/<name>`; classes are imported only when built."""

from bench.registry import ModelSpec

SPECS = [
    ModelSpec("constant", "baselines", "baselines.constant:ConstantPrior",
              "training prior of each task for every row (AUC 0.5 floor)"),
]
