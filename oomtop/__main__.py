"""``python -m oomtop``."""

from oomtop.cli import main

raise SystemExit(main())
