-- The cosocket transport (transport/ngx.lua), driven inside a real nginx ("proxy") against a
-- second real nginx ("upstream", plain and TLS). The proxy's /t location makes the request
-- described by its query string and reports the result in X-* headers.
local http = require "socket.http"
local nginx = require "sandbox.nginx"
local helpers = require "helpers"
local tls = require "sandbox.tls"

-- The proxy's side: spec/support/ngx_request.lua, one transport per location and verify
-- setting, kept for the worker as a client would keep it.
local HANDLER = [[ require("spec.support.ngx_request")() ]]

local function binary_body(n)
  local t = {}
  for i = 1, n do t[i] = string.char((i * 7 + 3) % 256) end
  return table.concat(t)
end

describe("ngx transport", function()
  local upstream, proxy, tls_port, tls_port2, refused_port, certs

  lazy_setup(function()
    -- free_port() hands back a port it released: keep the three distinct
    local ports = {}
    while #ports < 3 do
      local p = nginx.free_port()
      if p ~= ports[1] and p ~= ports[2] then ports[#ports + 1] = p end
    end
    tls_port, tls_port2 = ports[2], ports[3]
    upstream = nginx.start{
      name = "upstream",
      port = ports[1],
      prepare = function(prefix, vars)
        certs = assert(tls.make(prefix))
        vars.cert, vars.key, vars.tls_port = certs.cert_file, certs.key_file, tostring(tls_port)
        vars.tls_port2 = tostring(tls_port2)
      end,
      http = [[
        lua_shared_dict up 1m;
        client_body_buffer_size 4m;
        client_max_body_size 4m;
        server {
          listen 127.0.0.1:${port};
          listen 127.0.0.1:${tls_port} ssl;
          listen 127.0.0.1:${tls_port2} ssl;
          ssl_certificate ${cert};
          ssl_certificate_key ${key};
          location / {
            content_by_lua_block { require("spec.support.upstream")() }
          }
          location /raw/ {
            content_by_lua_block { require("spec.support.ngx_bits").raw() }
          }
          location /close {
            keepalive_timeout 0;
            content_by_lua_block { require("spec.support.ngx_bits").say("bye") }
          }
        }
      ]],
    }
    refused_port = nginx.free_port()
    proxy = nginx.start{
      name = "proxy",
      prepare = function(prefix, vars)
        vars.ca = certs.ca_file
        -- a PKCS#1 ("BEGIN RSA PUBLIC KEY") key, the form whose parsing tries SPKI first
        vars.pkcs1 = prefix .. "/pkcs1_public.pem"
        assert(os.execute("openssl genrsa -out " .. prefix .. "/k.pem 2048 2>/dev/null"
          .. " && openssl rsa -in " .. prefix .. "/k.pem -RSAPublicKey_out -out " .. vars.pkcs1
          .. " 2>/dev/null"))
      end,
      http = [[
        client_body_buffer_size 4m;
        client_max_body_size 4m;
        server {
          listen 127.0.0.1:${port};
          location /t {
            lua_ssl_trusted_certificate ${ca};
            lua_ssl_verify_depth 2;
            content_by_lua_block { ]] .. HANDLER .. [[ }
          }
          location /t_pkcs1 {
            lua_ssl_trusted_certificate ${ca};
            lua_ssl_verify_depth 2;
            content_by_lua_block {
              require("spec.support.ngx_bits").parse_pkcs1("${pkcs1}") ]] .. HANDLER .. [[
            }
          }
          location /t_noca {
            content_by_lua_block { ]] .. HANDLER .. [[ }
          }
        }
      ]],
    }
  end)

  lazy_teardown(function()
    if proxy then proxy.stop() end
    if upstream then upstream.stop() end
  end)

  local function call(query, body, location)
    local code, got, headers = helpers.http("POST", proxy.url .. (location or "/t") .. "?" .. query, body or "")
    return code, headers, got
  end

  local function upstream_connections()
    local b = http.request(upstream.url .. "/connections")
    return tonumber(b)
  end

  it("sends the body and returns it exactly (Content-Length answer)", function()
    local body = binary_body(70000)
    local code, h, got = call("port=" .. upstream.port .. "&path=/echo", body)
    assert.are.equal(200, code)
    assert.are.equal("200", h["x-status"])
    assert.are.equal(#body, #got)
    assert.is_true(body == got)
  end)

  it("reads a chunked answer", function()
    local body = binary_body(200000)
    local code, h, got = call("port=" .. upstream.port .. "&path=/chunked", body)
    assert.are.equal(200, code)
    assert.are.equal("200", h["x-status"])
    assert.are.equal(#body, #got)
    assert.is_true(body == got)
  end)

  it("sends Host, Content-Length, Connection, User-Agent and the caller's headers", function()
    local code, _, got = call("port=" .. upstream.port .. "&path=/headers", "{}")
    assert.are.equal(200, code)
    assert.are.equal("POST|127.0.0.1:" .. upstream.port .. "|application/json; charset=UTF-8|keep-alive|2|"
                     .. "pagsmile-issuing (ngx)", got)
  end)

  it("passes a non-200 status through as an answer, not an error", function()
    local code, h, got = call("port=" .. upstream.port .. "&path=/status", "")
    assert.are.equal(200, code)
    assert.are.equal("503", h["x-status"])
    assert.are.equal("busy", got)
  end)

  it("keeps the connection alive: 10 requests, 1 connection", function()
    local before = upstream_connections()
    local code, h = call("n=10&port=" .. upstream.port .. "&path=/echo", "ping")
    assert.are.equal(200, code)
    -- the pool may already hold a connection from an earlier spec: 0 or 1 new ones
    assert.is_true(tonumber(h["x-connects"]) <= 1)
    assert.is_true(upstream_connections() - before <= 1)
    -- a second batch reuses the pooled connection
    local before2 = upstream_connections()
    code, h = call("n=10&port=" .. upstream.port .. "&path=/echo", "ping")
    assert.are.equal(200, code)
    assert.are.equal("0", h["x-connects"])
    assert.are.equal(before2, upstream_connections())
  end)

  it("does not reuse a connection the server closes", function()
    local code, h, got = call("n=3&port=" .. upstream.port .. "&path=/close", "")
    assert.are.equal(200, code)
    assert.are.equal("bye", got)
    -- the first request may take a pooled connection; the next two must open new ones
    assert.is_true(tonumber(h["x-connects"]) >= 2)
    code, h = call("port=" .. upstream.port .. "&path=/echo", "")
    assert.are.equal(200, code)
    assert.are.equal("1", h["x-connects"])
  end)

  it("refused port: transport error, not sent, retryable", function()
    local code, h = call("port=" .. refused_port .. "&path=/echo", "x")
    assert.are.equal(502, code)
    assert.are.equal("transport", h["x-kind"])
    assert.are.equal("false", h["x-sent"])
    assert.are.equal("true", h["x-retryable"])
  end)

  it("slow upstream: timeout after sending, not retryable", function()
    local code, h = call("timeout=0.5&port=" .. upstream.port .. "&path=/slow", "x")
    assert.are.equal(502, code)
    assert.are.equal("timeout", h["x-kind"])
    assert.are.equal("true", h["x-sent"])
    assert.are.equal("false", h["x-retryable"])
  end)

  it("refuses an answer larger than 1 MiB as a protocol error", function()
    local code, h = call("port=" .. upstream.port .. "&path=/big", "")
    assert.are.equal(502, code)
    assert.are.equal("protocol", h["x-kind"])
  end)

  it("TLS with the test CA: verified, body exact, keep-alive", function()
    local body = binary_body(5000)
    local code, h, got = call("tls=1&n=5&port=" .. tls_port .. "&path=/echo", body)
    assert.are.equal(200, code)
    assert.are.equal("200", h["x-status"])
    assert.is_true(body == got)
    assert.is_true(tonumber(h["x-connects"]) <= 1)
  end)

  it("TLS by name (localhost) verifies too", function()
    local code, h, got = call("tls=1&host=localhost&port=" .. tls_port .. "&path=/echo", "hello")
    assert.are.equal(200, code, got)
    assert.are.equal("200", h["x-status"])
    assert.are.equal("hello", got)
  end)

  it("TLS without the CA: transport error, not sent", function()
    -- a port of its own, so no connection verified earlier is in the pool
    local code, h, got = call("tls=1&port=" .. tls_port2 .. "&path=/echo", "x", "/t_noca")
    assert.are.equal(502, code, got)
    assert.are.equal("transport", h["x-kind"], got)
    assert.are.equal("false", h["x-sent"], got)
    assert.is_truthy(got:find("TLS", 1, true))
  end)

  it("TLS without verification works without the CA (a separate pool)", function()
    local code, h, got = call("tls=1&verify=0&port=" .. tls_port2 .. "&path=/echo", "plain", "/t_noca")
    assert.are.equal(200, code)
    assert.are.equal("200", h["x-status"])
    assert.are.equal("plain", got)
  end)

  it("a connection verified under one trust store is not lent to a client without it", function()
    -- /t (with the CA) pools a verified connection to tls_port; /t_noca's transport has a
    -- pool of its own, so it must verify afresh, and fail
    local code = call("tls=1&port=" .. tls_port .. "&path=/echo", "x")
    assert.are.equal(200, code)
    local got, h
    code, h, got = call("tls=1&port=" .. tls_port .. "&path=/echo", "x", "/t_noca")
    assert.are.equal(502, code, got)
    assert.are.equal("transport", h["x-kind"], got)
    assert.are.equal("0", h["x-connects"])
  end)

  describe("reads unusual but valid answers", function()
    for name, body in pairs { no_reason = "ok", continue = "ok", chunk_ext = "hello",
                              te_and_cl = "ok" } do
      it(name, function()
        local code, h, got = call("port=" .. upstream.port .. "&path=/raw/" .. name, "x")
        assert.are.equal(200, code, got)
        assert.are.equal("200", h["x-status"])
        assert.are.equal(body, got)
      end)
    end
  end)

  describe("refuses malformed answers as protocol errors (sent, not retryable)", function()
    local names = {}
    for name in pairs(require "spec.raw_answers") do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      if not ({ no_reason = 1, continue = 1, chunk_ext = 1, te_and_cl = 1 })[name] then
        it(name, function()
          local code, h, got = call("port=" .. upstream.port .. "&path=/raw/" .. name, "x")
          assert.are.equal(502, code, got)
          assert.are.equal("protocol", h["x-kind"], got)
          assert.are.equal("true", h["x-sent"])
          assert.are.equal("false", h["x-retryable"])
        end)
      end
    end
  end)

  it("parsing a key leaves no error behind for nginx's next TLS handshake", function()
    -- a failed trial parse left in OpenSSL's queue surfaces as "ignoring stale global SSL
    -- error" when the next handshake on this thread starts
    local code, _, got = call("tls=1&port=" .. tls_port2 .. "&path=/echo", "pkcs1", "/t_pkcs1")
    assert.are.equal(200, code, got)
    assert.are.equal("pkcs1", got)
    assert.is_nil(proxy.error_log():find("stale global SSL error", 1, true))
  end)

  it("logs no request bodies", function()
    assert.is_nil(proxy.error_log():find("ping", 1, true))
  end)
end)
