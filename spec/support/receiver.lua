-- luacheck: globals ngx
-- A merchant's callback endpoint for the specs (33, 41): nginx.start { http = CONFIG }.
-- Inside nginx, POST /callback keeps each body in arrival order and answers "ok";
-- GET /got?n=N gives the N-th body ("" until it came).
local receiver = {}

receiver.CONFIG = [[
  lua_shared_dict got 1m;
  server {
    listen 127.0.0.1:${port};
    location = /callback { content_by_lua_block { require("spec.support.receiver").callback() } }
    location = /got { content_by_lua_block { require("spec.support.receiver").got() } }
  }
]]

function receiver.callback()
  ngx.req.read_body()
  local d = ngx.shared.got
  d:set(d:incr("n", 1, 0), ngx.req.get_body_data() or "")
  ngx.say("ok")
end

function receiver.got()
  ngx.print(ngx.shared.got:get(tonumber(ngx.var.arg_n)) or "")
end

return receiver
