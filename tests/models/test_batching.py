import numpy as np
import pytest
import torch

from crossmodal.models.batching import length_sorted_batches, map_length_sorted, micro_batches


def test_micro_batches_cover_items_in_order():
    assert [list(b) for b in micro_batches(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(micro_batches([], 3)) == []


def test_length_sorted_batches_group_similar_lengths():
    texts = ["aaaa", "a", "aaa", "aa", "aaaaa"]
    assert list(length_sorted_batches(texts, 2)) == [[1, 3], [2, 0], [4]]


@pytest.mark.parametrize("as_tensor", [True, False])
def test_map_length_sorted_restores_input_order(as_tensor):
    texts = ["ccc", "a", "bb", "dddd", ""]
    seen = []

    def run(batch):
        seen.append(batch)
        rows = [[len(t), ord(t[0]) if t else 0] for t in batch]
        return torch.tensor(rows) if as_tensor else np.array(rows)

    out = map_length_sorted(texts, run, size=2)
    assert seen == [["", "a"], ["bb", "ccc"], ["dddd"]]  # each batch pads tightly
    expected = [[3, ord("c")], [1, ord("a")], [2, ord("b")], [4, ord("d")], [0, 0]]
    assert np.asarray(out).tolist() == expected
    assert isinstance(out, torch.Tensor) == as_tensor


def test_map_length_sorted_refuses_nothing():
    with pytest.raises(ValueError):
        map_length_sorted([], lambda batch: np.zeros((len(batch), 1)))
