-- luacheck: globals ngx
-- Inside nginx: the request a spec's query string describes, made through the cosocket
-- transport and reported in X-* headers: X-Status, X-Connects, X-Time and the body on an
-- answer; 502 with X-Kind, X-Sent, X-Retryable and the message on a failure. Specs 21 and 22.
--   ?url=<escaped URL>                   that URL, body "x" (spec 22), or
--   ?port=&host=&tls=1&path=             http(s)://host:port/path with the request's body
--   &n=<requests in a row> &timeout= &connect_timeout= &verify=0
-- `fresh`: a transport of its own for each request, so no connection verified earlier is
-- reused; otherwise one per location and verify setting, kept for the worker as a client would.
local transports = {}

return function(fresh)
  local var = ngx.var
  local t
  if fresh then
    t = require("pagsmile.issuing.transport.ngx").new()
  else
    local key = var.uri .. (var.arg_verify or "")
    t = transports[key]
    if not t then
      t = require("pagsmile.issuing.transport.ngx").new{ ssl_verify = var.arg_verify ~= "0" }
      transports[key] = t
    end
  end
  local url, body, headers
  if var.arg_url then
    url, body = ngx.unescape_uri(var.arg_url), "x"
  else
    ngx.req.read_body()
    body = ngx.req.get_body_data() or ""
    headers = { ["Content-Type"] = "application/json; charset=UTF-8" }
    url = (var.arg_tls == "1" and "https" or "http") .. "://" .. (var.arg_host or "127.0.0.1")
      .. ":" .. var.arg_port .. ngx.unescape_uri(var.arg_path or "/echo")
  end
  local connects, res, err = 0, nil, nil
  for _ = 1, tonumber(var.arg_n) or 1 do
    res, err = t:request{ url = url, body = body, headers = headers,
                          timeout = tonumber(var.arg_timeout) or 5,
                          connect_timeout = tonumber(var.arg_connect_timeout) or 2 }
    if not res then break end
    connects = connects + res.connects
  end
  ngx.header["X-Connects"] = connects
  if res then
    ngx.header["X-Status"] = res.status
    ngx.header["X-Time"] = res.time
    ngx.print(res.body)
  else
    ngx.status = 502
    ngx.header["X-Kind"] = err.kind
    ngx.header["X-Sent"] = tostring(err.sent)
    ngx.header["X-Retryable"] = tostring(err.retryable)
    ngx.print(err.message)
  end
end
