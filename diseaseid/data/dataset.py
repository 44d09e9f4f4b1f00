"""Image-folder data sets (``ROOT/<class>/*.jpg|png``), decoded once and cached as uint8 arrays."""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diseaseid.data.head import preprocess_hash
from diseaseid.data.preprocess import IMAGE_SIZE, PREPROCESS, decode_image
from diseaseid.data.subjects import read_subjects_csv, subject_from_name
from diseaseid.paths import cache_dir
from diseaseid.tasks import Task

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass
class ImageFolder:
    """A list of slices with labels, subjects and slice positions; ``images`` decodes them (cached)."""

    root: Path
    task: Task
    files: list[str]  # posix paths relative to root
    labels: np.ndarray  # int64 class index
    subjects: list[str | None]
    slice_ranks: np.ndarray  # int64, -1 where unknown
    _images: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def scan(cls, root: str | Path, task: Task, per_class: int | None = None, seed: int = 0) -> ImageFolder:
        """Find ``root/<class>/*`` images for the task's classes (absent class folders are allowed).

        ``per_class`` keeps a seeded random subset of that many files per class (for quick runs)."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"data directory not found: {root}")
        table = read_subjects_csv(root)
        rng = np.random.default_rng(seed)
        files, labels = [], []
        for label, cls_name in enumerate(task.classes):
            folder = root / cls_name
            if not folder.is_dir():
                continue
            found = sorted(p.relative_to(root).as_posix() for p in folder.iterdir()
                           if p.suffix.lower() in IMAGE_SUFFIXES)
            if per_class is not None and len(found) > per_class:
                found = sorted(rng.choice(found, per_class, replace=False).tolist())
            files += found
            labels += [label] * len(found)
        if not files:
            raise FileNotFoundError(
                f"no images under {root}/<class>/ for classes {', '.join(task.classes)}")
        subjects, ranks = [], []
        for f in files:
            subject, rank = table.get(f) or subject_from_name(f)
            subjects.append(subject)
            ranks.append(-1 if rank is None else rank)
        return cls(root, task, files, np.array(labels, np.int64), subjects, np.array(ranks, np.int64))

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, index) -> ImageFolder:
        index = np.asarray(index, dtype=np.int64)
        sub = ImageFolder(self.root, self.task, [self.files[i] for i in index], self.labels[index],
                          [self.subjects[i] for i in index], self.slice_ranks[index])
        if self._images is not None:
            sub._images = self._images[index]
        return sub

    def select(self, files: list[str]) -> ImageFolder:
        pos = {f: i for i, f in enumerate(self.files)}
        missing = [f for f in files if f not in pos]
        if missing:
            raise KeyError(f"{len(missing)} files of the split are not in {self.root}, e.g. {missing[0]}")
        return self.subset([pos[f] for f in files])

    def fingerprint(self) -> str:
        """A hash of the file list, labels and file sizes: identifies the data a model saw."""
        h = hashlib.sha256()
        for f, y in zip(self.files, self.labels):
            h.update(f"{f}\t{y}\t{(self.root / f).stat().st_size}\n".encode())
        return h.hexdigest()[:16]

    def images_key(self) -> str:
        """The fingerprint and the pre-processing's hash: what caches of these images (decoded, embedded) are
        keyed by, so a change of pre-processing never reuses them."""
        return f"{self.fingerprint()}-{preprocess_hash()}"

    def subject_slices(self) -> dict[str, np.ndarray]:
        """Subject (sorted) -> indices of its slices, lowest first (stable for equal or unknown ranks); slices
        without a subject are left out."""
        by_subject: dict[str, list[int]] = {}
        for i, s in enumerate(self.subjects):
            if s is not None:
                by_subject.setdefault(s, []).append(i)
        out = {}
        for s in sorted(by_subject):
            idx = np.array(by_subject[s])
            out[s] = idx[np.argsort(self.slice_ranks[idx], kind="stable")]
        return out

    def subject_label(self, index: np.ndarray) -> int:
        """A subject's class: the majority label of its slices (they all share one in our data sets)."""
        return int(np.bincount(self.labels[index]).argmax())

    def class_counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.task.classes)}

    def stored_images(self) -> np.ndarray:
        """The files as stored, each resized to 224 x 224 (no head crop): what near-duplicate grouping hashes
        (the data sets' own definition of a near-copy), independent of the models' pre-processing."""
        from PIL import Image

        from diseaseid.data.preprocess import as_uint8_rgb, open_image

        if self._images is not None and not all((self.root / f).exists() for f in self.files):
            return self._images  # an in-memory data set (tests) has no files to read
        def load(f):
            rgb = as_uint8_rgb(open_image(self.root / f))
            return np.asarray(Image.fromarray(rgb).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR))

        with ThreadPoolExecutor(max_workers=4) as pool:
            return np.stack(list(pool.map(load, self.files)))

    @property
    def images(self) -> np.ndarray:
        """All slices as N x 224 x 224 x 3 uint8, decoded once (and cached on disk by fingerprint)."""
        if self._images is None:
            self._images = self._load_images()
        return self._images

    def _load_images(self) -> np.ndarray:
        cache = cache_dir() / f"decoded-{self.task.name}-{self.images_key()}-{PREPROCESS['name']}-{IMAGE_SIZE}.npy"
        if cache.exists():
            return np.load(cache)
        with ThreadPoolExecutor(max_workers=4) as pool:
            arrays = list(pool.map(lambda f: decode_image(self.root / f), self.files))
        images = np.stack(arrays)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, images)
        tmp.replace(cache)
        return images
