"""Write a deterministic JSON-lines file of about TARGET_MB megabytes (orders-like rows)."""
import json
import sys

path, target_mb = sys.argv[1], float(sys.argv[2])
target = int(target_mb * 1024 * 1024)
statuses = ["placed", "paid", "shipped", "delivered", "returned"]
written, i = 0, 0
with open(path, "w") as f:
    while written < target:
        i += 1
        line = json.dumps({"order_id": i, "customer_id": i % 50000, "amount": round((i % 100000) / 7.0, 2),
                           "status": statuses[i % 5], "note": "x" * (i % 40),
                           "updated_at": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{i % 60:02d}Z"}) + "\n"
        f.write(line)
        written += len(line)
print(i)
