-- Drives a headless Neovim like a user: keys go in through nvim_input and are handled by Neovim's own
-- main loop (this script runs as a coroutine resumed by timers, so insert mode, autocmds and LSP
-- traffic all happen for real). Every scenario records what it saw; the JSON goes to
-- $HUSHCODE_NVIM_RESULT and Neovim quits. pytest (tests/e2e/test_nvim.py) asserts on it.
local api = vim.api
local env = vim.env

local result_path = assert(env.HUSHCODE_NVIM_RESULT, 'HUSHCODE_NVIM_RESULT is not set')
local wanted = vim.split(env.HUSHCODE_NVIM_SCENARIOS or 'inline,commands,health,action', ',')
local file = env.HUSHCODE_NVIM_FILE
local hard_timeout_ms = tonumber(env.HUSHCODE_NVIM_TIMEOUT_MS or '150000')

local t0 = vim.uv.hrtime()
local function now()
  return (vim.uv.hrtime() - t0) / 1e9
end

local results = {
  nvim = tostring(vim.version()),
  scenarios = vim.empty_dict(),
  messages = {},
  errors = {},
}

-- Everything the plugin tells the user goes through vim.notify: keep it for the assertions.
local orig_notify = vim.notify
vim.notify = function(msg, level, opts)
  table.insert(results.messages, { msg = tostring(msg), level = level or 2, t = now() })
  return orig_notify(msg, level, opts)
end

local finished = false
local function finish()
  if finished then
    return
  end
  finished = true
  results.total_s = now()
  local ok, encoded = pcall(vim.json.encode, results)
  if not ok then
    encoded = vim.json.encode({ errors = { 'cannot encode results: ' .. tostring(encoded) } })
  end
  local fd = assert(io.open(result_path, 'w'))
  fd:write(encoded)
  fd:close()
  vim.cmd('qa!')
end

vim.defer_fn(function()
  table.insert(results.errors, ('driver timed out after %d ms'):format(hard_timeout_ms))
  finish()
end, hard_timeout_ms)

local co ---@type thread

local function resume(...)
  local ok, err = coroutine.resume(co, ...)
  if not ok then
    table.insert(results.errors, 'driver crashed: ' .. tostring(err))
    finish()
  end
end

local function sleep(ms)
  vim.defer_fn(resume, ms)
  coroutine.yield()
end

--- Poll `cond` until it returns a truthy value (returned), or fail the scenario.
local function wait_for(what, timeout_ms, cond, interval)
  local deadline = now() + timeout_ms / 1000
  while true do
    local v = cond()
    if v then
      return v
    end
    if now() > deadline then
      error(('timed out after %d ms waiting for %s'):format(timeout_ms, what), 0)
    end
    sleep(interval or 50)
  end
end

--- An asynchronous LSP request, waited for without blocking Neovim's loop.
local function request(client, method, params, timeout_ms, bufnr)
  local done ---@type table?
  client:request(method, params, function(err, result)
    done = { err = err, result = result }
  end, bufnr or api.nvim_get_current_buf())
  return wait_for(method, timeout_ms, function()
    return done
  end, 20)
end

local function line()
  return api.nvim_get_current_line()
end

local function message_since(t, pattern)
  for _, m in ipairs(results.messages) do
    if m.t >= t and m.msg:find(pattern) then
      return m
    end
  end
end

local function ghost(bufnr)
  local ns = api.nvim_get_namespaces()['nvim.lsp.inline_completion']
  if not ns then
    return nil
  end
  local marks = api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })
  for _, mark in ipairs(marks) do
    local d = mark[4]
    local parts = {}
    for _, chunk in ipairs(d.virt_text or {}) do
      parts[#parts + 1] = chunk[1]
    end
    local text = table.concat(parts)
    for _, vl in ipairs(d.virt_lines or {}) do
      local l = {}
      for _, chunk in ipairs(vl) do
        l[#l + 1] = chunk[1]
      end
      text = text .. '\n' .. table.concat(l)
    end
    if text ~= '' then
      return { row = mark[2], col = mark[3], text = text, pos = d.virt_text_pos }
    end
  end
end

local state = {} -- shared between scenarios: buffer, client

local function open_file()
  if state.client and api.nvim_buf_is_valid(state.buf) then
    api.nvim_set_current_buf(state.buf)
    return state.client, state.buf
  end
  local path = assert(file, 'HUSHCODE_NVIM_FILE is not set')
  local existing = vim.fn.bufnr(path)
  if existing > 0 then
    api.nvim_set_current_buf(existing)
  else
    vim.cmd.edit(vim.fn.fnameescape(path))
  end
  local buf = api.nvim_get_current_buf()
  local client = wait_for('the hushcode client to attach', 30000, function()
    return vim.lsp.get_clients({ bufnr = buf, name = 'hushcode' })[1]
  end)
  state.attached_s = now()
  local status = wait_for('the model to be ready (hushcode.status)', 90000, function()
    local r = request(client, 'workspace/executeCommand', {
      command = 'hushcode.status',
      arguments = {},
    }, 10000, buf)
    local model = vim.tbl_get(r, 'result', 'model') or {}
    if model.state == 'failed' then
      error('the model failed to load: ' .. vim.inspect(model), 0)
    end
    return model.state == 'ready' and r.result
  end, 200)
  state.ready_s = now()
  state.status = status
  state.client, state.buf = client, buf
  results.attached_s, results.ready_s = state.attached_s, state.ready_s
  results.server_capabilities = {
    inline = client.server_capabilities.inlineCompletionProvider ~= nil,
    code_action = client.server_capabilities.codeActionProvider or false,
  }
  return client, buf
end

local function find_line(buf, pattern)
  for i, l in ipairs(api.nvim_buf_get_lines(buf, 0, -1, false)) do
    if l:find(pattern) then
      return i
    end
  end
  error('no line matches ' .. pattern, 0)
end

local scenarios = {}

-- (1) Type in insert mode, see ghost text from the real model, accept it with the accept mapping.
function scenarios.inline(rec)
  local _, buf = open_file()
  rec.inline_enabled = vim.lsp.inline_completion.is_enabled({ bufnr = buf })
  rec.tab_mapping = vim.fn.maparg('<Tab>', 'i', false, true).desc
  local lnum = find_line(buf, '^%s*return fib%(')
  rec.original = api.nvim_buf_get_lines(buf, lnum - 1, lnum, false)[1]
  api.nvim_win_set_cursor(0, { lnum, 0 })
  -- Delete the expression after `return` (`^wd$x`), append (`A`) and type the space after `return`.
  api.nvim_input('^wd$xA' .. (env.HUSHCODE_NVIM_TYPE or ' '))
  wait_for('insert mode', 5000, function()
    return api.nvim_get_mode().mode == 'i'
  end)
  rec.typed = line()
  local t = now()
  local shown = wait_for('ghost text (an inline_completion extmark)', 30000, function()
    return ghost(buf)
  end, 25)
  rec.ghost_s = now() - t
  rec.ghost = shown
  rec.before_accept = line()
  local tick = api.nvim_buf_get_changedtick(buf)
  api.nvim_input('<Tab>')
  wait_for('the suggestion to be accepted', 5000, function()
    return api.nvim_buf_get_changedtick(buf) ~= tick
  end, 20)
  sleep(50)
  rec.accepted = line()
  rec.mode_after = api.nvim_get_mode().mode
  rec.cursor_after = api.nvim_win_get_cursor(0)
  rec.ghost_after = ghost(buf) or vim.NIL
  api.nvim_input('<Esc>')
  wait_for('normal mode', 5000, function()
    return api.nvim_get_mode().mode == 'n'
  end)
end

-- The user commands, and <Tab> falling through to a plain Tab when no suggestion is shown.
function scenarios.commands(rec)
  local _, buf = open_file()
  local t = now()
  vim.cmd('HushcodeToggle off')
  rec.toggle_off = wait_for(':HushcodeToggle off', 5000, function()
    return message_since(t, 'completions off')
  end).msg
  -- With completions off no suggestion can appear, so <Tab> must insert indentation.
  local lnum = find_line(buf, '^def clamp')
  api.nvim_win_set_cursor(0, { lnum, 0 })
  api.nvim_input('O')
  wait_for('insert mode', 5000, function()
    return api.nvim_get_mode().mode == 'i'
  end)
  sleep(50)
  rec.tab_before = line()
  local tick = api.nvim_buf_get_changedtick(buf)
  api.nvim_input('<Tab>')
  wait_for('<Tab> to change the line', 3000, function()
    return api.nvim_buf_get_changedtick(buf) ~= tick
  end, 20)
  sleep(50)
  rec.tab_after = line()
  api.nvim_input('<Esc>')
  wait_for('normal mode', 5000, function()
    return api.nvim_get_mode().mode == 'n'
  end)
  vim.cmd('silent! undo')
  t = now()
  vim.cmd('HushcodeToggle on')
  rec.toggle_on = wait_for(':HushcodeToggle on', 5000, function()
    return message_since(t, 'completions on')
  end).msg
  t = now()
  vim.cmd('HushcodeStatus')
  rec.status = wait_for(':HushcodeStatus', 10000, function()
    return message_since(t, '^hushcode[^:]*: model ')
  end).msg
  t = now()
  vim.cmd('HushcodeRestart')
  rec.restart = wait_for(':HushcodeRestart (model reload)', 60000, function()
    return message_since(t, '^hushcode[^:]*: model .* ready')
  end, 100).msg
  -- :HushcodeRestart! restarts the server process: a new client attaches to the same buffer.
  local old = state.client.id
  vim.cmd('HushcodeRestart!')
  local new = wait_for(':HushcodeRestart! (a new client)', 30000, function()
    local c = vim.lsp.get_clients({ bufnr = buf, name = 'hushcode' })[1]
    return c and c.id ~= old and c.initialized and c
  end, 100)
  rec.restarted = { old = old, new = new.id, old_gone = vim.lsp.get_client_by_id(old) == nil }
  state.client = nil
  open_file()
  rec.restarted.inline_enabled = vim.lsp.inline_completion.is_enabled({ bufnr = buf })
  rec.restarted.tab_mapping = vim.fn.maparg('<Tab>', 'i', false, true).desc
end

-- (3) :checkhealth hushcode with the client attached and the model loaded.
function scenarios.health(rec)
  open_file()
  local tabs = vim.fn.tabpagenr('$')
  vim.cmd('checkhealth hushcode')
  local hbuf = api.nvim_get_current_buf()
  rec.filetype = vim.bo[hbuf].filetype
  rec.lines = api.nvim_buf_get_lines(hbuf, 0, -1, false)
  if vim.fn.tabpagenr('$') > tabs then
    vim.cmd('tabclose')
  end
  if api.nvim_buf_is_valid(hbuf) and hbuf ~= state.buf then
    pcall(api.nvim_buf_delete, hbuf, { force = true })
  end
end

-- (2) A hushcode code action, listed and applied with vim.lsp.buf.code_action({ apply = true }).
function scenarios.action(rec)
  local client, buf = open_file()
  api.nvim_set_current_buf(buf)
  local lnum = find_line(buf, '^def is_prime')
  api.nvim_win_set_cursor(0, { lnum, 4 })
  if not client:supports_method('textDocument/codeAction') then
    rec.offered = false
    rec.reason = 'the server has no codeActionProvider'
    return
  end
  local params = vim.lsp.util.make_range_params(0, client.offset_encoding)
  params.context = { diagnostics = {}, triggerKind = 1 }
  local r = request(client, 'textDocument/codeAction', params, 15000, buf)
  if r.err then
    error('textDocument/codeAction failed: ' .. vim.inspect(r.err), 0)
  end
  local titles = {}
  for _, a in ipairs(r.result or {}) do
    titles[#titles + 1] = a.title
  end
  rec.titles = titles
  local ours = vim.tbl_filter(function(title)
    return title:match('^hushcode: ') ~= nil
  end, titles)
  rec.offered = #ours > 0
  if not rec.offered then
    return
  end
  -- A docstring is the quickest action to generate; any other hushcode action will do.
  local chosen = ours[1]
  for _, title in ipairs(ours) do
    if title:lower():find('docstring') then
      chosen = title
      break
    end
  end
  rec.chosen = chosen
  rec.before = api.nvim_buf_get_lines(buf, 0, -1, false)
  local tick = api.nvim_buf_get_changedtick(buf)
  local t = now()
  vim.lsp.buf.code_action({
    apply = true,
    filter = function(action)
      return action.title == chosen
    end,
  })
  wait_for('the code action edit to be applied', 90000, function()
    return api.nvim_buf_get_changedtick(buf) ~= tick
  end, 100)
  sleep(200)
  rec.apply_s = now() - t
  rec.after = api.nvim_buf_get_lines(buf, 0, -1, false)
end

-- Neovim 0.11 (no vim.lsp.inline_completion), simulated: one notice, no accept mapping, health warns.
function scenarios.degraded(rec)
  local has = vim.fn.has
  vim.fn.has = function(feature)
    if feature == 'nvim-0.12' then
      return 0
    end
    return has(feature)
  end
  local hushcode = require('hushcode')
  rec.has_inline = hushcode.has_inline_completion()
  vim.cmd.enew()
  local buf = api.nvim_get_current_buf()
  local t = now()
  -- No server needed to see the notice: a stand-in client in an empty buffer.
  local fake = { id = -1, name = 'hushcode', supports_method = function()
    return true
  end }
  hushcode.on_attach(fake, buf)
  hushcode.on_attach(fake, buf)
  sleep(50)
  rec.notices = {}
  for _, m in ipairs(results.messages) do
    if m.t >= t then
      rec.notices[#rec.notices + 1] = m.msg
    end
  end
  rec.tab_mapping = vim.fn.maparg('<Tab>', 'i', false, true).desc or vim.NIL
  rec.accept = hushcode.accept()
  vim.cmd('checkhealth hushcode')
  rec.lines = api.nvim_buf_get_lines(0, 0, -1, false)
  if vim.fn.tabpagenr('$') > 1 then
    vim.cmd('tabclose')
  end

  -- What 0.11 gets instead: without the inlineCompletion client capability the server answers
  -- textDocument/completion with one item, reached with <C-x><C-o>.
  vim.lsp.config('hushcode', { capabilities = { textDocument = { inlineCompletion = vim.NIL } } })
  local _, fbuf = open_file()
  rec.omnifunc = vim.bo[fbuf].omnifunc
  rec.complete_done = {}
  api.nvim_create_autocmd('CompleteDone', {
    buffer = fbuf,
    callback = function()
      table.insert(rec.complete_done, api.nvim_get_vvar('event').reason)
      local item = vim.tbl_get(vim.v.completed_item, 'user_data', 'nvim', 'lsp', 'completion_item')
      rec.whole = rec.whole or vim.tbl_get(item or {}, 'textEdit', 'newText')
    end,
  })
  local lnum = find_line(fbuf, '^%s*return fib%(')
  api.nvim_win_set_cursor(0, { lnum, 0 })
  api.nvim_input('^wd$xA ')
  wait_for('insert mode after `return `', 5000, function()
    return api.nvim_get_mode().mode == 'i' and line() == '    return '
  end)
  api.nvim_input('<C-x><C-o>')
  -- One item: Vim inserts it at once (no menu for a single match); more: a menu, taken with <C-y>.
  local how = wait_for('the completion (inserted, or a menu)', 30000, function()
    if line() ~= '    return ' then
      return 'inserted'
    end
    local info = vim.fn.complete_info({ 'pum_visible', 'items' })
    return info.pum_visible == 1 and #info.items > 0 and 'menu'
  end, 25)
  rec.how = how
  rec.inserted = line()
  -- <C-y> accepts; the plugin then puts in the item's whole textEdit.
  api.nvim_input('<C-y>')
  wait_for('insert mode after <C-y>', 5000, function()
    return api.nvim_get_mode().mode == 'i'
  end, 20)
  sleep(100)
  rec.completed = line()
  api.nvim_input('<Esc>')
  vim.fn.has = has
end

co = coroutine.create(function()
  for _, name in ipairs(wanted) do
    local fn = scenarios[name]
    local rec = { started_s = now() }
    results.scenarios[name] = rec
    if not fn then
      rec.error = 'unknown scenario ' .. name
    else
      local ok, err = xpcall(fn, debug.traceback, rec)
      if not ok then
        rec.error = tostring(err)
      end
    end
    rec.seconds = now() - rec.started_s
    rec.mode_at_end = api.nvim_get_mode().mode
    if rec.mode_at_end ~= 'n' then
      api.nvim_input('<Esc>')
      sleep(50)
    end
  end
  finish()
end)
resume()
