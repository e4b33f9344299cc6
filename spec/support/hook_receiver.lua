-- luacheck: globals ngx
-- Inside nginx: the sandbox spec's (20) callback endpoint, in the shared dict `hooks`.
--   hook()   keeps the body of each callback, numbered 1, 2, ...; "ok"
--   flaky()  the same, except that its first request gets a 500 "no" and is not kept
--   count()  how many were kept              body()   the ?n=-th body (404 until it came)
local hook_receiver = {}

local function keep(d)
  ngx.req.read_body()
  d:set("body:" .. d:incr("n", 1, 0), ngx.req.get_body_data() or "")
  ngx.print("ok")
end

function hook_receiver.hook()
  keep(ngx.shared.hooks)
end

function hook_receiver.flaky()
  local d = ngx.shared.hooks
  if d:incr("flaky", 1, 0) == 1 then
    ngx.status = 500
    ngx.print("no")
    return
  end
  keep(d)
end

function hook_receiver.count()
  ngx.print(ngx.shared.hooks:get("n") or 0)
end

function hook_receiver.body()
  local b = ngx.shared.hooks:get("body:" .. ngx.var.arg_n)
  if not b then return ngx.exit(404) end
  ngx.print(b)
end

return hook_receiver
