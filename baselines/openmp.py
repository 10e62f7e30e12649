"""Idle OpenMP threads sleep instead of spinning, for every baseline that trains.

On a busy machine (several jobs on 2 cores) spinning OpenMP threads starve the working ones:
LightGBM trained 10-20x slower and XGBoost 5x. The policy is read once, when an OpenMP
runtime loads, and scikit-learn and XGBoost share one vendored copy, so it must be set before
the first of them is imported: every baseline module that trains imports this one first.
It only sets a default; an OMP_WAIT_POLICY already in the environment wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
