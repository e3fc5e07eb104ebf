"""`python -m partfer.data_prep synth|prep ...` without the full partfer CLI."""
import sys

from partfer.data_prep.cli import main

sys.exit(main())
