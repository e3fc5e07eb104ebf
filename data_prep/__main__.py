"""`python -m partfer.data_prep synth|prep ...`: the `partfer synth` and `partfer prep` commands alone."""
import sys

from partfer.cli.prep import main

sys.exit(main())
