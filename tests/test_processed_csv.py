import shutil

import numpy as np
import pytest

from bench.data import schema
from bench.data.loader import load


def test_all_200_sample_rows_load(sample_data):
    assert {k: len(s) for k, s in sample_data.splits.items()} == {
        "train": 100, "valid": 50, "test": 50}
    assert sample_data.info["clicks"] == {"train": 7, "valid": 3, "test": 2}
    train = sample_data.train
    assert train.single_codes().shape == (100, len(schema.SINGLE_FIELDS))
    assert train.dense.shape == (100, len(schema.DENSE_FEATURES))
    # Each multi-valued field kept its one surviving value, weighted by its dense column.
    assert (train.user_multi["109_14"].lengths() == 1).all()
    assert (train.item_multi["210"].lengths() == 1).all()


def test_scaling_and_vocabulary_are_fitted_on_train_only(sample_data):
    train_dense = sample_data.train.dense
    assert train_dense.min() >= 0 and train_dense.max() <= 1
    # Ids never seen in train get the rare code in test, whatever their frequency there.
    item_col = schema.IMPRESSION_SINGLE.index("205")
    test_items = sample_data.test.item_codes[:, item_col]
    assert (test_items == schema.CODE_RARE).any()
    assert test_items.max() < sample_data.vocab_sizes["205"]


def test_min_count_maps_rare_ids_to_reserved_code(sample_dir):
    import pandas as pd

    data = load("aliccp-csv", sample_dir, min_count=10, progress=False)
    raw_items = pd.read_csv(sample_dir / "ali_ccp_train_sample.csv")["205"]
    counts = raw_items.map(raw_items.value_counts())
    codes = data.train.item_codes[:, schema.IMPRESSION_SINGLE.index("205")]
    assert (codes[counts.to_numpy() < 10] == schema.CODE_RARE).all()
    assert (codes[counts.to_numpy() >= 10] >= schema.FIRST_CODE).all()
    assert data.vocab_sizes["205"] == schema.FIRST_CODE + raw_items[counts >= 10].nunique()


def _copy_sample(sample_dir, tmp_path):
    for path in sample_dir.glob("*.csv"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


@pytest.mark.parametrize("mutation, expected", [
    (lambda lines: lines[:3] + ["0,x" + lines[3][3:]] + lines[4:],
     "ali_ccp_train_sample.csv line 4, field purchase"),
    (lambda lines: lines[:5] + ["2" + lines[5][1:]] + lines[6:],
     "ali_ccp_train_sample.csv line 6, field click: expected 0 or 1"),
    (lambda lines: [lines[0].replace(",D853", "")] + lines[1:],
     "ali_ccp_train_sample.csv line 1, field D853"),
    (lambda lines: lines[:1], "ali_ccp_train_sample.csv line 2: no data rows"),
    (lambda lines: [], "ali_ccp_train_sample.csv line 1: the file is empty"),
])
def test_bad_processed_csv_names_file_line_and_field(sample_dir, tmp_path, mutation, expected):
    data_dir = _copy_sample(sample_dir, tmp_path)
    path = data_dir / "ali_ccp_train_sample.csv"
    lines = path.read_text().splitlines()
    new_lines = mutation(lines)
    path.write_text("\n".join(new_lines) + ("\n" if new_lines else ""))
    with pytest.raises(ValueError, match=expected.replace(".", r"\.")):
        load("aliccp-csv", data_dir, progress=False)


def test_missing_processed_csv_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="processed Ali-CCP CSV files not found"):
        load("aliccp-csv", tmp_path, progress=False)


def test_request_table_is_shared_not_copied(sample_data):
    clicked = sample_data.train.clicked()
    assert clicked.user_codes is sample_data.train.user_codes
    assert len(clicked) == 7 and (clicked.click == 1).all()
    np.testing.assert_array_equal(clicked.single_codes()[:, :9],
                                  sample_data.train.user_codes[clicked.request])
