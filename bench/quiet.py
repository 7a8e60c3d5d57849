#!/usr/bin/env python3
"""Is this machine quiet enough to time a benchmark run? (bench/run.sh calls it before each run.)

Quiet means: no other process used more than BUSY_PCT % of one core over a WINDOW-second sample
of /proc/<pid>/stat (utime + stime; this process, its ancestors and the kernel's idle tasks
excluded), and the 1-minute load average (/proc/loadavg) is below LOAD_MAX. A busy process is
a refusal at once; a load average that is still high from an earlier run (it decays with a
one-minute time constant) is waited out for at most WAIT seconds, re-sampling the processes
each time, and is a refusal after that.

Usage: quiet.py [--load-max 0.5] [--busy-pct 10] [--window 2] [--wait 300]
Exit 0 and one line "quiet: load L" on stdout when quiet; exit 1 and the reason (which
process, how busy, what load) on stderr when not. Standard library only.
"""
import argparse
import os
import sys
import time


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cpu_ticks():
    """{pid: (ticks, comm)} of every process now, ticks = utime + stime."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        # comm is in parentheses and may hold spaces: split after the last ')'.
        lp, rp = stat.find("("), stat.rfind(")")
        fields = stat[rp + 2 :].split()
        # fields[0] is state (field 3); utime, stime are fields 14, 15.
        out[int(name)] = (int(fields[11]) + int(fields[12]), stat[lp + 1 : rp])
    return out


def ancestors():
    """This process and its ancestors (the shell running the bench waits on it, idle)."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            pid = int(stat[stat.rfind(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def busy_processes(window, busy_pct):
    """[(pid, comm, percent of one core)] of the processes busier than busy_pct over `window` s."""
    hz = os.sysconf("SC_CLK_TCK")
    skip = ancestors()
    before = cpu_ticks()
    t0 = time.monotonic()
    time.sleep(window)
    after = cpu_ticks()
    dt = time.monotonic() - t0
    busy = []
    for pid, (ticks, comm) in after.items():
        if pid in skip or pid not in before:
            continue
        pct = 100.0 * (ticks - before[pid][0]) / hz / dt
        if pct > busy_pct:
            busy.append((pid, comm, pct))
    return sorted(busy, key=lambda b: -b[2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load-max", type=float, default=0.5)
    ap.add_argument("--busy-pct", type=float, default=10.0)
    ap.add_argument("--window", type=float, default=2.0)
    ap.add_argument("--wait", type=float, default=300.0)
    args = ap.parse_args()

    deadline = time.monotonic() + args.wait
    while True:
        busy = busy_processes(args.window, args.busy_pct)
        load = load1()
        if busy:
            who = ", ".join(f"pid {p} ({c}) {pct:.0f} % of a core" for p, c, pct in busy)
            print(f"not quiet: other busy processes: {who}; 1-minute load {load:.2f}",
                  file=sys.stderr)
            return 1
        if load < args.load_max:
            print(f"quiet: load {load:.2f}")
            return 0
        if time.monotonic() >= deadline:
            print(f"not quiet: 1-minute load average {load:.2f} >= {args.load_max} after waiting "
                  f"{args.wait:.0f} s (no single busy process found)", file=sys.stderr)
            return 1
        time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))


if __name__ == "__main__":
    sys.exit(main())
