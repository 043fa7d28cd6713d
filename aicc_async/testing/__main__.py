"""``python -m aicc_async.testing [options]``: run FakeAICC in the foreground.

The options and the serving loop are in :mod:`aicc_async.testing.fake.cli`.
"""

import sys

from aicc_async.testing.fake.cli import main

if __name__ == "__main__":
    sys.exit(main())
