"""What an answer is: the one list of outcomes (issue 25), kept free of heavy imports so that the services'
schemas and clients read it too.

A flagged image gets no diagnosis, only the model's probabilities for tools that ask: ``wrong_task`` when another
task's detector accepts it (a brain MRI slice of another kind, e.g. a tumour study sent to the dementia task;
the answer names that task), else ``not_a_brain_mri``. How it is decided: ``diseaseid.serving.predictor``.
"""
from __future__ import annotations

DIAGNOSIS = "diagnosis"
NOT_A_BRAIN_MRI = "not_a_brain_mri"
WRONG_TASK = "wrong_task"
OUTCOMES = (DIAGNOSIS, NOT_A_BRAIN_MRI, WRONG_TASK)

NOT_A_BRAIN_MRI_DISPLAY = {"en": "Not a brain MRI slice", "ru": "Не похоже на срез МРТ мозга"}
# {task}: the task asked for, {other}: the task whose slices it looks like (both Task.title)
WRONG_TASK_DISPLAY = {"en": "Not the kind of brain MRI slice the {task} task reads (it looks like one for the "
                            "{other} task)",
                      "ru": "Не тот вид среза МРТ мозга, который читает задача «{task}» (похоже на срез для задачи "
                            "«{other}»)"}
