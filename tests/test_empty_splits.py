"""A data set with an empty split (or no click to learn from) is refused with the counts that
explain where its rows went, instead of producing AUCs of nothing."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from ccp.data.loader import SAMPLE_DIR_CANDIDATES, EmptySplitError, load

SAMPLE = next((d for d in SAMPLE_DIR_CANDIDATES if d.exists()), None)
pytestmark = pytest.mark.skipif(SAMPLE is None, reason="the shipped Ali-CCP sample is absent")


def sample_copy(tmp_path, edit_train):
    """The 200 real sample rows, with the train file changed by `edit_train(frame)`."""
    out = tmp_path / "csv"
    shutil.copytree(SAMPLE, out)
    train = next(out.glob("ali_ccp_train*.csv"))
    frame = pd.read_csv(train, dtype=str, keep_default_na=False)
    edit_train(frame).to_csv(train, index=False)
    return out


def all_purchase_without_click(frame):
    return frame.assign(click="0", purchase="1")


def test_train_of_only_purchase_without_click_is_refused_and_says_why(tmp_path):
    data_dir = sample_copy(tmp_path, all_purchase_without_click)
    with pytest.raises(EmptySplitError) as caught:
        load("aliccp-csv", data_dir, min_count=1, progress=False)
    message = str(caught.value)
    assert "train split has no rows" in message
    assert "100 purchase-without-click rows were dropped" in message


def test_allow_empty_returns_the_data_set_for_inspection(tmp_path):
    data_dir = sample_copy(tmp_path, all_purchase_without_click)
    data = load("aliccp-csv", data_dir, min_count=1, progress=False, allow_empty=True)
    assert len(data.train) == 0 and len(data.test) > 0


def test_kept_rows_without_any_click_are_refused_too(tmp_path):
    data_dir = sample_copy(tmp_path, all_purchase_without_click)
    with pytest.raises(EmptySplitError, match="100 rows but no click"):
        load("aliccp-csv", data_dir, min_count=1, progress=False,
             keep_purchase_without_click=True)


def test_the_unchanged_sample_loads(tmp_path):
    data_dir = sample_copy(tmp_path, lambda frame: frame)
    train = pd.read_csv(next(data_dir.glob("ali_ccp_train*.csv")))
    data = load("aliccp-csv", data_dir, min_count=1, progress=False)
    without_click = int(((train.click == 0) & (train.purchase == 1)).sum())
    assert len(data.train) == len(train) - without_click > 0


def test_raw_train_with_every_line_skipped_names_the_skips(tmp_path):
    line = "{i},x,0,0123456789abcdef,1,205\x02{i}\x031.0"  # click "x": a bad line
    common = "0123456789abcdef,1,101\x021\x031.0"
    data_dir = tmp_path / "raw"
    data_dir.mkdir()
    for split in ("train", "test"):
        lines = [line.format(i=i) if split == "train" else line.format(i=i).replace(",x,", ",1,")
                 for i in range(1, 6)]
        (data_dir / f"sample_skeleton_{split}.csv").write_text("\n".join(lines) + "\n")
        (data_dir / f"common_features_{split}.csv").write_text(common + "\n")
    with pytest.raises(EmptySplitError) as caught:
        load("aliccp", data_dir, min_count=1, lenient=True, progress=False)
    assert "5 of 5 lines of sample_skeleton_train.csv were skipped (format 5)" in str(caught.value)
