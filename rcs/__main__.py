"""``python -m rcs``: the ``rcs`` command."""

import sys

from rcs.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
