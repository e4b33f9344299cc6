-- luacheck: globals ngx
-- Any client method as plain data, made the same way in the busted process (curl transport)
-- and inside an nginx (ngx transport, through handler() below), for specs 50, 51 and 7x:
--   input = { options = settings, method = "query_card_info", arg = ... }
--   out   = { result = {...} | err = {...}, elapsed = seconds }
-- A document's bytes travel as `arg.file_hex` (hex), decoded here into file_content, so
-- binary bytes cross the JSON in one piece.
local issuing = require "pagsmile.issuing"
local json = require "pagsmile.issuing.json"

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

-- The fields of an error a spec looks at.
local ERROR_FIELDS = { "kind", "message", "sent", "retryable", "outcome", "order_no", "request_id",
  "http_status", "code", "sub_code", "field", "reason", "card_token", "holder_id" }

-- A result as data: its plain fields (what json sees; never what `reveal` holds).
local function view(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = view(x) end
  return out
end

-- input.collect_log: every log event of the call comes back in out.log.
function M.run(input, clock)
  local t0 = clock()
  local events = {}
  if input.collect_log then
    input.options.log = function(e) events[#events + 1] = e end
  end
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
  local out = { elapsed = clock() - t0, log = input.collect_log and events or nil }
  if result then
    out.result = view(result)
  else
    local e = {}
    for _, k in ipairs(ERROR_FIELDS) do e[k] = err[k] end
    e.text = tostring(err)
    out.err = e
  end
  return out
end

--- Inside nginx: the JSON body's input, with options.transport = "ngx", handed to
-- run(input, clock); its value is the answer, as JSON. (spec/support/flow.lua uses it too.)
function M.serve(run)
  ngx.req.read_body()
  local input = json.decode(ngx.req.get_body_data())
  input.options.transport = "ngx"
  local out = run(input, function()
    ngx.update_time()
    return ngx.now()
  end)
  ngx.header["Content-Type"] = "application/json"
  ngx.print(json.encode(out))
end

--- Inside nginx: POST /call with an input as JSON; the call on the ngx transport.
function M.handler() M.serve(M.run) end

--- The two ways to make a call, for a spec: in this process (curl) and through `runner`
-- (an nginx started with M.CONFIG): engines.curl(input), engines.ngx(input) -> out.
function M.engines(get_runner, clock)
  return {
    curl = function(input) return M.run(input, clock) end,
    ngx = function(input) return require("helpers").post_json(get_runner().url .. "/call", input) end,
  }
end

return M
