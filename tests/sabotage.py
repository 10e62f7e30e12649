"""Models made worse on purpose, for the tests of the accuracy gate and of `bench compare`."""

from __future__ import annotations

import dataclasses

import numpy as np


def shuffle_purchases_in_fit(monkeypatch, model_key: str, seed: int = 0) -> None:
    """The registered model `model_key` (only it: neural models share one class) fits on train
    purchases shuffled among the clicked rows: its CVR, and what it derives from its CVR, learns
    noise; clicks stay as they were."""
    from ccp.model import ModelSpec

    honest_build = ModelSpec.build

    def build(spec, **overrides):
        model = honest_build(spec, **overrides)
        if spec.key == model_key:
            honest_fit = model.fit

            def fit(data, ctx):
                train = data.train
                clicked = np.flatnonzero(np.asarray(train.click) == 1)
                purchase = np.array(train.purchase, copy=True)
                purchase[clicked] = np.random.default_rng(seed).permutation(purchase[clicked])
                shuffled = dataclasses.replace(train, purchase=purchase)
                return honest_fit(dataclasses.replace(data, train=shuffled), ctx)

            model.fit = fit
        return model

    monkeypatch.setattr(ModelSpec, "build", build)
