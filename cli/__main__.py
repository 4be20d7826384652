"""`python -m cli`: the same as the `gangway` command."""

from cli.main import main

raise SystemExit(main())
