-- Test init for the Neovim end-to-end suite: the plugin from editors/nvim on the runtimepath, the real
-- server command and model from the environment, then the Lua driver once Neovim has started.
local env = vim.env
vim.opt.runtimepath:prepend(assert(env.HUSHCODE_NVIM_PLUGIN, 'HUSHCODE_NVIM_PLUGIN is not set'))
vim.o.swapfile = false
vim.o.shadafile = 'NONE'
vim.o.more = false
if env.HUSHCODE_NVIM_LSP_LOG then
  vim.lsp.log.set_level(env.HUSHCODE_NVIM_LSP_LOG)
end

local opts = { settings = {} }
if env.HUSHCODE_NVIM_CMD then
  opts.cmd = vim.json.decode(env.HUSHCODE_NVIM_CMD)
end
if env.HUSHCODE_NVIM_SETTINGS then
  opts.settings = vim.json.decode(env.HUSHCODE_NVIM_SETTINGS)
end
if env.HUSHCODE_NVIM_PLAIN == '1' then
  -- The README's plain setup: no setup() call, lsp/hushcode.lua and plugin/hushcode.lua do the rest.
  vim.lsp.config('hushcode', {
    cmd = opts.cmd,
    init_options = opts.settings,
    settings = { hushcode = opts.settings },
  })
  vim.lsp.enable('hushcode')
else
  require('hushcode').setup(opts)
end

if env.HUSHCODE_NVIM_DRIVER then
  vim.api.nvim_create_autocmd('VimEnter', {
    once = true,
    callback = function()
      vim.schedule(function()
        dofile(env.HUSHCODE_NVIM_DRIVER)
      end)
    end,
  })
end
