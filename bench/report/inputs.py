"""The report's "Inputs" section: what each model sees, from the `inputs` of its records.

Models that see the same inputs (every tree, every neural network) share one row, so the
table reads as a comparison of families: what one family gets that another does not.
"""

from __future__ import annotations

# The keys of a family's INPUTS (recorded as inputs_<key>) and their column titles.
INPUT_COLUMNS = {"ids": "single-valued ids", "lists": "behaviour lists",
                 "match": "user x candidate match", "dense": "dense"}


def inputs_section(run) -> list:
    from bench.report.render import Heading, Para, Table

    rows, seen = [], {}
    for model in run.models:
        if not model.inputs:
            continue
        key = tuple(model.inputs.get(column, "") for column in INPUT_COLUMNS)
        if key not in seen:
            seen[key] = len(rows)
            rows.append([[], *key])
        rows[seen[key]][0].append(f"`{model.name}`")
    if not rows:
        return []
    table = [[", ".join(names), *cells] for names, *cells in rows]
    return [Heading(2, "Inputs", "inputs"),
            Para("What each model sees, as its family declares it (`INPUTS` in "
                 "baselines/trees.py, baselines/logreg.py, baselines/constant.py and "
                 "neural/trainer.py). Every model trains on the same train rows "
                 "(`train_rows` in its records) and is scored on the same test rows."),
            Table(["models", *INPUT_COLUMNS.values()], table, "l" * (len(INPUT_COLUMNS) + 1),
                  id="inputs-table")]
