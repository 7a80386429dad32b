"""The grant part of the local walk-through (scripts/demo.sh): grant -> membership -> expiry -> revoke.

Talks only to the local stack: the functions served by `cargo lambda watch` (the security team's IAM
calls, invoked directly), the local API in front of them (people, signed in at the local OIDC issuer,
with their ID tokens), the JumpCloud simulator's admin endpoints, and `jitctl audit` for the audit trail.
"""
import base64
import copy
import hashlib
import html
import json
import os
import re
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

LAMBDA, SIM, API, ISSUER, CLIENT = sys.argv[1:6]
REDIRECT = API + "/"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("JIT_BIN", os.path.join(ROOT, "target/debug"))  # set by scripts/lib.sh


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_no_redirect = urllib.request.build_opener(_NoRedirect)
_tokens = {}


def sign_in(user):
    """Signs `user` in at the local issuer as the portal does (authorization code + PKCE): the sign-in
    form, the click on their email, the redirect with the code, the token request. Returns the ID token."""
    if user["email"] in _tokens:
        return _tokens[user["email"]]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    params = {"response_type": "code", "client_id": CLIENT, "redirect_uri": REDIRECT, "scope": "openid email profile",
              "state": state, "nonce": secrets.token_urlsafe(16), "code_challenge": challenge,
              "code_challenge_method": "S256"}
    query = urllib.parse.urlencode({**params, "q": user["email"]})
    with urllib.request.urlopen(f"{ISSUER}/authorize?{query}", timeout=30) as r:
        page = r.read().decode()
    button = re.search(r'value="([^"]*)">' + re.escape(html.escape(user["email"])) + "</button>", page)
    if not button:
        sys.exit(f"{user['email']} is not on the sign-in form")
    form = urllib.parse.urlencode({**params, "user": html.unescape(button.group(1))}).encode()
    try:
        _no_redirect.open(urllib.request.Request(f"{ISSUER}/authorize", data=form), timeout=30)
        sys.exit("the sign-in form did not redirect")
    except urllib.error.HTTPError as e:
        if e.code != 303:
            raise
        back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(e.headers["Location"]).query))
    if back.get("state") != state or "code" not in back:
        sys.exit(f"sign-in failed: {back}")
    token = urllib.parse.urlencode({"grant_type": "authorization_code", "code": back["code"], "redirect_uri": REDIRECT,
                                    "client_id": CLIENT, "code_verifier": verifier}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{ISSUER}/token", data=token), timeout=30) as r:
        _tokens[user["email"]] = json.load(r)["id_token"]
    return _tokens[user["email"]]


def api(method, path, token=None, body=None, query=None):
    """A request to the local API (the HTTP API as deployed with JWT authorization)."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(API + path + (f"?{query}" if query else ""), data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def as_call(user, method, path, body=None, query=None):
    """`user` signed in, calling the API with their ID token."""
    return api(method, path, sign_in(user), body, query)


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

print(f"==> 6b. people sign in at the local OIDC issuer and call the API ({API}) with their ID token")
status, nobody = api("GET", "/grants")
print(f"  without a token: GET /grants -> HTTP {status} {nobody} (the JWT authorizer; no function ran)")
status, mine = as_call(alice, "GET", "/grants", query="status=active")
print(f"  {alice['email']}: GET /grants -> HTTP {status}, {len(mine['grants'])} grant(s), their own")
status, other = as_call(bob, "GET", f"/grants/{grant['id']}")
print(f"  {bob['email']}: GET /grants/{grant['id'][:8]}... -> HTTP {status} (someone else's grant does not exist for them)")
ask_for_self = {"user": bob["email"], "group": "prod-db-admins", "duration": "1h", "reason": "please"}
status, refused = as_call(bob, "POST", "/grants", ask_for_self)
print(f"  {bob['email']}: POST /grants for themselves -> HTTP {status}: {refused.get('detail')}")
if nobody != {"message": "Unauthorized"} or len(mine["grants"]) != 1 or other.get("status") != 404 or status != 403:
    sys.exit("identity checks did not hold")

print("==> 6c. an access policy is applied; a person asks, their manager approves")
import subprocess  # noqa: E402
import tempfile  # noqa: E402
JITCTL = os.path.join(BIN, "jitctl")
POLICY = """version: 1
defaults:
  max_duration: 4h
  approval: {approvers: [manager], required: 1, timeout: 1h}
rules:
  - groups: ["prod-db-*"]
    eligible: everyone
    max_duration: 10m
    approval: {approvers: [manager], required: 1, auto_approve_up_to: 1m}
    ticket: "INC-[0-9]+"
    break_glass: true
    extend: {max_total: 10m}
  - groups: ["*"]
    eligible: nobody
"""
with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    f.write(POLICY)
subprocess.run([JITCTL, "policy", "apply", f.name], check=True)
by_id = {u["_id"]: u for u in seed["users"]}
# Someone not yet a member, whose manager is active (both synced), and a third person for break glass.
asker = next(u for u in candidates[3:] if by_id.get(u.get("manager") or "", {}).get("state") == "ACTIVATED")
manager = by_id[asker["manager"]]
glass = next(u for u in candidates[3:] if u["_id"] not in (asker["_id"], manager["_id"]))


# The grant function reads the applied policy at most every 30 s: a change takes effect within a minute.
started = time.time()
while True:
    status, groups = as_call(asker, "GET", "/groups")
    if any(g["name"] == "prod-db-admins" for g in groups.get("groups", [])):
        break
    if time.time() - started > 60:
        sys.exit(f"the policy did not take effect: {status} {groups}")
    time.sleep(3)
rule = next(g for g in groups["groups"] if g["name"] == "prod-db-admins")
print(f"  {asker['email']}: GET /groups -> prod-db-admins, max {rule['max_duration']}, "
      f"approval required: {rule['approval_required']} (seen {time.time() - started:.0f} s after the apply)")
ask = {"group": "prod-db-admins", "duration": "2m", "reason": "INC-4711 replica lag"}
status, pending = as_call(asker, "POST", "/grants", ask)
print(f"  {asker['email']}: POST /grants for 2m -> HTTP {status}: {pending.get('status')}, "
      f"approvers {pending.get('approvers')}; member = {is_member(asker)}")
if status != 202 or is_member(asker):
    sys.exit(f"the request did not wait for approval: {pending}")
status, refused = as_call(asker, "POST", f"/grants/{pending['id']}/approve", {"comment": "me"})
print(f"  {asker['email']}: approves their own request -> HTTP {status}: {refused.get('detail')}")
status, awaiting = as_call(manager, "GET", "/grants", query="awaiting=me")
print(f"  {manager['email']} (the manager): GET /grants?awaiting=me -> {len(awaiting['grants'])} request(s)")
status, approved = as_call(manager, "POST", f"/grants/{pending['id']}/approve", {"comment": "ok for INC-4711"})
print(f"  {manager['email']}: approves -> HTTP {status}: {approved.get('status')} until {approved.get('expires_at')}; "
      f"member = {is_member(asker)}")
if status != 200 or approved.get("status") != "active" or not is_member(asker) or refused.get("status") != 403:
    sys.exit(f"the approval did not hold: {approved}")
status, extended = as_call(asker, "POST", f"/grants/{pending['id']}/extend",
                           {"duration": "1m", "reason": "INC-4711 one more minute"})
print(f"  {asker['email']}: extends by 1m (auto-approved up to 1m) -> HTTP {status}: expires {extended.get('expires_at')}")
if status != 200:
    sys.exit(f"the extension failed: {extended}")
glass_ask = {"group": "prod-db-admins", "duration": "1m", "reason": "INC-4712 outage", "break_glass": True}
status, broke = as_call(glass, "POST", "/grants", glass_ask)
print(f"  {glass['email']}: break glass -> HTTP {status}: {broke.get('status')}, break_glass={broke.get('break_glass')}, "
      f"member = {is_member(glass)} (flagged, published as Break Glass Used)")
if status != 201 or not broke.get("break_glass"):
    sys.exit(f"break glass failed: {broke}")

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
ended3 = wait_ended(broke["id"])
print(f"  {glass['email']}'s break-glass grant: {ended3['status']}; member = {is_member(glass)}")
ended4 = wait_ended(pending["id"], limit=300)
print(f"  {asker['email']}'s approved and extended grant: {ended4['status']} at {ended4['ended_at']}; "
      f"member = {is_member(asker)}")
if is_member(glass) or is_member(asker):
    sys.exit("a membership outlived its grant")

print("==> 9. the audit trail (DynamoDB), kept after the grants ended: jitctl audit --grant <id>")
for g in (grant, second, approved):
    print(f"  {g['user']['email']}:", flush=True)
    subprocess.run([os.path.join(BIN, "jitctl"), "audit", "--grant", g["id"]], check=True)

print("==> 10. nothing in the trail was removed or altered: jitctl audit verify (hash chains, daily seals)")
subprocess.run([os.path.join(BIN, "jitctl"), "audit", "verify"], check=True)

print(f"==> people's interfaces: the portal is {API}/ (sign-in at the local OIDC issuer {ISSUER}, no password)")
print(f"  sign in as {asker['email']} to request prod-db-admins (up to 10m; approval by their manager; ticket INC-n)")
print(f"  sign in as {manager['email']}, their manager, to approve it")
print(f"  sign in as {glass['email']} for break glass; the sign-in form lists every activated user of the simulator")
