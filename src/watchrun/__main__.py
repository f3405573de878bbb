"""`python -m watchrun`: the same as the `watchrun` command."""

import sys

from watchrun.cli import main

sys.exit(main())
