"""`python -m target_bigquery_lite`: the same as the `target-bigquery-lite` command."""

import sys

from target_bigquery_lite.cli import main

sys.exit(main())
