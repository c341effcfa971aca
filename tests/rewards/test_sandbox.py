"""The python grader's sandbox: every escape a grader tries fails, and a well-behaved grader still scores.

Each attack is a grader source whose `grade` tries one escape when the answer is "attack" (1.0 when it
got through) and otherwise scores the answer's length / 10. The safe attacks are run unsandboxed
too, where they must succeed: that shows each one really tries what it says.
"""

import shutil
import socket
import sqlite3
import threading

import pytest

from hone.rewards.python_function import Config, PythonGrader
from hone.rewards.sandbox import SandboxLimits

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

SECRET = "sk-hone-fake-worker-secret"
ATTACKS = {
    "read_service_db": "return 1.0 if open(item['db'], 'rb').read(16).startswith(b'SQLite format') else 0.0",
    "read_other_project_upload": "return 1.0 if 'beta-secret' in open(item['upload']).read() else 0.0",
    "read_host_passwd": "return 1.0 if 'root:' in open('/etc/passwd').read() else 0.0",
    "read_own_run_dir": "return 1.0 if os.listdir(item['run_dir']) else 0.0",
    "read_worker_environment": (
        "if item['secret'] in os.environ.values():\n"
        "        return 1.0\n"
        "    for pid in os.listdir('/proc'):\n"
        "        try:\n"
        "            if item['secret'].encode() in open(f'/proc/{pid}/environ', 'rb').read():\n"
        "                return 1.0\n"
        "        except OSError:\n"
        "            pass\n"
        "    return 0.0"),
    "connect_to_host_loopback": (
        "import socket\n"
        "    socket.create_connection(('127.0.0.1', item['port']), timeout=2).sendall(b'escaped')\n"
        "    return 1.0"),
    "write_outside_its_dir": "open(item['outside'], 'w').write('escaped')\n    return 1.0",
}
LIMITS = {
    "too_many_processes": (
        "import time\n"
        "    started = 0\n"
        "    try:\n"
        "        for _ in range(64):\n"
        "            if os.fork() == 0:\n"
        "                time.sleep(3)\n"
        "                os._exit(0)\n"
        "            started += 1\n"
        "    except OSError:\n"
        "        pass\n"
        "    return 1.0 if started >= 32 else 0.0"),
    "fork_bomb": "while True:\n        os.fork()",
    "memory_hog": "hog = bytearray(2 << 30)\n    return 1.0",
    "cpu_loop": "while True:\n        pass",
    "huge_file": ("chunk = b'x' * (1 << 20)\n"
                  "    with open('big', 'wb') as f:\n"
                  "        for _ in range(48):\n"
                  "            f.write(chunk)\n"
                  "    return 1.0"),
}


def source(attack: str) -> str:
    return ("import os\n\n\ndef grade(sample, item):\n"
            "    if sample['output_text'] != 'attack':\n"
            "        return len(sample['output_text']) / 10\n"
            f"    {attack}\n")


@pytest.fixture
def host(tmp_path, monkeypatch):
    """What a grader must not reach: the service's database, another project's upload, the run dir,
    a secret in the worker's environment, a listener on the host's loopback, a path outside."""
    data = tmp_path / "service"
    (data / "files").mkdir(parents=True)
    db = sqlite3.connect(data / "hone.db")
    db.execute("CREATE TABLE keys (key TEXT)")
    db.execute("INSERT INTO keys VALUES ('sk-hone-alpha')")
    db.commit()
    db.close()
    (data / "files" / "file-beta.jsonl").write_text('{"text": "beta-secret"}\n')
    run_dir = data / "runs" / "ftjob-1"
    (run_dir / "graders").mkdir(parents=True)
    monkeypatch.setenv("HONE_FAKE_SECRET", SECRET)
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
    thread.start()
    item = {"db": str(data / "hone.db"), "upload": str(data / "files" / "file-beta.jsonl"), "run_dir": str(run_dir),
            "secret": SECRET, "port": listener.getsockname()[1], "outside": str(tmp_path / "escaped.txt")}
    yield run_dir, item, accepted
    listener.close()


def grade_attack(run_dir, name: str, code: str, item: dict, *, sandbox: bool = True, limits=None, timeout=10.0):
    path = run_dir / "graders" / f"{name}.py"
    path.write_text(source(code))
    grader = PythonGrader(Config(function=f"{path}:grade", sandbox=sandbox, timeout=timeout), limits)
    return grader.grade([{"output_text": "attack"}, {"output_text": "abcd"}], [item, item])


@pytest.mark.parametrize("name", ATTACKS)
def test_every_escape_fails_in_the_sandbox_and_succeeds_outside_it(host, name):
    run_dir, item, accepted = host
    attack, good = grade_attack(run_dir, name, ATTACKS[name], item)
    assert attack.score == 0.0, f"{name} escaped the sandbox: {attack.reason}"
    assert good.score == pytest.approx(0.4) and not good.error, good.reason
    assert not accepted and not (run_dir.parent.parent.parent / "escaped.txt").exists()

    outside, _ = grade_attack(run_dir, name, ATTACKS[name], item, sandbox=False)
    assert outside.score == 1.0, f"{name} does not work even unsandboxed, so it proves nothing: {outside.reason}"


@pytest.mark.parametrize("name", LIMITS)
def test_the_kernel_limits_stop_what_would_exhaust_the_host(host, name):
    run_dir, item, _ = host
    limits = SandboxLimits(cpu_seconds=1) if name == "cpu_loop" else None
    attack, good = grade_attack(run_dir, name, LIMITS[name], item, limits=limits, timeout=5.0 if name == "fork_bomb" else 30.0)
    assert attack.score == 0.0, f"{name} got past the sandbox's limits: {attack.reason}"
    assert good.score == pytest.approx(0.4) and not good.error, good.reason
    if name == "cpu_loop":
        assert "CPU time" in attack.reason
    if name in ("memory_hog", "huge_file"):
        assert attack.error and ("MemoryError" in attack.reason or "File too large" in attack.reason), attack.reason


def test_a_sandboxed_grader_names_a_file():
    with pytest.raises(ValueError, match="cannot import modules of the host"):
        Config(function="tests.rewards.user_graders:chatty", sandbox=True)
