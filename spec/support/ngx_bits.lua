-- luacheck: globals ngx
-- The small handlers that the nginx configs of specs 21, 22 and 23 call in one line.
local M = {}

--- Answers `text`, with `status` when given.
function M.say(text, status)
  if status then ngx.status = status end
  ngx.print(text)
end

--- Answers after `seconds`.
function M.late(seconds, text)
  ngx.sleep(seconds)
  ngx.print(text)
end

--- Reads the request, then closes the connection without an answer.
function M.hangup()
  ngx.req.read_body()
  ngx.exit(444)
end

--- The SNI name the TLS handshake carried.
function M.sni()
  ngx.print("sni=", ngx.var.ssl_server_name or "")
end

--- /raw/NAME: reads the request, then writes spec/raw_answers.lua's NAME byte for byte on
-- the raw socket (a 404 for an unknown name).
function M.raw()
  local answer = require("spec.raw_answers")[ngx.var.uri:sub(6)]
  local sock = assert(ngx.req.socket(true))
  sock:receive(tonumber(ngx.var.http_content_length) or 0)
  sock:send(answer or "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
end

--- Parses the PKCS#1 public key at `path` (the form whose parsing tries SPKI first).
function M.parse_pkcs1(path)
  local f = assert(io.open(path))
  assert(require("pagsmile.issuing.core").public_key(f:read("*a")))
  f:close()
end

return M
