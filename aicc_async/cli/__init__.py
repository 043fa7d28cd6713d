"""The ``aicc`` command: bulk campaigns from CSV files, reports, a local sandbox.

Installed with ``pip install 'aicc-async[cli]'``; ``aicc --help`` lists the commands.
Exit status: 0 every row done, 1 some rows failed or unknown (or left pending), 2
bad usage, configuration or input, 130 stopped by Ctrl-C (run it again to resume).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``aicc`` with ``argv`` (default: the process arguments); returns the exit status."""
    try:
        from aicc_async.cli.commands import run
    except ImportError as exc:  # the cli extra is not installed
        sys.stderr.write(
            f"aicc needs the command-line extras ({exc.name} is missing): "
            "pip install 'aicc-async[cli]'\n"
        )
        return 2
    return run(argv)
