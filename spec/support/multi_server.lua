-- luacheck: globals ngx
-- The server of spec 24 (many transfers on one libcurl multi handle): nginx.start { http =
-- CONFIG }. Inside nginx:
--   POST /echo?s=S   answers its own body after S seconds (default 0)
--   POST /reset      reads the request, counts it, and closes the connection unanswered
--   POST /header     answers the X-Extra header it got ("-" when none) and the Expect one
--   GET  /count?k=K  a counter: conns (connections opened), resets
local multi_server = {}

multi_server.CONFIG = [[
  lua_shared_dict counters 1m;
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 10000;
    keepalive_timeout 60s;
    client_body_buffer_size 1m;
    location / { content_by_lua_block { require("spec.support.multi_server").handle() } }
  }
]]

local function count(key) ngx.shared.counters:incr(key, 1, 0) end

local PATHS = {
  ["/echo"] = function()
    ngx.req.read_body()
    local s = tonumber(ngx.var.arg_s)
    if s then ngx.sleep(s) end
    ngx.print(ngx.req.get_body_data() or "")
  end,
  ["/reset"] = function()
    ngx.req.read_body()
    count("resets")
    ngx.exit(444)
  end,
  ["/header"] = function()
    ngx.req.read_body()
    ngx.print((ngx.var.http_x_extra or "-") .. " " .. (ngx.var.http_expect or "-"))
  end,
  ["/count"] = function()
    ngx.print(ngx.shared.counters:get(ngx.var.arg_k) or 0)
  end,
}

function multi_server.handle()
  if ngx.var.connection_requests == "1" then count("conns") end
  local path = PATHS[ngx.var.uri]
  if not path then return ngx.exit(404) end
  path()
end

return multi_server
