-- luacheck: globals ngx
-- Inside nginx: the upstream of the cosocket transport's spec (21), by path. Counts new
-- connections in the shared dict `up` (GET /connections reads the count).
--   /echo      the body back, with Content-Length     /chunked   the body back in 3 chunks
--   /headers   method|host|content-type|connection|content-length|user-agent
--   /slow      "late" after 3 s                        /big       2 MiB
--   /status    503 "busy"                              anything else: 404
return function()
  if ngx.var.connection_requests == "1" and ngx.var.uri ~= "/connections" then
    ngx.shared.up:incr("connections", 1, 0)
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data() or ""
  local uri = ngx.var.uri
  if uri == "/echo" then
    ngx.header.content_length = #body
    ngx.print(body)
  elseif uri == "/chunked" then
    local third = math.floor(#body / 3)
    ngx.print(body:sub(1, third)); ngx.flush(true)
    ngx.print(body:sub(third + 1, 2 * third)); ngx.flush(true)
    ngx.print(body:sub(2 * third + 1))
  elseif uri == "/headers" then
    ngx.print(table.concat({ ngx.var.request_method, ngx.var.http_host,
      ngx.var.http_content_type, ngx.var.http_connection,
      ngx.var.http_content_length, ngx.var.http_user_agent }, "|"))
  elseif uri == "/slow" then
    ngx.sleep(3)
    ngx.print("late")
  elseif uri == "/big" then
    ngx.header.content_length = 2 * 1024 * 1024
    ngx.print(string.rep("x", 2 * 1024 * 1024))
  elseif uri == "/status" then
    ngx.status = 503
    ngx.print("busy")
  elseif uri == "/connections" then
    ngx.print(ngx.shared.up:get("connections") or 0)
  else
    ngx.exit(404)
  end
end
