"""The simulator behind ``aicc sandbox``: the same as ``python -m aicc_async.testing``,
and loaded only by the commands that use it."""

import subprocess
import sys


def test_the_cli_loads_the_simulator_only_when_asked_for() -> None:
    code = (
        "import sys, aicc_async.cli.commands\n"
        "print(sorted(m for m in sys.modules if m.startswith('aicc_async.testing')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done


def test_sandbox_takes_the_simulator_options_and_faults(plain_env, aicc):
    done = aicc.run("sandbox", "--chaos-probability", "0.5", env=plain_env)
    assert done.returncode == 2, done
    assert "--chaos-faults" in done.stderr, done
    help_text = aicc.run("sandbox", "--help", env=plain_env)
    assert help_text.returncode == 0, help_text
    for option in ("--hidden-rate-limit", "--chaos-faults", "--answer-rate", "--latency"):
        assert option in help_text.stdout, help_text
