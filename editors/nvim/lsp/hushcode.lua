-- hushcode: a private, offline coding assistant (`hushcode serve`, an LSP server over stdio).
--
-- Used by `vim.lsp.config('hushcode', {...})` / `vim.lsp.enable('hushcode')`. The values come from
-- `require('hushcode').setup(opts)` when it was called, else from the plugin's defaults.
return require('hushcode').lsp_config()
