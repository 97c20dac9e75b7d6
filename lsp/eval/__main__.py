"""`python -m lsp.eval [PATH] ...`: `hushcode eval` before it is wired into the CLI."""

from lsp.eval import main

raise SystemExit(main())
