"""Training configuration: one dataclass, filled from the command line or an Optuna trial."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class TrainConfig:
    task: str = "tumor"
    model: str = "convnet1"
    widths: list[int] | None = None  # convnets only; None keeps the architecture's default
    dropout: float | None = None
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    augment: bool = True
    balanced: bool = False  # class-weighted loss, for unbalanced tasks
    patience: int = 6  # early stopping, in epochs without improvement of `select`
    select: str = "macro_f1"  # validation metric that picks the best epoch
    seed: int = 0
    device: str = "auto"
    # Start from these weights (same architecture, widths and classes) instead of the architecture's default
    # initialisation: to train a shipped model further. The card records the file and its version.
    init: str | None = None
    # Knowledge distillation (teacher = path to weights); see diseaseid.train.distill.
    teacher: str | None = None
    kd_temperature: float = 4.0
    w_soft: float = 0.5
    w_ce: float = 0.5
    # Teacher logits computed once on un-augmented images and reused for augmented batches (cheap on a CPU);
    # False runs the teacher on every augmented batch.
    kd_cache: bool = True
    extra: dict = field(default_factory=dict)

    def model_args(self) -> dict:
        args = {}
        if self.widths is not None:
            args["widths"] = list(self.widths)
        if self.dropout is not None:
            args["dropout" if self.model.startswith("convnet") else "drop_rate"] = self.dropout
        return args

    def to_dict(self) -> dict:
        return asdict(self)
