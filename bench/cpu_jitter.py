#!/usr/bin/env python
"""How steady is this machine's CPU? A baseline for reading tail latencies.

    python bench/cpu_jitter.py [--seconds 15] [--work 20000]

Runs the same pure-Python loop (``--work`` additions, ~2.5 ms on the project's
2-core KVM machine) over and over, with a 2 ms sleep between runs so that it never
competes with itself, and prints the percentiles of its wall time and of its CPU
time. On a steady machine p99 ≈ p50. Run it on an idle machine: whatever a
service's requests cost, a p99/p50 ratio of N here means ~1 % of them take about
N times their usual CPU, whatever the code does.
"""

from __future__ import annotations

import argparse
import time


def measure(seconds: float, work: int) -> tuple[list[float], list[float]]:
    wall, cpu = [], []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        w0, c0 = time.perf_counter(), time.thread_time()
        total = 0
        for i in range(work):
            total += i
        wall.append((time.perf_counter() - w0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
        time.sleep(0.002)
    return sorted(wall), sorted(cpu)


def percentiles(values: list[float]) -> str:
    def pick(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    return (
        f"p50 {pick(0.5):6.2f}  p90 {pick(0.9):6.2f}  p99 {pick(0.99):6.2f}  "
        f"p99.9 {pick(0.999):6.2f}  max {values[-1]:6.2f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--work", type=int, default=20_000, help="loop iterations per run")
    args = ap.parse_args()
    wall, cpu = measure(args.seconds, args.work)
    print(f"{len(wall):,} runs of the same loop")
    print(f"  wall time  {percentiles(wall)}")
    print(f"  CPU time   {percentiles(cpu)}")
    print(f"  p99 / p50  {wall[int(0.99 * len(wall))] / wall[len(wall) // 2]:.1f}×")


if __name__ == "__main__":
    main()
