"""Every `snakemake` command the README documents works from the repository root, as a dry run,
with the workflow's default profile (jobs as threads of one process, rerun-incomplete)."""
import re
import shlex
import subprocess

import pytest

from conftest import ROOT, SNAKEMAKE

PROFILE_LINE = "workflow specific profile profiles/default"
# not workflow runs: --report needs a finished run's results, --unlock changes no file
NOT_RUNS = ("--report", "--unlock")


def readme_commands() -> list[str]:
    """`snakemake ...` lines of the README's code blocks and inline code, comments stripped."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    inline = re.findall(r"`(snakemake [^`]*)`", text)
    commands = [line.split("#", 1)[0].strip() for line in lines] + inline
    return sorted({c for c in commands if c.startswith("snakemake ")})


def test_the_readme_documents_the_main_commands():
    commands = readme_commands()
    assert "snakemake --cores 4" in commands
    assert "snakemake results/table4.md" in commands
    assert any("--profile profiles/slurm" in c for c in commands)


@pytest.mark.parametrize("command", [c for c in readme_commands()
                                     if not any(flag in c for flag in NOT_RUNS)])
def test_readme_command_dry_runs_from_the_root_with_the_default_profile(command):
    args = shlex.split(command)[1:] + ["--dry-run"]
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=300)
    output = proc.stdout + proc.stderr
    if "protocols.md" in command and proc.returncode != 0:
        # documented as "after both runs above": without them it must say which run to do
        assert "build that protocol's tables first" in output, output[-3000:]
    else:
        assert proc.returncode == 0, output[-3000:]
    assert PROFILE_LINE in output, output[-3000:]


def test_the_unlock_advice_says_to_check_for_a_live_run_first():
    """Snakemake's own LockException advice (--unlock) can break a run still alive: the README
    points to docs/reliability.md, which says what to check first."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "docs/reliability.md" in readme and "Directory cannot be locked" in readme
    text = " ".join((ROOT / "docs/reliability.md").read_text().split())
    advice = text[text.index("Directory cannot be locked"):][:600]
    assert "snakemake --unlock" in advice and "make sure no other snakemake runs" in advice
