"""A throwaway single-node Slurm cluster on this machine, for the SLURM integration test.

``with slurm_cluster() as cluster:`` starts munged, slurmctld and slurmd, each in the foreground
as a child process of this one, and waits until ``sinfo`` shows the node idle. On exit it
cancels any job still queued, stops exactly those three processes (by PID), puts
``/etc/slurm/slurm.conf`` back as it was and deletes the cluster's folder.

Needs root and the Debian packages ``slurm-wlm`` and ``munge`` (``apt-get install slurm-wlm
munge``). Everything the daemons write (munge key and socket, state, spool, logs) lives in a
fresh folder under /tmp. They listen on loopback only, on ports picked free at start-up, and
authenticate through a munged of their own (own key, own socket), so a Slurm or munge already
on the machine is left alone. The node offers ``gpus`` pretend GPUs of type ``gpu_type`` (GRES
backed by /dev/null): the scheduler grants ``--gpus=N`` and ``--gpus=TYPE:N`` requests, nothing
can compute on them.

The config is also copied to ``/etc/slurm/slurm.conf``, because job steps look there: Snakemake's
jobstep executor drops ``SLURM_*`` variables, ``SLURM_CONF`` included, before it calls ``srun``.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
ACTIVE_STATES = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED")


def _binary(name: str) -> str | None:
    """Daemons live in /usr/sbin, which is not on every PATH."""
    sbin = Path("/usr/sbin", name)
    return shutil.which(name) or (str(sbin) if sbin.exists() else None)


def missing_requirements() -> str | None:
    """Why a cluster cannot be started here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (daemons, /etc/slurm/slurm.conf)"
    missing = [tool for tool in DAEMONS + CLIENTS if _binary(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found: apt-get install slurm-wlm munge"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user: apt-get install munge"
    return None


@dataclass
class Cluster:
    root: Path
    conf: Path
    node: str
    env: dict                # os.environ + SLURM_CONF: pass to every command that talks to Slurm
    processes: dict = field(default_factory=dict)

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        return subprocess.run(command, env=self.env, text=True, capture_output=True,
                              check=check, timeout=60)

    def jobs(self) -> list[dict]:
        """Every job slurmctld remembers: finished ones stay listed for MinJobAge."""
        fmt = "%i|%j|%T|%k"  # id | name (Snakemake's run id) | state | comment (rule, wildcards)
        out = self.run("squeue", "--noheader", "--states=all", f"--format={fmt}").stdout
        keys = ("id", "name", "state", "comment")
        return [dict(zip(keys, line.split("|", 3))) for line in out.splitlines() if line]

    def job(self, job_id: str) -> dict:
        """``scontrol show job`` as a dict (TRES, TimeLimit, NumCPUs, ...)."""
        out = self.run("scontrol", "show", "job", "--oneliner", job_id).stdout
        return dict(item.split("=", 1) for item in out.split() if "=" in item)

    def cancel_all(self, timeout: float = 30) -> None:
        """Cancel every job not finished yet (all are ours: the cluster is private), and wait."""
        def active() -> list[str]:
            return [job["id"] for job in self.jobs() if job["state"] in ACTIVE_STATES]
        if active():
            self.run("scancel", *active(), check=False)
            _wait(lambda: not active(), timeout, "job cancellation", self)

    def logs(self, tail: int = 3000) -> str:
        """The end of every daemon log, for error messages (the folder goes on exit)."""
        paths = sorted(p for folder in ("log", "munge") for p in (self.root / folder).glob("*")
                       if p.suffix in (".log", ".out"))
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-tail:]}"
                         for p in paths)


def _free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def _node_memory_mb() -> int:
    """What slurmd detects, less a margin (a node configured with more than it has is drained)."""
    with open("/proc/meminfo") as handle:
        total_kb = int(next(line for line in handle if line.startswith("MemTotal")).split()[1])
    return int(total_kb / 1024 * 0.9)


def _slurm_conf(root: Path, node: str, munge_socket: Path, gpus: int, gpu_type: str) -> str:
    ctld_port, slurmd_port = _free_ports(2)
    cpus = len(os.sched_getaffinity(0))
    return "\n".join([
        "ClusterName=repro-test",
        "SlurmctldHost=localhost",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",  # so no sacct: status via squeue
        "MinJobAge=600",  # finished jobs stay visible to squeue for 10 minutes
        "KillWait=1",  # seconds from a time limit's SIGTERM to its SIGKILL (default 30)
        "MpiDefault=none",
        "ReturnToService=2",
        "SchedulerType=sched/builtin",
        "GresTypes=gpu",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={_node_memory_mb()} "
        f"Gres=gpu:{gpu_type}:{gpus} State=UNKNOWN",
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _wait(predicate, timeout: float, what: str, cluster: Cluster | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not done after {timeout:.0f} s\n"
                       f"{cluster.logs() if cluster else ''}")


def _stop(process: subprocess.Popen, timeout: float = 15) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@contextlib.contextmanager
def slurm_cluster(gpus: int = 1, gpu_type: str = "pretend", ready_timeout: float = 60):
    """Start a one-node cluster; yield a :class:`Cluster`; stop it and remove its files."""
    reason = missing_requirements()
    if reason:
        raise RuntimeError(f"cannot start a Slurm cluster: {reason}")
    # Traversable by all (munged runs as `munge`), writable by root only (munged checks that).
    root = Path(tempfile.mkdtemp(prefix="repro-slurm-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield from _run_cluster(root, gpus, gpu_type, ready_timeout)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_cluster(root: Path, gpus: int, gpu_type: str, ready_timeout: float):
    for sub in ("state", "spool", "run", "log", "munge"):
        (root / sub).mkdir()
    munge = pwd.getpwnam("munge")
    munge_dir = root / "munge"
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    for path in (munge_dir, key):
        os.chown(path, munge.pw_uid, munge.pw_gid)
    munge_dir.chmod(0o755)  # munged: "execute permissions for all required" on its socket dir
    key.chmod(0o600)
    munge_socket = munge_dir / "munge.socket"

    node = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, node, munge_socket, gpus, gpu_type))
    (root / "gres.conf").write_text(
        f"AutoDetect=off\nName=gpu Type={gpu_type} Count={gpus} File=/dev/null\n")
    cluster = Cluster(root, conf, node, {**os.environ, "SLURM_CONF": str(conf)})
    backup = root / "system-slurm.conf"
    had_system_conf = SYSTEM_CONF.exists()
    try:
        if had_system_conf:
            shutil.copy2(SYSTEM_CONF, backup)
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(conf, SYSTEM_CONF)

        with open(root / "log" / "munged.out", "ab") as out:
            cluster.processes["munged"] = subprocess.Popen(
                [_binary("munged"), "--foreground", f"--socket={munge_socket}",
                 f"--key-file={key}", f"--pid-file={munge_dir / 'munged.pid'}",
                 f"--seed-file={munge_dir / 'munged.seed'}",
                 f"--log-file={munge_dir / 'munged.log'}"],
                user=munge.pw_uid, group=munge.pw_gid, extra_groups=[],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        _wait(munge_socket.exists, 20, "munged start", cluster)
        for name, args in (("slurmctld", ["-D", "-i", "-f", str(conf)]),
                           ("slurmd", ["-D", "-f", str(conf), "-N", node])):
            with open(root / "log" / f"{name}.out", "ab") as out:
                cluster.processes[name] = subprocess.Popen(
                    [_binary(name), *args], env=cluster.env,
                    stdin=subprocess.DEVNULL, stdout=out, stderr=out)

        def node_idle() -> bool:
            for name, process in cluster.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with status {process.returncode}\n"
                                       f"{cluster.logs()}")
            state = cluster.run("sinfo", "--noheader", "--format=%T", check=False).stdout
            return state.strip() == "idle"

        _wait(node_idle, ready_timeout, "Slurm node idle", cluster)
        yield cluster
    finally:
        if "slurmd" in cluster.processes:
            with contextlib.suppress(Exception):
                cluster.cancel_all()
        for name in reversed(DAEMONS):
            if name in cluster.processes:
                _stop(cluster.processes[name])
        if had_system_conf and backup.exists():
            shutil.copy2(backup, SYSTEM_CONF)
        elif not had_system_conf:
            SYSTEM_CONF.unlink(missing_ok=True)
