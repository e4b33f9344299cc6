-- The runtime of a call (issue 11 item 4): how it reads the clock, pauses and sends, chosen
-- once per call and used for all of it (deadlines, backoff, the transport). Plain Lua:
-- core.monotime, core.sleep and libcurl. Inside nginx, in a phase with cosockets: ngx.now,
-- ngx.sleep and the cosocket transport. This is the seam a coroutine scheduler plugs into.
local core = require "pagsmile.issuing.core"

local ngx = rawget(_G, "ngx") -- set inside OpenResty only

local runtime = {}

-- ngx_lua phases where cosockets (and ngx.sleep) work.
local COSOCKET_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

function runtime.in_nginx() return ngx ~= nil end

function runtime.in_cosocket_phase()
  return ngx ~= nil and COSOCKET_PHASES[ngx.get_phase()] == true
end

function runtime.phase() return ngx and ngx.get_phase() end

local function core_sleep(seconds)
  if seconds > 0 then core.sleep(seconds) end
end

-- ngx.now is the time of the event loop's last wake-up: refresh it before reading.
local function ngx_now()
  ngx.update_time()
  return ngx.now()
end

local function ngx_sleep(seconds)
  if seconds > 0 then ngx.sleep(seconds) end
end

--- The clock and the pause of this phase: nginx's while cosockets work (a pause yields to
-- other requests), the process's otherwise.
function runtime.clock()
  if runtime.in_cosocket_phase() then return ngx_now, ngx_sleep, "ngx" end
  return core.monotime, core_sleep, "lua"
end

--- A runtime object: { name, now, sleep, transport } (transport nil and `error` set when none
-- can serve here). Made per call: a call keeps one clock and one transport throughout.
function runtime.new(transport, err)
  local now, sleep, name = runtime.clock()
  return { name = name, now = now, sleep = sleep, transport = transport, error = err }
end

return runtime
