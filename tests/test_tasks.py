"""Task rules (ccp/tasks.py): rows, labels, priors and names, and that every reader agrees."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from ccp.tasks import MAIN_TASKS, TASK_ORDER, TASKS, priors_of


@dataclass
class Labels:
    """The two label columns of a split: all that task rules read."""
    click: np.ndarray
    purchase: np.ndarray

    def __len__(self) -> int:
        return len(self.click)


CLICK = np.array([1, 1, 0, 0, 1, 0], dtype=np.int8)
PURCHASE = np.array([1, 0, 0, 1, 0, 0], dtype=np.int8)  # row 3: purchase without click


def test_task_rows_follow_aliccp_definitions():
    click = np.array([1, 1, 0, 0, 1], dtype=np.int8)
    purchase = np.array([1, 0, 0, 1, 0], dtype=np.int8)  # row 3: purchase without click
    cvr = TASKS["cvr"]
    assert cvr.rows(click).tolist() == [True, True, False, False, True]
    assert TASKS["ctcvr"].labels(click, purchase).tolist() == [1, 0, 0, 0, 0]
    assert TASKS["cvr_entire"].rows(click).all()
    assert TASKS["ctr"].labels(click, purchase).tolist() == click.tolist()


def test_task_truth_is_the_true_probability_of_the_task_label():
    rng = np.random.default_rng(4)
    p_click, p_conversion = rng.uniform(0.01, 0.5, 50), rng.uniform(0.01, 0.5, 50)
    truth = {name: task.truth(p_click, p_conversion) for name, task in TASKS.items()}
    np.testing.assert_array_equal(truth["ctr"], p_click)
    np.testing.assert_array_equal(truth["cvr"], p_conversion)  # given a click
    np.testing.assert_array_equal(truth["ctcvr"], p_click * p_conversion)  # click and purchase
    np.testing.assert_array_equal(truth["cvr_entire"], p_click * p_conversion)


@pytest.mark.parametrize("name", MAIN_TASKS)
def test_a_model_trains_on_the_rows_and_labels_it_is_scored_on(name):
    task = TASKS[name]
    rows, labels = task.rows_and_labels(Labels(CLICK, PURCHASE))
    assert rows.tolist() == np.flatnonzero(task.rows(CLICK)).tolist()
    assert labels.tolist() == task.labels(CLICK, PURCHASE)[task.rows(CLICK)].tolist()


def test_cvr_trains_on_clicked_rows_only():
    rows, labels = TASKS["cvr"].rows_and_labels(Labels(CLICK, PURCHASE))
    assert rows.tolist() == [0, 1, 4] and labels.tolist() == [1, 0, 0]
    assert [name for name in TASK_ORDER if TASKS[name].clicked_only] == ["cvr"]


def test_priors_are_each_task_label_rate_on_its_rows():
    assert priors_of(Labels(CLICK, PURCHASE)) == {"ctr": 3 / 6, "cvr": 1 / 3, "ctcvr": 1 / 6}
    empty = Labels(np.zeros(0, np.int8), np.zeros(0, np.int8))
    assert priors_of(empty) == {"ctr": 0.0, "cvr": 0.0, "ctcvr": 0.0}


def test_scored_takes_the_task_prediction_on_its_rows():
    outputs = {"ctr": np.arange(6.0), "cvr": 10 + np.arange(6.0), "ctcvr": 20 + np.arange(6.0)}
    labels, scores = TASKS["cvr"].scored(Labels(CLICK, PURCHASE), outputs)
    assert labels.tolist() == [1, 0, 0] and scores.tolist() == [10.0, 11.0, 14.0]
    labels, scores = TASKS["cvr_entire"].scored(Labels(CLICK, PURCHASE), outputs)
    assert labels.tolist() == PURCHASE.tolist() and scores.tolist() == outputs["cvr"].tolist()


def test_every_reader_scores_a_task_alike(tiny_data):
    """The harness, tuning and the neural validation checks give the same AUC per task."""
    pytest.importorskip("torch")
    from bench.harness import evaluate
    from bench.tuning import validation_score
    from neural.validation import validation_aucs

    valid = tiny_data.valid
    rng = np.random.default_rng(0)
    both = valid.click * valid.purchase
    outputs = {"ctr": rng.random(len(valid)) + 0.3 * valid.click,
               "cvr": rng.random(len(valid)) + 0.3 * valid.purchase,
               "ctcvr": rng.random(len(valid)) + 0.3 * both}
    harness = {t: r["auc"] for t, r in evaluate(outputs, valid, "fp", 0, MAIN_TASKS).items()}
    assert validation_score(outputs, valid)[1] == harness
    assert validation_aucs(outputs, valid, MAIN_TASKS) == harness
    assert all(0.5 < auc < 1 for auc in harness.values())
