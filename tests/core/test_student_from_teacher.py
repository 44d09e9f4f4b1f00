"""A student cut from its teacher (``lite0_stage5`` with ``--init-partial``) and a teacher made of two models
(``--teacher A B``, ``diseaseid ensemble``): which tensors are copied, what the ensemble computes, what the
card records. Real shipped weights: the tumor teacher and the ensemble's second member."""
import json

import pytest
import torch

from diseaseid.cli import main
from diseaseid.models import LogitEnsemble, count_parameters, create_model, load_ensemble, load_model
from diseaseid.paths import REPO_ROOT
from diseaseid.train.config import TrainConfig
from diseaseid.train.trainer import DeviceImages, build_model, teacher_view_logits, view_params

TEACHER = REPO_ROOT / "weights" / "tumor" / "teacher.safetensors"
MEMBER = REPO_ROOT / "weights" / "tumor" / "ensemble" / "lite0-restarted.safetensors"


def test_lite0_stage5_is_lite0_cut_after_its_fifth_stage():
    full = create_model("lite0", num_classes=4, pretrained=True)
    cut = create_model("lite0_stage5", num_classes=4, pretrained=True)
    assert len(cut.blocks) == 5 and len(full.blocks) == 7
    assert count_parameters(cut) == 821_604 < 1_000_000
    assert cut.conv_head.in_channels == 112 and cut.conv_head.out_channels == 1024
    kept = {k: v for k, v in full.state_dict().items() if k.startswith(("conv_stem.", "bn1.", "blocks."))}
    cut_state = cut.state_dict()
    assert all(k in cut_state for k in kept if not k.startswith(("blocks.5.", "blocks.6.")))
    assert not any(k.startswith(("blocks.5.", "blocks.6.")) for k in cut_state)
    for k, v in kept.items():  # the ImageNet weights of the kept layers
        if k in cut_state:
            assert torch.equal(cut_state[k], v), k
    cut.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        features = cut.forward_features(x)
        stage5 = cut.blocks(cut.bn1(cut.conv_stem(x)))
    assert features.shape == (2, 1024, 14, 14) and stage5.shape == (2, 112, 14, 14)


def test_init_partial_copies_the_teachers_stem_and_stages_and_nothing_else():
    teacher, _ = load_model(TEACHER)
    cfg = TrainConfig(task="tumor", model="lite0_stage5", init=str(TEACHER), init_partial=True)
    student = build_model(cfg, 4, torch.device("cpu"), channels_last=False)
    ref = create_model("lite0_stage5", num_classes=4, pretrained=True).state_dict()
    t_state, s_state = teacher.state_dict(), student.state_dict()
    assert cfg.extra["init_tensors_copied"] == f"198 of {len(s_state)}"
    for k in s_state:
        if k.startswith(("conv_stem.", "bn1.", "blocks.")):
            assert torch.equal(s_state[k], t_state[k]), k  # the fine-tuned teacher's, not ImageNet's
            if k.endswith("weight") and s_state[k].dim() == 4:
                assert not torch.equal(s_state[k], ref[k]), k
    assert not torch.equal(s_state["bn2.weight"], t_state["bn2.weight"][:1024])
    assert s_state["conv_head.weight"].shape != t_state["conv_head.weight"].shape


def test_init_of_another_architecture_is_refused_without_partial_and_with_nothing_in_common():
    with pytest.raises(ValueError, match="holds tumor/lite0; this run trains tumor/lite0_stage5"):
        build_model(TrainConfig(task="tumor", model="lite0_stage5", init=str(TEACHER)), 4, torch.device("cpu"),
                    channels_last=False)
    with pytest.raises(ValueError, match="no tensor matches convnet2"):
        build_model(TrainConfig(task="tumor", model="convnet2", widths=[4, 6, 8], init=str(TEACHER),
                                init_partial=True), 4, torch.device("cpu"), channels_last=False)


def test_ensemble_is_the_mean_of_its_members_logits(fixtures_dir):
    from diseaseid.data.dataset import ImageFolder
    from diseaseid.tasks import get_task

    single, card = load_ensemble([TEACHER])
    assert not isinstance(single, LogitEnsemble) and card["arch"] == "lite0"
    model, card = load_ensemble([TEACHER, MEMBER])
    a, card_a = load_model(TEACHER)
    b, card_b = load_model(MEMBER)
    assert card["version"] == f"{card_a['version']}+{card_b['version']}"
    assert [m["version"] for m in card["members"]] == [card_a["version"], card_b["version"]]
    ds = ImageFolder.scan(fixtures_dir / "tumor", get_task("tumor"))
    images = DeviceImages(ds.images[:6], torch.device("cpu"))
    views = view_params(6, 2, seed=0)
    cached = teacher_view_logits(model, images, views)
    idx = torch.arange(6)
    with torch.no_grad():
        view1 = images.batch(idx, views=views[1])
        la, lb = a(view1), b(view1)
    assert torch.allclose(cached[1], (la + lb) / 2, atol=1e-4)
    assert not torch.allclose(la, lb, atol=1e-2)  # two different models, so the mean is not either


def test_ensemble_members_of_different_tasks_are_refused():
    dementia = REPO_ROOT / "weights" / "dementia" / "teacher.safetensors"
    with pytest.raises(ValueError, match="disagree on the task"):
        load_ensemble([TEACHER, dementia])


def test_student_of_an_ensemble_records_both_teachers(tmp_path, fixtures_dir):
    out = tmp_path / "s5"
    assert main(["train", "--task", "tumor", "--model", "lite0_stage5", "--init", str(TEACHER), "--init-partial",
                 "--teacher", str(TEACHER), str(MEMBER), "--kd-views", "2", "--data", str(fixtures_dir / "tumor"),
                 "--split", str(tmp_path / "split.json"), "--epochs", "1", "--batch-size", "8",
                 "--out", str(out), "--quiet"]) == 0
    card = json.loads((out / "student.json").read_text())  # a run with a teacher makes a student
    assert card["arch"] == "lite0_stage5" and card["parameters"] == 821_604
    teachers = card["training"]["teacher_from"]
    assert teachers["ensemble"] == "mean logits"
    assert [m["version"] for m in teachers["members"]] == [json.loads(p.with_suffix(".json").read_text())["version"]
                                                          for p in (TEACHER, MEMBER)]
    assert card["training"]["teacher"] == [str(TEACHER), str(MEMBER)]
    assert card["training"]["extra"]["init_tensors_copied"] == "198 of 206"
    student, _ = load_model(out / "student.safetensors")
    assert student.conv_head.out_channels == 1024


def test_ensemble_command_refuses_weights_of_another_task_before_reading_data():
    """Checked before the validation data is read, so it is answered where the data set is absent too."""
    with pytest.raises(SystemExit, match="the weights are for tumor, not dementia"):
        main(["ensemble", "--task", "dementia", "--weights", str(TEACHER), str(MEMBER)])
    dementia = REPO_ROOT / "weights" / "dementia" / "teacher.safetensors"
    with pytest.raises(SystemExit, match="disagree on the task"):
        main(["ensemble", "--task", "tumor", "--weights", str(TEACHER), str(dementia)])
