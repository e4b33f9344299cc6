-- luacheck: globals ngx
-- Inside nginx: one request through the cosocket transport, described by the JSON body of the
-- request (url, body, timeout, connect_timeout), answered with what the transport returned,
-- as JSON. spec/23 holds both transports to one contract with it.
local errors = require "pagsmile.issuing.errors"
local json = require "pagsmile.issuing.json"

-- One transport per location, kept for the worker as a client would keep it.
local transports = {}

return function()
  local uri = ngx.var.uri
  local t = transports[uri]
  if not t then
    t = require("pagsmile.issuing.transport.ngx").new()
    transports[uri] = t
  end
  ngx.req.read_body()
  local req = assert(json.decode(ngx.req.get_body_data() or "{}"))
  req.headers = { ["Content-Type"] = "application/json; charset=UTF-8" }
  ngx.update_time()
  local t0 = ngx.now()
  local res, err = t:request(req)
  ngx.update_time()
  local out = { elapsed = ngx.now() - t0 }
  if res then
    out.status, out.body = res.status, res.body
  else
    out.error = { kind = err.kind, message = err.message, sent = err.sent,
                  retryable = err.retryable, setting = err.setting, is_error = errors.is_error(err) }
  end
  ngx.print(json.encode(out))
end
