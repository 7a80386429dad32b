"""moto's server (`moto_server`), with four changes: a DynamoDB transaction snapshots the items it
writes instead of the whole table, a query looks only at the items of the key it asks for, and the
answers of DynamoDB's item operations are written as the JSON they already are (and a query
sorts by plain values, computed once per item: see `_sorted_items`).

moto 5's `transact_write_items` deep-copies every table a transaction names, once per item it
writes, to restore on cancellation. The cost grows with the table: measured here, a soak of a
thousand grants spent most of its time in those copies (moto at 100% of a core, 6 GB resident)
before it had made a hundred. A cancelled transaction restoring the whole table also undoes
other requests' writes made meanwhile, which DynamoDB never does. Here a transaction copies the
items it is about to write (a few, whatever the table's size) and, if cancelled, puts back exactly
those; everything else, the conditions and the errors included, is moto's own code.

moto 5's `query`, of the table or of an index, goes through every item of the table (sorting them
all first) to find those of one key: measured here, past a few thousand grants it was most of
moto's time. Here the query sees, as "all the items", only those whose key (the table's hash key,
or the index's first hash key when it is a string) equals the one asked for, found without
moto's typed comparisons and left unsorted; moto's own code then checks and orders them (by every
key of the table and the index: a total order) as before, so a query answers exactly what it did.

moto 5 writes every answer through its generic, shape-driven serializer, which looks up each
attribute of each item under several spellings: past a few thousand grants it was three quarters of
moto's time, for answers of a few kilobytes. The results of DynamoDB's item operations (get, put,
update, delete, query, scan, their batch and transaction forms) are already in the wire's shape
(attribute values as `{"S": ...}`, and so on), so here they are written with `json.dumps`, keeping
only the members of the operation's output shape and leaving out absent (`None`) ones, as the
serializer does. Errors and every other operation go through
moto's serializer. `MOTO_CHECK_FAST_ANSWERS=1` writes each such answer both ways and fails the
request if they differ (used to check this against moto's own output).

Usage: as `moto_server` (`python scripts/moto_server.py -H 127.0.0.1 -p PORT`).
"""

import copy
import json
import os
import sys
import threading

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.core.responses import ActionResult
from moto.dynamodb.responses import DynamoHandler, DynamoResult
from moto.server import main


class _NoTableCopies:
    """`copy` as moto's DynamoDB backend module sees it: a table "copies" to itself (the items a
    transaction writes are snapshot by `_transact_write_items` instead); anything else is copied."""

    @staticmethod
    def deepcopy(value, memo=None):
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _written_keys(backend, transact_items):
    """(table, hash key, range key) of every item the transaction names, as moto stores them."""
    for entry in transact_items:
        if not isinstance(entry, dict) or len(entry) != 1:
            continue
        _, op = next(iter(entry.items()))
        table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
        if table is None:
            continue
        key = op.get("Item") if "Item" in op else op.get("Key")
        if not isinstance(key, dict) or table.hash_key_attr not in key:
            continue
        range_key = None
        if table.range_key_attr is not None:
            if table.range_key_attr not in key:
                continue
            range_key = DynamoType(key[table.range_key_attr])
        yield table, DynamoType(key[table.hash_key_attr]), range_key


def _restore(table, hash_key, range_key, item):
    if table.range_key_attr is not None:
        if item is None:
            table.items.get(hash_key, {}).pop(range_key, None)
        else:
            table.items[hash_key][range_key] = item
    elif item is None:
        table.items.pop(hash_key, None)
    else:
        table.items[hash_key] = item


_moto_transact_write_items = dynamodb_models.DynamoDBBackend.transact_write_items


def _transact_write_items(self, transact_items):
    snapshot = []
    for table, hash_key, range_key in _written_keys(self, transact_items):
        try:
            current = table.get_item(hash_key, range_key)
        except Exception:  # moto's own validation answers for it below
            continue
        snapshot.append((table, hash_key, range_key, copy.deepcopy(current)))
    try:
        return _moto_transact_write_items(self, transact_items)
    except BaseException:
        for table, hash_key, range_key, item in reversed(snapshot):
            _restore(table, hash_key, range_key, item)
        raise


_narrowed = threading.local()
_moto_all_items = Table.all_items
_moto_query = Table.query


def _all_items(self):
    """moto's `all_items`, or, inside a query of this table, only the items of the asked key."""
    narrowing = getattr(_narrowed, "by_table", {}).get(id(self))
    if narrowing is None:
        return _moto_all_items(self)
    attr, value = narrowing
    if attr is None:
        found = self.items.get(value)
        if found is None:
            items = []
        elif self.range_key_attr:
            items = list(found.values())
        else:
            items = [found]
    else:
        items = []
        for hash_set in self.items.values():
            for item in hash_set.values() if self.range_key_attr else (hash_set,):
                v = item.attrs.get(attr)
                if v is not None and v.type == "S" and v.value == value:
                    items.append(item)
    # Unsorted: the query sorts what it is given by every key of the table and of the index (a
    # total order), so the order given does not matter; moto's own sort here, over typed values,
    # was most of the time of a query with thousands of items under one key.
    return items


def _query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key, scan_index_forward,
           projection_expressions, index_name=None, *args, **kwargs):
    narrowing = None
    if index_name:
        conditions = kwargs.get("hash_key_conditions") or []
        if conditions and getattr(conditions[0][1], "type", None) == "S":
            narrowing = (conditions[0][0], conditions[0][1].value)
    elif hash_key is not None:
        narrowing = (None, hash_key)
    by_table = _narrowed.__dict__.setdefault("by_table", {})
    if narrowing is not None:
        by_table[id(self)] = narrowing
    try:
        return _moto_query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
                           scan_index_forward, projection_expressions, index_name, *args, **kwargs)
    finally:
        by_table.pop(id(self), None)


_ITEM_OPERATIONS = {
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
    "BatchGetItem", "BatchWriteItem", "TransactGetItems", "TransactWriteItems",
}
_CHECK_FAST_ANSWERS = os.environ.get("MOTO_CHECK_FAST_ANSWERS") == "1"
# Answers written both ways and found equal, by operation (with MOTO_CHECK_FAST_ANSWERS=1).
FAST_ANSWERS_CHECKED = {}
_moto_serialized = DynamoHandler.serialized


def _without_none(value):
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


_members_by_action = {}


def _output_members(handler):
    """The members of the operation's output shape: moto's results carry others (such as
    `ConsumedCapacityUnits`) that its serializer leaves out."""
    action = handler._get_action()
    if action not in _members_by_action:
        from moto.core.responses import get_service_model
        shape = get_service_model(handler.boto3_service_name).operation_model(action).output_shape
        _members_by_action[action] = set(shape.members) if shape is not None else set()
    return _members_by_action[action]


def _serialized(self, action_result):
    result = action_result.result if isinstance(action_result, ActionResult) else None
    if type(action_result) not in (ActionResult, DynamoResult) or not isinstance(result, dict) \
            or self._get_action() not in _ITEM_OPERATIONS:
        return _moto_serialized(self, action_result)
    members = _output_members(self)
    body = json.dumps(_without_none({k: v for k, v in result.items() if k in members}), separators=(",", ":"))
    headers = {"Content-Type": "application/x-amz-json-1.0"}
    headers.update(self.response_headers)
    if _CHECK_FAST_ANSWERS:
        status, moto_headers, moto_body = _moto_serialized(self, action_result)
        if status != 200 or json.loads(moto_body or "{}") != json.loads(body) \
                or moto_headers.get("Content-Type") != headers["Content-Type"]:
            raise AssertionError(f"{self._get_action()}: moto wrote {moto_body!r}, the fast path {body!r}")
        FAST_ANSWERS_CHECKED[self._get_action()] = FAST_ANSWERS_CHECKED.get(self._get_action(), 0) + 1
    return 200, headers, body


def _sorted_items(self, hash_key_attrs, range_key_attrs, items):
    """moto's `sorted_items` with each item's key computed once, as plain values: moto compares
    typed values pairwise (each comparison converting both), which was most of a query's time over
    a partition of thousands. The same order: a key attribute has one type in every item, and
    typed values compare as their plain values do."""
    attrs = self._generate_attr_to_sort_by(hash_key_attrs, range_key_attrs)
    items.sort(key=lambda x: tuple(x.attrs[key].cast_value for key in attrs))
    return items


dynamodb_models.copy = _NoTableCopies
Table.sorted_items = _sorted_items
DynamoHandler.serialized = _serialized
Table.all_items = _all_items
Table.query = _query
dynamodb_models.DynamoDBBackend.transact_write_items = _transact_write_items

if __name__ == "__main__":
    sys.exit(main())
