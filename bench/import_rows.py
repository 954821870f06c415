"""A million JSONL rows imported as a dataset version: rows/s and peak memory, beside Hugging Face `datasets`
(the competitor users know: `Dataset.from_json`, which converts to an Arrow cache on disk) and pyarrow's JSON
reader (the floor: one C++ pass that holds the whole table in memory).

Each contender runs in a fresh process, so its peak RSS (ru_maxrss) is its own. Podium's import is end to
end: parse, widen the schema, spool, write Parquet with statistics, hash, store, commit the version.

    .venv/bin/python bench/import_rows.py            # 1,000,000 rows
    .venv/bin/python bench/import_rows.py --rows 200000
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PODIUM = """
import resource, sys, time, json
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.conftest import make_settings, prepared_platform
from podium.core.identity import Actor
from podium.data import service
home = Path({home!r})
platform, _ = prepared_platform(make_settings(home, "sqlite:///" + str(home / "p.db")))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
r = service.import_file(platform, Actor.system(), "big", Path({path!r}))
s = time.perf_counter() - t
print(json.dumps({{"rows": r.rows, "seconds": s, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "base_kb": base}}))
"""

HF = """
import resource, time, json, os
os.environ["HF_DATASETS_OFFLINE"] = "1"
import datasets
datasets.disable_progress_bars()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
ds = datasets.Dataset.from_json({path!r}, cache_dir={cache!r})
s = time.perf_counter() - t
print(json.dumps({{"rows": len(ds), "seconds": s, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "base_kb": base}}))
"""

FLOOR = """
import resource, time, json
import pyarrow.json as pj, pyarrow.parquet as pq
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
table = pj.read_json({path!r})
pq.write_table(table, {out!r}, compression="zstd")
s = time.perf_counter() - t
print(json.dumps({{"rows": table.num_rows, "seconds": s, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "base_kb": base}}))
"""


def make(path: Path, rows: int, late_key: bool = False) -> None:
    """Support-ticket-like rows of about 120 bytes; with `late_key`, a key first appears near the end."""
    with open(path, "w") as f:
        for i in range(rows):
            row = {
                "id": i,
                "text": f"ticket {i}: my order {i % 997} arrived late and the box was damaged",
                "priority": ["low", "normal", "high"][i % 3],
                "score": (i % 100) / 10,
            }
            if late_key and i == rows - 10:
                row["escalated"] = True
            f.write(json.dumps(row) + "\n")


def run(code: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("Model name")
        ),
        platform.processor(),
    )
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {cpu}; Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "rows.jsonl"
        make(path, args.rows)
        size = path.stat().st_size / 1e6
        print(f"{args.rows:,} rows, {size:.0f} MB of JSONL")
        late = folder / "late.jsonl"
        make(late, 200_000, late_key=True)
        results = {
            "podium import (end to end)": run(PODIUM.format(root=str(ROOT), home=str(folder / "home"), path=str(path))),
            "HF datasets Dataset.from_json": run(HF.format(path=str(path), cache=str(folder / "hf-cache"))),
            "pyarrow read_json + write_parquet (floor)": run(
                FLOOR.format(path=str(path), out=str(folder / "floor.parquet"))
            ),
        }
        print("\nA key first seen 10 rows before the end of 200,000:")
        for name, code in (
            ("podium", PODIUM.format(root=str(ROOT), home=str(folder / "home2"), path=str(late))),
            ("HF datasets", HF.format(path=str(late), cache=str(folder / "hf-cache2"))),
        ):
            try:
                r = run(code)
                print(f"  {name}: imported {r['rows']:,} rows")
            except SystemExit as exc:
                print(f"  {name}: failed: {str(exc).strip().splitlines()[-1][:200]}")
    podium = results["podium import (end to end)"]
    print("\n| contender | rows/s | × podium | peak RSS MB | RSS growth MB |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        rate = r["rows"] / r["seconds"]
        print(
            f"| {name} | {rate:,.0f} | ×{rate / (podium['rows'] / podium['seconds']):.2f} | "
            f"{r['peak_kb'] / 1024:.0f} | {(r['peak_kb'] - r['base_kb']) / 1024:.0f} |"
        )


if __name__ == "__main__":
    main()
