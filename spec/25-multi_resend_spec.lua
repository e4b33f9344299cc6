-- core.multi never sends a request twice. libcurl re-sends a request by itself when a reused
-- connection closes without answering; with a shared connection cache it may do so on
-- another kept-alive connection, where no new socket is opened (so the sockopt guard never
-- sees it). Found by spec 54 under random faults: the sandbox saw one request_id twice and
-- refused the second for good, for an order that the first had issued.
local nginx = require "sandbox.nginx"
local http = require "socket.http"
local core = require "pagsmile.issuing.core"
local multi_server = require "support.multi_server"

describe("core.multi #core", function()
  local srv

  local function counter(key)
    local body, code = http.request(srv.url .. "/count?k=" .. key)
    assert(code == 200, "counter read failed: " .. tostring(code))
    return tonumber(body)
  end

  local function run(m, ids)
    local left, done = #ids, {}
    local t0 = core.monotime()
    while left > 0 and core.monotime() - t0 < 20 do left = left - m:perform(0.5, done) end
    assert(left == 0, "transfers did not finish")
  end

  lazy_setup(function() srv = nginx.start { name = "multi-resend", http = multi_server.CONFIG } end)
  lazy_teardown(function() if srv then srv.stop() end end)

  it("does not re-send a request on another kept-alive connection", function()
    local m = assert(core.multi())
    -- three connections kept alive in the multi's cache
    local ids = {}
    for i = 1, 3 do ids[i] = m:start(srv.url .. "/echo?s=0.2", "warm", { timeout_ms = 5000 }) end
    run(m, ids)
    for i = 1, 3 do assert.equal(200, (m:result(ids[i]))) end
    local before = counter("resets")
    local id = m:start(srv.url .. "/reset", "once", { timeout_ms = 5000 })
    run(m, { id })
    local status, kind, _, _, sent = m:result(id)
    assert.is_nil(status)
    assert.equal("transport", kind)
    assert.is_true(sent)
    assert.equal(1, counter("resets") - before, "the request reached the server more than once")
    m:close()
  end)
end)
