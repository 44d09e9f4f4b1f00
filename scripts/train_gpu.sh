#!/usr/bin/env bash
# The CPU recipe of the shipped tumor models (scripts/train_cpu.sh), at GPU length, for a lent GPU machine (not
# yet run: no GPU was lent to the sessions that wrote it). On an H100/H200 the reference recipe took about
# 1 minute for 20 epochs of Lite0 on `tumor`.
#
# Nothing is shipped unless SHIP=1: every run writes to runs/gpu/ and the last stage prints its validation
# figures beside the shipped models' cards, so a session can compare before it replaces anything. With SHIP=1
# the teacher and the student soup replace the shipped ones, and ood-fit refits the OOD statistics on the new
# student (the OOD detector of both tasks: docs/ood.md).
#
# Usage: bash scripts/train_gpu.sh [stage ...]     e.g. SHIP=1 bash scripts/train_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEV=${DEVICE:-cuda}
R=runs/gpu
stages=${*:-tumor-teacher tumor-student tumor-ablation tumor-soup tumor-search dementia-teacher report}
ship() { if [ "${SHIP:-0}" = 1 ]; then echo "--ship $1"; fi; }
for s in $stages; do
  echo "=== $s $(date -u +%FT%TZ)"
  case $s in
    tumor-teacher)  # the reference recipe: 20 epochs from ImageNet, warmup + cosine, label smoothing
      $PY -m diseaseid train --task tumor --model lite0 --epochs 20 --batch-size 64 --lr 1e-3 --weight-decay 0.01 \
        --label-smoothing 0.1 --warmup-epochs 1 --patience 20 --select accuracy --device "$DEV" \
        --out $R/tumor-teacher $(ship teacher) ;;
    tumor-student)  # lite0_stage5 cut from the new teacher, distilled online from it and the shipped teacher
      $PY -m diseaseid train --task tumor --model lite0_stage5 --init $R/tumor-teacher/teacher.safetensors \
        --init-partial --epochs 40 --batch-size 64 --lr 1e-3 --weight-decay 0.01 --label-smoothing 0.1 \
        --warmup-epochs 1 --patience 40 --select accuracy \
        --teacher $R/tumor-teacher/teacher.safetensors weights/tumor/teacher.safetensors --kd-online \
        --kd-temperature 2 --w-soft 0.7 --w-ce 0.3 --device "$DEV" --out $R/tumor-student ;;
    tumor-ablation)  # the same student, initialisation and schedule without the teachers' logits
      $PY -m diseaseid train --task tumor --model lite0_stage5 --init $R/tumor-teacher/teacher.safetensors \
        --init-partial --epochs 40 --batch-size 64 --lr 1e-3 --weight-decay 0.01 --label-smoothing 0.1 \
        --warmup-epochs 1 --patience 40 --select accuracy --device "$DEV" --out $R/tumor-ablation ;;
    tumor-soup)  # their uniform model soup (same initialisation and seed), as the shipped student was made
      $PY -m diseaseid average --task tumor --weights $R/tumor-student/student.safetensors \
        $R/tumor-ablation/student.safetensors --out $R/tumor-soup $(ship student)
      if [ "${SHIP:-0}" = 1 ]; then $PY -m diseaseid ood-fit --task tumor dementia --threads 8; fi ;;
    tumor-search)  # Optuna (TPE + median pruning) over the ConvNet1 student's widths and distillation recipe
      $PY -m diseaseid search --task tumor --model convnet1 --teacher $R/tumor-teacher/teacher.safetensors \
        --trials 20 --epochs 10,40 --device "$DEV" --out $R/search/tumor-convnet1-kd ;;
    dementia-teacher)  # Lite0 fine-tuned end to end; the shipped dementia heads (frozen features, chosen by
      # subject-grouped CV: scripts/train_cpu.sh dementia-cv, dementia-ship) stay unless it beats their CV figures
      $PY -m diseaseid train --task dementia --model lite0 --epochs 20 --batch-size 64 --lr 5e-4 --weight-decay 0.05 \
        --select subject_balanced_accuracy --device "$DEV" --out $R/dementia-teacher ;;
    report)  # the validation figures of every run here beside the shipped cards'
      $PY - "$R" <<'EOF'
import json, sys
from pathlib import Path

def row(card_path):
    c = json.loads(Path(card_path).read_text())
    v = c.get("metrics", {}).get("validation", {})
    figures = ", ".join(f"{k} {v[k]:.4f}" for k in ("accuracy", "balanced_accuracy", "subject_balanced_accuracy")
                        if isinstance(v.get(k), (int, float)))
    return f"{str(card_path):<55} {c.get('arch', '?'):<13} {c.get('version', '?'):<13} {figures}"

for path in sorted(Path("weights").glob("*/*.json")) + sorted(Path(sys.argv[1]).glob("*/*.json")):
    if path.stem in ("student", "teacher"):
        print(row(path))
EOF
      ;;
    *) echo "unknown stage $s"; exit 2 ;;
  esac
done
