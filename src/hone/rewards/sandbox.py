"""The sandbox a python grader's code runs in when it is not the user's own: bubblewrap plus kernel limits.

`sandbox_command` wraps the grader's interpreter in `prlimit` and `bwrap` (Debian's `bubblewrap`):
- its own mount, pid, ipc, uts, cgroup and network namespaces (the network one has nothing but its
  own loopback, so neither the host's loopback nor anything beyond is reachable);
- a file system holding only read-only binds of the Python runtime (the interpreter, its standard
  library, libpython and the shared libraries under /usr/lib), a private /proc showing only the
  sandbox's own processes, a minimal /dev, and size-capped tmpfs /tmp and /work (its working
  directory), thrown away with it. No /etc, no home, no service data dir, no run dir: the grader's
  source and each (sample, item) reach it over stdin;
- an empty environment (`--clearenv`; only LANG, HOME and TMPDIR are set);
- kernel rlimits (`SandboxLimits`): CPU seconds, address space, file size, open files and no core
  files, set by `prlimit` before bubblewrap starts, and the number of processes, set by hone's
  bootstrap inside before any grader code runs (see below);
- `--die-with-parent` and `--new-session`; the caller kills the process group after its wall
  timeout, which takes the pid namespace and everything in it down.

RLIMIT_NPROC needs care. The kernel does not enforce it for uid 0, and it counts per user
namespace. As root, bubblewrap's `--unshare-all` would map uid 0 into the sandbox, where the limit
does nothing; so as root the sandbox unshares every namespace but the user one and keeps only
CAP_SETUID/CAP_SETGID, and the bootstrap switches to `nobody` (65534, no capabilities left,
no_new_privs set by bubblewrap) before it lowers RLIMIT_NPROC and loads the grader. The count is
then that of `nobody`'s processes on the host. As any other user `--unshare-all` is used and the
limit, set inside the new user namespace, counts the sandbox's own processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from hone.errors import ConfigError

NOBODY = 65534
WORK_DIR = "/work"


@dataclass(frozen=True)
class SandboxLimits:
    """What one sandboxed grader process may use; the kernel enforces each."""

    cpu_seconds: int | None = None  # None: the grader's timeout times (its items + 1)
    memory_bytes: int = 1 << 30  # RLIMIT_AS: the whole address space
    processes: int = 16  # RLIMIT_NPROC: processes and threads
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE: the largest file it may write
    open_files: int = 64  # RLIMIT_NOFILE
    tmpfs_bytes: int = 64 << 20  # size of each of /tmp and /work

    def cpu_for(self, timeout: float, items: int) -> int:
        return self.cpu_seconds or max(1, int(timeout * (items + 1)) + 1)


def sandbox_command(python_args: list[str], limits: SandboxLimits, cpu_seconds: int) -> list[str]:
    """argv running `python -I -S -B *python_args` in the sandbox under `limits`."""
    bwrap, prlimit = shutil.which("bwrap"), shutil.which("prlimit")
    if bwrap is None or prlimit is None:
        raise ConfigError(f"{'bubblewrap (bwrap)' if bwrap is None else 'prlimit'} is not installed; python graders "
                          "of the service run in its sandbox", where="python grader",
                          hint="apt-get install bubblewrap util-linux")
    if os.geteuid() == 0:
        namespaces = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                      "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        namespaces = ["--unshare-all"]
    interpreter, binds = runtime_binds()
    scratch = [arg for path in ("/tmp", WORK_DIR)
               for arg in ("--size", str(limits.tmpfs_bytes), "--perms", "1777", "--tmpfs", path)]
    return [prlimit, f"--cpu={cpu_seconds}:{cpu_seconds + 1}", f"--as={limits.memory_bytes}", f"--fsize={limits.file_bytes}",
            f"--nofile={limits.open_files}", "--core=0", "--",
            bwrap, *namespaces, "--die-with-parent", "--new-session", "--hostname", "sandbox", *binds,
            "--proc", "/proc", "--dev", "/dev", *scratch, "--chdir", WORK_DIR,
            "--clearenv", "--setenv", "LANG", "C.UTF-8", "--setenv", "HOME", WORK_DIR, "--setenv", "TMPDIR", "/tmp",
            interpreter, "-I", "-S", "-B", *python_args]


def check_sandbox(limits: SandboxLimits | None = None) -> None:
    """Run a trivial program in the sandbox; ConfigError saying what failed when it does not run here."""
    limits = limits or SandboxLimits()
    command = sandbox_command(["-c", "print('ok')"], limits, cpu_seconds=10)
    try:
        done = subprocess.run(command, env={}, capture_output=True, text=True, timeout=60)
        error = "" if done.stdout.strip() == "ok" else done.stderr.strip() or f"exit code {done.returncode}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        error = str(exc)
    if error:
        raise ConfigError(f"the python grader sandbox does not run here: {error}", where="--allow-python-graders",
                          hint="bubblewrap needs user namespaces when hone does not run as root "
                               "(sysctl kernel.unprivileged_userns_clone=1); see docs/sandbox.md")


def bootstrap_settings(limits: SandboxLimits) -> dict:
    """What the bootstrap does inside before loading the grader: drop root, cap processes."""
    return {"uid": NOBODY if os.geteuid() == 0 else None, "processes": limits.processes}


def runtime_binds() -> tuple[str, list[str]]:
    """(the base interpreter, bwrap's read-only binds of the runtime it needs), each at its own path."""
    version = sysconfig.get_config_var("VERSION")
    interpreter = os.path.realpath(Path(sysconfig.get_config_var("BINDIR")) / f"python{version}")
    if not os.path.isfile(interpreter):
        interpreter = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    paths = [interpreter, sysconfig.get_paths()["stdlib"]]
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and soname:
        paths.append(os.path.realpath(Path(libdir) / soname))
    binds: list[str] = []
    for system in ("/usr/lib", "/usr/lib64"):
        if os.path.isdir(system):
            binds += ["--ro-bind", system, system]
    for top in ("/lib", "/lib64"):
        if os.path.islink(top):
            binds += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            binds += ["--ro-bind", top, top]
    covered = ("/usr/lib/", "/usr/lib64/", "/lib/", "/lib64/")
    own = [path for path in dict.fromkeys(os.path.realpath(p) for p in paths) if not path.startswith(covered)]
    # parents traversable by the sandbox's user (bwrap would copy e.g. /root's 0700)
    parents = dict.fromkeys(str(parent) for path in own for parent in reversed(Path(path).parents) if str(parent) != "/")
    for parent in parents:
        binds += ["--perms", "0755", "--dir", parent]
    for path in own:
        binds += ["--ro-bind", path, path]
    return interpreter, binds


def describe_exit(code: int | None, limits: SandboxLimits, cpu_seconds: int) -> str:
    """Why a sandboxed grader process ended, naming the limit that ended it when one did."""
    if code is None:
        return "the grader process exited"
    number = -code if code < 0 else code - 128 if code > 128 else None
    reasons = {signal.SIGXCPU: f"it used its {cpu_seconds} s of CPU time (the sandbox's limit)",
               signal.SIGXFSZ: f"it wrote past the sandbox's file size limit ({limits.file_bytes >> 20} MiB)",
               signal.SIGKILL: "it was killed (SIGKILL)", signal.SIGSEGV: "it crashed (SIGSEGV)"}
    if number in reasons:
        return f"the grader process ended: {reasons[number]}"
    return f"the grader process exited (code {code})"
