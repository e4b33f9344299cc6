-- luacheck: globals ngx
-- Inside nginx: the upstream of the libcurl transport's specs (05, 52), one function a
-- location. The counting ones keep what they saw in the shared dict `counters`; /get reads it.
--   echo()   the body back; counts connections ("conns") and requests ("echoes") and keeps
--            the method, Content-Type, User-Agent, X-Extra and Expect of the last request
--   plain()  the body back, nothing kept (the TLS servers: no shared dict there)
--   status() 418 "teapot"        slow()  "late" after 4 s       drop()  closes at once (444)
--   big()    ?n= bytes of "x"    get()   ?k= counter or kept header ("-" when there is none)
local echo_server = {}

function echo_server.echo()
  local d = ngx.shared.counters
  if ngx.var.connection_requests == "1" then d:incr("conns", 1, 0) end
  d:incr("echoes", 1, 0)
  ngx.req.read_body()
  d:set("method", ngx.req.get_method())
  d:set("content_type", ngx.var.http_content_type or "-")
  d:set("user_agent", ngx.var.http_user_agent or "-")
  d:set("extra", ngx.var.http_x_extra or "-")
  d:set("expect", ngx.var.http_expect or "-")
  ngx.print(ngx.req.get_body_data() or "")
end

function echo_server.plain()
  ngx.req.read_body()
  ngx.print(ngx.req.get_body_data() or "")
end

function echo_server.status()
  ngx.status = 418
  ngx.print("teapot")
end

function echo_server.slow()
  ngx.sleep(4)
  ngx.print("late")
end

function echo_server.drop()
  ngx.shared.counters:incr("drops", 1, 0)
  ngx.exit(444)
end

function echo_server.big()
  ngx.print(string.rep("x", tonumber(ngx.var.arg_n)))
end

function echo_server.get()
  ngx.print(ngx.shared.counters:get(ngx.var.arg_k) or "-")
end

return echo_server
