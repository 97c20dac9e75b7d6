-- hushcode: user commands and the LspAttach hook. `require('hushcode').setup()` is optional when
-- the server is enabled with `vim.lsp.enable('hushcode')` directly.
if vim.g.loaded_hushcode then
  return
end
vim.g.loaded_hushcode = true

if vim.fn.has('nvim-0.11') ~= 1 then
  vim.notify_once('hushcode: needs Neovim 0.11 or newer', vim.log.levels.WARN)
  return
end

local function hushcode()
  return require('hushcode')
end

hushcode().create_autocmds()

local command = vim.api.nvim_create_user_command

command('HushcodeStatus', function()
  hushcode().status()
end, { desc = 'hushcode: show the model state' })

command('HushcodeRestart', function(args)
  hushcode().restart(args.bang)
end, { bang = true, desc = 'hushcode: reload the model (with !: restart the server)' })

command('HushcodeToggle', function(args)
  local arg = args.args
  local enable = nil ---@type boolean?
  if arg == 'on' then
    enable = true
  elseif arg == 'off' then
    enable = false
  elseif arg ~= '' then
    vim.notify('hushcode: :HushcodeToggle takes on, off or nothing', vim.log.levels.ERROR)
    return
  end
  hushcode().toggle(enable)
end, {
  nargs = '?',
  complete = function()
    return { 'on', 'off' }
  end,
  desc = 'hushcode: turn completions on or off',
})
