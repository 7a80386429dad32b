"""Checks that scripts/moto_server.py's changes to moto answer exactly as moto does.

In process (moto's `mock_aws`, boto3): a table with an index, 1,500 items of every attribute
type; 300 random queries (of the table and of the index, with range conditions, limits, either
direction, following their pages) answered with moto's own query code and with the changed one
must be equal, page for page; and every item operation answered by the fast path is written both
ways and compared (`MOTO_CHECK_FAST_ANSWERS`). Run by scripts/test.sh; exits non-zero on the first
difference.
"""

import os
import random
import sys

os.environ["MOTO_CHECK_FAST_ANSWERS"] = "1"
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import boto3  # noqa: E402
import moto.dynamodb.models.table as table_module  # noqa: E402
from moto import mock_aws  # noqa: E402

MOTO = (table_module.Table.query, table_module.Table.all_items, table_module.Table.sorted_items)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moto_server  # noqa: E402  (applies the changes)

CHANGED = (table_module.Table.query, table_module.Table.all_items, table_module.Table.sorted_items)
assert CHANGED != MOTO, "moto_server.py changed nothing"


def use(methods):
    table_module.Table.query, table_module.Table.all_items, table_module.Table.sorted_items = methods


def item(rng, i):
    value = rng.choice([
        {"S": f"text {rng.randrange(10)}"}, {"N": str(rng.randrange(-5, 500))}, {"BOOL": rng.random() < 0.5},
        {"NULL": True}, {"L": [{"S": "a"}, {"N": "1"}]}, {"M": {"k": {"S": "v"}, "n": {"N": "2.5"}}},
        {"SS": ["x", "y"]},
    ])
    attrs = {"pk": {"S": f"P{rng.randrange(50)}"}, "sk": {"S": f"S{i:05}"}, "v": value}
    if rng.random() < 0.7:
        attrs["g1pk"] = {"S": f"G{rng.randrange(20)}"}
        attrs["g1sk"] = {"S": f"{rng.randrange(100):03}"}
    return attrs


def pages(client, query):
    answers, start = [], None
    while True:
        page = client.query(**query, **({"ExclusiveStartKey": start} if start else {}))
        page.pop("ResponseMetadata")
        answers.append(page)
        start = page.get("LastEvaluatedKey")
        if not start or len(answers) > 400:
            return answers


def main():
    rng = random.Random(20261201)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        keys = ["pk", "sk", "g1pk", "g1sk"]
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in keys],
            GlobalSecondaryIndexes=[{
                "IndexName": "gsi1",
                "KeySchema": [{"AttributeName": "g1pk", "KeyType": "HASH"}, {"AttributeName": "g1sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }],
            BillingMode="PAY_PER_REQUEST",
        )
        use(CHANGED)
        for i in range(1500):
            client.put_item(TableName="t", Item=item(rng, i))
        # Every other item operation, through the fast path (checked against moto's serializer).
        client.update_item(TableName="t", Key={"pk": {"S": "P1"}, "sk": {"S": "S00001"}},
                           UpdateExpression="SET w = :w", ExpressionAttributeValues={":w": {"N": "7"}},
                           ReturnValues="ALL_NEW")
        client.get_item(TableName="t", Key={"pk": {"S": "P1"}, "sk": {"S": "S00001"}})
        client.delete_item(TableName="t", Key={"pk": {"S": "P2"}, "sk": {"S": "S00002"}}, ReturnValues="ALL_OLD")
        client.batch_get_item(RequestItems={"t": {"Keys": [{"pk": {"S": "P3"}, "sk": {"S": "S00003"}}]}})
        client.batch_write_item(RequestItems={"t": [{"PutRequest": {"Item": item(rng, 9000)}}]})
        client.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": item(rng, 9001)}}])
        client.scan(TableName="t", Limit=20)
        compared = 0
        for trial in range(300):
            if trial % 2:
                condition = rng.choice(["pk = :p AND sk > :s", "pk = :p AND sk <= :s", "pk = :p"])
                values = {":p": {"S": f"P{rng.randrange(55)}"}, ":s": {"S": f"S{rng.randrange(1500):05}"}}
                query = {"TableName": "t", "KeyConditionExpression": condition}
            else:
                condition = rng.choice(["g1pk = :p AND g1sk >= :s", "g1pk = :p AND g1sk BETWEEN :s AND :t", "g1pk = :p"])
                values = {":p": {"S": f"G{rng.randrange(22)}"}, ":s": {"S": f"{rng.randrange(100):03}"},
                          ":t": {"S": f"{rng.randrange(100):03}"}}
                query = {"TableName": "t", "IndexName": "gsi1", "KeyConditionExpression": condition}
            query["ExpressionAttributeValues"] = {k: v for k, v in values.items() if k in condition}
            query["ScanIndexForward"] = rng.random() < 0.5
            query["Limit"] = rng.choice([5, 50, 1000])
            use(MOTO)
            expected = pages(client, query)
            use(CHANGED)
            answered = pages(client, query)
            if expected != answered:
                sys.exit(f"moto_server.py answers differently from moto: {query}\nmoto: {expected}\nchanged: {answered}")
            compared += sum(len(p["Items"]) for p in answered)
    checked = moto_server.FAST_ANSWERS_CHECKED
    missing = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem", "BatchWriteItem",
               "TransactWriteItems"} - checked.keys()
    if missing:
        sys.exit(f"the fast answers were not checked for {sorted(missing)}")
    print(f"moto_server.py answers as moto: 300 queries ({compared} items, every page); "
          f"{sum(checked.values())} item operations' answers written both ways, equal ({checked})")


if __name__ == "__main__":
    main()
