"""The store's own insert limit, for the write-behind goal of scripts/bench.sh.

Inserts order documents shaped like the write-behind's (src/orders/model.rs)
into a scratch collection, in unordered batches of the write-behind's size
with its write concern (w: majority, j: true), on the collection's indexes as
the service creates them, and prints one line: "<orders> <seconds> <orders/s>".

Usage: store-insert-rate.py MONGO_URL DB ORDERS BATCH
"""

import datetime
import os
import sys
import time

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.write_concern import WriteConcern


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    url, db_name, orders, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if orders < 1 or batch < 1:
        print("ORDERS and BATCH must be positive", file=sys.stderr)
        return 2
    client = MongoClient(url, serverSelectionTimeoutMS=10_000)
    coll = client[db_name].get_collection(
        f"insert_rate_{os.getpid()}", write_concern=WriteConcern(w="majority", j=True)
    )
    coll.drop()
    # The orders collection's indexes (OrderStore::ensure_indexes).
    coll.create_index([("userId", ASCENDING), ("purchasedAt", DESCENDING), ("_id", DESCENDING)])
    coll.create_index([("flashSaleId", ASCENDING), ("seq", ASCENDING)])
    coll.create_index([("flashSaleId", ASCENDING), ("userId", ASCENDING), ("seq", ASCENDING)])
    coll.create_index([("purchasedAt", DESCENDING), ("_id", DESCENDING)])
    sale = ObjectId()
    sale_hex = str(sale)
    now = datetime.datetime.now(datetime.timezone.utc)
    users = [ObjectId() for _ in range(1000)]
    docs = [
        {
            "_id": f"{sale_hex}-{seq}",
            "flashSaleId": sale,
            "userId": users[seq % len(users)],
            "quantity": 1,
            "unitPriceCents": 100,
            "purchasedAt": now,
            "seq": seq,
            "ip": "127.0.0.1",
        }
        for seq in range(1, orders + 1)
    ]
    started = time.monotonic()
    for i in range(0, orders, batch):
        coll.insert_many(docs[i : i + batch], ordered=False)
    seconds = time.monotonic() - started
    held = coll.count_documents({})
    coll.drop()
    if held != orders:
        print(f"the store holds {held} of {orders} orders", file=sys.stderr)
        return 1
    print(f"{orders} {seconds:.3f} {orders / seconds:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
