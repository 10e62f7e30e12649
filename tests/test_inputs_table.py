"""The report's inputs table says what each family sees, from the records of a real run."""

from __future__ import annotations

import re

from bench import harness


def test_report_lists_what_each_family_sees(tiny_raw_dir, tmp_path, monkeypatch):
    from bench import run_folder
    from bench.cli import main

    monkeypatch.setattr(run_folder, "REPORTS_ROOT", tmp_path / "reports")
    out = tmp_path / "run"
    code = main(["run", "--models", "baselines/constant", "baselines/lgbm_ctr",
                 "baselines/xgb_cvr", "neural/dnn_ctr", "--profile", "tiny",
                 "--data-dir", str(tiny_raw_dir), "--out", str(out), "--quiet"])
    assert code == 0
    records = [r for r in harness.read_records(out) if r.get("kind") == "accuracy"]
    assert {r["model"] for r in records if r["inputs_lists"]} == {
        "baselines/constant", "baselines/lgbm_ctr", "baselines/xgb_cvr", "neural/dnn_ctr"}
    md = (out / "report.md").read_text()
    table = md.split("## Inputs", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    # One row per distinct set of inputs: both tree libraries share theirs.
    assert len(rows) == 3, rows
    trees = next(r for r in rows if "`lgbm_ctr`" in r)
    assert "`xgb_cvr`" in trees and "no list ids" in trees and "target encod" in trees
    neural = next(r for r in rows if "`dnn_ctr`" in r)
    assert "pooled with their weights" in neural
    from neural.config import NeuralConfig
    from neural.trainer import MATCH

    assert MATCH[NeuralConfig().cross_ids] in neural  # the default fit's own inputs
    assert re.search(r"\| `constant` \| none", md)
