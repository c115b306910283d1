"""`python -m gateway` is the `workestra` command."""

import sys

from gateway.cli import main

sys.exit(main())
