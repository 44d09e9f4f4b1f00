"""The registry of diagnostic tasks: adding a task is one entry here plus its data."""
from __future__ import annotations

from dataclasses import dataclass


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
    # A screening answer besides the classes: these classes are "normal", the others "impaired"; the
    # probability of impairment is the sum of the others' probabilities.
    normal_classes: tuple[str, ...] = ()
    # What the task is called in a sentence ("the brain tumor task"), in English and Russian; its name when unset.
    title_en: str = ""
    title_ru: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def title(self, lang: str = "en") -> str:
        return (self.title_ru if lang == "ru" else self.title_en) or self.name

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

    def screening(self, probabilities) -> dict | None:
        """``{"impaired_probability", "impaired", "display_en", "display_ru"}`` from class probabilities (in
        class order), or None where the task has no screening answer. Impaired when the probability of any
        non-normal class is at least one half."""
        if not self.normal_classes:
            return None
        normal = sum(float(probabilities[self.classes.index(c)]) for c in self.normal_classes)
        impaired = min(1.0, max(0.0, 1.0 - normal))
        flag = impaired >= 0.5
        return {"impaired_probability": impaired, "impaired": flag,
                "display_en": "Cognitive impairment suspected" if flag else "Cognitively normal",
                "display_ru": "Подозрение на когнитивное нарушение" if flag else "Когнитивная норма"}


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
    title_en="brain tumor",
    title_ru="опухоль мозга",
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
    normal_classes=("NonDemented",),
    title_en="dementia",
    title_ru="деменция",
))


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
