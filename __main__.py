"""`python -m partfer ...`: the `partfer` command."""
import sys

from partfer.cli import main

sys.exit(main())
