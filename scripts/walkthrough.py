"""The grant part of the local walk-through (scripts/demo.sh): grant -> membership -> expiry -> revoke.

Talks only to the local stack: the functions served by `cargo lambda watch`, the JumpCloud simulator's
admin endpoints, and `jitctl audit` for the audit trail.
"""
import copy
import json
import os
import sys
import time
import urllib.request

LAMBDA, SIM = sys.argv[1], sys.argv[2]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name):
    with open(os.path.join(ROOT, "events", name)) as f:
        return json.load(f)


def post(url, doc):
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.load(r)


def invoke(function, event):
    return post(f"{LAMBDA}/2015-03-31/functions/{function}/invocations", event)


def http(function, event):
    out = invoke(function, event)
    return out["statusCode"], json.loads(out.get("body") or "null")


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def with_path(event, path, method):
    e = copy.deepcopy(event)
    e["rawPath"] = e["requestContext"]["http"]["path"] = path
    e["requestContext"]["http"]["method"] = method
    return e


group = get(f"{SIM}/_sim/orgs/0/groups?name=prod-db-admins")
group = group[0] if isinstance(group, list) else group
members = set(get(f"{SIM}/_sim/orgs/0/groups/{group['id']}/members"))
seed = get(f"{SIM}/_sim/orgs/0/seed")
candidates = [u for u in seed["users"] if u["_id"] not in members and u.get("state") == "ACTIVATED"]
alice, bob = candidates[0], candidates[1]


def is_member(user):
    return user["_id"] in set(get(f"{SIM}/_sim/orgs/0/groups/{group['id']}/members"))


def request_grant(user, key):
    e = load("grant-create.json")
    e["headers"]["idempotency-key"] = key
    e["body"] = json.dumps({"user": user["email"], "group": "prod-db-admins", "duration": "1m",
                            "reason": "walk-through: investigate INC-4711"})
    status, grant = http("grant", e)
    print(f"  POST /grants -> HTTP {status}: grant {grant.get('id')} for {grant.get('user', {}).get('email')} "
          f"in {grant.get('group', {}).get('name')}, {grant.get('status')}, expires {grant.get('expires_at')}")
    if status != 201:
        sys.exit(f"grant failed: {grant}")
    return grant


def as_person(event, user):
    """The event as API Gateway's JWT authorizer passes it: the signed-in person's claims."""
    e = copy.deepcopy(event)
    e["requestContext"]["authorizer"] = {"jwt": {"claims": {
        "iss": "https://sso.local", "sub": user["_id"], "email": user["email"], "email_verified": "true"},
        "scopes": None}}
    return e


def wait_ended(grant_id, limit=150):
    started = time.time()
    while time.time() - started < limit:
        status, grant = http("grant", with_path(load("grant-get.json"), f"/grants/{grant_id}", "GET"))
        if grant.get("status") not in ("active", "pending"):
            return grant
        time.sleep(2)
    sys.exit(f"grant {grant_id} still active after {limit} s")


print("==> 6. grant: a user gets prod-db-admins for 1 minute (checked live in JumpCloud)")
grant = request_grant(alice, f"walkthrough-{int(time.time())}-a")
print(f"  in JumpCloud now: member = {is_member(alice)}")
print("  (the caller is the security team's IAM role, an admin by ADMIN_PRINCIPALS)")

print("==> 6b. people sign in (JWT) and see only what is theirs")
status, mine = http("grant", as_person(load("grant-list.json"), alice))
print(f"  {alice['email']}: GET /grants -> HTTP {status}, {len(mine['grants'])} grant(s), their own")
status, other = http("grant", as_person(with_path(load("grant-get.json"), f"/grants/{grant['id']}", "GET"), bob))
print(f"  {bob['email']}: GET /grants/{grant['id'][:8]}... -> HTTP {status} (someone else's grant does not exist for them)")
request = as_person(load("grant-create.json"), bob)
request["headers"].pop("idempotency-key", None)
request["body"] = json.dumps({"user": bob["email"], "group": "prod-db-admins", "duration": "1h", "reason": "please"})
status, refused = http("grant", request)
print(f"  {bob['email']}: POST /grants for themselves -> HTTP {status}: {refused.get('detail')}")
if len(mine["grants"]) != 1 or other.get("status") != 404 or status != 403:
    sys.exit("identity checks did not hold")

print("==> 7. a second grant whose expiry schedule gets lost (deleted behind the product's back)")
second = request_grant(bob, f"walkthrough-{int(time.time())}-b")
import boto3  # noqa: E402  (the venv's, installed with moto)
scheduler = boto3.client("scheduler", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
scheduler.delete_schedule(Name=second["schedule_name"], GroupName=os.environ["SCHEDULE_GROUP"])
print(f"  deleted schedule {second['schedule_name']}: only the sweep can end this grant now")

print("==> 8. waiting for expiry: the runner delivers the first schedule to revoke; the sweep finds the second grant")
ended = wait_ended(grant["id"])
print(f"  {alice['email']}'s grant: {ended['status']} at {ended['ended_at']}; member = {is_member(alice)}")
ended2 = wait_ended(second["id"])
print(f"  {bob['email']}'s grant (no schedule): {ended2['status']} at {ended2['ended_at']}; member = {is_member(bob)}")
if is_member(alice) or is_member(bob):
    sys.exit("a membership outlived its grant")

print("==> 9. the audit trail (DynamoDB), kept after the grants ended: jitctl audit --grant <id>")
import subprocess  # noqa: E402
for g in (grant, second):
    print(f"  {g['user']['email']}:", flush=True)
    subprocess.run([os.path.join(ROOT, "target/debug/jitctl"), "audit", "--grant", g["id"]], check=True)
