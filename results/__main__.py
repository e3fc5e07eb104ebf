"""`python -m partfer.results report RUN_DIR`: the report command without the rest of the CLI."""
import sys

from partfer.results.cli import main

sys.exit(main())
