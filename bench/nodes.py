"""Loopback sshd nodes in private mount namespaces, the latency proxies, and the OpenSSH client
config every peer shares.

A node is `unshare --mount --propagation private sh -c '...; exec sshd -D -e -f CONFIG'`: inside
its namespace /root and /srv are fresh tmpfs mounts, so deploying into /root/.ssh, /root/deploy
and /srv/provbench never touches the machine's own files and every node has its own copy.
The client key is written into the tmpfs /root/.ssh/authorized_keys before sshd starts.
"""
import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
DELAY_MS = 25  # one way, so RTT = 50 ms
# sshd's config, host key and the client key to seed must be readable after /root is covered
# by the node's tmpfs, so they live outside /root (the work dir usually is ~/.cache/...).
NODES_DIR = Path("/tmp/provbench-nodes")  # /<port base>/<node>


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def keygen(path: Path, comment: str):
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path.with_suffix(".pub").read_text().strip()


def wait_port(port, timeout=10.0):
    """Waits until 127.0.0.1:port answers with an SSH banner."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answers SSH on 127.0.0.1:{port}")


@dataclass
class Node:
    index: int
    name: str
    port: int  # sshd, direct
    port_delay: int  # through the delay proxy (RTT 50 ms)
    port_zero: int  # through the same proxy code at 0 ms (to measure the proxy itself)
    dir: Path
    proc: subprocess.Popen = None

    def port_for(self, latency: str) -> int:
        return {"direct": self.port, "50ms": self.port_delay, "proxy0": self.port_zero}[latency]


class Cluster:
    """N nodes plus their proxy processes; use as a context manager."""

    def __init__(self, work: Path, count: int, port_base: int):
        self.work = work
        self.count = count
        self.port_base = port_base
        self.nodes = []
        self.proxies = []
        self.client_key = work / "client" / "id_ed25519"
        self.known_hosts = work / "client" / "known_hosts"
        self.ssh_config = work / "client" / "ssh_config"
        self.control_dir = work / "client" / "cm"

    # -- setup -------------------------------------------------------------------------------

    def __enter__(self):
        self.client_pub = keygen(self.client_key, "provbench-client")
        self.control_dir.mkdir(parents=True, exist_ok=True)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        for i in range(self.count):
            b = self.port_base
            node = Node(i, f"bench{i}", b + i, b + 100 + i, b + 200 + i, NODES_DIR / str(b) / f"bench{i}")
            self.nodes.append(node)
        self._write_client_files()
        try:
            for node in self.nodes:
                self._start_node(node)
            for n in self.nodes:  # one process per node and delay, so 10 nodes use every core
                self._start_proxy(DELAY_MS, [(n.port_delay, n.port)])
                self._start_proxy(0, [(n.port_zero, n.port)])
            for node in self.nodes:
                for port in (node.port, node.port_delay, node.port_zero):
                    wait_port(port)
                self.ssh(node, "true")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for p in self.proxies + [n.proc for n in self.nodes if n.proc]:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.proxies + [n.proc for n in self.nodes if n.proc]:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()

    def _write_client_files(self):
        lines = []
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            node.host_pub = keygen(node.dir / "ssh_host_ed25519_key", f"{node.name}-host")
            for port in (node.port, node.port_delay, node.port_zero):
                lines.append(f"[127.0.0.1]:{port} {node.host_pub}")
        self.known_hosts.write_text("\n".join(lines) + "\n")
        # Host aliases: benchN (direct), benchN-50ms (delayed), benchN-proxy0 (proxy at 0 ms).
        cfg = []
        for node in self.nodes:
            for suffix, port in (("", node.port), ("-50ms", node.port_delay), ("-proxy0", node.port_zero)):
                cfg += [f"Host {node.name}{suffix}", "  HostName 127.0.0.1", f"  Port {port}"]
        cfg += [
            "Host *",
            "  User root",
            f"  IdentityFile {self.client_key}",
            "  IdentitiesOnly yes",
            "  IdentityAgent none",
            f"  UserKnownHostsFile {self.known_hosts}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  BatchMode yes",
            "  LogLevel ERROR",
            f"  ControlPath {self.control_dir}/%C",
        ]
        self.ssh_config.write_text("\n".join(cfg) + "\n")

    def _start_node(self, node: Node):
        conf = node.dir / "sshd_config"
        conf.write_text(
            "\n".join(
                [
                    f"Port {node.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {node.dir / 'ssh_host_ed25519_key'}",
                    "PidFile none",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "AuthorizedKeysFile /root/.ssh/authorized_keys",
                    f"Subsystem sftp {SFTP_SERVER}",
                    "MaxStartups 200",
                    "MaxSessions 200",
                    "UseDNS no",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        (node.dir / "client.pub").write_text(self.client_pub + "\n")
        inner = (
            "set -e; mount -t tmpfs -o mode=0700 tmpfs /root; mount -t tmpfs -o mode=0755 tmpfs /srv; "
            "mkdir -m 700 /root/.ssh; "
            f"install -m 600 {shlex.quote(str(node.dir / 'client.pub'))} /root/.ssh/authorized_keys; "
            f"exec {SSHD} -D -e -f {shlex.quote(str(conf))}"
        )
        log = open(node.dir / "sshd.log", "ab")
        node.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def _start_proxy(self, delay_ms, pairs):
        args = ["python3", str(HERE / "proxy.py"), "--delay-ms", str(delay_ms)]
        args += [f"{a}:{b}" for a, b in pairs]
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        self.proxies.append(p)
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("latency proxy did not start")

    # -- helpers used by the driver ----------------------------------------------------------

    def ssh_base(self):
        return ["ssh", "-F", str(self.ssh_config)]

    def ssh(self, node: Node, command: str, input=None, timeout=60):
        """Runs a command on the node over the direct port (not timed, not delayed)."""
        r = subprocess.run(
            self.ssh_base() + [node.name, command], input=input, capture_output=True, text=True, timeout=timeout
        )
        if r.returncode != 0:
            raise RuntimeError(f"{node.name}: ssh {command!r} failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout

    def reset(self, node: Node):
        """Back to a fresh node: only the client key, no deployed files or scripts."""
        self.ssh(
            node,
            "rm -rf /srv/provbench /srv/run.log /root/deploy /root/.ansible; "
            "cat > /root/.ssh/authorized_keys; chmod 600 /root/.ssh/authorized_keys",
            input=self.client_pub + "\n",
        )

    def snapshot(self, node: Node):
        """What verification needs from the node, read through ssh."""
        out = self.ssh(
            node,
            "echo @@modes; cd /srv/provbench 2>/dev/null && find . -type f -exec stat -c '%a %n' {} +; "
            "echo @@sums; cd /srv/provbench 2>/dev/null && find . -type f -exec sha256sum {} +; "
            "echo @@keys; cat /root/.ssh/authorized_keys; echo @@runlog; cat /srv/run.log 2>/dev/null; true",
            timeout=120,
        )
        parts, cur = {}, None
        for line in out.splitlines():
            if line.startswith("@@"):
                cur = line[2:]
                parts[cur] = []
            elif cur:
                parts[cur].append(line)
        modes = {}
        for line in parts.get("modes", []):
            m, p = line.split(" ", 1)
            modes["/srv/provbench/" + p[2:]] = int(m, 8)
        sums = {}
        for line in parts.get("sums", []):
            h, p = line.split(None, 1)
            sums["/srv/provbench/" + p.lstrip("*")[2:]] = h
        return {"modes": modes, "sums": sums, "keys": parts.get("keys", []), "runlog": parts.get("runlog", [])}
