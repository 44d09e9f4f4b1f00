"""The registry of diagnostic tasks: adding a task is one entry here plus its data."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Task:
    name: str
    classes: tuple[str, ...]  # class folder names, in label order
    display_en: tuple[str, ...]
    display_ru: tuple[str, ...]
    data_dir: str  # default location below the shared data root
    description: str = ""
    # Group near-duplicate images by perceptual hash before splitting. Off where
    # subjects already group adjacent slices (and unrelated brains would merge).
    group_by_phash: bool = True
    subject_level: bool = False  # evaluate by subject as well as by slice
    default_student: str = "convnet1"
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def display(self, index: int, lang: str = "en") -> str:
        return (self.display_ru if lang == "ru" else self.display_en)[index]

    def class_index(self, value: str | int) -> int:
        """The class ``value`` names: its index (an int, or ASCII digits) or its name in any case
        (``"2"``, ``"notumor"``, ``"NoTumor"``). ValueError listing the classes for anything else."""
        if isinstance(value, int) and not isinstance(value, bool):
            index = value
        else:
            text = str(value).strip()
            # ASCII digits only: str.isdigit() also accepts "²", which int() refuses; and a few digits at
            # most, since int() of thousands of digits raises too.
            if text.isascii() and text.isdigit() and len(text) <= 6:
                index = int(text)
            else:
                index = {c.lower(): i for i, c in enumerate(self.classes)}.get(text.lower(), -1)
        if 0 <= index < self.num_classes:
            return index
        raise ValueError(f"unknown target class for task {self.name!r}; use a name or an index: "
                         + ", ".join(f"{i}={c}" for i, c in enumerate(self.classes)))


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    TASKS[task.name] = task
    return task


register_task(Task(
    name="tumor",
    classes=("glioma", "meningioma", "notumor", "pituitary"),
    display_en=("Glioma", "Meningioma", "No tumor", "Pituitary tumor"),
    display_ru=("Глиома", "Менингиома", "Опухоль не выявлена", "Опухоль гипофиза"),
    data_dir="brain-tumor-mri/Training",
    description="Brain tumor type from one MRI slice",
    group_by_phash=True,
))

register_task(Task(
    name="dementia",
    classes=("NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented"),
    display_en=("Non-demented", "Very mild dementia", "Mild dementia", "Moderate dementia"),
    display_ru=("Деменции нет", "Очень лёгкая деменция", "Лёгкая деменция", "Умеренная деменция"),
    data_dir="alzheimer-mri",
    description="Dementia stage from axial MRI slices (best used per subject)",
    group_by_phash=False,
    subject_level=True,
))


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
