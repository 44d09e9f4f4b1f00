"""Knowledge distillation loss (Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network")."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float = 4.0, w_soft: float = 0.5, w_ce: float = 0.5,
                      label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """``w_soft * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + w_ce * CE(student, y)``.

    The T^2 factor keeps the soft term's gradients on the scale of the hard term as T changes. The teacher's
    logits are detached: gradients flow only to the student."""
    t = temperature
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach().float() / t, dim=1)
    soft = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * t * t
    hard = F.cross_entropy(student_logits.float(), labels, weight=class_weights, label_smoothing=label_smoothing)
    return w_soft * soft + w_ce * hard
