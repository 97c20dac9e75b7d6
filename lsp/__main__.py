from lsp.cli import main

raise SystemExit(main())
