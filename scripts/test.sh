#!/usr/bin/env bash
# Runs every test: formatting and lints, unit tests, and integration tests against the real local
# stack (moto's server, started here on a free loopback port, and the JumpCloud simulator).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_rust
ensure_venv
# A full run rebuilds the workspace's crates anyway; incremental caches would add ~2 GB to target/.
export CARGO_INCREMENTAL=0

say "formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

say "dependency advisories: cargo audit against the RustSec database"
# No internet here: the snapshot beside the project (../shared/reference) is the database. Where
# there is none, the check says so and is skipped (it never passes silently).
ADVISORY_DB="${ADVISORY_DB:-$ROOT/../shared/reference/rustsec-advisory-db}"
if [[ -d "$ADVISORY_DB/crates" ]]; then
  ensure_cargo_audit
  # --deny warnings: an unmaintained or yanked crate fails too, not only a vulnerability.
  "$ROOT/.tools/bin/cargo-audit" audit --db "$ADVISORY_DB" --no-fetch --deny warnings
else
  say "SKIPPED: no RustSec advisory database at $ADVISORY_DB (set ADVISORY_DB to one)"
fi

say "deployment template: cfn-lint, sam validate --lint"
ensure_sam_venv
lint_rc=0
"$SAM_VENV/bin/cfn-lint" infra/template.yaml || lint_rc=$?
# cfn-lint's exit code is a bit set: 2 errors, 4 warnings, 8 informational (1: it failed itself).
if (( lint_rc & 3 )); then echo "cfn-lint found errors in infra/template.yaml (exit $lint_rc)" >&2; exit 1; fi
if (( lint_rc != 0 )); then say "cfn-lint: warnings only (printed above), exit $lint_rc: not failing"; fi
# --lint runs cfn-lint through SAM's own transform: no AWS account, no credentials needed.
"$SAM_VENV/bin/sam" validate --lint --template-file infra/template.yaml

say "deployment template: checkov (what stays, and why: infra/checkov-skips.yaml)"
ensure_checkov_venv
# Offline: --skip-download makes no call to Prisma Cloud for guidelines, and
# CKV_SKIP_PACKAGE_UPDATE_CHECK no call to PyPI for a newer checkov. --soft-fail: findings exit 0
# (checkov_gate.py judges them against the skip file), so a non-zero exit is checkov failing.
CKV_SKIP_PACKAGE_UPDATE_CHECK=true "$CHECKOV_VENV/bin/checkov" --file infra/template.yaml \
  --framework cloudformation --skip-download --soft-fail --output json > "$LOCAL/checkov.json"
"$CHECKOV_VENV/bin/python" scripts/checkov_gate.py "$LOCAL/checkov.json" infra/checkov-skips.yaml

say "deployment template: sam build"
# sam build runs the project's cargo-lambda (.venv) for arm64: outputs in target/lambda and
# target/aarch64-unknown-linux-gnu, apart from the debug build the tests use.
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
PATH="$VENV/bin:$PATH" "$SAM_VENV/bin/sam" build
for fn in SyncFunction GrantFunction RevokeFunction; do
  [[ -x .aws-sam/build/$fn/bootstrap ]] || { echo "sam build produced no .aws-sam/build/$fn/bootstrap" >&2; exit 1; }
done

say "CDK app (infra/cdk): the same stack as the SAM template, its assertions, cdk-nag; cdk synth; cfn-lint"
ensure_cdk_tools
# The tests synthesize without building the functions (bundling skipped) and compare with the SAM
# template after samtranslator's transform (the SAM venv's python); node's test runner reports.
(cd infra/cdk && SAM_PYTHON="$SAM_VENV/bin/python" npm test --silent)
# What `cdk deploy` synthesizes, bar the functions' build (JIT_CDK_SKIP_BUNDLING=1): cdk-nag's
# unacknowledged findings fail it. --app: npm test has just compiled the app (cdk.json compiles first).
(cd infra/cdk && JIT_CDK_SKIP_BUNDLING=1 npx cdk synth --app "node dist/bin/jit-access.js" --no-notices --quiet)
lint_rc=0
"$SAM_VENV/bin/cfn-lint" infra/cdk/cdk.out/JitAccess.template.json || lint_rc=$?
# Warnings (exit 4) are expected: W3005, the CDK's DependsOn that a reference already implies.
if (( lint_rc & 3 )); then echo "cfn-lint found errors in the CDK app's template (exit $lint_rc)" >&2; exit 1; fi
if (( lint_rc != 0 )); then say "cfn-lint: warnings only (printed above), exit $lint_rc: not failing"; fi

say "the tests' moto server answers as moto does (scripts/moto_server_check.py)"
"$VENV/bin/python" scripts/moto_server_check.py

start_moto
export JIT_TEST_AWS_ENDPOINT="$AWS_ENDPOINT_URL"

say "unit and integration tests"
cargo test --workspace --locked

say "the portal in headless Chromium: loads, no CSP violation, sign-in round trip, each page, end to end (tests/browser/)"
ensure_browser_tools
# `cargo test` has built them (a package's binaries are built for its integration tests): a
# `cargo build -p integration-tests` here would resolve features apart from the workspace's and build
# a second copy of the shared crate and its dependencies (minutes, and a GB of disk).
require_binaries portal-serve e2e-stack soak
export PORTAL_SERVE="$JIT_BIN/portal-serve"
node tests/browser/smoke.mjs
node tests/browser/pages.mjs
# The real stack: moto (JIT_TEST_AWS_ENDPOINT), the simulator, the local issuer and API, the handlers.
node tests/browser/e2e.mjs

say "the API's contract under schemathesis: the real handlers behind the local API, as a user the policy allows nothing and as an admin (tests/api/fuzz.py)"
ensure_fuzz_venv
"$FUZZ_VENV/bin/python" tests/api/fuzz.py

say "soak, short: 40 grants on the local stack under JumpCloud faults and an outage, then JumpCloud against the record (tests/integration/src/bin/soak.rs; by hand: --grants 10000)"
"$JIT_BIN/soak" --grants 40
