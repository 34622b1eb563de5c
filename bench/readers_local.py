"""Every Delta table of a local (file://) lake opened and read in full by Python deltalake, DuckDB (delta
extension) and polars, their row counts compared: a quick check of a lake on disk, e.g. one aged through
months of maintenance (`make check-aged`), without MinIO or Spark (`make bench-readers` compares rows
value by value, on MinIO).

    python bench/readers_local.py LAKE_DIR

Needs deltalake, polars, duckdb and duckdb-extension-delta (`infra/local/install.sh readers`).
Exit 1 if a reader fails or disagrees, or if a table folder has no `_delta_log` (a folder readers
would take for a broken table).
"""
import glob
import os
import sys

import deltalake
import duckdb
import duckdb_extension_delta
import polars


def rows(records):
    return list(records)


def main(lake):
    tables, bare = [], []
    for layer in sorted(os.listdir(lake)):
        for name in sorted(os.listdir(os.path.join(lake, layer))):
            path = os.path.join(lake, layer, name)
            if not os.path.isdir(path):
                continue
            (tables if os.path.isdir(os.path.join(path, "_delta_log")) else bare).append(path)
    con = duckdb.connect(config={"allow_unsigned_extensions": "true", "autoinstall_known_extensions": "false",
                                 "autoload_known_extensions": "false"})
    ext = glob.glob(os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions", "*",
                                 "delta.duckdb_extension"))[0]
    con.execute(f"LOAD '{ext}'")
    failed = [f"{p}: a folder without _delta_log" for p in bare]
    for path in tables:
        label = os.path.relpath(path, lake)
        try:
            dt = deltalake.DeltaTable(path)
            reference = rows(dt.to_pyarrow_table().to_pylist())
            cur = con.execute(f"SELECT * FROM delta_scan('{path}')")
            cols = [d[0] for d in cur.description]
            duck = rows(dict(zip(cols, r)) for r in cur.fetchall())
            pol = rows(polars.read_delta(path).to_dicts())
            same = len(duck) == len(reference) == len(pol)
            print(f"{label}: version {dt.version()}, {len(reference)} rows; duckdb {len(duck)}, polars {len(pol)}"
                  f"{'' if same else '  MISMATCH'}")
            if not same:
                failed.append(f"{label}: row counts differ")
        except Exception as e:  # noqa: BLE001 (every reader's failure is reported, not raised)
            failed.append(f"{label}: {type(e).__name__}: {e}")
            print(f"{label}: FAILED {e}")
    print(f"{len(tables)} tables read by deltalake {deltalake.__version__}, duckdb {duckdb.__version__}, "
          f"polars {polars.__version__}")
    for f in failed:
        print("FAIL", f)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
