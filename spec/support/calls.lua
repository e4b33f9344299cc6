-- luacheck: globals ngx
-- Any client method as plain data, made the same way in the busted process (curl transport)
-- and inside an nginx (ngx transport, through handler() below), for specs 50, 51 and 7x:
--   input = { options = settings, method = "query_card_info", arg = ... }
--   out   = { result = {...} | err = {...}, elapsed = seconds }
-- A document's bytes travel as `arg.file_hex` (hex), decoded here into file_content, so
-- binary bytes cross the JSON in one piece.
local issuing = require "pagsmile.issuing"
local json = require "pagsmile.issuing.json"
local call = require "fault_call"

local M = {}

M.CONFIG = [[
  client_body_buffer_size 8m;
  client_max_body_size 8m;
  server {
    listen 127.0.0.1:${port};
    location = /call { content_by_lua_block { require("spec.support.calls").handler() } }
  }
]]

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- A result as data: its plain fields (what json sees; never what `reveal` holds).
local function view(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = view(x) end
  return out
end

function M.run(input, clock)
  local t0 = clock()
  local client, err = issuing.new(input.options)
  local result
  if client then
    local arg = input.arg
    if type(arg) == "table" and arg.file_hex then
      arg.file_content, arg.file_hex = unhex(arg.file_hex), nil
    end
    result, err = client[input.method](client, arg)
    client:close()
  end
  local out = { elapsed = clock() - t0 }
  if result then
    out.result = view(result)
  else
    out.err = call.error_view(err)
    out.err.field, out.err.reason = err.field, err.reason
    out.err.card_token, out.err.holder_id = err.card_token, err.holder_id
  end
  return out
end

--- Inside nginx: POST /call with an input as JSON; the call on the ngx transport.
function M.handler()
  ngx.req.read_body()
  local input = json.decode(ngx.req.get_body_data())
  input.options.transport = "ngx"
  local out = M.run(input, function()
    ngx.update_time()
    return ngx.now()
  end)
  ngx.header["Content-Type"] = "application/json"
  ngx.print(json.encode(out))
end

return M
