-- transport/curl.lua and the libcurl handle of the core, against real nginx servers on loopback.
local nginx = require "sandbox.nginx"
local socket = require "socket"
local http = require "socket.http"
local core = require "pagsmile.issuing.core"
local curl = require "pagsmile.issuing.transport.curl"

local SERVER = [[
lua_shared_dict counters 1m;
server {
  listen 127.0.0.1:${port};
  keepalive_requests 1000;
  keepalive_timeout 60s;
  client_body_buffer_size 1m;
  location = /echo { content_by_lua_block { require("spec.support.echo_server").echo() } }
  location = /status { content_by_lua_block { require("spec.support.echo_server").status() } }
  location = /slow { content_by_lua_block { require("spec.support.echo_server").slow() } }
  location = /drop { content_by_lua_block { require("spec.support.echo_server").drop() } }
  location = /big { content_by_lua_block { require("spec.support.echo_server").big() } }
  location = /get { content_by_lua_block { require("spec.support.echo_server").get() } }
}
]]

local function get(srv, key)
  local body, code = http.request(srv.url .. "/get?k=" .. key)
  assert(code == 200, "counter read failed: " .. tostring(code))
  return body
end

local function count(srv, key) return tonumber(get(srv, key)) or 0 end

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  assert(ok == true or ok == 0, "command failed: " .. cmd)
end

describe("curl transport", function()
  local srv

  lazy_setup(function() srv = nginx.start { name = "curl", http = SERVER } end)
  lazy_teardown(function() if srv then srv.stop() end end)

  it("names itself and exports the libcurl version", function()
    assert.equal("curl", curl.name)
    assert.matches("^%d+%.%d+%.%d+", core.curl_version())
    assert.equal("pagsmile-issuing/" .. core._VERSION .. " libcurl/" .. core.curl_version(),
                 curl.DEFAULT_USER_AGENT)
  end)

  it("POSTs the body byte-exact with its headers and returns status and body", function()
    local t = assert(curl.new())
    local body = "{\"a\":\"\0\1\255 ção\"}\r\n" .. string.rep("z", 70000)
    local res, err = t:request {
      url = srv.url .. "/echo", body = body, timeout = 10, connect_timeout = 5,
      headers = { ["Content-Type"] = "application/json; charset=UTF-8", ["X-Extra"] = "yes" },
    }
    t:close()
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.equal(#body, #res.body)
    assert.is_true(body == res.body)
    assert.equal(1, res.connects)
    assert.is_number(res.time)
    assert.is_true(res.time >= 0 and res.time < 10)
    assert.equal("POST", get(srv, "method"))
    assert.equal("application/json; charset=UTF-8", get(srv, "content_type"))
    assert.equal(curl.DEFAULT_USER_AGENT, get(srv, "user_agent"))
    assert.equal("yes", get(srv, "extra"))
    assert.equal("-", get(srv, "expect"))
  end)

  it("sends a configured user agent and passes any status through", function()
    local t = assert(curl.new { user_agent = "spec-agent/1" })
    local res = assert(t:request { url = srv.url .. "/echo", body = "x" })
    assert.equal("x", res.body)
    assert.equal("spec-agent/1", get(srv, "user_agent"))
    res = assert(t:request { url = srv.url .. "/status", body = "" })
    assert.equal(418, res.status)
    assert.equal("teapot", res.body)
    t:close()
  end)

  it("keeps one connection for 10 requests", function()
    local before = count(srv, "conns")
    local t = assert(curl.new())
    local connects = 0
    for i = 1, 10 do
      local res = assert(t:request { url = srv.url .. "/echo", body = "n" .. i })
      assert.equal("n" .. i, res.body)
      assert.equal(i == 1 and 1 or 0, res.connects)
      connects = connects + res.connects
    end
    t:close()
    assert.equal(1, connects)
    assert.equal(1, count(srv, "conns") - before)
  end)

  it("reports a refused connection as not sent and retryable", function()
    local t = assert(curl.new())
    local res, err = t:request { url = "http://127.0.0.1:" .. nginx.free_port() .. "/", body = "x" }
    t:close()
    assert.is_nil(res)
    assert.equal("transport", err.kind)
    assert.is_false(err.sent)
    assert.is_true(err.retryable)
    assert.equal(7, err.curl_code)
    assert.matches("could not connect %(curl 7: ", err.message)
    assert.matches("could not connect", tostring(err))
  end)

  it("reports a slow answer as a timeout that was sent, within the deadline", function()
    local t = assert(curl.new())
    local t0 = socket.gettime()
    local res, err = t:request { url = srv.url .. "/slow", body = "secret-body", timeout = 1 }
    local elapsed = socket.gettime() - t0
    t:close()
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
    assert.is_true(err.sent)
    assert.is_false(err.retryable)
    assert.equal(28, err.curl_code)
    assert.is_true(elapsed < 3, "took " .. elapsed .. " s")
    assert.is_nil(err.message:find("secret", 1, true))
  end)

  it("reports a connection closed without an answer as sent, not retryable", function()
    local t = assert(curl.new())
    local res, err = t:request { url = srv.url .. "/drop", body = "x" }
    t:close()
    assert.is_nil(res)
    assert.equal("transport", err.kind)
    assert.is_true(err.sent)
    assert.is_false(err.retryable)
    assert.equal(52, err.curl_code)
  end)

  -- libcurl re-sends a request by itself when a reused connection closes without answering
  it("does not re-send a request when a reused connection closes without an answer", function()
    local t = assert(curl.new())
    assert(t:request { url = srv.url .. "/echo", body = "warm" })
    local before = count(srv, "drops")
    local res, err = t:request { url = srv.url .. "/drop", body = "x" }
    assert.is_nil(res)
    assert.equal("transport", err.kind)
    assert.is_true(err.sent)
    assert.is_false(err.retryable)
    assert.equal(1, count(srv, "drops") - before)
    -- the handle stays usable
    res = assert(t:request { url = srv.url .. "/echo", body = "after" })
    assert.equal("after", res.body)
    assert.equal(1, res.connects)
    t:close()
  end)

  it("goes through a proxy when one is given", function()
    local t = assert(curl.new { proxy = srv.url })
    local res = assert(t:request { url = "http://pagsmile.invalid/echo", body = "via proxy" })
    t:close()
    assert.equal(200, res.status)
    assert.equal("via proxy", res.body)
    t = assert(curl.new { proxy = "http://127.0.0.1:" .. nginx.free_port() })
    local err
    res, err = t:request { url = "http://pagsmile.invalid/echo", body = "x" }
    t:close()
    assert.is_nil(res)
    assert.equal("transport", err.kind)
    assert.is_false(err.sent)
    assert.is_true(err.retryable)
  end)

  it("refuses an answer larger than max_body", function()
    local t = assert(curl.new { max_body = 1000 })
    local res = assert(t:request { url = srv.url .. "/big?n=1000", body = "" })
    assert.equal(1000, #res.body)
    local err
    res, err = t:request { url = srv.url .. "/big?n=1001", body = "" }
    assert.is_nil(res)
    assert.equal("protocol", err.kind)
    assert.matches("^answer larger than 1000 bytes", err.message)
    assert.is_true(err.sent)
    assert.is_false(err.retryable)
    t:close()
  end)

  it("refuses an answer larger than 1 MiB by default", function()
    local t = assert(curl.new())
    local res = assert(t:request { url = srv.url .. "/big?n=1048576", body = "" })
    assert.equal(1048576, #res.body)
    local err
    res, err = t:request { url = srv.url .. "/big?n=1048577", body = "" }
    t:close()
    assert.is_nil(res)
    assert.equal("protocol", err.kind)
    assert.matches("^answer larger than 1048576 bytes", err.message)
  end)

  it("rejects header values that would inject other headers", function()
    local t = assert(curl.new())
    assert.has_error(function()
      t:request { url = srv.url .. "/echo", body = "", headers = { ["X-A"] = "a\r\nX-B: b" } }
    end)
    t:close()
  end)

  it("closes idempotently and refuses requests after close", function()
    local t = assert(curl.new())
    t:close()
    t:close()
    assert.has_error(function() t:request { url = srv.url .. "/echo", body = "" } end,
                     "pagsmile.issuing: http handle is closed")
    local m = assert(core.multi())
    m:close()
    m:close()
    for _, call in ipairs {
      function() m:request(srv.url .. "/echo", "") end,
      function() m:start(srv.url .. "/echo", "") end,
      function() m:perform(0, {}) end,
      function() m:result(1) end,
      function() m:cancel(1) end,
      function() m:active() end,
    } do
      assert.has_error(call, "pagsmile.issuing: http handle is closed")
    end
  end)

  it("collects a used handle that was never closed, with a transfer in flight", function()
    local weak = setmetatable({}, { __mode = "v" })
    do
      local m = assert(core.multi {})
      local status = m:request(srv.url .. "/echo", "gc", { timeout_ms = 5000 })
      assert.equal(200, status)
      m:start(srv.url .. "/slow", "in flight", { timeout_ms = 5000 })
      assert.equal(0, m:perform(0.05, {}))
      assert.equal(1, m:active())
      weak[1] = m
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
  end)

  if _VERSION == "Lua 5.4" then
    it("closes a to-be-closed handle at the end of its scope", function()
      local m = assert(load([[
        local core = ...
        local m <close> = core.multi()
        return m
      ]]))(core)
      assert.has_error(function() m:request(srv.url .. "/echo", "") end,
                       "pagsmile.issuing: http handle is closed")
    end)
  end

  it("checks the type of its options and settings", function()
    local m = assert(core.multi())
    assert.has_error(function() m:request(srv.url .. "/echo", "", { timeout_ms = "soon" }) end,
                     "opts.timeout_ms must be a number")
    assert.has_error(function() m:start(srv.url .. "/echo", "", { connect_timeout_ms = -1 }) end,
                     "opts.connect_timeout_ms out of range")
    assert.has_error(function() m:request(srv.url .. "/echo", "", { headers = { 1 } }) end,
                     "opts.headers[1] must be a string")
    assert.has_error(function() m:start(srv.url .. "/echo", "", { headers = { "X-A: a", false } }) end,
                     "opts.headers[2] must be a string")
    assert.has_error(function() m:start(srv.url .. "/echo", nil) end)
    assert.has_error(function() m:perform(0) end)
    assert.has_error(function() m:perform(0 / 0, {}) end)
    -- a refused call takes no slot and leaves the handle usable
    assert.equal(0, m:active())
    local status, body, info = m:request(srv.url .. "/echo", "ok", { headers = { "X-Extra: c" } })
    assert.equal(200, status)
    assert.equal("ok", body)
    assert.equal("c", get(srv, "extra"))
    assert.is_number(info.time_ms)
    assert.equal(1, info.connects)
    m:close()
    assert.has_error(function() core.multi { max_body = "big" } end, "settings.max_body must be a number")
    assert.has_error(function() core.multi { proxy = 8080 } end, "settings.proxy must be a string")
    assert.has_error(function() core.multi "settings" end)
  end)
end)

describe("curl transport over TLS", function()
  local srv, dir

  lazy_setup(function()
    dir = nginx.tmpdir("tls")
    nginx.write_file(dir .. "/ext.cnf", table.concat({
      "subjectAltName=IP:127.0.0.1",
      "basicConstraints=CA:FALSE",
      "keyUsage=digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth",
    }, "\n") .. "\n")
    local cd = "cd " .. dir .. " && "
    sh(cd .. "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2"
       .. " -subj '/CN=pagsmile spec CA'"
       .. " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign")
    sh(cd .. "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1")
    sh(cd .. "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial"
       .. " -out srv.crt -days 2 -extfile ext.cnf")
    srv = nginx.start { name = "curl-tls", http = [[
      server {
        listen 127.0.0.1:${port} ssl;
        ssl_certificate ]] .. dir .. [[/srv.crt;
        ssl_certificate_key ]] .. dir .. [[/srv.key;
        location / { content_by_lua_block { require("spec.support.echo_server").plain() } }
      }
    ]] }
  end)
  lazy_teardown(function()
    if srv then srv.stop() end
    if dir then os.execute("rm -rf " .. dir) end
  end)

  it("verifies the server with the given CA file", function()
    local t = assert(curl.new { ca_file = dir .. "/ca.crt" })
    local res, err = t:request { url = "https://127.0.0.1:" .. srv.port .. "/", body = "tls body" }
    t:close()
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.equal("tls body", res.body)
  end)

  it("fails before sending when the server's CA is not trusted", function()
    local t = assert(curl.new())
    local res, err = t:request { url = "https://127.0.0.1:" .. srv.port .. "/", body = "tls body" }
    t:close()
    assert.is_nil(res)
    assert.equal("transport", err.kind)
    assert.is_false(err.sent)
    assert.is_false(err.retryable)
    assert.equal(60, err.curl_code)
    assert.matches("^TLS certificate verification failed", err.message)
  end)
end)
