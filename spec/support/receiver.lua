-- luacheck: globals ngx
-- A merchant's callback endpoint for the specs (33, 41): receiver.start() in the spec.
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

--- In the spec's process: starts the receiver's nginx. Returns it (url, stop(), …) with
-- next_callback(seconds): the next raw body it got, or nil when none came within `seconds`
-- (default 5).
function receiver.start()
  local helpers = require "helpers"
  local srv = require("sandbox.nginx").start { name = "receiver", http = receiver.CONFIG }
  local received = 0
  function srv.next_callback(seconds)
    received = received + 1
    return helpers.wait_for(function()
      local _, body = helpers.http("GET", srv.url .. "/got?n=" .. received)
      return body ~= "" and body or nil
    end, seconds or 5)
  end
  return srv
end

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
