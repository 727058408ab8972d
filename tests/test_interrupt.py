"""SIGTERM never hangs a Snakemake run that uses repro.runtime.interrupt.relay_sigterm (the
workflow does).

A toy workflow of quick jobs is stopped just after its k-th output appears, which is when the
scheduler holds its lock to finish that job: with Snakemake's own handler 17 of 20 such stops
hung (9.27.1). Each stop must end within a minute, non-zero, unlocked, with every output that
exists recorded as finished (a plain dry run raises no incomplete-files error).
"""
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

SNAKEFILE = f"""
import sys
sys.path.insert(0, {str(SRC)!r})
from repro.runtime import interrupt

onstart:
    interrupt.relay_sigterm()

rule all:
    input: expand("out/{{i}}.txt", i=range(100))

rule one:
    output: "out/{{i}}.txt"
    shell: "sleep 0.3; echo {{wildcards.i}} > {{output}}"
"""


def _snakemake(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--cores", "2", *args]


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(8))
def test_sigterm_just_after_a_job_finishes_stops_the_run_cleanly(tmp_path, trial):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    outputs = tmp_path / "out"
    wanted = random.Random(trial).randint(1, 4)
    # Output not piped: an unread pipe that fills would block Snakemake and look like a hang.
    proc = subprocess.Popen(_snakemake(), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while (len(list(outputs.glob("*.txt"))) < wanted and proc.poll() is None
           and time.time() < deadline):
        time.sleep(0.01)
    proc.terminate()
    try:
        returncode = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("snakemake hung after SIGTERM")
    assert returncode != 0  # stopped before the end, and it says so
    assert len(list(outputs.glob("*.txt"))) < 100
    check = subprocess.run(_snakemake("--dry-run"), cwd=tmp_path, text=True,
                           capture_output=True, timeout=120)
    assert check.returncode == 0, check.stderr  # not locked, no output left marked incomplete
