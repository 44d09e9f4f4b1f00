"""Hash-neighbour pairs and union-find by value (what mutants of the pHash code survived before)."""
import numpy as np

from diseaseid.data.phash import UnionFind, group_ids, near_duplicate_pairs


def test_default_distance_is_four_bits_and_pairs_later_indices_right():
    base = np.uint64(0)
    hashes = np.array([0xFFFF_0000_0000_0000,  # far from everything
                       int(base),
                       int(base) | 0b1111,  # 4 bits from index 1: a pair by default
                       int(base) | 0b11111_0000_0000,  # 5 bits from index 1, 9 from index 2: no pair
                       0xFFFF_0000_0000_0001],  # 1 bit from index 0: the pair (0, 4)
                      dtype=np.uint64)
    assert near_duplicate_pairs(hashes).tolist() == [[0, 4], [1, 2]]
    assert near_duplicate_pairs(hashes, max_distance=5).tolist() == [[0, 4], [1, 2], [1, 3]]
    assert near_duplicate_pairs(hashes, max_distance=0).tolist() == []
    assert near_duplicate_pairs(hashes, max_distance=0).dtype == np.int64


def test_find_compresses_a_chain_to_its_root():
    uf = UnionFind(4)
    uf.parent[:] = [0, 0, 1, 2]  # a chain 3 -> 2 -> 1 -> 0
    assert uf.find(3) == 0
    assert uf.parent.tolist() == [0, 0, 0, 0]
    assert group_ids(5, np.array([[3, 4], [1, 2], [2, 3]])).tolist() == [0, 1, 1, 1, 1]
