"""The `dualdiff` command line: each subcommand imports only what it needs."""
import os
import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_the_command_line_loads_no_simulator_until_a_command_uses_it():
    done = _run("import sys; from dualdiff_ros import cli; cli.build_parser(); print(sorted(m for m in sys.modules "
                "if m == 'pybullet' or m == 'dualdiff_ros.sim.world'))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_propose_help_prints_no_pybullet_banner():
    done = _run("import sys; from dualdiff_ros import cli; sys.argv = ['dualdiff', 'propose', '--help']; cli.main()")
    assert "usage: dualdiff propose" in done.stdout
    assert "pybullet" not in done.stdout + done.stderr
