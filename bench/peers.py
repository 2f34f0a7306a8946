"""The peers. Each is `prepare(ctx, nodes, latency) -> run`, where prepare writes whatever
files the tool needs (untimed) and `run()` (timed) deploys onto every node at once with the
tool's own parallelism, returning {node name: [(script, stdout, stderr, exit status), ...]}.
A peer raises PeerError when the tool itself reports failure."""
import json
import os
import shlex
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from workload import DEPLOY_DIR

HERE = Path(__file__).resolve().parent


class PeerError(Exception):
    pass


def alias(node, latency):
    """The ssh_config host alias that reaches the node at this latency."""
    return node.name + {"direct": "", "50ms": "-50ms", "proxy0": "-proxy0"}[latency]


def check(r: subprocess.CompletedProcess, what: str):
    if r.returncode != 0:
        err = (r.stderr or "").strip().splitlines()[-3:]
        raise PeerError(f"{what} exited {r.returncode}: {' | '.join(err)}")
    return r


# -- floor: one tar stream per node --------------------------------------------------------------


def floor(ctx, nodes, latency):
    wl = ctx.wl
    scripts = " ".join(wl.scripts)
    remote = (
        "tar x -C / && cat /root/deploy/keys >> /root/.ssh/authorized_keys && cd /root/deploy && "
        f'for s in {scripts}; do echo "@@begin $s"; ./$s 2>&1; echo "@@end $s $?"; done'
    )
    cmds = {
        n.name: f"tar c -C {wl.stage_dir(n.name)} srv/provbench root/deploy | "
        f"ssh -F {ctx.cluster.ssh_config} {alias(n, latency)} {shlex.quote(remote)}"
        for n in nodes
    }

    def run():
        procs = {
            name: subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ctx.env)
            for name, cmd in cmds.items()
        }
        out = {}
        for name, p in procs.items():
            stdout, stderr = p.communicate()
            check(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr), f"{name}: tar | ssh")
            out[name] = parse_markers(stdout)
        return out

    return run


def parse_markers(text):
    """[(script, output, "", status)] from the floor's @@begin/@@end framing."""
    res, cur, buf = [], None, []
    for line in text.splitlines(keepends=True):
        if line.startswith("@@begin "):
            cur, buf = line.split()[1], []
        elif line.startswith("@@end ") and cur:
            _, name, code = line.split()
            res.append((name, "".join(buf), "", int(code)))
            cur = None
        elif cur:
            buf.append(line)
    return res


# -- OpenSSH, careful: ControlMaster, one sftp batch, one ssh per script -------------------------


def openssh(ctx, nodes, latency):
    wl, cfg = ctx.wl, str(ctx.cluster.ssh_config)
    mkdirs = "mkdir -p " + " ".join(shlex.quote(d) for d in wl.target_dirs() + [DEPLOY_DIR])
    keys = "".join(k + "\n" for k in wl.keys)
    batches = {}
    for n in nodes:
        rendered = wl.rendered_dir(n.name)
        lines = [f'put -p "{f.source}" "{f.target}"' for f in wl.files]
        lines += [f'put -p "{rendered / s}" "{DEPLOY_DIR}/{s}"' for s in wl.scripts]
        batches[n.name] = ctx.tmp / f"sftp-{n.name}.batch"
        batches[n.name].write_text("\n".join(lines) + "\n")
    master = ["-o", "ControlMaster=auto", "-o", "ControlPersist=60"]

    def one(n):
        a = alias(n, latency)
        ssh = ["ssh", "-F", cfg] + master + [a]
        run_ = lambda args, **kw: subprocess.run(args, capture_output=True, text=True, env=ctx.env, **kw)
        check(run_(ssh + [mkdirs + " && cat >> /root/.ssh/authorized_keys"], input=keys), f"{n.name}: keys")
        check(run_(["sftp", "-F", cfg, "-q", "-b", str(batches[n.name])] + master[:2] + [a]), f"{n.name}: sftp")
        outs = []
        for s in wl.scripts:
            r = run_(ssh + [f"{DEPLOY_DIR}/{s}"])
            outs.append((s, r.stdout, r.stderr, r.returncode))
        run_(["ssh", "-F", cfg, "-O", "exit", a])
        return outs

    def run():
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            futures = {n.name: pool.submit(one, n) for n in nodes}
        return {name: f.result() for name, f in futures.items()}

    def cleanup():  # a failed run may leave a master behind
        for n in nodes:
            subprocess.run(["ssh", "-F", cfg, "-O", "exit", alias(n, latency)], capture_output=True)

    run.cleanup = cleanup
    return run


# -- Apache Libcloud deployment classes over paramiko --------------------------------------------


def libcloud(ctx, nodes, latency):
    wl = ctx.wl
    spec = {
        "key": str(ctx.cluster.client_key),
        "keys": wl.keys,
        "deploy_dir": DEPLOY_DIR,
        "files": [{"source": str(f.source), "target": f.target} for f in wl.files],
        "nodes": [
            {
                "name": n.name,
                "port": n.port_for(latency),
                "scripts": [[s, str(wl.rendered_dir(n.name) / s)] for s in wl.scripts],
            }
            for n in nodes
        ],
    }
    spec_file, out_file = ctx.tmp / "libcloud-spec.json", ctx.tmp / "libcloud-out.json"
    spec_file.write_text(json.dumps(spec))
    out_file.unlink(missing_ok=True)
    args = [str(ctx.venv / "bin" / "python"), str(HERE / "peer_libcloud.py"), str(spec_file), str(out_file)]

    def run():
        check(subprocess.run(args, capture_output=True, text=True, env=ctx.env), "libcloud peer")
        return {k: [tuple(o) for o in v] for k, v in json.loads(out_file.read_text()).items()}

    return run


# -- Ansible (ansible-core builtin modules, pipelining on) ----------------------------------------


def ansible(ctx, nodes, latency):
    wl, d = ctx.wl, ctx.tmp / "ansible"
    d.mkdir(exist_ok=True)
    cm_dir = Path(tempfile.mkdtemp(prefix="cm-", dir=d))  # fresh per run: no warm masters
    (d / "ansible.cfg").write_text(
        "[defaults]\n"
        f"inventory = {d / 'inventory.ini'}\nforks = {max(10, len(nodes))}\nhost_key_checking = True\n"
        "interpreter_python = /usr/bin/python3\ngathering = explicit\nretry_files_enabled = False\n"
        f"callback_plugins = {HERE / 'ansible'}\nstdout_callback = bench_json\n"
        f"local_tmp = {ctx.home / '.ansible' / 'tmp'}\n"
        "[ssh_connection]\npipelining = True\n"
        f"ssh_args = -F {ctx.cluster.ssh_config} -C -o ControlMaster=auto -o ControlPersist=60s\n"
        f"control_path_dir = {cm_dir}\n"
    )
    inv = ["[nodes]"] + [
        f"{n.name} ansible_host={alias(n, latency)} ansible_user=root rendered={wl.rendered_dir(n.name)}" for n in nodes
    ]
    (d / "inventory.ini").write_text("\n".join(inv) + "\n")
    tasks = [
        {"name": "keys", "ansible.builtin.lineinfile": {
            "path": "/root/.ssh/authorized_keys", "line": "{{ item }}", "create": True, "mode": "0600"},
         "loop": wl.keys},
        {"name": "directories", "ansible.builtin.file": {"path": "{{ item }}", "state": "directory"},
         "loop": wl.target_dirs()},
        {"name": "files", "ansible.builtin.copy": {"src": "{{ item.src }}", "dest": "{{ item.dest }}", "mode": "{{ item.mode }}"},
         "loop": [{"src": str(f.source), "dest": f.target, "mode": f"{f.mode:04o}"} for f in wl.files]},
    ]
    tasks += [{"name": f"script {s}", "ansible.builtin.script": "{{ rendered }}/" + s} for s in wl.scripts]
    (d / "site.yml").write_text(json.dumps([{"hosts": "all", "gather_facts": False, "tasks": tasks}], indent=1))
    out_file = d / "out.json"
    out_file.unlink(missing_ok=True)
    env = dict(ctx.env, ANSIBLE_CONFIG=str(d / "ansible.cfg"), PROVBENCH_ANSIBLE_OUT=str(out_file))

    def run():
        r = subprocess.run(
            [str(ctx.venv / "bin" / "ansible-playbook"), str(d / "site.yml")],
            capture_output=True, text=True, env=env, cwd=d,
        )
        res = json.loads(out_file.read_text()) if out_file.exists() else {"outputs": {}, "failures": []}
        if r.returncode != 0 or res["failures"]:
            why = "; ".join(res["failures"]) or r.stderr.strip()[-300:]
            raise PeerError(f"ansible-playbook exited {r.returncode}: {why[:400]}")
        return {k: [tuple(o) for o in v] for k, v in res["outputs"].items()}

    def cleanup():  # close the persistent masters so the next run starts cold
        for sock in cm_dir.iterdir():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], capture_output=True)

    run.cleanup = cleanup
    return run


PEERS = {"floor": floor, "openssh": openssh, "libcloud": libcloud, "ansible": ansible}
