"""bench/run.sh's bookkeeping: hyperfine's JSON into one record per scale, and
every record into bench/results.md. Standard library only."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path

# (what, infra's hyperfine name, the reference's, target ratio or None for
# a comparison shown for context)
COMPARISONS = [
    ("whole run, warm", "infra", "reference", 0.35),
    ("first run after up", "infra-first", "reference", 0.6),
    ("step 0: validate + load", "infra-step0", "psql-copy-in", 1.0),
    ("step 1: dump to CSV", "infra-step1", "psql-copy-out", 1.0),
    # infra's dump is server-side (COPY TO a file), as Cloud SQL's export is:
    # the same through psql is the like-for-like floor.
    ("step 1: dump to CSV", "infra-step1", "psql-copy-out-server", None),
]
RSS_TARGET_MB = 64


def medians(path: Path) -> dict:
    results = json.loads(path.read_text())["results"]
    return {r["command"]: statistics.median(r["times"]) for r in results}


def machine() -> dict:
    mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": model,
        "kernel": platform.release(),
        "load_average": os.getloadavg()[0],
    }


def collect(args: argparse.Namespace) -> None:
    work = Path(args.dir)
    times = {}
    for name in ("run.json", "first.json", "load.json", "dump.json"):
        # run.sh --quick measures no reference jobs and no first run.
        if (work / name).exists():
            times.update(medians(work / name))
    rows = []
    for label, ours, ref, target in COMPARISONS:
        if ours not in times:
            continue
        if ref not in times:
            rows.append({"what": label, "infra_s": round(times[ours], 3), "reference": ref, "reference_s": None,
                         "ratio": None, "target": target, "met": None})
            continue
        ratio = times[ours] / times[ref]
        rows.append(
            {
                "what": label,
                "infra_s": round(times[ours], 3),
                "reference": ref,
                "reference_s": round(times[ref], 3),
                "ratio": round(ratio, 3),
                "target": target,
                "met": None if target is None else ratio <= target,
            }
        )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    record = {
        "scale": args.scale,
        "runs": args.runs,
        "purchase_rows_loaded": args.rows - 1,
        "comparisons": rows,
        "peak_rss_infra_mb": round(args.hwm_kb / 1024, 1),
        "peak_rss_with_children_mb": round(args.with_children_kb / 1024, 1),
        "rss_target_mb": RSS_TARGET_MB,
        "machine": machine(),
        "build_profile": "dev build (scripts/demo builds release: see Build profile)",
        "commit": commit,
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


def render(args: argparse.Namespace) -> None:
    records = sorted(
        (json.loads(p.read_text()) for p in Path(args.render).glob("scale-*.json")), key=lambda r: float(r["scale"])
    )
    out = ["# Benchmark results", "", "Written by `bench/run.sh`; see its header for what each line measures.", ""]
    for r in records:
        m = r["machine"]
        out += [
            f"## Scale {r['scale']} ({r['purchase_rows_loaded']:,} purchase rows loaded)",
            "",
            f"{m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}, Linux {m['kernel']}; "
            f"load average {m['load_average']:.2f} at the end; {r['build_profile']}; "
            f"commit {r['commit']}; medians of {r['runs']} runs"
            + (" (3 for the first run)." if any(c["what"] == "first run after up" for c in r["comparisons"]) else "."),
            "",
            "| what | infra (s) | reference | reference (s) | ratio | target | met |",
            "| --- | ---: | --- | ---: | ---: | ---: | --- |",
        ]
        for c in r["comparisons"]:
            target = "—" if c["target"] is None else f"≤ {c['target']}"
            if c["ratio"] is None:
                out.append(f"| {c['what']} | {c['infra_s']:.2f} | {c['reference']} | not measured (--quick) | | "
                           f"{target} | not measured |")
                continue
            met = "—" if c["met"] is None else "yes" if c["met"] else "**no**"
            out.append(
                f"| {c['what']} | {c['infra_s']:.2f} | {c['reference']} | {c['reference_s']:.2f} | "
                f"{c['ratio']:.2f} | {target} | {met} |"
            )
        met = r["peak_rss_infra_mb"] <= r["rss_target_mb"]
        out += [
            f"| peak RSS of infra (children excluded) | {r['peak_rss_infra_mb']} MB | | | | "
            f"≤ {r['rss_target_mb']} MB | {'yes' if met else '**no**'} |",
            "",
            f"Peak RSS with the children infra waits for (the Spark Connect client, /usr/bin/time -v): "
            f"{r['peak_rss_with_children_mb']} MB. The Spark Connect server is not a child of `run`.",
            "",
        ]
    if len(records) >= 2:
        lo, hi = records[0], records[-1]
        factor = float(hi["scale"]) / float(lo["scale"])
        out += [f"## Scaling: scale {lo['scale']} to {hi['scale']} ({factor:g}x the data)", ""]
        out += ["| what | time ratio | linear would be |", "| --- | ---: | ---: |"]
        lo_by_what = {c["what"]: c for c in lo["comparisons"]}
        shown = set()
        for b in hi["comparisons"]:
            # A step compared with two references is one time.
            if b["what"] in lo_by_what and b["what"] not in shown:
                shown.add(b["what"])
                out.append(f"| {b['what']} | {b['infra_s'] / lo_by_what[b['what']]['infra_s']:.2f} | {factor:g} |")
        out += [
            f"| peak RSS of infra | {hi['peak_rss_infra_mb'] / lo['peak_rss_infra_mb']:.2f} | flat (1) |",
            "",
        ]
    # bench/profile.sh's table, then the hand-written notes.
    for extra in ("profile.md", "notes.md"):
        path = Path(args.render) / extra
        if path.exists():
            out += [path.read_text().rstrip(), ""]
    Path(args.out).write_text("\n".join(out))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--render")
    parser.add_argument("--out", required=True)
    parser.add_argument("--scale")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--dir")
    parser.add_argument("--hwm-kb", type=float)
    parser.add_argument("--with-children-kb", type=float)
    parser.add_argument("--rows", type=int)
    args = parser.parse_args()
    render(args) if args.render else collect(args)


if __name__ == "__main__":
    main()
