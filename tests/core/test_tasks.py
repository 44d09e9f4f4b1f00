"""The task registry: naming a class by index or name, one way for the CLI, the explain API and its worker."""
from __future__ import annotations

import pytest

from diseaseid.tasks import get_task


@pytest.mark.parametrize("value, expected", [
    (0, 0), (3, 3), ("2", 2), ("003", 3), ("meningioma", 1), ("NoTumor", 2), (" pituitary ", 3),
])
def test_class_index(value, expected):
    assert get_task("tumor").class_index(value) == expected


@pytest.mark.parametrize("value", [4, -1, True, "4", "-1", "1.0", "+1", "banana", "",
                                   "²", "①", "٣", "𝟚", "1" * 4301, "9" * 7])
def test_class_index_rejects_with_the_choices(value):
    with pytest.raises(ValueError, match="0=glioma, 1=meningioma, 2=notumor, 3=pituitary"):
        get_task("tumor").class_index(value)
