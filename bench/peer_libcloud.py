"""The Apache Libcloud peer (run with the bench virtualenv's python): what the original
provision did after create_node, against existing hosts. Per node, one ParamikoSSHClient and a
MultiStepDeployment of SSHKeyDeployment per key, FileDeployment per file, ScriptDeployment per
script; deployment.run(node, client) is called directly with a Node object (no cloud).
Nodes run in parallel threads.

    python peer_libcloud.py SPEC.json OUT.json
"""
import json
import sys
from concurrent.futures import ThreadPoolExecutor

from libcloud.compute.base import Node
from libcloud.compute.deployment import (
    FileDeployment,
    MultiStepDeployment,
    ScriptDeployment,
    SSHKeyDeployment,
)
from libcloud.compute.ssh import ParamikoSSHClient
from libcloud.compute.types import NodeState


def deploy(spec, node_spec):
    # One SSHKeyDeployment holding every key, as the original did: libcloud's put() resolves the
    # relative ".ssh/authorized_keys" against the SFTP session's current directory, so a second
    # SSHKeyDeployment on the same client writes /root/.ssh/.ssh/authorized_keys instead.
    steps = [SSHKeyDeployment("".join(key + "\n" for key in spec["keys"]))]
    steps += [FileDeployment(f["source"], f["target"]) for f in spec["files"]]
    scripts = []
    for name, path in node_spec["scripts"]:
        with open(path) as fp:
            scripts.append((name, ScriptDeployment(fp.read(), name=f"{spec['deploy_dir']}/{name}")))
    msd = MultiStepDeployment(steps + [s for _, s in scripts])
    node = Node(
        id=node_spec["name"], name=node_spec["name"], state=NodeState.RUNNING,
        public_ips=["127.0.0.1"], private_ips=[], driver=None,
    )
    client = ParamikoSSHClient(
        hostname="127.0.0.1", port=node_spec["port"], username="root", key_files=spec["key"], timeout=60
    )
    client.connect()
    try:
        msd.run(node, client)
    finally:
        client.close()
    return [[name, s.stdout, s.stderr, s.exit_status] for name, s in scripts]


def main():
    spec = json.load(open(sys.argv[1]))
    with ThreadPoolExecutor(max_workers=len(spec["nodes"])) as pool:
        futures = {n["name"]: pool.submit(deploy, spec, n) for n in spec["nodes"]}
    out = {name: f.result() for name, f in futures.items()}
    with open(sys.argv[2], "w") as fp:
        json.dump(out, fp)


if __name__ == "__main__":
    main()
