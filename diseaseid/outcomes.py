"""What an answer is: the one list of outcomes, kept free of heavy imports so that the answers' models
(``diseaseid.answers``) and the clients read it too. ``Outcome`` is the type; the constants are its values.

A flagged image gets no diagnosis, only the model's probabilities for tools that ask: ``wrong_task`` when another
task's detector accepts it (a brain MRI slice of another kind, e.g. a tumour study sent to the dementia task;
the answer names that task), else ``not_a_brain_mri``. How it is decided: ``diseaseid.serving.predictor``.
"""
from __future__ import annotations

from typing import Literal, get_args

Outcome = Literal["diagnosis", "not_a_brain_mri", "wrong_task"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
DIAGNOSIS, NOT_A_BRAIN_MRI, WRONG_TASK = OUTCOMES

NOT_A_BRAIN_MRI_DISPLAY = {"en": "Not a brain MRI slice", "ru": "Не похоже на срез МРТ мозга"}
# {task}: the task asked for, {other}: the task whose slices it looks like (both Task.title)
WRONG_TASK_DISPLAY = {"en": "Not the kind of brain MRI slice the {task} task reads (it looks like one for the "
                            "{other} task)",
                      "ru": "Не тот вид среза МРТ мозга, который читает задача «{task}» (похоже на срез для задачи "
                            "«{other}»)"}
