"""`python -m data_prep synth|prep ...` without the full partfer CLI."""
import sys

from data_prep.cli import main

sys.exit(main())
