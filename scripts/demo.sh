#!/usr/bin/env bash
# The main job, locally: moto's server and the JumpCloud simulator on free loopback ports, the
# resources created by `jitctl setup`, the functions served by `cargo lambda watch`, the local
# OIDC issuer (people sign in as the simulator's users) and the local API in front of the
# functions (the template's routes, tokens checked as API Gateway's JWT authorizer does), the local
# schedule runner (moto stores schedules but never fires them), then a walk-through:
# sync -> grant -> the membership in JumpCloud -> expiry -> revoke -> membership gone, audit trail;
# and a grant whose schedule is lost, ended by the sweep. Everything stops on exit or Ctrl-C;
# `--keep` leaves the stack running until Ctrl-C so you can explore it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

KEEP=false
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=true ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

ensure_rust
ensure_venv
export PATH="$VENV/bin:$PATH"   # cargo-lambda

say "building the functions, jitctl, the simulator, the local OIDC issuer and the local API"
cargo build --workspace --bins --quiet

start_moto

# The simulator's organization: generated, with suspended users, dynamic groups and managers.
SIM_KEY="local-sim-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
SIM_PORT_FILE="$LOCAL/sim.port"; rm -f "$SIM_PORT_FILE"
start_background jumpcloud-sim "$JIT_BIN/jumpcloud-sim" --port 0 --port-file "$SIM_PORT_FILE" \
  --users 500 --groups 40 --avg-members 25 --seed 7 --api-key "$SIM_KEY"
for _ in $(seq 1 100); do [[ -s "$SIM_PORT_FILE" ]] && break; sleep 0.1; done
[[ -s "$SIM_PORT_FILE" ]] || { cat "$LOCAL/jumpcloud-sim.log" >&2; exit 1; }
SIM_URL="http://127.0.0.1:$(cat "$SIM_PORT_FILE")"
say "JumpCloud simulator on $SIM_URL (500 users, 40 groups)"

# People sign in at the local OIDC issuer (JumpCloud's OIDC SSO application in production) as any
# activated user of the simulator; the portal is the local API's `/`, its client id jit-portal.
ISSUER_PORT=$(free_port) API_PORT=$(free_port)
API_URL="http://127.0.0.1:$API_PORT"
export OIDC_ISSUER="http://127.0.0.1:$ISSUER_PORT" OIDC_CLIENT_ID=jit-portal
start_background oidc-issuer "$JIT_BIN/jit-oidc-issuer" --port "$ISSUER_PORT" \
  --client "$OIDC_CLIENT_ID=$API_URL/" --sim-url "$SIM_URL"
wait_port "$ISSUER_PORT" 30 || { cat "$LOCAL/oidc-issuer.log" >&2; exit 1; }
say "local OIDC issuer on $OIDC_ISSUER (client $OIDC_CLIENT_ID, redirect $API_URL/)"

# The functions' configuration: the SPEC's variables, pointed at the local stack.
export TABLE_NAME=jit-access-local SCHEDULE_GROUP=jit-access-local EVENT_BUS_NAME=jit-access-local
export JUMPCLOUD_API_URL="$SIM_URL" REQUESTABLE_GROUPS='prod-*,engineering*' RUST_LOG=info
# Schedules target the local revoke function through the runner; the ARNs only have to be well formed.
export REVOKE_FUNCTION_ARN=arn:aws:lambda:us-east-1:123456789012:function:revoke
export SCHEDULER_ROLE_ARN=arn:aws:iam::123456789012:role/jit-access-scheduler
export MIN_GRANT_DURATION=1m
# The sample events' IAM caller stands for the security team's role: an admin. People sign in with
# JWTs (the walk-through signs requests as several of the simulator's users).
export ADMIN_PRINCIPALS=arn:aws:iam::123456789012:user/alice
# The full sync fans out over SQS (moto's), as a large organization's does: the 500 users in parts
# of 100, the groups in parts of 10; `jitctl run-schedules` relays the parts to `sync` (Lambda's SQS
# event source mapping in AWS). moto names a queue {endpoint}/{account}/{name}.
export SYNC_QUEUE_URL="$AWS_ENDPOINT_URL/123456789012/jit-access-local-sync-parts"
export FANOUT_ABOVE_USERS=100 FANOUT_USERS_PER_PART=100 FANOUT_GROUPS_PER_PART=10
ENV_FILE="$LOCAL/functions.env"
{
  for var in TABLE_NAME SCHEDULE_GROUP EVENT_BUS_NAME JUMPCLOUD_API_URL REQUESTABLE_GROUPS RUST_LOG \
             REVOKE_FUNCTION_ARN SCHEDULER_ROLE_ARN MIN_GRANT_DURATION ADMIN_PRINCIPALS \
             SYNC_QUEUE_URL FANOUT_ABOVE_USERS FANOUT_USERS_PER_PART FANOUT_GROUPS_PER_PART \
             OIDC_ISSUER OIDC_CLIENT_ID AWS_ENDPOINT_URL AWS_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; do
    echo "$var=${!var}"
  done
} > "$ENV_FILE"

say "jitctl setup: table, schedule group, event bus, the sync parts queue and a tagged secret for the simulator"
JUMPCLOUD_API_KEY="$SIM_KEY" "$JIT_BIN/jitctl" setup --integration local-demo

LAMBDA_PORT=$(free_port)
start_background lambda cargo lambda watch -A 127.0.0.1 -P "$LAMBDA_PORT" --env-file "$ENV_FILE"
wait_port "$LAMBDA_PORT" 120 || { cat "$LOCAL/lambda.log" >&2; exit 1; }
say "functions served by cargo lambda watch on http://127.0.0.1:$LAMBDA_PORT"

# The HTTP API as deployed (ApiAuthorization JWT): the template's routes, each request's ID token
# checked against the issuer before its function runs.
start_background local-api "$JIT_BIN/jit-local-api" --port "$API_PORT" \
  --lambda-url "http://127.0.0.1:$LAMBDA_PORT" --issuer "$OIDC_ISSUER" --audience "$OIDC_CLIENT_ID"
wait_port "$API_PORT" 30 || { cat "$LOCAL/local-api.log" >&2; exit 1; }
say "the HTTP API (local API, JWT authorizer) on $API_URL"

invoke() { # invoke FUNCTION EVENT_FILE
  curl --silent --show-error --fail-with-body --max-time 300 \
    -H 'content-type: application/json' --data-binary "@$2" \
    "http://127.0.0.1:$LAMBDA_PORT/2015-03-31/functions/$1/invocations"
}

summary() { python3 "$ROOT/scripts/show_summary.py"; }

# Until the fanned-out sync's last part has finished it (its status leaves "running").
synced() {
  "$VENV/bin/python" - <<'PY'
import os, sys, time, boto3
table = boto3.resource("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).Table(os.environ["TABLE_NAME"])
deadline = time.time() + 300
while True:
    status = table.get_item(Key={"pk": "INTEGRATION#local-demo", "sk": "SYNC"}).get("Item", {})
    if status.get("state") not in (None, "running"):
        break
    if time.time() > deadline:
        sys.exit("  the fanned-out sync did not finish within 5 minutes (see .local/runner.log)")
    time.sleep(1)
if status["state"] != "succeeded":
    sys.exit(f"  the fanned-out sync failed: {status.get('error')}")
print(f"  its parts are done: {status['users']} users, {status['groups']} groups, {status['memberships']} memberships; "
      f"{status['written']} items written, {status['deleted']} deleted")
PY
}

say "the local runner starts: it delivers due expiry schedules, the sweep every 20 s, and the sync's parts to sync"
start_background runner "$JIT_BIN/jitctl" run-schedules --lambda-url "http://127.0.0.1:$LAMBDA_PORT" --sweep-every 20

say "1. POST /sync through the sync function (an HTTP API event): planned, then worked part by part over SQS"
invoke sync events/sync-http-post.json | summary
synced

say "2. the sync schedule fires (an EventBridge scheduled event): nothing changed, nothing written"
invoke sync events/sync-schedule.json | summary
synced

say "3. a change in JumpCloud, then the incremental sync (every minute): only what the events name is read"
curl --silent --fail "$SIM_URL/_sim/orgs/0/groups?name=engineering" > "$LOCAL/engineering.json"
python3 - "$SIM_URL" "$LOCAL/engineering.json" <<'PY'
import json, sys, urllib.request
url, path = sys.argv[1], sys.argv[2]
groups = json.load(open(path))
group = groups[0] if isinstance(groups, list) else groups
gid = group["id"]
members = json.load(urllib.request.urlopen(f"{url}/_sim/orgs/0/groups/{gid}/members"))
members = members if isinstance(members, list) else members.get("members", [])
victim = members[0]
req = urllib.request.Request(f"{url}/_sim/orgs/0/groups/{gid}/members", method="POST",
        data=json.dumps({"op": "remove", "type": "user", "id": victim}).encode(),
        headers={"content-type": "application/json"})
urllib.request.urlopen(req).read()
print(f"  removed user {victim} from 'engineering' directly in JumpCloud (outside the product)")
open(path + ".victim", "w").write(f"{gid}#{victim}")
PY
invoke sync events/sync-incremental.json | summary
"$VENV/bin/python" - "$LOCAL/engineering.json.victim" <<'PY'
import os, sys, boto3
table = boto3.resource("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).Table(os.environ["TABLE_NAME"])
sk = open(sys.argv[1]).read()
item = table.get_item(Key={"pk": "DIR#local-demo#MEMBER", "sk": sk}).get("Item")
if item is not None:
    sys.exit(f"  the incremental run left the removed membership {sk} in the stored directory")
print("  the stored directory no longer holds that membership: one incremental run, no full read")
PY
say "3b. a full sync from the terminal (daily in production, the safety net): nothing left to write"
"$JIT_BIN/jitctl" sync

say "4. what the directory holds now (DynamoDB on moto)"
"$VENV/bin/python" - <<'PY'
import os, boto3
from boto3.dynamodb.conditions import Key
table = boto3.resource("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).Table(os.environ["TABLE_NAME"])
def items(pk):
    out, kw = [], {"KeyConditionExpression": Key("pk").eq(pk)}
    while True:
        page = table.query(**kw); out += page["Items"]
        if "LastEvaluatedKey" not in page: return out
        kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]
users, groups = items("DIR#local-demo#USER"), items("DIR#local-demo#GROUP")
print(f"  {len(users)} users, {len(groups)} groups, {len(items('DIR#local-demo#MEMBER'))} memberships")
print("  requestable groups: " + ", ".join(sorted(g["name"] for g in groups if g["requestable"])))
u = next(u for u in users if u.get("manager_email"))
print(f"  e.g. {u['email']} ({u.get('job_title', '-')}, {u.get('department', '-')}), manager {u['manager_email']}")
status = table.get_item(Key={"pk": "INTEGRATION#local-demo", "sk": "SYNC"})["Item"]
print(f"  last sync: {status['state']}, finished {status['finished_at']}")
PY

say "5. grants, approvals and expiry (the runner delivers the expiry schedules and the sweep)"
"$VENV/bin/python" "$ROOT/scripts/walkthrough.py" "http://127.0.0.1:$LAMBDA_PORT" "$SIM_URL" "$API_URL" "$OIDC_ISSUER" "$OIDC_CLIENT_ID"

say "11. the operator CLI: jitctl grant, grants list, revoke (early), audit"
JITCTL="$JIT_BIN/jitctl"
export RUST_LOG=warn   # the commands' own output, without the info logs
# A third user who is not a member yet (the walk-through used the first two).
CAROL=$("$VENV/bin/python" - "$SIM_URL" <<'PY'
import json, sys, urllib.request
sim = sys.argv[1]
get = lambda path: json.load(urllib.request.urlopen(sim + path))
group = get("/_sim/orgs/0/groups?name=prod-db-admins")
group = group[0] if isinstance(group, list) else group
members = set(get(f"/_sim/orgs/0/groups/{group['id']}/members"))
print([u for u in get("/_sim/orgs/0/seed")["users"] if u["_id"] not in members and u.get("state") == "ACTIVATED"][2]["email"])
PY
)
OPERATOR_GRANT=$("$JITCTL" grant --user "$CAROL" --group prod-db-admins --duration 4h --reason "walk-through: CLI grant" --json \
  | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["id"])')
"$JITCTL" grants list --status active
"$JITCTL" revoke "$OPERATOR_GRANT"
"$JITCTL" audit --since 15m

if $KEEP; then
  say "the stack keeps running (Ctrl-C stops it): moto $AWS_ENDPOINT_URL, simulator $SIM_URL, functions http://127.0.0.1:$LAMBDA_PORT, OIDC issuer $OIDC_ISSUER, the API and portal $API_URL/"
  wait
fi
say "done; logs are in .local/"
