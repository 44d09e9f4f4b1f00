#!/usr/bin/env bash
# Keep a copy of a training run's checkpoint after every epoch, for `diseaseid average` (weight averaging of
# the last epochs). Start it beside the run; it stops when no process trains into that folder any more.
# Usage: bash scripts/snapshot_epochs.sh runs/tumor-teacher-20
set -euo pipefail
run=${1:?usage: snapshot_epochs.sh RUN_DIR}
last=""
copy() {
  local epoch
  epoch=$(.venv/bin/python -c "import torch,sys; print(torch.load(sys.argv[1], map_location='cpu', weights_only=False)['epoch'])" "$run/checkpoint.pt")
  cp "$run/checkpoint.pt" "$run/epoch-$(printf %02d "$epoch").pt"
}
while pgrep -f -- "--out $run( |$)" >/dev/null || [ -z "$last" ]; do
  if [ -f "$run/checkpoint.pt" ]; then
    m=$(stat -c %Y "$run/checkpoint.pt")
    if [ "$m" != "$last" ]; then last=$m; copy; fi
  fi
  sleep 20
done
if [ -f "$run/checkpoint.pt" ]; then copy; fi  # the last epoch
