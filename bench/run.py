#!/usr/bin/env python3
"""provision deployment benchmark: the same verified deployment done by provision and its peers
against loopback sshd nodes, median wall seconds per cell and the ratio to the floor.

    sudo python3 bench/run.py                 # every case, every peer, 5 runs each
    python3 bench/run.py --runs 1 --cases one-50ms --peers floor,provision
    python3 bench/run.py --self-test          # 1 run, tiny workload, 1 node: < 30 s

See bench/README.md.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers as peer_mod  # noqa: E402
import provision_peer  # noqa: E402
import workload  # noqa: E402
from nodes import Cluster  # noqa: E402

CACHE = Path.home() / ".cache" / "provision-bench"
VENV_PACKAGES = ["apache-libcloud", "paramiko<4", "ansible-core"]


@dataclass
class Case:
    name: str
    title: str
    nodes: int
    latency: str  # direct | 50ms | proxy0
    workload: str  # 50 | 500 | tiny
    only: tuple = ()  # restrict to these peers (calibration cases)


CASES = [
    Case("one-direct", "1 node, no added latency", 1, "direct", "50"),
    Case("one-50ms", "1 node, 50 ms RTT", 1, "50ms", "50"),
    Case("ten-50ms", "10 nodes in parallel, 50 ms RTT", 10, "50ms", "50"),
    # libcloud and Ansible would take minutes per run here (a dozen round trips per file).
    Case("files500-50ms", "500 small files, 1 node, 50 ms RTT", 1, "50ms", "500", ("floor", "openssh", "provision")),
    # diagnostic (not in the default set): where provision's per-file cost comes from
    Case("files500-direct", "500 small files, 1 node, no added latency", 1, "direct", "500", ("floor", "provision")),
    # issue 20: per-file cost at scale and bulk bytes (floor and provision only, diagnostic set)
    *(Case(f"small{n}-{lat}", f"{n} small files ({d} dirs), 1 node, {t}", 1, lat, f"small{n}", ("floor", "provision"))
      for n, d in ((50, 10), (500, 100), (5000, 500)) for lat, t in (("direct", "no added latency"), ("50ms", "50 ms RTT"))),
    *(Case(f"big-{lat}", f"200 MB in 4 incompressible files, 1 node, {t}", 1, lat, "big", ("floor", "provision"))
      for lat, t in (("direct", "no added latency"), ("50ms", "50 ms RTT"))),
    Case("cal-one-proxy0", "calibration: 1 node through the proxy at 0 ms", 1, "proxy0", "50", ("floor",)),
    Case("cal-ten-direct", "calibration: 10 nodes, no proxy", 10, "direct", "50", ("floor",)),
    Case("cal-ten-proxy0", "calibration: 10 nodes through the proxy at 0 ms", 10, "proxy0", "50", ("floor",)),
]
DIAGNOSTIC = {"files500-direct"} | {f"small{n}-{lat}" for n in (50, 500, 5000) for lat in ("direct", "50ms")} | {"big-direct", "big-50ms"}
SCALE = "small50-direct,small50-50ms,small500-direct,small500-50ms,small5000-direct,small5000-50ms,big-direct,big-50ms"
SELF_TEST = Case("self-test", "self-test: tiny workload, 1 node", 1, "direct", "tiny")
PEER_ORDER = ["floor", "openssh", "libcloud", "ansible", "provision"]


@dataclass
class Ctx:
    cluster: Cluster
    wl: workload.Workload
    work: Path
    tmp: Path
    home: Path
    venv: Path
    env: dict
    provision: Path = None  # directory holding deploy-node


def ensure_venv(venv: Path):
    """The peers' throwaway virtualenv (apache-libcloud, paramiko, ansible-core from PyPI)."""
    py = venv / "bin" / "python"
    ok = py.exists() and (venv / "bin" / "ansible-playbook").exists()
    if ok and subprocess.run([str(py), "-c", "import libcloud, paramiko"], capture_output=True).returncode == 0:
        return
    print(f"installing the peers into {venv} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *VENV_PACKAGES], check=True)


def find_provision(arg):
    """Directory with a built deploy-node, or None (the provision peer is then skipped)."""
    candidates = [Path(arg)] if arg else []
    repo = Path(__file__).resolve().parent.parent
    candidates += [repo / "target" / "release", repo / "target" / "debug"]
    for c in candidates:
        if (c / "deploy-node").is_file():
            return c.resolve()
    return None


def one_run(ctx: Ctx, case: Case, peer: str, nodes):
    """Resets the nodes, runs the peer (timed), verifies every node. Returns (seconds, problems)."""
    for n in nodes:
        ctx.cluster.reset(n)
    prepare = provision_peer.provision if peer == "provision" else peer_mod.PEERS[peer]
    run = prepare(ctx, nodes, case.latency)
    t0 = time.perf_counter()
    try:
        outputs = run()
        error = None
    except peer_mod.PeerError as e:
        outputs, error = {}, str(e)
    finally:
        elapsed = time.perf_counter() - t0
        if hasattr(run, "cleanup"):
            run.cleanup()
    problems = [error] if error else []
    for n in nodes:
        snap = ctx.cluster.snapshot(n)
        for p in workload.verify(ctx.wl, n.name, ctx.cluster.client_pub, snap, outputs.get(n.name, [])):
            problems.append(f"{n.name}: {p}")
    return elapsed, problems


def fmt_cell(times, fails, floor_median, runs):
    if not times:
        return f"FAILED ({fails})" if fails else "-"
    med = statistics.median(times)
    s = f"{med:.2f}" if med < 10 else f"{med:.1f}"
    if floor_median:
        s += f" ({med / floor_median:.2f}x)"
    if len(times) + fails < runs:
        s += f" n={len(times)}"
    if fails:
        s += f" [{fails} failed]"
    return s


def table(results, cases, peers, runs):
    """Markdown table: median seconds and x floor per case and peer (n=: fewer runs than asked)."""
    head = "| case | " + " | ".join(peers) + " |"
    rows = [head, "|" + "---|" * (len(peers) + 1)]
    for case in cases:
        cell = results[case.name]
        floor = cell.get("floor", {}).get("times")
        fm = statistics.median(floor) if floor else None
        vals = []
        for p in peers:
            r = cell.get(p)
            vals.append(fmt_cell(r["times"], len(r["failures"]), fm, runs) if r else "")
        rows.append(f"| {case.title} | " + " | ".join(vals) + " |")
    return "\n".join(rows)


def summary_lines(results):
    """The targets that have a number of their own."""
    lines = []

    def med(case, peer):
        t = results.get(case, {}).get(peer, {}).get("times")
        return statistics.median(t) if t else None

    a, b = med("files500-50ms", "provision"), med("one-50ms", "provision")
    if a and b:
        verdict = "met" if a <= 1.5 * b else "NOT met"
        lines.append(f"provision 500 files / 50 files at 50 ms RTT: {a:.2f}/{b:.2f} s = {a / b:.2f}x (target <= 1.5x: {verdict})")
    for lat in ("direct", "50ms"):
        for peer in ("floor", "provision"):
            a, b = med(f"small5000-{lat}", peer), med(f"small50-{lat}", peer)
            if a and b:
                lines.append(f"{peer} cost(5000 files) / cost(50 files), {lat}: {a:.2f}/{b:.2f} s = {a / b:.2f}x")
    d1, p1 = med("one-direct", "floor"), med("cal-one-proxy0", "floor")
    if d1 and p1:
        lines.append(f"proxy overhead, floor 1 node: {p1:.2f} s through the proxy at 0 ms vs {d1:.2f} s direct")
    d10, p10 = med("cal-ten-direct", "floor"), med("cal-ten-proxy0", "floor")
    if d10 and p10:
        lines.append(f"proxy overhead, floor 10 nodes: {p10:.2f} s through the proxy at 0 ms vs {d10:.2f} s direct")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per cell (default 5); the median is reported")
    ap.add_argument("--cases", default=",".join(c.name for c in CASES if c.name not in DIAGNOSTIC), help="comma-separated: " + ", ".join(c.name for c in CASES) + f"; 'scale' for issue 20's set ({SCALE})")
    ap.add_argument("--peers", default=",".join(PEER_ORDER), help="comma-separated: " + ", ".join(PEER_ORDER))
    ap.add_argument("--slow-runs", type=int, default=3, help="runs for a peer whose run takes over --slow-seconds (default 3)")
    ap.add_argument("--slow-seconds", type=float, default=30, help="see --slow-runs (default 30)")
    ap.add_argument("--json", metavar="FILE", help="also write every run's time and problems as JSON ('-': stdout)")
    ap.add_argument("--self-test", action="store_true", help="1 run of every peer, tiny workload, 1 node (< 30 s)")
    ap.add_argument("--work", type=Path, default=CACHE / "work", help="scratch directory (default %(default)s)")
    ap.add_argument("--venv", type=Path, default=CACHE / "venv", help="peers' virtualenv (default %(default)s)")
    ap.add_argument("--provision-bin", help="directory holding deploy-node (default: target/release, target/debug)")
    ap.add_argument("--port-base", type=int, default=22200, help="nodes listen on BASE+i, proxies on BASE+100+i and BASE+200+i; keep below the ephemeral range (default %(default)s)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every run")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("run.py needs root (unshare --mount, tmpfs mounts, sshd)")
    args.cases = args.cases.replace("scale", SCALE)
    cases = [SELF_TEST] if args.self_test else [c for c in CASES if c.name in args.cases.split(",")]
    runs = 1 if args.self_test else args.runs
    peers = [p for p in PEER_ORDER if p in args.peers.split(",")]
    unknown = set(args.peers.split(",")) - set(PEER_ORDER) | set(args.cases.split(",")) - {c.name for c in CASES}
    if unknown and not args.self_test:
        sys.exit(f"unknown case or peer: {', '.join(sorted(unknown))}")
    if any(p in peers for p in ("libcloud", "ansible")):
        ensure_venv(args.venv)
    prov = find_provision(args.provision_bin)
    if "provision" in peers and prov is None:
        print("deploy-node not built (cargo build --release): skipping the provision peer", file=sys.stderr)
        peers.remove("provision")

    work = args.work
    tmp, home = work / "tmp", work / "home"
    for d in (tmp, home):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "ANSIBLE_CONFIG")}
    env["HOME"] = str(home)
    loads = [os.getloadavg()[0]]
    results = {}
    with Cluster(work, max(c.nodes for c in cases), args.port_base) as cluster:
        workloads = {}
        for case in cases:
            if case.workload not in workloads:
                workloads[case.workload] = workload.build(work, case.workload)
            wl = workloads[case.workload]
            ctx = Ctx(cluster, wl, work, tmp, home, args.venv, env, prov)
            nodes = cluster.nodes[: case.nodes]
            cell_peers = [p for p in peers if not case.only or p in case.only]
            results[case.name] = {p: {"times": [], "loads": [], "failures": []} for p in cell_peers}
            print(f"== {case.title} ({wl.nfiles} files, {wl.total_bytes / 1e6:.2f} MB)", file=sys.stderr)
            limit = {p: runs for p in cell_peers}
            for r in range(runs):  # interleaved, so slow drifts in machine load hit every peer alike
                for p in cell_peers:
                    if r >= limit[p]:
                        continue
                    elapsed, problems = one_run(ctx, case, p, nodes)
                    if elapsed > args.slow_seconds:
                        limit[p] = min(runs, args.slow_runs)
                    res = results[case.name][p]
                    if problems:
                        res["failures"].append({"run": r, "seconds": elapsed, "problems": problems})
                        print(f"   {p:9} run {r + 1}: FAILED verification ({elapsed:.2f} s): {problems[:3]}", file=sys.stderr)
                    else:
                        res["times"].append(elapsed)
                        res["loads"].append(os.getloadavg()[0])
                        if args.verbose:
                            print(f"   {p:9} run {r + 1}: {elapsed:.2f} s (load {res['loads'][-1]:.1f})", file=sys.stderr)
                loads.append(os.getloadavg()[0])
    out_peers = [p for p in PEER_ORDER if any(p in results[c.name] for c in cases)]
    sys.stderr.flush()
    print(table(results, cases, out_peers, runs))
    print()
    for line in summary_lines(results):
        print(line)
    print(f"runs per cell: {runs}; 1-min load average during the bench: {min(loads):.1f} - {max(loads):.1f} on {os.cpu_count()} CPUs")
    if args.json:
        doc = {"runs": runs, "load": loads, "cases": {c.name: {"title": c.title, **results[c.name]} for c in cases}}
        text = json.dumps(doc, indent=1)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    failed = any(r["failures"] for cell in results.values() for r in cell.values())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
