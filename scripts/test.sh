#!/usr/bin/env bash
# Runs every test: formatting and lints, unit tests, and integration tests against the real local
# stack (moto's server, started here on a free loopback port, and the JumpCloud simulator).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_rust
ensure_venv

say "formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

start_moto
export JIT_TEST_AWS_ENDPOINT="$AWS_ENDPOINT_URL"

say "unit and integration tests"
cargo test --workspace --locked
