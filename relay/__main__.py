"""`python -m relay`: the same as the `relay` command."""

from relay.admin.cli import main

raise SystemExit(main())
