-- Issue 11: one transport contract. The same cases run through the libcurl transport (in this
-- process) and the cosocket transport (inside a real nginx, spec/support/transport_probe.lua)
-- against one upstream nginx: status and body, `sent`, `retryable`, the error kinds, the
-- deadline, the setting a failure points at. A custom `transport = table` (README, Settings)
-- is held to the same contract.
local errors = require "pagsmile.issuing.errors"
local json = require "pagsmile.issuing.json"
local nginx = require "sandbox.nginx"
local tls = require "sandbox.tls"
local curl = require "pagsmile.issuing.transport.curl"
local helpers = require "helpers"

describe("transport contract (curl and ngx)", function()
  local upstream, proxy, tls_port, refused_port

  lazy_setup(function()
    tls_port = nginx.free_port()
    upstream = nginx.start{
      name = "contract-upstream",
      prepare = function(prefix, vars)
        local certs = assert(tls.make(prefix))
        vars.cert, vars.key, vars.tls_port = certs.cert_file, certs.key_file, tostring(tls_port)
      end,
      http = [[
        server {
          listen 127.0.0.1:${port};
          listen 127.0.0.1:${tls_port} ssl;
          ssl_certificate ${cert};
          ssl_certificate_key ${key};
          location /echo { content_by_lua_block { require("spec.support.echo_server").plain() } }
          location /busy { content_by_lua_block { require("spec.support.ngx_bits").say("busy", 503) } }
          location /slow { content_by_lua_block { require("spec.support.ngx_bits").late(3, "late") } }
          location /hangup { content_by_lua_block { require("spec.support.ngx_bits").hangup() } }
        }
      ]],
    }
    refused_port = nginx.free_port()
    proxy = nginx.start{
      name = "contract-proxy",
      http = [[
        server {
          listen 127.0.0.1:${port};
          location /t { content_by_lua_block { require("spec.support.transport_probe")() } }
        }
      ]],
    }
  end)

  lazy_teardown(function()
    if proxy then proxy.stop() end
    if upstream then upstream.stop() end
  end)

  local via = {}

  -- What each transport returned, as one shape: { status, body } or { error = {...} }.
  function via.curl(req)
    local t = assert(curl.new())
    local t0 = os.time()
    local res, err = t:request(req)
    t:close()
    if res then return { status = res.status, body = res.body, elapsed = os.time() - t0 } end
    return { elapsed = os.time() - t0, error = { kind = err.kind, message = err.message,
      sent = err.sent, retryable = err.retryable, setting = err.setting, is_error = errors.is_error(err) } }
  end

  function via.ngx(req)
    local code, got = helpers.http("POST", proxy.url .. "/t", json.encode(req))
    assert.equal(200, code)
    return assert(json.decode(got))
  end

  local function url(path, port, scheme)
    return (scheme or "http") .. "://127.0.0.1:" .. (port or upstream.port) .. path
  end

  for _, name in ipairs { "curl", "ngx" } do
    local run = function(req)
      req.timeout, req.connect_timeout = req.timeout or 5, req.connect_timeout or 2
      return via[name](req)
    end

    describe(name, function()
      it("returns status and body of an answer byte for byte", function()
        local r = run { url = url("/echo"), body = '{"a":"José\\u0000"}' }
        assert.is_nil(r.error)
        assert.equal(200, r.status)
        assert.equal('{"a":"José\\u0000"}', r.body)
      end)

      it("passes a non-200 status through as an answer, not an error", function()
        local r = run { url = url("/busy"), body = "" }
        assert.equal(503, r.status)
        assert.equal("busy", r.body)
      end)

      it("a refused connection: transport, not sent, retryable, an error object", function()
        local e = run { url = url("/echo", refused_port), body = "x" }.error
        assert.equal("transport", e.kind)
        assert.is_false(e.sent)
        assert.is_true(e.retryable)
        assert.is_true(e.is_error)
        assert.matches("127.0.0.1:" .. refused_port, e.message, 1, true)
      end)

      it("a slow answer: timeout, sent, not retryable, within the deadline", function()
        local r = run { url = url("/slow"), body = "x", timeout = 1 }
        assert.equal("timeout", r.error.kind)
        assert.is_true(r.error.sent)
        assert.is_false(r.error.retryable)
        assert.is_true(r.elapsed <= 1 + 2)
      end)

      it("a connection closed without an answer: transport, sent, not retryable", function()
        local e = run { url = url("/hangup"), body = "x" }.error
        assert.equal("transport", e.kind)
        assert.is_true(e.sent)
        assert.is_false(e.retryable)
      end)

      it("an untrusted certificate: transport, not sent, not retryable, names the setting", function()
        local e = run { url = url("/echo", tls_port, "https"), body = "x" }.error
        assert.equal("transport", e.kind)
        assert.is_false(e.sent)
        assert.is_false(e.retryable)
        assert.equal(name == "curl" and "ca_file" or "lua_ssl_trusted_certificate", e.setting)
      end)
    end)
  end

  it("a custom transport table is held to the same contract by the client", function()
    local issuing = require "pagsmile.issuing"
    local seen = {}
    local custom = {
      request = function(_, req)
        seen[#seen + 1] = req
        -- plain tables (no metatable) are fine: errors.lua wraps them
        return nil, { kind = "transport", message = "no route", sent = false, retryable = false }
      end,
    }
    local client = assert(issuing.new {
      app_id = "a", partner_id = "p", transport = custom, max_retries = 0,
      platform_public_key = helpers.keypair("platform").public_pem,
      merchant_private_key = helpers.keypair("merchant").private_pem,
    })
    local card, err = client:query_apply_result("C-1")
    assert.is_nil(card)
    assert.is_true(errors.is_error(err))
    assert.equal("transport", err.kind)
    assert.equal("C-1", err.order_no)
    assert.is_string(err.request_id)
    local req = seen[1]
    assert.matches("/issuing/card/query%-apply%-card%-result$", req.url)
    assert.is_string(req.body)
    assert.equal("application/json; charset=UTF-8", req.headers["Content-Type"])
    assert.is_number(req.timeout)
    assert.is_number(req.connect_timeout)
    client:close()
  end)
end)
