import numpy as np

from ccp.data import schema
from ccp.data.dataset import Ragged
from ccp.data.vocabulary import Vocabulary


def test_vocabulary_keeps_ids_seen_min_count_times_and_reserves_codes():
    ids = np.array([5] * 10 + [7] * 9 + [3] * 12 + [-1] * 4)
    vocab = Vocabulary.fit(ids, None, min_count=10)
    assert vocab.kept_ids.tolist() == [3, 5]
    assert vocab.size == schema.FIRST_CODE + 2
    codes = vocab.encode(np.array([3, 5, 7, 99, -1]))
    assert codes.tolist() == [schema.FIRST_CODE, schema.FIRST_CODE + 1, schema.CODE_RARE,
                              schema.CODE_RARE, schema.CODE_MISSING]


def test_vocabulary_counts_request_level_ids_once_per_impression():
    # User 8 has one request with 10 impressions; user 9 has 9 requests of 1 impression.
    user_of_request = np.array([8] + [9] * 9)
    impressions = np.array([10] + [1] * 9)
    vocab = Vocabulary.fit(user_of_request, impressions, min_count=10)
    assert vocab.kept_ids.tolist() == [8]


def test_empty_vocabulary_encodes_everything_as_rare_or_missing():
    vocab = Vocabulary.fit(np.array([1, 2, 3]), None, min_count=10)
    assert vocab.encode(np.array([1, -1])).tolist() == [schema.CODE_RARE, schema.CODE_MISSING]


def test_ragged_take_gathers_lists_in_order():
    lists = [[1, 2], [], [3], [4, 5, 6]]
    offsets = np.concatenate(([0], np.cumsum([len(x) for x in lists])))
    codes = np.concatenate([np.array(x, dtype=np.int64) for x in lists])
    ragged = Ragged(offsets, codes, codes.astype(np.float32) / 10)
    taken = ragged.take(np.array([3, 1, 0, 3]))
    rebuilt = [taken.codes[a:b].tolist() for a, b in zip(taken.offsets[:-1], taken.offsets[1:])]
    assert rebuilt == [[4, 5, 6], [], [1, 2], [4, 5, 6]]
    np.testing.assert_allclose(taken.weights, taken.codes / 10)
    np.testing.assert_allclose(ragged.row_mean_weight(), [0.15, 0.0, 0.3, 0.5], rtol=1e-6)
