"""CDC benchmark data: DIR/base.jsonl (N upserts, ids 0..N-1, seq 1) and DIR/round-R.jsonl for R in
0..ROUNDS-1, each 1,000 rows with unique ids: 50% updates and 10% deletes of existing ids, 40% inserts of
new ids; seq = 10 + R. Deterministic (seeded)."""
import json
import os
import random
import sys

out, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out, exist_ok=True)
rng = random.Random(n)
with open(os.path.join(out, "base.jsonl"), "w") as f:
    for i in range(n):
        f.write(json.dumps({"id": i, "seq": 1, "amount": rng.randint(0, 10**6), "status": "open", "deleted": False}) + "\n")
next_id = n
for r in range(rounds):
    existing = rng.sample(range(n), 600)
    rows = []
    for i in existing[:500]:
        rows.append({"id": i, "seq": 10 + r, "amount": rng.randint(0, 10**6), "status": "updated", "deleted": False})
    for i in existing[500:]:
        rows.append({"id": i, "seq": 10 + r, "amount": None, "status": None, "deleted": True})
    for _ in range(400):
        rows.append({"id": next_id, "seq": 10 + r, "amount": rng.randint(0, 10**6), "status": "new", "deleted": False})
        next_id += 1
    rng.shuffle(rows)
    with open(os.path.join(out, f"round-{r}.jsonl"), "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
