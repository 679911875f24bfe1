"""Validator throughput and peak memory against a load-everything baseline.

    .venv/bin/python bench/validate_memory.py [--rows 200000] [--format jsonl|json|csv|parquet]

Each measurement runs in a fresh interpreter and reports its own peak RSS (VmHWM: Linux
carries ru_maxrss over from the forking parent, which holds the generated rows). The
baseline reads the same file into a list of dicts (what loading it whole costs) and does
nothing else.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

_PEAK = 'def peak():\n    return next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:"))\n'
_VALIDATE = _PEAK + textwrap.dedent("""
    import sys, time
    from kubetune_trainer.validatecli import main
    start = time.perf_counter()
    main(["--config", sys.argv[1]])
    print("RESULT", time.perf_counter() - start, peak())
""")
_LOAD_ALL = _PEAK + textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from kubetune_trainer.data.filereaders import read_records
    import kubetune_trainer.data.validate  # the same imports as the validator
    start = time.perf_counter()
    rows = list(read_records(Path(sys.argv[1])))
    print("RESULT", time.perf_counter() - start, peak())
""")
_IDLE = _PEAK + textwrap.dedent("""
    import sys
    import kubetune_trainer.data.validate
    if sys.argv[1] == "parquet":
        import pyarrow.parquet  # the validator imports it for Parquet files only
    print("RESULT", 0.0, peak())
""")


def write_rows(path: Path, count: int, kind: str) -> None:
    rng = random.Random(7)
    rows = ({"instruction": f"Question {i}: " + "word " * rng.randint(5, 30), "input": "",
             "output": "answer " * rng.randint(5, 40)} for i in range(count))
    if kind == "jsonl":
        with path.open("w") as file:
            file.writelines(json.dumps(row) + "\n" for row in rows)
    elif kind == "json":
        path.write_text(json.dumps(list(rows)))
    elif kind == "csv":
        import csv

        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=["instruction", "input", "output"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(list(rows)), path, row_group_size=10_000)


def run(script: str, argument: str) -> tuple[float, int]:
    done = subprocess.run([sys.executable, "-c", script, argument], capture_output=True, text=True, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    _, seconds, peak_kib = line.split()
    return float(seconds), int(peak_kib)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--format", choices=["jsonl", "json", "csv", "parquet"], default="jsonl")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / f"rows.{args.format}"
        start = time.perf_counter()
        write_rows(data, args.rows, args.format)
        print(f"wrote {args.rows} rows, {data.stat().st_size / 2**20:.1f} MiB in {time.perf_counter() - start:.1f} s")
        config = Path(folder) / "config.json"
        config.write_text(json.dumps({
            "name": "bench", "source": {"pvc": {"claimName": "d", "path": data.name}},
            "mounts": {"pvcs": {"d": folder}}, "resultPath": str(Path(folder) / "result.json"),
        }))
        _, idle = run(_IDLE, args.format)
        seconds, peak = run(_VALIDATE, str(config))
        load_seconds, load_peak = run(_LOAD_ALL, str(data))
    grow, load_grow = (peak - idle) / 1024, (load_peak - idle) / 1024
    print(f"validator:  {seconds:6.2f} s, {args.rows / seconds:9.0f} rows/s, peak +{grow:7.1f} MiB over imports")
    print(f"load-all:   {load_seconds:6.2f} s, {args.rows / load_seconds:9.0f} rows/s, "
          f"peak +{load_grow:7.1f} MiB over imports")
    print(f"memory ratio validator/load-all: {max(grow, 0.1) / max(load_grow, 0.1):.3f}")


if __name__ == "__main__":
    main()
