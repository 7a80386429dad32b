"""The API's contract under schemathesis, against the real handlers on the local stack.

`e2e-stack` (tests/integration/src/bin/) runs moto's server (JIT_TEST_AWS_ENDPOINT), the JumpCloud
simulator, the local OIDC issuer and the local API (ID tokens checked as API Gateway's JWT
authorizer does) in front of the real `grant`, `revoke` and `sync` handlers. schemathesis reads
the API's own document (`GET /openapi.json`) and sends what it generates from it, twice:

1. as erin, who is eligible for nothing and no admin: every request must be refused, so after
   the run nothing may have changed: no grant and no audit record in DynamoDB, no membership
   change sent to JumpCloud, no 2xx to a POST or DELETE;
2. as dave, an admin (grants happen: the document's examples name a real user and group), with
   the stateful phase following the document's links from a created grant: every membership
   change sent to JumpCloud must answer to an accepted change, and every stored grant to an
   accepted `POST /grants`.

Both runs check every response: no 5xx, a status the document declares, its content type, its
schema, problem+json errors, negative (schema-invalid) data refused. Two checks are left out, on
purpose:
- positive_data_acceptance: "schema-valid" here is not "valid": a page token must come from a
  previous page, a name must exist, a duration must be positive and within the policy's bounds;
  the document cannot say so, and the API's refusal of such input (400, 404, 422) is the point.
- unsupported_method and allow_header_conformance: a method without a route is answered by API
  Gateway itself (404 `{"message":"Not Found"}`), as the local API does; the functions never see it.

Usage (scripts/test.sh runs it): python tests/api/fuzz.py [--max-examples N] [--seed S]
with schemathesis installed (scripts/lib.sh ensure_fuzz_venv) and e2e-stack built.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
if not TARGET.is_absolute():
    TARGET = ROOT / TARGET
STACK = TARGET / "debug" / "e2e-stack"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXCLUDED_CHECKS = "positive_data_acceptance,unsupported_method,allow_header_conformance"


def read_line(stack, prefix):
    """The stack's next stdout line that starts with `prefix`, as JSON."""
    for line in stack.stdout:
        if line.startswith(prefix):
            return json.loads(line[len(prefix):])
    raise SystemExit(f"e2e-stack ended before it printed {prefix!r} (its log is above)")


def state(stack):
    stack.stdin.write("state\n")
    stack.stdin.flush()
    return read_line(stack, "state: ")


def schemathesis(ready, who, args, phases):
    token = ready["tokens"][who]
    command = [
        str(SCHEMATHESIS), "run", f"{ready['api']}/openapi.json",
        "--header", f"Authorization: Bearer {token}",
        "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
        "--phases", phases,
        "--max-examples", str(args.max_examples),
        "--seed", str(args.seed),
        "--workers", "1",
        "--generation-database", "none",
        "--request-timeout", "30",
        "--no-color",
        "--report", "junit", "--report-junit-path", str(args.reports / f"schemathesis-{who.split('@')[0]}.xml"),
    ]
    print(f"==> schemathesis as {who}: {' '.join(command[2:3] + command[5:])}", flush=True)
    return subprocess.run(command, check=False).returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-examples", type=int, default=int(os.environ.get("FUZZ_MAX_EXAMPLES", "25")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "20261130")))
    parser.add_argument("--reports", type=Path, default=ROOT / ".local" / "schemathesis")
    args = parser.parse_args()
    args.reports.mkdir(parents=True, exist_ok=True)
    if not STACK.exists():
        raise SystemExit(f"no {STACK}: cargo build -p integration-tests --bin e2e-stack")

    stack = subprocess.Popen([str(STACK)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    failures = []
    try:
        ready = read_line(stack, "e2e-stack: ")
        people = ready["people"]
        before = state(stack)

        # 1. Someone the policy allows nothing: every request refused, nothing changed.
        if schemathesis(ready, people["ineligible"], args, "examples,coverage,fuzzing") != 0:
            failures.append("schemathesis found failures as the ineligible user (above)")
        after = state(stack)
        print(f"    as {people['ineligible']}: {after['requests'] - before['requests']} requests reached the functions; "
              f"now {json.dumps({k: after[k] for k in ('accepted_changes', 'grants', 'audit_records', 'membership_changes')})}")
        for key in ("grants", "audit_records", "membership_changes"):
            if after[key] != before[key]:
                failures.append(f"refused requests changed {key}: {before[key]} -> {after[key]}")
        if after["accepted_changes"] != before["accepted_changes"]:
            failures.append(f"a change was accepted for someone eligible for nothing: {after['accepted_changes']}")
        if after["requests"] == before["requests"]:
            failures.append("no request reached the functions: the token or the stack is wrong")

        # 2. An admin: grants happen; each change in JumpCloud answers to an accepted request.
        if schemathesis(ready, people["admin"], args, "examples,coverage,fuzzing,stateful") != 0:
            failures.append("schemathesis found failures as the admin (above)")
        final = state(stack)
        accepted = final["accepted_changes"]
        print(f"    as {people['admin']}: {final['requests'] - after['requests']} requests reached the functions; "
              f"now {json.dumps({k: final[k] for k in ('accepted_changes', 'grants', 'audit_records', 'membership_changes')})}")
        creates = accepted.get("POST /grants", 0)
        changes = sum(accepted.get(route, 0) for route in ("POST /grants", "DELETE /grants/{id}", "POST /grants/{id}/approve"))
        if final["grants"] > creates:
            failures.append(f"{final['grants']} grants stored, only {creates} POST /grants accepted")
        if final["membership_changes"] > changes:
            failures.append(f"{final['membership_changes']} membership changes in JumpCloud, only {changes} accepted requests could make them")
        if creates == 0:
            failures.append("no grant was made as the admin: the document's examples no longer reach the success paths")
    finally:
        stack.stdin.close()
        try:
            stack.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stack.kill()
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    print(f"API contract fuzzing: {'failed' if failures else 'passed'} (JUnit reports in {args.reports})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
