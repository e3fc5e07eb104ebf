"""`python -m partfer.results report RUN_DIR`: the `partfer report` command alone."""
import sys

from partfer.cli.report import main

sys.exit(main())
