--- `:checkhealth hushcode`
local M = {}

local health = vim.health

--- The server command without `serve` and what follows it: `{'hushcode'}`, `{'python', '-m', 'lsp'}`.
---@param cmd string[]
---@return string[]
local function base_command(cmd)
  local out = {}
  for _, arg in ipairs(cmd) do
    if arg == 'serve' then
      break
    end
    out[#out + 1] = arg
  end
  return out
end

---@param argv string[]
---@param env? table<string,string>
---@param timeout integer ms
---@return integer code, string output
local function run(argv, env, timeout)
  local ok, proc = pcall(vim.system, argv, { text = true, env = env })
  if not ok then
    return -1, tostring(proc)
  end
  local res = proc:wait(timeout)
  local out = vim.trim((res.stdout or '') .. '\n' .. (res.stderr or ''))
  if res.signal and res.signal ~= 0 then
    return -1, ('stopped after %d ms (signal %d) %s'):format(timeout, res.signal, out)
  end
  return res.code, out
end

---@return vim.lsp.Config
local function config()
  local ok, cfg = pcall(function()
    return vim.lsp.config.hushcode
  end)
  if ok and type(cfg) == 'table' then
    return cfg
  end
  return require('hushcode').lsp_config()
end

local function check_neovim(hushcode)
  health.start('hushcode: Neovim')
  local version = tostring(vim.version())
  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Neovim ' .. version)
  else
    health.error('Neovim ' .. version .. ': hushcode needs 0.11 or newer', { 'Upgrade Neovim' })
  end
  if hushcode.has_inline_completion() then
    health.ok('inline completion (ghost text): vim.lsp.inline_completion is available')
  else
    health.warn(
      'no vim.lsp.inline_completion (Neovim 0.12+): no ghost text, suggestions come in the '
        .. 'completion menu (<C-x><C-o>)',
      { 'Upgrade to Neovim 0.12 for ghost text' }
    )
  end
end

---@param cfg vim.lsp.Config
---@return string[]? base the command to run `--version` and `model path` with
local function check_server(cfg)
  health.start('hushcode: server')
  local cmd = cfg.cmd
  if type(cmd) == 'function' then
    health.info('cmd is a function: the server command cannot be checked here')
    return nil
  end
  if type(cmd) ~= 'table' or type(cmd[1]) ~= 'string' then
    health.error('no server command (cmd) configured', {
      "require('hushcode').setup({ cmd = { 'hushcode', 'serve' } })",
    })
    return nil
  end
  local exe = cmd[1]
  if vim.fn.executable(exe) ~= 1 then
    health.error(('`%s` is not executable (not found on PATH)'):format(exe), {
      'Install the server: pip install hushcode (a virtualenv is fine)',
      "Or give its full path: require('hushcode').setup({ cmd = { '/path/to/venv/bin/hushcode', 'serve' } })",
    })
    return nil
  end
  health.ok(('`%s` found: %s'):format(exe, vim.fn.exepath(exe)))
  local base = base_command(cmd)
  local argv = vim.list_extend(vim.deepcopy(base), { '--version' })
  local code, out = run(argv, cfg.cmd_env, 15000)
  if code == 0 then
    health.ok(('`%s` runs: %s'):format(table.concat(argv, ' '), out))
  else
    health.error(('`%s` failed (exit %d): %s'):format(table.concat(argv, ' '), code, out), {
      'Reinstall the server: pip install --force-reinstall hushcode',
    })
    return nil
  end
  return base
end

---@param cfg vim.lsp.Config
---@param base string[]?
local function check_model(cfg, base)
  health.start('hushcode: model')
  local name = vim.tbl_get(cfg, 'settings', 'hushcode', 'model', 'name')
    or vim.tbl_get(cfg, 'init_options', 'model', 'name')
  if type(name) == 'string' and (name:match('%.gguf$') or name:find('/', 1, true)) then
    local path = vim.fs.normalize(name)
    local stat = vim.uv.fs_stat(path)
    if stat and stat.type == 'file' then
      health.ok(('model file %s (%d MB)'):format(path, math.floor(stat.size / 1e6)))
    else
      health.error('model file not found: ' .. path, {
        'Fix settings.model.name, or use a registry name (see `hushcode model list`)',
      })
    end
    return
  end
  if not base then
    health.warn('the model cannot be checked without a working server command')
    return
  end
  local argv = vim.list_extend(vim.deepcopy(base), { 'model', 'path' })
  if type(name) == 'string' then
    argv[#argv + 1] = name
  end
  local code, out = run(argv, cfg.cmd_env, 120000)
  if code == 0 then
    health.ok('model installed: ' .. out)
  else
    local install = vim.list_extend(vim.deepcopy(base), { 'model', 'install' })
    if type(name) == 'string' then
      install[#install + 1] = name
    end
    health.error(('model not installed (`%s` exit %d): %s'):format(table.concat(argv, ' '), code, out), {
      ('Install it: %s'):format(table.concat(install, ' ')),
    })
  end
end

local function check_clients(hushcode)
  health.start('hushcode: client')
  local clients = vim.lsp.get_clients({ name = hushcode.name })
  if #clients == 0 then
    local enabled = vim.lsp.is_enabled and vim.lsp.is_enabled(hushcode.name)
    if enabled then
      health.info(
        'enabled, no client running: it starts when a file of a supported filetype opens ('
          .. table.concat(hushcode.options.filetypes, ', ')
          .. ')'
      )
    else
      health.warn('not enabled: no client attached', {
        "require('hushcode').setup()",
        "or vim.lsp.enable('hushcode')",
      })
    end
    return
  end
  for _, client in ipairs(clients) do
    local buffers = vim.lsp.get_buffers_by_client_id(client.id)
    local names = {}
    for _, b in ipairs(buffers) do
      names[#names + 1] = vim.fn.fnamemodify(vim.api.nvim_buf_get_name(b), ':~:.')
    end
    health.ok(
      ('client %d attached to %d buffer(s)%s, root %s'):format(
        client.id,
        #buffers,
        #names > 0 and (': ' .. table.concat(names, ', ')) or '',
        client.root_dir or '(none: single file)'
      )
    )
    local resp, err = client:request_sync(
      'workspace/executeCommand',
      { command = 'hushcode.status', arguments = {} },
      5000,
      buffers[1]
    )
    if not resp then
      health.warn('hushcode.status did not answer: ' .. tostring(err))
    elseif resp.err then
      health.error('hushcode.status failed: ' .. resp.err.message)
    else
      local msg = hushcode.format_status(resp.result or {})
      local state = vim.tbl_get(resp.result or {}, 'model', 'state')
      if state == 'ready' then
        health.ok(msg)
      elseif state == 'failed' then
        health.error(msg, { 'Run :HushcodeRestart after fixing the model (see above)' })
      else
        health.warn(msg)
      end
    end
    if hushcode.has_inline_completion() then
      for _, b in ipairs(buffers) do
        if not vim.lsp.inline_completion.is_enabled({ bufnr = b }) then
          health.info(('inline completion is off in buffer %d'):format(b))
        end
      end
    end
  end
end

function M.check()
  local hushcode = require('hushcode')
  check_neovim(hushcode)
  local cfg = config()
  local base = check_server(cfg)
  check_model(cfg, base)
  check_clients(hushcode)
end

return M
