-- Issue 9 item 4: a reused connection must never hand back bytes that arrived before the
-- request was written (another order's card), in this process or in a forked one; and item
-- 10(c): an answer with no status line is a protocol error. Both transports, against
-- spec/hostile_server.lua (a raw-TCP peer that writes scripted bytes) and real nginx.
local nginx = require "sandbox.nginx"
local tls = require "sandbox.tls"
local socket = require "socket"
local http = require "socket.http"
local core = require "pagsmile.issuing.core"
local curl = require "pagsmile.issuing.transport.curl"
local hostile = require "hostile_server"

-- Long enough for the server's unsolicited answer (sent 100 ms after the first) to be waiting.
local PAUSE = 0.3

local function count(srv)
  local body = http.request(srv.url .. "/count")
  return tonumber(body)
end

describe("curl transport: connection reuse #core", function()
  local srv

  lazy_setup(function() srv = hostile.start() end)
  lazy_teardown(function() if srv then srv.stop() end end)

  it("issue 9 item 4: a second request never gets the unsolicited answer that followed the first", function()
    local t = assert(curl.new())
    local res = assert(t:request { url = srv.url .. "/twice", body = "order-1", timeout = 5 })
    assert.equal("order-1", res.body)
    socket.sleep(PAUSE)
    local err
    res, err = t:request { url = srv.url .. "/twice", body = "order-2", timeout = 5 }
    assert.is_nil(err)
    assert.equal("order-2", res.body)
    -- the stale connection was dropped, not read
    assert.equal(1, res.connects)
    socket.sleep(PAUSE)
    res = assert(t:request { url = srv.url .. "/echo", body = "order-3", timeout = 5 })
    assert.equal("order-3", res.body)
    t:close()
  end)

  it("issue 9 item 4: the check before reuse costs no reconnect on a quiet connection", function()
    local before = count(srv)
    local t = assert(curl.new())
    for i = 1, 6 do
      local res = assert(t:request { url = srv.url .. "/echo", body = "n" .. i, timeout = 5 })
      assert.equal("n" .. i, res.body)
      assert.equal(i == 1 and 1 or 0, res.connects)
    end
    t:close()
    -- one connection for the six requests, one for the count itself
    assert.equal(before + 2, count(srv))
  end)

  for _, path in ipairs { "/nostatus", "/garbage" } do
    it("issue 10(c): an answer with no status line (" .. path .. ") is a protocol error, sent", function()
      local t = assert(curl.new())
      local res, err = t:request { url = srv.url .. path, body = "x", timeout = 5 }
      t:close()
      assert.is_nil(res)
      assert.equal("protocol", err.kind)
      assert.is_true(err.sent)
      assert.is_false(err.retryable)
      assert.matches("no HTTP status line", err.message)
      assert.is_nil(err.message:find("10000", 1, true))
    end)
  end

  it("issue 10(c): a URL of an unsupported scheme stays a transport error, not sent", function()
    local t = assert(curl.new())
    local res, err = t:request { url = "ftp://127.0.0.1:" .. srv.port .. "/", body = "x" }
    t:close()
    assert.is_nil(res)
    assert.equal("transport", err.kind)
    assert.is_false(err.sent)
  end)
end)

-- fork() is reached through LuaJIT's FFI (plain Lua has no fork without a new package), so
-- the fork specs run on LuaJIT only.
local ffi = jit and require "ffi"
if ffi then
  pcall(ffi.cdef, [[
    int fork(void);
    int waitpid(int pid, int *status, int options);
    void _exit(int status);
  ]])
end

-- Runs child() in a forked process (its result, true or not, is the exit status; it never
-- returns into busted) and returns whether it succeeded once parent() has run.
local function forked(child, parent)
  local pid = ffi.C.fork()
  assert(pid >= 0, "fork failed")
  if pid == 0 then
    local ok, good = pcall(child)
    ffi.C._exit(ok and good == true and 0 or 1)
  end
  local out = { pcall(parent) }
  local status = ffi.new("int[1]")
  assert(ffi.C.waitpid(pid, status, 0) == pid)
  assert(out[1], out[2])
  return status[0] == 0, unpack(out, 2)
end

if ffi then describe("curl transport after fork", function()
  local srv, tls_srv, certs

  lazy_setup(function()
    srv = hostile.start()
    tls_srv = nginx.start {
      name = "fork-tls",
      prepare = function(prefix, vars)
        certs = assert(tls.make(prefix))
        vars.cert, vars.key = certs.cert_file, certs.key_file
      end,
      http = [[
        server {
          listen 127.0.0.1:${port} ssl;
          ssl_certificate ${cert};
          ssl_certificate_key ${key};
          keepalive_timeout 60s;
          location / { content_by_lua_block { require("spec.support.echo_server").plain() } }
        }
      ]],
    }
  end)
  lazy_teardown(function()
    if srv then srv.stop() end
    if tls_srv then tls_srv.stop() end
  end)

  -- Both processes keep requesting at once on the transport the parent warmed up.
  it("issue 9 item 4: parent and child each get their own answers, in every one of 6 runs", function()
    local N = 15
    for run = 1, 6 do
      local t = assert(curl.new())
      assert(t:request { url = srv.url .. "/echo", body = "warm", timeout = 2 })
      local function burst(who)
        local wrong, connects = {}, 0
        for i = 1, N do
          local body = who .. "-" .. run .. "-" .. i
          local res, err = t:request { url = srv.url .. "/echo", body = body, timeout = 2 }
          if not res then wrong[#wrong + 1] = tostring(err)
          elseif res.body ~= body then wrong[#wrong + 1] = body .. " got " .. res.body
          else connects = connects + res.connects end
        end
        return wrong, connects
      end
      local child_ok, wrong, connects = forked(function()
        local w, c = burst("child")
        -- the child's own connection, never the inherited one
        return #w == 0 and c == 1
      end, function() return burst("parent") end)
      t:close()
      assert.is_true(child_ok, "run " .. run .. ": the child got a wrong answer or an error")
      assert.same({}, wrong)
      -- the parent kept its connection
      assert.equal(0, connects)
    end
  end)

  it("issue 9 item 4: a child that drops its inherited TLS connection leaves the parent's alone", function()
    local url = "https://127.0.0.1:" .. tls_srv.port .. "/"
    local t = assert(curl.new { ca_file = certs.ca_file })
    assert(t:request { url = url, body = "warm", timeout = 5 })
    -- a child that makes a request of its own, then closes the transport
    local child_ok = forked(function()
      local res = t:request { url = url, body = "child", timeout = 5 }
      t:close()
      return res ~= nil and res.body == "child" and res.connects == 1
    end, function() end)
    assert.is_true(child_ok)
    local res = assert(t:request { url = url, body = "parent-1", timeout = 5 })
    assert.equal("parent-1", res.body)
    assert.equal(0, res.connects)
    -- a child that only closes it (as garbage collection at exit would)
    child_ok = forked(function()
      t:close()
      return true
    end, function() end)
    assert.is_true(child_ok)
    res = assert(t:request { url = url, body = "parent-2", timeout = 5 })
    assert.equal("parent-2", res.body)
    assert.equal(0, res.connects)
    t:close()
  end)
end) end

-- The same scenarios on the cosocket transport, inside a real nginx: /run makes one request
-- per path in `paths` on one transport, PAUSE seconds apart, and answers with the outcomes.
local RUNNER = [[
  server {
    listen 127.0.0.1:${port};
    location /run { content_by_lua_block { require("spec.support.reuse_runner").run() } }
  }
]]

describe("ngx transport: connection reuse", function()
  local srv, runner

  lazy_setup(function()
    srv = hostile.start()
    runner = nginx.start { name = "reuse-runner", http = RUNNER }
  end)
  lazy_teardown(function()
    if runner then runner.stop() end
    if srv then srv.stop() end
  end)

  local function run(paths)
    local body, code = http.request(("%s/run?port=%d&pause=%s&paths=%s"):format(
      runner.url, srv.port, PAUSE, paths))
    assert.equal(200, code, body)
    return assert(core.json_decode(body))
  end

  it("issue 9 item 4: ngx: a second request never gets the unsolicited answer that followed the first", function()
    local out = run("/twice,/twice,/echo")
    assert.same({ body = "order-1", connects = 1 }, out[1])
    assert.same({ body = "order-2", connects = 1 }, out[2])
    assert.same({ body = "order-3", connects = 1 }, out[3])
  end)

  it("issue 10(c): ngx: an answer with no status line is a protocol error, sent", function()
    local err = run("/garbage")[1]
    assert.equal("protocol", err.kind)
    assert.is_true(err.sent)
    assert.is_false(err.retryable)
    -- bytes with no line end before the close: sent and never offered for a blind resend
    err = run("/nostatus")[1]
    assert.is_true(err.sent)
    assert.is_false(err.retryable)
    assert.is_nil(err.message:find("10000", 1, true))
  end)

  it("issue 10(c): ngx: an answer with no line end before the close is a protocol error",
     function()
    local err = run("/nostatus")[1]
    assert.equal("protocol", err.kind)
    assert.matches("no HTTP status line", err.message, 1, true)
  end)
end)
