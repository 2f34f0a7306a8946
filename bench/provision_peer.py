"""The provision peer: `deploy-node -p static -b bench -n benchN` per node, the 10-node case as
10 deploy-node processes in parallel, one per node (as the other peers' per-node workers).

Config: the workload's layer (provision.toml with [vars] and [bundles.bench], pubkeys/ with the
3 keys, files/, scripts/ holding the 5 scripts as format-string templates that deploy-node
renders itself) plus a second layer naming the hosts:

    [providers.static.hosts]
    bench0 = "root@127.0.0.1:42300"

Host keys are checked: the nodes' keys are recorded in $PROVISION_STATE_DIR/known_hosts before
the measured run (what a first, trust-on-first-use deploy would have recorded), never
--insecure-host-key. Exit statuses come from the -d description file. Per-script output comes
from the --junit report (system-out/err per script) when deploy-node writes one; otherwise from
the live `[node] line` stream on stderr, which carries no per-script framing, so it is split
at the scripts' expected first lines (workload.split_stream) and verified as a whole.
"""
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

from peers import PeerError, check
from workload import split_stream


def provision(ctx, nodes, latency):
    wl = ctx.wl
    state = ctx.tmp / "provision-state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    shutil.copy(ctx.cluster.known_hosts, state / "known_hosts")
    hosts = ctx.tmp / "provision-hosts"
    hosts.mkdir(exist_ok=True)
    (hosts / "provision.toml").write_text(
        "[providers.static.hosts]\n" + "".join(f'{n.name} = "root@127.0.0.1:{n.port_for(latency)}"\n' for n in nodes)
    )
    reports = ctx.tmp / "provision-reports"
    shutil.rmtree(reports, ignore_errors=True)
    reports.mkdir()
    env = {k: v for k, v in ctx.env.items() if k not in ("PROVISION_CONFIG_PATH", "XDG_CONFIG_HOME")}
    env["PROVISION_STATE_DIR"] = str(state)
    env["NO_COLOR"] = "1"
    cmds = {
        n.name: [
            str(ctx.provision / "deploy-node"), "-p", "static", "-c", str(wl.dir / "layer"), "-c", str(hosts),
            "-b", "bench", "-n", n.name, "--identity", str(ctx.cluster.client_key),
            "-d", str(reports / f"{n.name}.json"), "--junit", str(reports / f"{n.name}.xml"),
        ]
        for n in nodes
    }

    def run():
        procs = {
            name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for name, cmd in cmds.items()
        }
        done = {}
        for name, p in procs.items():
            out, err = p.communicate()
            done[name] = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        for name, r in done.items():
            check(r, f"{name}: deploy-node")
        return {name: outputs(wl, reports, name, done[name].stderr) for name in cmds}

    return run


def outputs(wl, reports, name, stderr):
    """[(script, stdout, stderr, status)] for one node."""
    desc = json.loads((reports / f"{name}.json").read_text())
    status = {s["name"]: s["status"] for s in desc["scripts"]}
    if list(status) != wl.scripts:
        raise PeerError(f"{name}: description lists scripts {list(status)}")
    junit = reports / f"{name}.xml"
    if junit.exists():
        cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
        return [
            (s, cases[s].findtext("system-out") or "", cases[s].findtext("system-err") or "", status[s])
            for s in wl.scripts
            if s in cases
        ]
    prefix = f"[{name}] "
    lines = [line[len(prefix):] for line in stderr.splitlines() if line.startswith(prefix)]
    parts = split_stream(wl, name, lines)
    # stdout and stderr are merged in the stream and their relative order is not kept, so a
    # script's stderr lines are looked for anywhere in it
    everything = "\n".join(lines)
    return [(s, part, everything, status[s]) for s, part in zip(wl.scripts, parts)]
