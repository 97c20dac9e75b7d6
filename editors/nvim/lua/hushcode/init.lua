--- hushcode for Neovim: the `hushcode serve` language server through the built-in LSP client.
---
--- Ghost text comes from the native `vim.lsp.inline_completion` (Neovim 0.12+); code actions from
--- the built-in `vim.lsp.buf.code_action()`. This module only configures, maps and reports.
local M = {}

M.name = 'hushcode'

---@class hushcode.Keymaps
---@field accept string|false Accept the shown suggestion; falls through to the key's normal action.
---@field next string|false Show the next suggestion.
---@field prev string|false Show the previous suggestion.

---@class hushcode.Options
---@field cmd string[]|fun(...): vim.lsp.rpc.PublicClient How to start the server.
---@field cmd_env? table<string,string> Extra environment for the server.
---@field filetypes string[]
---@field root_markers (string|string[])[]
---@field settings table The server's settings (camelCase, as in `initializationOptions`).
---@field enable boolean Call `vim.lsp.enable('hushcode')` in `setup()`.
---@field inline_completion boolean Turn on native ghost text in attached buffers (0.12+).
---@field keymaps hushcode.Keymaps
local defaults = {
  cmd = { 'hushcode', 'serve' },
  cmd_env = nil,
  filetypes = {
    'python',
    'javascript',
    'javascriptreact',
    'typescript',
    'typescriptreact',
    'go',
    'rust',
    'java',
    'c',
    'cpp',
  },
  root_markers = { '.git', 'pyproject.toml', 'package.json', 'go.mod', 'Cargo.toml' },
  settings = {},
  enable = true,
  inline_completion = true,
  keymaps = {
    accept = '<Tab>',
    next = '<M-]>',
    prev = '<M-[>',
  },
}

---@type hushcode.Options
M.options = vim.deepcopy(defaults)

local DESC = 'hushcode: '

--- Whether this Neovim has native inline completion (ghost text): 0.12 and later.
---@return boolean
function M.has_inline_completion()
  if vim.fn.has('nvim-0.12') ~= 1 then
    return false
  end
  local ok, mod = pcall(require, 'vim.lsp.inline_completion')
  return ok and type(mod) == 'table' and type(mod.enable) == 'function'
end

--- JSON needs `{}` for an empty settings object (an empty Lua table would be sent as `[]`).
local function as_object(t)
  if type(t) ~= 'table' or next(t) == nil then
    return vim.empty_dict()
  end
  return t
end

--- The `vim.lsp.config` table built from the current options (what `lsp/hushcode.lua` returns).
---@return vim.lsp.Config
function M.lsp_config()
  local o = M.options
  return {
    cmd = o.cmd,
    cmd_env = o.cmd_env,
    filetypes = o.filetypes,
    root_markers = o.root_markers,
    init_options = as_object(vim.deepcopy(o.settings)),
    settings = { hushcode = as_object(vim.deepcopy(o.settings)) },
  }
end

---@param opts? hushcode.Options|table
function M.setup(opts)
  opts = opts or {}
  vim.validate('opts', opts, 'table')
  local o = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts)
  -- Lists replace the defaults rather than merging with them element by element.
  for _, key in ipairs({ 'cmd', 'filetypes', 'root_markers' }) do
    if opts[key] ~= nil then
      o[key] = opts[key]
    end
  end
  if opts.keymaps == false then
    o.keymaps = { accept = false, next = false, prev = false }
  end
  M.options = o

  if vim.fn.has('nvim-0.11') ~= 1 then
    vim.notify('hushcode: needs Neovim 0.11 or newer', vim.log.levels.ERROR)
    return
  end
  M.create_autocmds()
  -- Override what lsp/hushcode.lua resolved, so options set here win.
  vim.lsp.config(M.name, M.lsp_config())
  if o.enable then
    vim.lsp.enable(M.name)
  end
end

-- Attach ------------------------------------------------------------------------------------------

--- What `lhs` did in insert mode before hushcode mapped it (the mapping's dict from maparg).
---@type table<integer, table<string, table>>
local previous = {}

--- Keys for "what the key would have done": the previous mapping of `lhs`, or the key itself.
---@param prev table? maparg() dict
---@param lhs string
---@return string
local function fallthrough(prev, lhs)
  if not prev or next(prev) == nil then
    return vim.keycode(lhs)
  end
  local keys ---@type string
  if prev.expr == 1 then
    if prev.callback then
      keys = prev.callback() or ''
    else
      keys = vim.api.nvim_eval(prev.rhs)
    end
    if prev.replace_keycodes == 1 then
      keys = vim.keycode(keys)
    end
  elseif prev.callback then
    vim.schedule(prev.callback)
    return ''
  else
    keys = vim.keycode(prev.rhs)
  end
  if prev.noremap == 0 then
    -- The previous rhs wants remapping (e.g. <Plug> maps); this expr mapping is noremap.
    vim.api.nvim_feedkeys(keys, 'im', false)
    return ''
  end
  return keys
end

--- Accept the suggestion shown in the current buffer.
---@return boolean accepted false when no suggestion is shown
function M.accept()
  if not M.has_inline_completion() then
    return false
  end
  return vim.lsp.inline_completion.get() == true
end

--- Show the next (count > 0) or previous (count < 0) suggestion.
---@param count integer
function M.select(count)
  if M.has_inline_completion() then
    vim.lsp.inline_completion.select({ count = count })
  end
end

---@param bufnr integer
---@param lhs string|false
---@param rhs function
---@param opts table
---@param desc string
local function map(bufnr, lhs, rhs, opts, desc)
  if not lhs or lhs == '' then
    return
  end
  vim.keymap.set('i', lhs, rhs, vim.tbl_extend('force', opts, { buffer = bufnr, desc = DESC .. desc }))
end

--- Without inline completion the server answers `textDocument/completion` with one item holding
--- the whole suggestion as a plain-text edit. Neovim's LSP completion inserts only its first word
--- (up to a space); when such an item is accepted (<C-y>), put the whole suggestion in.
---@param bufnr integer
function M.complete_whole_items(bufnr)
  local group = vim.api.nvim_create_augroup('hushcode.complete.' .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd('CompleteDone', {
    group = group,
    buffer = bufnr,
    callback = function()
      if vim.v.event.reason ~= 'accept' then
        return
      end
      local done = vim.v.completed_item
      local item = vim.tbl_get(done, 'user_data', 'nvim', 'lsp', 'completion_item')
      if type(item) ~= 'table' or item.detail ~= M.name or type(item.textEdit) ~= 'table' then
        return
      end
      local text, word = item.textEdit.newText, done.word or ''
      if type(text) ~= 'string' or text == word or not vim.startswith(text, word) then
        return
      end
      local row, col = unpack(vim.api.nvim_win_get_cursor(0))
      local start = col - #word
      local current = vim.api.nvim_get_current_line()
      if start < 0 or current:sub(start + 1, col) ~= word then
        return
      end
      local lines = vim.split(text, '\n', { plain = true })
      vim.api.nvim_buf_set_text(bufnr, row - 1, start, row - 1, col, lines)
      local last = #lines == 1 and start + #lines[1] or #lines[#lines]
      vim.api.nvim_win_set_cursor(0, { row + #lines - 1, last })
    end,
  })
end

--- Set hushcode up in a buffer a hushcode client has just attached to.
---@param client vim.lsp.Client
---@param bufnr integer
function M.on_attach(client, bufnr)
  local o = M.options
  if not M.has_inline_completion() then
    if o.inline_completion ~= false then
      M.complete_whole_items(bufnr)
    end
    vim.notify_once(
      'hushcode: this Neovim has no inline completion (ghost text needs 0.12). '
        .. 'hushcode suggestions come in the completion menu instead: '
        .. '<C-x><C-o> asks for one, <C-y> takes it. '
        .. 'Code actions work as usual (vim.lsp.buf.code_action()).',
      vim.log.levels.INFO
    )
    return
  end
  if o.inline_completion == false then
    return
  end
  if client:supports_method('textDocument/inlineCompletion') then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
  end

  local keymaps = o.keymaps or {}
  local accept = keymaps.accept
  if accept then
    local prev = vim.fn.maparg(accept, 'i', false, true)
    if not (prev.desc and vim.startswith(prev.desc, DESC)) then
      previous[bufnr] = previous[bufnr] or {}
      previous[bufnr][accept] = prev
    end
    map(bufnr, accept, function()
      if M.accept() then
        return ''
      end
      return fallthrough((previous[bufnr] or {})[accept], accept)
    end, { expr = true, replace_keycodes = false, silent = true }, 'accept the suggestion')
  end
  map(bufnr, keymaps.next, function()
    M.select(1)
  end, { silent = true }, 'next suggestion')
  map(bufnr, keymaps.prev, function()
    M.select(-1)
  end, { silent = true }, 'previous suggestion')
end

---@param bufnr integer
function M.on_detach(bufnr)
  if #vim.lsp.get_clients({ bufnr = bufnr, name = M.name }) > 1 then
    return
  end
  for _, lhs in pairs(M.options.keymaps or {}) do
    if lhs then
      local cur = vim.fn.maparg(lhs, 'i', false, true)
      if cur.buffer == 1 and cur.desc and vim.startswith(cur.desc, DESC) then
        pcall(vim.keymap.del, 'i', lhs, { buffer = bufnr })
      end
    end
  end
  previous[bufnr] = nil
end

function M.create_autocmds()
  local group = vim.api.nvim_create_augroup('hushcode', { clear = true })
  vim.api.nvim_create_autocmd('LspAttach', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == M.name then
        M.on_attach(client, args.buf)
      end
    end,
  })
  vim.api.nvim_create_autocmd('LspDetach', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == M.name and vim.api.nvim_buf_is_valid(args.buf) then
        M.on_detach(args.buf)
      end
    end,
  })
end

-- Commands ----------------------------------------------------------------------------------------

--- The hushcode client for a buffer: the one attached to it, else any running one.
---@param bufnr? integer
---@return vim.lsp.Client?
function M.client(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  return vim.lsp.get_clients({ bufnr = bufnr, name = M.name })[1]
    or vim.lsp.get_clients({ name = M.name })[1]
end

local function notify(msg, level)
  vim.notify('hushcode: ' .. msg, level or vim.log.levels.INFO)
end

local function no_client()
  notify(
    ('no server is running for this buffer (filetype %q). See :checkhealth hushcode'):format(
      vim.bo.filetype
    ),
    vim.log.levels.WARN
  )
end

--- Send `workspace/executeCommand` to the hushcode server.
---@param command string
---@param arguments? any[]
---@param callback? fun(err: lsp.ResponseError?, result: any)
---@return boolean sent
function M.execute(command, arguments, callback)
  local client = M.client()
  if not client then
    no_client()
    return false
  end
  local params = { command = command, arguments = arguments or {} }
  client:request('workspace/executeCommand', params, function(err, result)
    if callback then
      callback(err, result)
    elseif err then
      notify(('%s failed: %s'):format(command, err.message), vim.log.levels.ERROR)
    end
  end, vim.api.nvim_get_current_buf())
  return true
end

--- One line describing a `hushcode.status` result.
---@param status table
---@return string message
---@return integer level
function M.format_status(status)
  local model = status.model or {}
  local name = model.name and vim.fs.basename(model.name) or '?'
  local parts = { ('model %s %s'):format(name, model.state or '?') }
  if model.family and model.family ~= vim.NIL then
    parts[#parts + 1] = ('FIM %s'):format(model.family)
  end
  parts[#parts + 1] = status.completionsEnabled and 'completions on' or 'completions off'
  local level = vim.log.levels.INFO
  if model.state == 'failed' then
    level = vim.log.levels.ERROR
    if model.error and model.error ~= vim.NIL then
      parts[#parts + 1] = tostring(model.error)
    end
  elseif model.state ~= 'ready' then
    level = vim.log.levels.WARN
  end
  local version = status.version and (' ' .. status.version) or ''
  return ('hushcode%s: %s'):format(version, table.concat(parts, ', ')), level
end

--- `:HushcodeStatus`: the model's state, from the server.
function M.status()
  M.execute('hushcode.status', {}, function(err, result)
    if err then
      notify('status failed: ' .. err.message, vim.log.levels.ERROR)
      return
    end
    local msg, level = M.format_status(result or {})
    vim.notify(msg, level)
  end)
end

--- `:HushcodeToggle [on|off]`: turn completions on or off in the server.
---@param enable? boolean nil toggles
function M.toggle(enable)
  local args = enable == nil and {} or { enable }
  M.execute('hushcode.toggleCompletions', args, function(err, result)
    if err then
      notify('toggle failed: ' .. err.message, vim.log.levels.ERROR)
      return
    end
    notify(result and 'completions on' or 'completions off')
  end)
end

--- `:HushcodeRestart`: reload the model. `:HushcodeRestart!`: restart the server process.
---@param server? boolean restart the process instead of reloading the model
function M.restart(server)
  if server then
    return M.restart_server()
  end
  notify('reloading the model')
  M.execute('hushcode.restart', {}, function(err, result)
    if err then
      notify('restart failed: ' .. err.message, vim.log.levels.ERROR)
      return
    end
    local msg, level = M.format_status(result or {})
    vim.notify(msg, level)
  end)
end

--- Stop every hushcode client, then start them again for the buffers they served.
function M.restart_server()
  local clients = vim.lsp.get_clients({ name = M.name })
  if #clients == 0 then
    no_client()
    return
  end
  local ids = {}
  for _, client in ipairs(clients) do
    ids[#ids + 1] = client.id
    client:stop()
  end
  notify('restarting the server')
  local waited = 0
  local timer = assert(vim.uv.new_timer())
  timer:start(100, 100, vim.schedule_wrap(function()
    waited = waited + 100
    local alive = vim.tbl_filter(function(id)
      return vim.lsp.get_client_by_id(id) ~= nil
    end, ids)
    if #alive > 0 and waited < 5000 then
      return
    end
    for _, id in ipairs(alive) do
      local c = vim.lsp.get_client_by_id(id)
      if c then
        c:stop(true)
      end
    end
    timer:stop()
    timer:close()
    -- Re-runs the FileType autocmds of vim.lsp.enable, which start the client again.
    vim.lsp.enable(M.name)
  end))
end

return M
