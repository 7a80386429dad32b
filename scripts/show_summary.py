"""Prints a sync summary read from stdin: an HTTP response of the sync function or its scheduled result."""
import json
import sys

doc = json.load(sys.stdin)
if "statusCode" in doc:
    print(f"  HTTP {doc['statusCode']}")
    doc = json.loads(doc["body"])
if "integrations" not in doc:
    print("  " + json.dumps(doc))
def full(i):
    return (f"{i['integration']}: {i['users']} users, {i['groups']} groups, {i['memberships']} memberships; "
            f"{i['written']} items written, {i['deleted']} deleted, in {i['duration']} ms")

for i in doc.get("integrations", []):
    if i["status"] == "succeeded":
        print("  " + full(i))
    elif i["status"] == "applied":  # an incremental run
        print(f"  {i['integration']}: {i['events']} Directory Insights events in {i['event_requests']} request(s); "
              f"{i['users_read']} users and {i['groups_read']} groups read again; "
              f"{i['written']} items written, {i['deleted']} deleted")
    elif i["status"] == "fell_back":
        print(f"  {i['integration']}: a full sync instead ({i['reason']})")
        if i["full_sync"]["status"] == "succeeded":
            print("    " + full(i["full_sync"]))
    elif i["status"] == "fanned_out":
        print(f"  {i['integration']}: {i['users']} users, {i['groups']} groups: fanned out, run {i['run_id']}: "
              f"{i['user_parts']} users parts, then {i['member_parts']} members parts, on the queue")
    elif i["status"] == "full_sync_running":
        print(f"  {i['integration']}: a full sync is running: nothing done")
    else:
        print(f"  {i['integration']}: FAILED: {i['error']}")
