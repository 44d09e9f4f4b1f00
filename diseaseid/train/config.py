"""Training configuration: one dataclass, filled from the command line or an Optuna trial."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diseaseid.data.augment import AugmentConfig


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
    # Rician noise of the acquisition augmentation (diseaseid.data.augment.AugmentConfig): sigma drawn up to
    # `aug_noise` (fraction of the intensity range) for a share `aug_noise_p` of the images.
    aug_noise: float = 0.04
    aug_noise_p: float = 0.7
    # Scanner noise in the raw slice (diseaseid.data.scan_noise): `aug_scan_copies` noisy copies of every training
    # slice, Rician up to sigma `aug_scan_noise` (of 255) added before the head crop, computed once; a share
    # `aug_scan_p` of each batch is taken from a random copy instead of the clean slice. 0: off.
    aug_scan_noise: float = 0.0
    aug_scan_copies: int = 2
    aug_scan_p: float = 0.5
    # Resolution augmentation (AugmentConfig.blur): half the images down-sampled to a scale in [1 - aug_blur, 1]
    # and resized back; 0: off.
    aug_blur: float = 0.0
    # Feature consistency: each batch also runs un-augmented, and the loss gains `consistency` x the squared
    # distance between the augmented and the clean view's features (forward_features, the clean view detached),
    # relative to the clean features' mean square; 0: off. For heads refitted on frozen features later.
    consistency: float = 0.0
    # The convnets' head gate (ConvNet mask_background: feature cells without a head pixel zeroed).
    mask_background: bool = False
    # The convnets' input averaged over input_pool x input_pool pixels before the first block (ConvNet
    # input_pool): no detail finer than the coarsest realistic matrix; 1: off.
    input_pool: int = 1
    # Lite0 models: the stem convolution reads the 3 x 3 median of the input (diseaseid.models.median).
    input_median: bool = False
    # With input_median: a Gaussian of this many pixels after the median (MedianConv2d input_smooth); 0: off.
    input_smooth: float = 0.0
    balanced: bool = False  # class-weighted loss, for unbalanced tasks
    patience: int = 6  # early stopping, in epochs without improvement of `select`
    select: str = "macro_f1"  # validation metric that picks the best epoch
    seed: int = 0
    device: str = "auto"
    # Speed (docs/training.md has the measurements): "auto" is bf16 autocast on CUDA and float32 on the CPU
    # (bf16 was 4x slower on the 2-core development CPU, which lacks AVX512-BF16); channels_last None = on
    # CUDA and for the EfficientNets on the CPU (-25% time per image there), off for the small convnets.
    precision: str = "auto"
    channels_last: bool | None = None
    # Progressive resizing: the first `low_res_epochs` epochs at `low_res` pixels (global-pooling models only).
    low_res: int | None = None
    low_res_epochs: int = 0
    # Start from these weights (same architecture, widths and classes) instead of the architecture's default
    # initialisation: to train a shipped model further. The card records the file and its version.
    init: str | None = None
    # With `init_partial`, `init` may hold another architecture: every tensor whose name and shape match is
    # copied (a student cut from its teacher, such as lite0_stage5 from a fine-tuned lite0), the rest keep
    # their default initialisation. The card records how many were copied.
    init_partial: bool = False
    # Knowledge distillation (teacher = path to weights, or a list of paths: their mean logits, an ensemble);
    # see diseaseid.train.distill.
    teacher: str | list[str] | None = None
    kd_temperature: float = 4.0
    w_soft: float = 0.5
    w_ce: float = 0.5
    # Teacher logits computed once on un-augmented images and reused for augmented batches (cheap on a CPU);
    # False runs the teacher on every augmented batch.
    kd_cache: bool = True
    # Consistent distillation (Beyer et al. 2022) made cheap (FKD, Shen & Xing 2022): the teacher's logits for
    # `kd_views` seeded augmented views of every training image are computed once (and kept on disk); epoch e
    # trains on view e mod kd_views with exactly the logits the teacher gave that view. 0: logits of the
    # un-augmented images, reused for every augmented batch.
    kd_views: int = 0
    extra: dict = field(default_factory=dict)

    def teacher_paths(self) -> list[str]:
        if not self.teacher:
            return []
        return [self.teacher] if isinstance(self.teacher, str) else list(self.teacher)

    def problems(self) -> list[str]:
        """What is wrong with these settings before a run starts (empty: nothing): a share outside [0, 1], a
        count below 1, a negative rate or strength, an option the architecture does not have."""
        found = [f"--{name.replace('_', '-')} must lie in [0, 1], not {value:g}"
                 for name, value in (("aug_noise_p", self.aug_noise_p), ("aug_scan_p", self.aug_scan_p))
                 if not 0.0 <= value <= 1.0]
        if not 0.0 <= self.aug_blur < 1.0:
            found.append(f"--aug-blur must lie in [0, 1), not {self.aug_blur:g}")
        found += [f"--{name.replace('_', '-')} must be at least 1, not {value}"
                  for name, value in (("epochs", self.epochs), ("batch_size", self.batch_size),
                                      ("aug_scan_copies", self.aug_scan_copies), ("input_pool", self.input_pool))
                  if value < 1]
        # a learning rate of 0 is allowed: it packages --init's weights unchanged, with a fresh card
        found += [f"--{name.replace('_', '-')} must not be negative, not {value:g}"
                  for name, value in (("lr", self.lr), ("aug_noise", self.aug_noise),
                                      ("aug_scan_noise", self.aug_scan_noise), ("consistency", self.consistency),
                                      ("weight_decay", self.weight_decay), ("input_smooth", self.input_smooth))
                  if not value >= 0]
        try:
            self.model_args()
        except ValueError as exc:
            found.append(str(exc))
        return found

    def model_args(self) -> dict:
        args = {}
        if self.widths is not None:
            args["widths"] = list(self.widths)
        if self.dropout is not None:
            args["dropout" if self.model.startswith("convnet") else "drop_rate"] = self.dropout
        if self.mask_background:
            args["mask_background"] = True
        if self.input_pool != 1:
            if not self.model.startswith("convnet"):
                raise ValueError(f"--input-pool pools a convnet's input, not {self.model}'s")
            args["input_pool"] = int(self.input_pool)
        if self.input_median:
            if not self.model.startswith("lite0"):
                raise ValueError(f"--input-median filters a Lite0's stem (lite0, lite0_stage5), not {self.model}")
            args["input_median"] = True
        if self.input_smooth:
            if not self.input_median:
                raise ValueError("--input-smooth smooths the input median: it needs --input-median")
            args["input_smooth"] = float(self.input_smooth)
        return args

    def augment_config(self) -> AugmentConfig:
        """The acquisition augmentation this run trains with (the defaults but for noise and resolution)."""
        from diseaseid.data.augment import AugmentConfig

        return AugmentConfig(noise=self.aug_noise, noise_p=self.aug_noise_p, blur=self.aug_blur)

    def augmentation_card(self) -> dict:
        """What the model card records as the run's training augmentation: none, or the acquisition
        augmentation's parameters and, when on, the scanner noise added to the raw slice."""
        if not self.augment:
            return {}
        card = asdict(self.augment_config())
        if self.aug_scan_noise > 0:
            card["scan_noise"] = {"sigma_of_255": self.aug_scan_noise, "copies": self.aug_scan_copies,
                                  "share_of_batch": self.aug_scan_p,
                                  "where": "Rician, on the raw slice before the head crop"}
        return card

    def to_dict(self) -> dict:
        return asdict(self)
