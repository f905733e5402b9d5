"""The suite fails when a test leaves a process running, and stops every process a helper starts.

The check lives in tests/conftest.py (pytest_sessionfinish); here an inner pytest run, with the
same conftest, leaks processes on purpose.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from astertrack.samples.processes import running, spawn, stop_process

REPO = Path(__file__).resolve().parent.parent

LEAKY_TEST = '''
import os
import subprocess
import time
from pathlib import Path

def test_leaks_processes():
    out = Path(os.environ["LEAK_PIDS"])
    child = subprocess.Popen(["sleep", "371"])
    # a daemon-like process: its shell exits at once, so the sleep is re-parented away from pytest
    subprocess.run(["sh", "-c", "sleep 372 & echo $! >> " + str(out)], start_new_session=True, check=True)
    with out.open("a") as pids:
        pids.write(f"{child.pid}\\n")
    for pid in out.read_text().split():  # until both have become `sleep` (a busy machine forks slowly)
        while not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"):
            time.sleep(0.01)
'''


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _inner_pytest(tmp_path: Path, source: str) -> tuple[subprocess.CompletedProcess, list[int]]:
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(source)
    pids = tmp_path / "pids"
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "tests.conftest",
                             "--rootdir", str(tmp_path), "-q", str(test_file)],
                            cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "LEAK_PIDS": str(pids), "PYTHONPATH": str(REPO)})
    return result, [int(line) for line in pids.read_text().split()] if pids.exists() else []


def test_a_run_whose_test_leaks_processes_fails_names_them_and_kills_them(tmp_path):
    result, pids = _inner_pytest(tmp_path, LEAKY_TEST)
    try:
        assert len(pids) == 2
        assert result.returncode == 1, result.stdout + result.stderr
        assert "1 passed" in result.stdout  # the test itself passed: the leak fails the run
        assert "PROCESSES LEFT RUNNING BY THE TESTS" in result.stdout
        for pid in pids:
            assert f"pid {pid}: sleep 37" in result.stdout, result.stdout
        assert "sleep 371" in result.stdout and "sleep 372" in result.stdout
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in pids)
    finally:
        for pid in pids:  # only if the check failed to: the processes this test made
            if _alive(pid):
                os.kill(pid, 9)


def test_a_clean_run_passes(tmp_path):
    result, _ = _inner_pytest(tmp_path, "import subprocess\n\ndef test_waits():\n"
                                        "    subprocess.run(['sleep', '0.1'], check=True)\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PROCESSES LEFT RUNNING" not in result.stdout


def test_stop_process_stops_the_whole_group_even_after_the_leader_died(tmp_path):
    """What left four astertrack-agi workers at PID 1: the master killed, its workers not."""
    pids = tmp_path / "workers"
    script = f"for i in 1 2 3 4; do sleep 373 & echo $! >> {pids}; done; exec sleep 374"
    proc = spawn(["sh", "-c", script])
    try:
        deadline = time.monotonic() + 10
        while (not pids.exists() or len(pids.read_text().split()) < 4) and time.monotonic() < deadline:
            time.sleep(0.02)
        workers = [int(pid) for pid in pids.read_text().split()]
        proc.kill()  # the leader dies first, as in a failing test
        proc.wait(10)
        assert all(_alive(pid) for pid in workers)
        stop_process(proc, 5)
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(_alive(pid) for pid in workers)
    finally:
        stop_process(proc, 5)


def test_running_stops_a_process_that_ignores_sigterm(tmp_path):
    with running(["sh", "-c", "trap '' TERM; sleep 375 & wait"], timeout=2) as proc:
        time.sleep(0.2)
        started = time.monotonic()
    assert proc.returncode == -9  # SIGKILL after the 2 s SIGTERM did not do
    assert time.monotonic() - started < 10
