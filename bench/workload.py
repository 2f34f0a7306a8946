"""The deployment every peer performs, generated deterministically, and its verification.

Workload "50": 3 public keys; 50 files (43 small configs, 6 blobs of 100 KB - 1 MB, 1 tool),
2.8 MB in all, modes 0644/0600/0755, targets three directory levels below /srv/provbench;
5 rendered scripts run in order from /root/deploy (one prints 1,000 lines).
Workload "500": the same but the configs' bytes are spread over 493 configs (500 files).
Workloads "small50", "small500", "small5000" (issue 20): only small configs (~1 KB each, modes
0644/0600/0755) spread over 10, 100 and 500 directories; "big": 4 incompressible files of 50 MB
(200 MB) in 2 directories. Same keys and scripts.
"""
import hashlib
import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from nodes import keygen

ROOT = "/srv/provbench"
DEPLOY_DIR = "/root/deploy"
BLOB_SIZES = [100 * 1024, 150 * 1024, 250 * 1024, 400 * 1024, 700 * 1024, 1024 * 1024]
CONFIG_BYTES = 110_000  # spread over the configs, whatever their number
VARS = {"greeting": "provision bench"}
MARKER = "# provision-template-type: format-string"

# name -> (template, expected stdout lines with {node_name} filled in, expected stderr lines)
SCRIPTS = {
    "01-hello.sh": (
        'echo "hello from {node_name} ({greeting})"\necho 01 >> /srv/run.log\n',
        ["hello from {node_name} (provision bench)"], [],
    ),
    "02-files.sh": (
        'n=$(find /srv/provbench -type f | wc -l)\necho "files: $n"\necho 02 >> /srv/run.log\n',
        ["files: {nfiles}"], [],
    ),
    "03-thousand.sh": (
        'i=1\nwhile [ $i -le 1000 ]; do echo "line $i of 1000 on {node_name}"; i=$((i+1)); done\n'
        "echo 03 >> /srv/run.log\n",
        ["line {i} of 1000 on {node_name}"], [],
    ),
    "04-stderr.sh": (
        'echo "to stdout"\necho "to stderr from {node_name}" >&2\necho 04 >> /srv/run.log\n',
        ["to stdout"], ["to stderr from {node_name}"],
    ),
    "05-done.sh": (
        'echo 05 >> /srv/run.log\necho "done on {node_name}: $(tr \'\\n\' \' \' < /srv/run.log)"\n',
        ["done on {node_name}: 01 02 03 04 05 "], [],
    ),
}


@dataclass
class File:
    target: str  # absolute path on the node
    source: Path  # local file, named files/<basename> in the provision layer
    mode: int
    sha256: str
    size: int


@dataclass
class Workload:
    name: str
    dir: Path
    keys: list  # public key lines
    files: list = field(default_factory=list)

    @property
    def nfiles(self):
        return len(self.files)

    @property
    def total_bytes(self):
        return sum(f.size for f in self.files)

    @property
    def scripts(self):
        return list(SCRIPTS)

    def render(self, node_name: str) -> dict:
        """Rendered script texts for one node (what provision renders itself)."""
        return {
            name: "#!/bin/sh\n" + MARKER + "\nset -e\n" + tpl.format(node_name=node_name, **VARS)
            for name, (tpl, _, _) in SCRIPTS.items()
        }

    def rendered_dir(self, node_name: str) -> Path:
        """Local directory holding the node's rendered scripts (mode 0755), made once."""
        d = self.dir / "rendered" / node_name
        if not d.exists():
            d.mkdir(parents=True)
            for name, text in self.render(node_name).items():
                (d / name).write_text(text)
                (d / name).chmod(0o755)
        return d

    def stage_dir(self, node_name: str) -> Path:
        """A tree mirroring the node: srv/provbench/... (shared) and root/deploy/ (per node)."""
        d = self.dir / "stage" / node_name
        if not d.exists():
            for f in self.files:
                dst = d / f.target.lstrip("/")
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f.source, dst)
            dep = d / DEPLOY_DIR.lstrip("/")
            shutil.copytree(self.rendered_dir(node_name), dep)
            (dep / "keys").write_text("".join(k + "\n" for k in self.keys))
        return d

    def target_dirs(self):
        return sorted({str(Path(f.target).parent) for f in self.files})


def _text(rng: random.Random, size: int) -> bytes:
    words = ["listen", "server", "timeout", "enabled", "path", "user", "retries", "level", "cache"]
    out, n = [], 0
    while n < size:
        line = f"{rng.choice(words)}_{rng.randrange(1000)} = {rng.getrandbits(48):x}\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


# Issue 20's scale workloads: name -> (small files, directories they spread over).
SMALL = {"small50": (50, 10), "small500": (500, 100), "small5000": (5000, 500)}
BIG_FILES, BIG_SIZE = 4, 50 * 1024 * 1024


def _build_scale(wl: Workload, name: str, rng: random.Random, add):
    """The small-file and big-file workloads: files only, in their own directory layouts."""
    if name == "big":
        for i in range(BIG_FILES):
            add(f"{ROOT}/big/d{i % 2}/blob{i}.bin", rng.randbytes(BIG_SIZE), (0o644, 0o600)[i % 2])
        return
    nfiles, ndirs = SMALL[name]
    for i in range(nfiles):
        mode = (0o644, 0o644, 0o600, 0o644, 0o755)[i % 5]
        d = i % ndirs
        add(f"{ROOT}/s/d{d // 10:02d}/e{d % 10}/f{i:04d}.conf", _text(rng, rng.randrange(500, 1500)), mode)


def build(work: Path, name: str) -> Workload:
    """Creates (or re-creates, deterministically) the workload under work/workload/<name>."""
    nconfigs = {"50": 43, "500": 493, "tiny": 4}.get(name, 0)
    blobs = BLOB_SIZES if name != "tiny" else [100 * 1024]
    d = work / "workload" / name
    if d.exists():
        shutil.rmtree(d)
    files_dir = d / "layer" / "files"
    files_dir.mkdir(parents=True)
    keys = [keygen(work / "keys" / f"key{i}", f"provbench-key-{i}@example") for i in (1, 2, 3)]
    rng = random.Random(f"provbench-{name}")
    wl = Workload(name, d, keys)
    levels = [("etc", "opt"), ("alpha", "beta", "gamma"), ("conf.d",)]

    def add(target, data, mode):
        src = files_dir / Path(target).name
        src.write_bytes(data)
        src.chmod(mode)
        wl.files.append(File(target, src, mode, hashlib.sha256(data).hexdigest(), len(data)))

    if name in SMALL or name == "big":
        _build_scale(wl, name, rng, add)
    for i in range(nconfigs):
        l1, l2 = levels[0][i % 2], levels[1][(i // 2) % 3]
        mode = (0o644, 0o644, 0o600, 0o644, 0o755)[i % 5]
        size = max(64, int(CONFIG_BYTES / nconfigs * rng.uniform(0.5, 1.5)))
        add(f"{ROOT}/{l1}/{l2}/conf.d/c{i:03d}.conf", _text(rng, size), mode)
    for i, size in enumerate(blobs if nconfigs else []):
        add(f"{ROOT}/var/{levels[1][i % 3]}/data/blob{i}.bin", rng.randbytes(size), 0o644)
    if nconfigs:
        add(f"{ROOT}/opt/alpha/bin/tool", b"#!/bin/sh\necho tool\n" + _text(rng, 2000), 0o755)
    _write_layer(wl)
    (d / "manifest.json").write_text(
        json.dumps([{"target": f.target, "mode": oct(f.mode), "sha256": f.sha256} for f in wl.files], indent=1)
    )
    return wl


def _write_layer(wl: Workload):
    """The provision config layer: provision.toml, pubkeys/, files/, scripts/ (templates)."""
    layer = wl.dir / "layer"
    (layer / "pubkeys").mkdir()
    for i, k in enumerate(wl.keys, 1):
        (layer / "pubkeys" / f"key{i}.pub").write_text(k + "\n")
    (layer / "scripts").mkdir()
    for name, (tpl, _, _) in SCRIPTS.items():
        (layer / "scripts" / name).write_text("#!/bin/sh\n" + MARKER + "\nset -e\n" + tpl)
    toml = ["[vars]"] + [f"{k} = {json.dumps(v)}" for k, v in VARS.items()]
    toml += ["", "[bundles.bench]", "scripts = [" + ", ".join(json.dumps(s) for s in SCRIPTS) + "]", "",
             "[bundles.bench.files]"]
    toml += [f"{json.dumps(f.target)} = {json.dumps(f.source.name)}" for f in wl.files]
    (layer / "provision.toml").write_text("\n".join(toml) + "\n")


# -- verification --------------------------------------------------------------------------------


def _subsequence(expected, lines):
    """True when every expected line occurs in lines, in order."""
    it = iter(lines)
    return all(any(e == l for l in it) for e in expected)


def expected_lines(wl: Workload, script: str, node_name: str):
    _, out, err = SCRIPTS[script]
    if script == "03-thousand.sh":
        out = [out[0].format(i=i, node_name=node_name) for i in range(1, 1001)]
    else:
        out = [o.format(node_name=node_name, nfiles=wl.nfiles) for o in out]
    return out, [e.format(node_name=node_name) for e in err]


def verify(wl: Workload, node_name: str, client_pub: str, snap: dict, outputs) -> list:
    """Problems found (empty: the run counts). outputs: [(script, stdout, stderr, exit_code)]."""
    bad = []
    want = {f.target: f for f in wl.files}
    if set(snap["sums"]) != set(want):
        missing, extra = set(want) - set(snap["sums"]), set(snap["sums"]) - set(want)
        bad.append(f"files: {len(missing)} missing, {len(extra)} unexpected (e.g. {sorted(missing | extra)[:2]})")
    for t, f in want.items():
        if t in snap["sums"] and snap["sums"][t] != f.sha256:
            bad.append(f"{t}: content differs")
        if t in snap["modes"] and snap["modes"][t] != f.mode:
            bad.append(f"{t}: mode {oct(snap['modes'][t])}, want {oct(f.mode)}")
    ident = lambda line: tuple(line.split()[:2])  # key type and blob; comments may differ
    keys = [ident(l) for l in snap["keys"] if l.strip() and not l.startswith("#")]
    for k in wl.keys:
        if keys.count(ident(k)) != 1:
            bad.append(f"authorized_keys holds {k.split()[-1]} {keys.count(ident(k))} times")
    others = set(keys) - {ident(k) for k in wl.keys} - {ident(client_pub)}
    if others:
        bad.append(f"authorized_keys has {len(others)} unexpected keys")
    if snap["runlog"] != ["01", "02", "03", "04", "05"]:
        bad.append(f"scripts ran as {snap['runlog']}, want 01..05 once each in order")
    got = {o[0]: o for o in outputs}
    if [o[0] for o in outputs] != wl.scripts:
        bad.append(f"captured outputs for {[o[0] for o in outputs]}, want {wl.scripts}")
    for script in wl.scripts:
        if script not in got:
            continue
        _, out, err, code = got[script]
        out_l = out.replace("\r\n", "\n").split("\n")
        all_l = out_l + err.replace("\r\n", "\n").split("\n")  # some tools merge stderr into stdout
        exp_out, exp_err = expected_lines(wl, script, node_name)
        if code != 0:
            bad.append(f"{script}: exit status {code!r}, want 0")
        if not _subsequence(exp_out, out_l):
            n = sum(1 for e in exp_out if e in set(all_l))
            bad.append(f"{script}: stdout incomplete ({n}/{len(exp_out)} expected lines)")
        if not all(e in all_l for e in exp_err):
            bad.append(f"{script}: stderr not captured")
    return bad


def split_stream(wl: Workload, node_name: str, lines) -> list:
    """Attributes one merged output stream (no per-script framing) to the scripts, in order:
    script i's part runs from the end of script i-1's part up to the first expected line
    (stdout or stderr) of script i+1 found after script i's own expected stdout lines. A line missing anywhere leaves the
    later parts empty, so verification fails."""
    parts, pos = [], 0
    for idx, script in enumerate(wl.scripts):
        j = pos
        for e in expected_lines(wl, script, node_name)[0]:
            while j < len(lines) and lines[j] != e:
                j += 1
            j += 1
        end = min(j, len(lines))
        if idx + 1 < len(wl.scripts):
            out, err = expected_lines(wl, wl.scripts[idx + 1], node_name)
            starts = {out[0], *err}  # stderr may overtake stdout in a merged stream
            while end < len(lines) and lines[end] not in starts:
                end += 1
        else:
            end = len(lines)
        parts.append("".join(line + "\n" for line in lines[pos:end]))
        pos = end
    return parts
