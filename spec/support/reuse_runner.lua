-- luacheck: globals ngx
-- Inside nginx: the cosocket side of the connection-reuse spec (52). run() makes one request
-- per path of ?paths=/a,/b,... to 127.0.0.1:?port= on one transport, ?pause= seconds apart,
-- with the bodies "order-1", "order-2", ..., and answers with the outcomes as a JSON array:
-- { body, connects } for an answer, { kind, sent, retryable, message } for a failure.
local json = require "pagsmile.issuing.json"

local reuse_runner = {}

function reuse_runner.run()
  local t = require("pagsmile.issuing.transport.ngx").new()
  local out = {}
  local i = 0
  for path in ngx.var.arg_paths:gmatch("[^,]+") do
    i = i + 1
    if i > 1 then ngx.sleep(tonumber(ngx.var.arg_pause)) end
    local res, err = t:request {
      url = "http://127.0.0.1:" .. ngx.var.arg_port .. path, body = "order-" .. i, timeout = 5,
    }
    out[i] = res and { body = res.body, connects = res.connects }
             or { kind = err.kind, sent = err.sent, retryable = err.retryable, message = err.message }
  end
  ngx.print(json.encode(out))
end

return reuse_runner
