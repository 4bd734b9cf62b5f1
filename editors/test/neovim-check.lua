-- Run by editors/test/neovim.sh inside `nvim --headless`, after the Neovim
-- recipe of editors/README.md was loaded as the init file and the first
-- .avap file was opened. Waits for the language server's diagnostics in two
-- buffers and writes what Neovim saw to $AVAP_RESULT as JSON; the shell
-- script judges it. Any Lua error is written there too, so nothing hangs.
local function clients_of(buf)
  local list
  if vim.lsp.get_clients then -- 0.10 and later
    list = vim.lsp.get_clients({ bufnr = buf })
  else
    list = vim.tbl_values(vim.lsp.buf_get_clients(buf))
  end
  local out = {}
  for _, c in ipairs(list) do
    table.insert(out, { id = c.id, name = c.name })
  end
  return out
end

local function snapshot(buf)
  local arrived = vim.wait(tonumber(vim.env.AVAP_WAIT_MS or '30000'), function()
    return #vim.diagnostic.get(buf) > 0
  end, 50)
  local diagnostics = {}
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    table.insert(diagnostics, {
      lnum = d.lnum,
      col = d.col,
      severity = d.severity,
      source = d.source or vim.NIL,
      message = d.message,
    })
  end
  return {
    file = vim.fn.fnamemodify(vim.api.nvim_buf_get_name(buf), ':t'),
    filetype = vim.bo[buf].filetype,
    commentstring = vim.bo[buf].commentstring,
    clients = clients_of(buf),
    arrived = arrived,
    diagnostics = diagnostics,
  }
end

local ok, err = pcall(function()
  local result = { version = tostring(vim.version().major .. '.' .. vim.version().minor .. '.' .. vim.version().patch) }
  result.first = snapshot(vim.api.nvim_get_current_buf())
  vim.cmd('edit ' .. vim.fn.fnameescape(vim.env.AVAP_SECOND))
  result.second = snapshot(vim.api.nvim_get_current_buf())
  result.all_clients = #(vim.lsp.get_clients or vim.lsp.get_active_clients)()
  local f = assert(io.open(vim.env.AVAP_RESULT, 'w'))
  f:write(vim.fn.json_encode(result))
  f:close()
end)
if not ok then
  local f = io.open(vim.env.AVAP_RESULT, 'w')
  if f then
    f:write(vim.fn.json_encode({ lua_error = tostring(err) }))
    f:close()
  end
end
vim.cmd('qa!')
