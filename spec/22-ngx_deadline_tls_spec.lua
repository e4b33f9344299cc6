-- Issue 9 items 9 and 10: the cosocket transport (transport/ngx.lua) in a real nginx keeps its
-- deadline while nginx's resolver hangs, and judges TLS certificates as the curl transport
-- does. A "proxy" nginx makes the request described by /t's query string against an
-- "upstream" nginx with one TLS server per certificate case.
local socket = require "socket"
local nginx = require "sandbox.nginx"
local helpers = require "helpers"
local tls = require "sandbox.tls"

-- The proxy's side: spec/support/ngx_request.lua with a transport of its own for each
-- request, so no connection verified earlier is reused; `n` requests in a row on it.
local HANDLER = [[ require("spec.support.ngx_request")(true) ]]

-- One TLS server: its listen lines, its certificate, and an answer naming the SNI it got.
local function tls_server(listen, cert)
  return "server { " .. listen .. " ssl_certificate ${" .. cert .. "_cert}; ssl_certificate_key ${"
    .. cert .. "_key}; location / { content_by_lua_block { "
    .. "require('spec.support.ngx_bits').sni() } } }\n"
end

-- A DNS server in a process of its own (this one waits in the request meanwhile): answers an
-- A query for "ok.test" with 127.0.0.1, ignores anything else, and stops by itself.
local RESPONDER = [==[
local socket = require "socket"
local u = assert(socket.udp())
assert(u:setsockname("127.0.0.1", 0))
local _, port = u:getsockname()
io.stdout:write(port, "\n")
io.stdout:flush()
u:settimeout(0.5)
local stop = socket.gettime() + 300
while socket.gettime() < stop do
  local q, ip, p = u:receivefrom()
  if q and #q > 12 then
    local labels, i = {}, 13
    while (q:byte(i) or 0) > 0 do
      labels[#labels + 1] = q:sub(i + 1, i + q:byte(i))
      i = i + q:byte(i) + 1
    end
    if table.concat(labels, ".") == "ok.test" and q:sub(i + 1, i + 2) == "\0\1" then
      u:sendto(q:sub(1, 2) .. "\129\128\0\1\0\1\0\0\0\0" .. q:sub(13, i + 4)
        .. "\192\12\0\1\0\1\0\0\0\60\0\4\127\0\0\1", ip, p)
    end
  end
end
]==]

-- Starts RESPONDER; returns its pid and port.
local function start_responder(dir)
  nginx.write_file(dir .. "/dns.lua", RESPONDER)
  local p = io.popen("lua5.1 '" .. dir .. "/dns.lua' > '" .. dir .. "/dns.port' 2>/dev/null & echo $!")
  local pid = tonumber(p:read("*l"))
  p:close()
  local port
  for _ = 1, 250 do
    port = tonumber(nginx.read_file(dir .. "/dns.port") or "")
    if port then break end
    socket.sleep(0.02)
  end
  return pid, assert(port, "the DNS responder did not start")
end

describe("ngx transport: deadline and certificates (issue 9)", function()
  local upstream, proxy, blackhole, ports, responder_pid

  lazy_setup(function()
    -- free_port() hands back a port it released: keep them distinct
    local seen = {}
    ports = {}
    for _, name in ipairs { "plain", "ip", "named", "wrong", "expired", "proxy" } do
      local p
      repeat p = nginx.free_port() until not seen[p]
      seen[p], ports[name] = true, p
    end
    -- A DNS server that never answers: a bound UDP socket nobody reads. (An unbound port
    -- would answer at once with ICMP port unreachable.)
    blackhole = assert(socket.udp())
    assert(blackhole:setsockname("127.0.0.1", 0))
    local _, dns_port = blackhole:getsockname()
    ports.dns = tonumber(dns_port)

    local ca
    upstream = nginx.start{
      name = "upstream",
      port = ports.plain,
      prepare = function(prefix, vars)
        local certs = assert(tls.make(prefix, {
          ip = { san = "IP:127.0.0.1" },
          wrong = { san = "DNS:wrong.example" },
          expired = { expired = true },
        }))
        ca = certs.ca_file
        vars.named_cert, vars.named_key = certs.cert_file, certs.key_file
        for name, c in pairs(certs.extra) do
          vars[name .. "_cert"], vars[name .. "_key"] = c.cert_file, c.key_file
        end
        for name, p in pairs(ports) do vars[name .. "_port"] = tostring(p) end
      end,
      http = [[
        server {
          listen 127.0.0.1:${port};
          location / { content_by_lua_block { require("spec.support.ngx_bits").say("plain ok") } }
        }
      ]] .. tls_server("listen 127.0.0.1:${ip_port} ssl; listen 127.0.0.2:${ip_port} ssl;", "ip")
         .. tls_server("listen 127.0.0.1:${named_port} ssl;", "named")
         .. tls_server("listen 127.0.0.1:${wrong_port} ssl;", "wrong")
         .. tls_server("listen 127.0.0.1:${expired_port} ssl;", "expired"),
    }
    proxy = nginx.start{
      name = "proxy",
      port = ports.proxy,
      prepare = function(prefix, vars)
        local dns_ok_port
        responder_pid, dns_ok_port = start_responder(prefix)
        vars.ca, vars.dns_port, vars.dns_ok_port = ca, tostring(ports.dns), tostring(dns_ok_port)
      end,
      http = [[
        resolver 127.0.0.1:${dns_port} ipv6=off;
        resolver_timeout 30s;
        server {
          listen 127.0.0.1:${port};
          location /t {
            lua_ssl_trusted_certificate ${ca};
            lua_ssl_verify_depth 2;
            content_by_lua_block { ]] .. HANDLER .. [[ }
          }
          location /t_noca {
            content_by_lua_block { ]] .. HANDLER .. [[ }
          }
          location /t_dns {
            resolver 127.0.0.1:${dns_ok_port} ipv6=off;
            content_by_lua_block { ]] .. HANDLER .. [[ }
          }
        }
      ]],
    }
  end)

  lazy_teardown(function()
    if proxy then proxy.stop() end
    if upstream then upstream.stop() end
    if blackhole then blackhole:close() end
    if responder_pid then os.execute("kill " .. responder_pid .. " 2>/dev/null") end
  end)

  -- Has the proxy fetch url; returns the proxy's status, headers, body and the seconds taken.
  local function call(url, query, location)
    local t0 = socket.gettime()
    local code, got, headers = helpers.http("GET", proxy.url .. (location or "/t") .. "?url="
      .. url:gsub("[^%w]", function(c) return ("%%%02X"):format(c:byte()) end) .. (query or ""))
    return code, headers, got, socket.gettime() - t0
  end

  -- A certificate failure is a misconfiguration: not sent, and retrying cannot help.
  local function assert_cert_failure(code, h, got)
    assert.are.equal(502, code, got)
    assert.are.equal("transport", h["x-kind"], got)
    assert.are.equal("false", h["x-sent"], got)
    assert.are.equal("false", h["x-retryable"], got)
  end

  it("issue 9 item 10(b): https://127.0.0.1 with an IP-SAN-only certificate verifies; no SNI", function()
    local code, h, got = call("https://127.0.0.1:" .. ports.ip .. "/")
    assert.are.equal(200, code, got)
    assert.are.equal("200", h["x-status"])
    -- RFC 6066 §3: an IP literal is never sent as a server name
    assert.are.equal("sni=", got)
  end)

  it("issue 9 item 10(b): the address is checked: 127.0.0.2 against a certificate for 127.0.0.1", function()
    assert_cert_failure(call("https://127.0.0.2:" .. ports.ip .. "/"))
  end)

  it("issue 9 item 10(a): an untrusted CA is a transport error, not sent, not retryable", function()
    assert_cert_failure(call("https://127.0.0.1:" .. ports.ip .. "/", nil, "/t_noca"))
  end)

  it("issue 9 item 10(a): a certificate for another name is not retryable", function()
    assert_cert_failure(call("https://localhost:" .. ports.wrong .. "/"))
  end)

  it("issue 9 item 10(a): an expired certificate is not retryable", function()
    local code, h, got = call("https://127.0.0.1:" .. ports.expired .. "/")
    assert_cert_failure(code, h, got)
    assert.is_truthy(got:find("certificate", 1, true), got)
  end)

  it("a server name still goes out as SNI and is verified", function()
    local code, _, got = call("https://localhost:" .. ports.named .. "/")
    assert.are.equal(200, code, got)
    assert.are.equal("sni=localhost", got)
    -- the ip certificate names only 127.0.0.1 (and no CN fallback): "localhost" must not pass
    assert_cert_failure(call("https://localhost:" .. ports.ip .. "/"))
    local h
    code, h, got = call("https://localhost:" .. ports.expired .. "/")
    assert_cert_failure(code, h, got)
    assert.is_truthy(got:find("certificate", 1, true), got)
  end)

  it("a handshake with a server that does not speak TLS stays retryable, as on curl", function()
    local code, h, got = call("https://127.0.0.1:" .. ports.plain .. "/")
    assert.are.equal(502, code, got)
    assert.are.equal("transport", h["x-kind"], got)
    assert.are.equal("false", h["x-sent"], got)
    assert.are.equal("true", h["x-retryable"], got)
  end)

  it("issue 9 item 9: a lookup nginx's resolver never answers ends by the deadline, not at resolver_timeout", function()
    for _ = 1, 2 do -- the second call joins the lookup the first left pending
      local code, h, got, took = call("http://never.invalid:1234/", "&timeout=2&connect_timeout=1")
      assert.are.equal(502, code, got)
      assert.is_true(took < 2 + 1.5, "took " .. took .. " s")
      -- as curl's connect timeout: nothing sent, so another attempt is safe
      assert.are.equal("timeout", h["x-kind"], got)
      assert.are.equal("false", h["x-sent"], got)
      assert.are.equal("true", h["x-retryable"], got)
    end
  end)

  it("issue 9 item 9: a name the resolver answers connects as before, then from the pool", function()
    local code, h, got = call("http://ok.test:" .. ports.plain .. "/", "&n=3", "/t_dns")
    assert.are.equal(200, code, got)
    assert.are.equal("200", h["x-status"])
    assert.are.equal("plain ok", got)
    assert.are.equal("1", h["x-connects"])
  end)

  it("issue 9 item 9: the worker is fine after a lookup was abandoned", function()
    local code, h, got = call("http://127.0.0.1:" .. ports.plain .. "/")
    assert.are.equal(200, code, got)
    assert.are.equal("200", h["x-status"])
    assert.are.equal("plain ok", got)
    code, h, got = call("https://127.0.0.1:" .. ports.ip .. "/")
    assert.are.equal(200, code, got)
    assert.are.equal("200", h["x-status"])
    assert.are.equal("sni=", got)
    -- nginx itself saw nothing wrong
    local log = proxy.error_log()
    assert.is_nil(log:find("%[alert%]") or log:find("%[crit%]") or log:find("%[emerg%]"), log)
  end)
end)
