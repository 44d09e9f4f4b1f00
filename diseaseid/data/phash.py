"""64-bit perceptual hashes and grouping of near-duplicate images (union-find over hash neighbours)."""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.fft import dctn


def phash(img: np.ndarray) -> np.uint64:
    """DCT perceptual hash: 32x32 grayscale, keep the 8x8 lowest frequencies, threshold at their median."""
    gray = Image.fromarray(img).convert("L").resize((32, 32), Image.LANCZOS)
    coeffs = dctn(np.asarray(gray, dtype=np.float64), norm="ortho")[:8, :8]
    bits = (coeffs > np.median(coeffs)).ravel()
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))


def phashes(images: np.ndarray) -> np.ndarray:
    return np.array([phash(im) for im in images], dtype=np.uint64)


class UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def labels(self) -> np.ndarray:
        return np.array([self.find(i) for i in range(len(self.parent))])


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int = 4) -> np.ndarray:
    """All index pairs (i < j) whose hashes differ in at most ``max_distance`` bits."""
    pairs = []
    for i in range(len(hashes) - 1):
        dist = np.bitwise_count(hashes[i + 1:] ^ hashes[i])
        js = np.nonzero(dist <= max_distance)[0] + i + 1
        pairs.extend((i, int(j)) for j in js)
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def group_ids(n: int, pairs: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """Connected components over ``pairs``, optionally also joining items that share a ``base`` id."""
    uf = UnionFind(n)
    if base is not None:
        first: dict = {}
        for i, b in enumerate(base):
            if b is None:
                continue
            if b in first:
                uf.union(first[b], i)
            else:
                first[b] = i
    for a, b in pairs:
        uf.union(int(a), int(b))
    return uf.labels()
