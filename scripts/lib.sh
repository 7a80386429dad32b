# Shared by scripts/demo.sh and scripts/test.sh: installs what the local stack needs (once) and
# manages its background processes. Source it; don't run it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
LOCAL="$ROOT/.local"          # logs, seeds, ports of the local stack (git-ignored)
mkdir -p "$LOCAL"
# Where cargo puts the binaries: CARGO_TARGET_DIR when set (relative to the repository), else target/.
TARGET="${CARGO_TARGET_DIR:-target}"
[[ "$TARGET" == /* ]] || TARGET="$ROOT/$TARGET"
export JIT_BIN="$TARGET/debug"
export SAM_CLI_TELEMETRY=0 AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test   # moto accepts any; never real credentials
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"

# Pinned Python tools of the local stack (see ../shared/TOOLCHAIN.md for why these versions).
PY_REQUIREMENTS="moto[server]==5.2.5 cargo-lambda==1.9.2"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# require_binaries NAME...: each is a built binary of the workspace's debug build, or it stops here.
require_binaries() {
  local name
  for name in "$@"; do
    [[ -x "$JIT_BIN/$name" ]] || { echo "no $JIT_BIN/$name: build it first (cargo test --workspace builds it)" >&2; exit 1; }
  done
}

# ensure_python_env DIR "REQUIREMENTS" PURPOSE: a venv at DIR with exactly these pinned packages,
# installed once (a stamp records what is there).
ensure_python_env() {
  local dir=$1 requirements=$2 purpose=$3 stamp="$1/.installed" want
  want="$(python3 --version 2>&1) $requirements"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return; fi
  say "installing $purpose into ${dir#"$ROOT"/} ($requirements)"
  command -v python3 >/dev/null || { echo "python3 is required (3.9 or newer)" >&2; exit 1; }
  python3 -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --upgrade pip
  # shellcheck disable=SC2086
  "$dir/bin/python" -m pip install --quiet $requirements
  echo "$want" > "$stamp"
}

ensure_venv() { ensure_python_env "$VENV" "$PY_REQUIREMENTS" "the local stack's Python tools"; }

# SAM CLI and cfn-lint, for the deployment template's checks. Their own venv: SAM CLI pins boto3
# and its friends to versions that moto's would otherwise fight over (see ../shared/TOOLCHAIN.md).
SAM_VENV="$ROOT/.venv-sam"
SAM_REQUIREMENTS="aws-sam-cli==1.170.0 cfn-lint==1.58.0"
ensure_sam_venv() { ensure_python_env "$SAM_VENV" "$SAM_REQUIREMENTS" "the deployment checks' Python tools"; }

# checkov, the template's security scan. Its own venv too: it pins boto3==1.35.49 and networkx<2.7,
# where SAM CLI and cfn-lint bring boto3 1.43 and networkx 3.
CHECKOV_VENV="$ROOT/.venv-checkov"
CHECKOV_REQUIREMENTS="checkov==3.3.30"
ensure_checkov_venv() { ensure_python_env "$CHECKOV_VENV" "$CHECKOV_REQUIREMENTS" "the template's security scan"; }

# schemathesis, the API's contract fuzzer (tests/api/fuzz.py). Its own venv: it pins hypothesis,
# jsonschema and friends that nothing else here needs.
FUZZ_VENV="$ROOT/.venv-schemathesis"
FUZZ_REQUIREMENTS="schemathesis==4.32.5"
ensure_fuzz_venv() { ensure_python_env "$FUZZ_VENV" "$FUZZ_REQUIREMENTS" "the API's contract fuzzer"; }

# cargo-audit, built once from crates.io into .tools/ (about 8 minutes on 2 cores).
CARGO_AUDIT_VERSION=0.22.0
ensure_cargo_audit() {
  local bin="$ROOT/.tools/bin/cargo-audit"
  if [[ -x "$bin" ]] && "$bin" audit --version 2>/dev/null | grep -q "$CARGO_AUDIT_VERSION"; then return; fi
  say "installing cargo-audit $CARGO_AUDIT_VERSION into .tools (first use only)"
  cargo install --locked --quiet cargo-audit --version "$CARGO_AUDIT_VERSION" --root "$ROOT/.tools"
}

# The portal's browser tests: Debian's Chromium (apt; nothing downloads a browser of its own) and
# playwright-core, pinned by tests/browser/package-lock.json, in tests/browser/node_modules.
# Installed on first use; CHROMIUM names another Chromium binary.
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
ensure_browser_tools() {
  if [[ ! -x "$CHROMIUM" ]]; then
    say "installing Debian's chromium package (first use only)"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
      command -v sudo >/dev/null || { echo "the browser tests need Chromium: apt-get install chromium (or set CHROMIUM)" >&2; exit 1; }
      sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium
  fi
  command -v npm >/dev/null || { echo "the browser tests need Node.js (20 or newer) and npm" >&2; exit 1; }
  local dir="$ROOT/tests/browser" want
  want="$(sha256sum < "$dir/package-lock.json")"
  if [[ -f "$dir/node_modules/.installed" && "$(cat "$dir/node_modules/.installed")" == "$want" ]]; then return; fi
  say "installing playwright-core into tests/browser/node_modules (first use only)"
  # --ignore-scripts: no install script runs (playwright-core has none that fetches a browser anyway).
  (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --silent)
  echo "$want" > "$dir/node_modules/.installed"
}

# The CDK app (infra/cdk): aws-cdk-lib, constructs, cargo-lambda-cdk, cdk-nag, the CDK CLI and
# TypeScript, pinned by infra/cdk/package-lock.json, in infra/cdk/node_modules. Installed by `npm ci`
# on first use and whenever the lockfile (or node) changes; no install script runs, nothing but the
# npm registry is reached.
CDK_DIR="$ROOT/infra/cdk"
ensure_cdk_tools() {
  command -v npm >/dev/null || { echo "the CDK app needs Node.js (20 or newer) and npm" >&2; exit 1; }
  local want
  want="$(node --version) $(sha256sum < "$CDK_DIR/package-lock.json")"
  if [[ -f "$CDK_DIR/node_modules/.installed" && "$(cat "$CDK_DIR/node_modules/.installed")" == "$want" ]]; then return; fi
  say "installing the CDK app's tools into infra/cdk/node_modules (npm ci; first use, or the lockfile changed)"
  (cd "$CDK_DIR" && npm ci --no-audit --no-fund --ignore-scripts --silent)
  echo "$want" > "$CDK_DIR/node_modules/.installed"
}
# The CDK CLI stays offline: no telemetry, no check for a newer version (notices: --no-notices).
export CDK_DISABLE_CLI_TELEMETRY=1 CDK_DISABLE_VERSION_CHECK=1

ensure_rust() {
  command -v cargo >/dev/null || { echo "cargo is required: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits for a server to accept connections (start-up), at most $2 seconds.
wait_port() {
  local port=$1 limit=${2:-60} i=0
  until python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(s.connect_ex(('127.0.0.1', $port)))" 2>/dev/null; do
    i=$((i + 1))
    if (( i > limit * 5 )); then echo "nothing listens on 127.0.0.1:$port after ${limit}s" >&2; return 1; fi
    sleep 0.2
  done
}

BACKGROUND_PIDS=()
cleanup() {
  local pid
  for pid in "${BACKGROUND_PIDS[@]:-}"; do
    [[ -n "$pid" ]] || continue
    # Each background job runs in its own process group (setsid): end the whole group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${BACKGROUND_PIDS[@]:-}"; do
    [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true
  done
  BACKGROUND_PIDS=()
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
trap 'cleanup; exit 129' HUP   # the terminal closed: setsid'd servers would not notice

# start_background NAME COMMAND...: runs in its own process group, output to .local/NAME.log.
start_background() {
  local name=$1; shift
  setsid "$@" >"$LOCAL/$name.log" 2>&1 < /dev/null &
  BACKGROUND_PIDS+=("$!")
}

start_moto() {
  MOTO_PORT=$(free_port)
  # moto's own server, its DynamoDB transactions snapshotting items, not tables (see the script).
  start_background moto "$VENV/bin/python" "$ROOT/scripts/moto_server.py" -H 127.0.0.1 -p "$MOTO_PORT"
  wait_port "$MOTO_PORT" 60 || { cat "$LOCAL/moto.log" >&2; exit 1; }
  export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
  say "moto's server (DynamoDB, Secrets Manager, EventBridge, Scheduler, SQS) on $AWS_ENDPOINT_URL"
}
