"""Prints a sync summary read from stdin: an HTTP response of the sync function or its scheduled result."""
import json
import sys

doc = json.load(sys.stdin)
if "statusCode" in doc:
    print(f"  HTTP {doc['statusCode']}")
    doc = json.loads(doc["body"])
if "integrations" not in doc:
    print("  " + json.dumps(doc))
for i in doc.get("integrations", []):
    if i["status"] == "succeeded":
        print(f"  {i['integration']}: {i['users']} users, {i['groups']} groups, {i['memberships']} memberships; "
              f"{i['written']} items written, {i['deleted']} deleted, in {i['duration']} ms")
    else:
        print(f"  {i['integration']}: FAILED: {i['error']}")
