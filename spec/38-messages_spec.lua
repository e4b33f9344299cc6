-- Messages that say what to do (issue 10 items 6 and 7): a configuration mistake that makes
-- every answer fail the same way stops the call early and names the setting to check (the
-- outcome of an apply stays "unknown": it may have been processed); an `api` refusal says
-- what it points at; transport errors name host:port; a certificate failure points at the
-- trust store; a method called with a dot instead of a colon says how to call it.
-- Against the real sandbox over loopback, on the curl transport (this process) and on the
-- ngx transport (fault_kit's runner nginx).
local issuing = require "pagsmile.issuing"
local launch = require "sandbox.launch"
local helpers = require "helpers"
local kit = require "fault_kit"

local APPLY, QUERY = kit.APPLY, kit.QUERY

-- The early stop is a correctness bound: the default `timeout` (30 s) is not waited out.
local EARLY = 3

describe("messages", function()
  local sb, runner
  local transports = kit.fixture(lazy_setup, lazy_teardown, before_each,
    function(s, r) sb, runner = s, r end)

  -- The client's default timeout, unless `over` says otherwise.
  local function options(over)
    local o = sb:client_options()
    for k, v in pairs(over or {}) do o[k] = v end
    return o
  end

  local function order_of(order_no) return kit.order_of(sb, order_no) end

  -- No key material in a message: no 24-character run of a key's Base64 body.
  local function assert_no_key(text)
    for _, pem in ipairs { sb.keys.platform_public, sb.keys.merchant_private,
                           helpers.keypair("stranger").private_pem,
                           helpers.keypair("stranger").public_pem } do
      local body = helpers.pem_body(pem)
      for i = 1, #body - 24, 24 do
        assert.is_nil(text:find(body:sub(i, i + 23), 1, true), "key material in: " .. text)
      end
    end
  end

  for _, t in ipairs(transports) do
    describe("on the " .. t.name .. " transport", function()
      local function apply(biz, over)
        return t.run { options = options(over), call = "apply", biz_data = biz }
      end
      local function query(order_no, over)
        return t.run { options = options(over), call = "query", order_no = order_no }
      end

      -- The apply may have been processed: the error never says "no card", names the
      -- order to query, and says which setting to check.
      local function assert_unknown_naming(res, biz, setting)
        assert.is_nil(res.card)
        local err = res.err
        assert.equal("unknown", err.outcome)
        assert.is_true(err.sent)
        assert.is_false(err.retryable)
        assert.equal(biz.order_no, err.order_no)
        assert.matches("outcome of the apply is unknown", err.message, 1, true)
        assert.matches(setting, err.message, 1, true)
        assert.matches(setting, err.text, 1, true)
        assert.matches(biz.order_no, err.text, 1, true)
        assert.is_nil(err.message:find("no card", 1, true))
        assert_no_key(err.text)
        assert.is_true(res.elapsed < EARLY, ("took %.2f s"):format(res.elapsed))
      end

      it("issue 10 item 6: a merchant key the platform does not know stops the apply early, "
         .. "outcome unknown, naming merchant_private_key", function()
        local biz = helpers.biz()
        local res = apply(biz, { merchant_private_key = helpers.keypair("stranger").private_pem })
        assert_unknown_naming(res, biz, "merchant_private_key")
        assert.equal("protocol", res.err.kind)
        assert.equal(1, order_of(biz.order_no).applies) -- it was processed: never "no card"
      end)

      it("issue 10 item 6: every answer sealed for another key (wrong_key fault) stops early",
         function()
        local biz = helpers.biz()
        assert(sb:faults { { kind = "wrong_key", order_no = biz.order_no, times = 100 } })
        local res = apply(biz)
        assert_unknown_naming(res, biz, "merchant_private_key")
        assert.equal(1, order_of(biz.order_no).applies)
        -- once the answers decrypt again, the order's card is there
        assert(sb:faults(nil))
        local q = query(biz.order_no)
        assert.equal(biz.order_no, q.card.order_no)
      end)

      it("issue 10 item 6: a wrong base_url path (HTTP 404 on every attempt) stops early, "
         .. "outcome unknown, naming base_url", function()
        local biz = helpers.biz()
        local res = apply(biz, { base_url = sb.url .. "/wrong/prefix" })
        assert_unknown_naming(res, biz, "base_url")
        assert.equal("protocol", res.err.kind)
        assert.equal(404, res.err.http_status)
      end)

      it("issue 10 item 6: a wrong base_url path names base_url on a query too", function()
        local res = query(helpers.order_no(), { base_url = sb.url .. "/wrong" })
        assert.equal(404, res.err.http_status)
        assert.matches("base_url", res.err.message, 1, true)
        assert.is_true(res.elapsed < EARLY, ("took %.2f s"):format(res.elapsed))
      end)

      it("issue 10 item 6: one undecryptable answer, then a good one, still settles", function()
        local biz = helpers.biz()
        assert(sb:faults { { kind = "wrong_key", order_no = biz.order_no, path = APPLY } })
        local res = apply(biz)
        assert.is_nil(res.err)
        assert.equal(biz.order_no, res.card.order_no)
        assert.equal(1, order_of(biz.order_no).applies)
      end)

      it("issue 10 item 6: failures that differ (an undecryptable apply, then 503s) keep "
         .. "settling until the deadline", function()
        local biz = helpers.biz()
        assert(sb:faults {
          { order_no = biz.order_no, path = APPLY, kind = "wrong_key" },
          { order_no = biz.order_no, path = QUERY, kind = "http_503", times = 100 },
        })
        local res = apply(biz, { timeout = 2, connect_timeout = 1 })
        assert.equal("unknown", res.err.outcome)
        -- settling went on past max_retries (2): the failures were not all the same
        assert.is_true(100 - assert(sb:settings()).faults[2].times > 3)
      end)

      it("issue 10 item 7: an unknown app_id is an api error whose message says to check "
         .. "app_id, without quoting the platform", function()
        local res = apply(helpers.biz(), { app_id = "no-such-app" })
        local err = res.err
        assert.equal("api", err.kind)
        assert.equal("invalid-app-id", err.sub_code)
        assert.matches("^the platform refused the request", err.message)
        assert.matches("check app_id", err.message, 1, true)
        assert.matches("check app_id", err.text, 1, true)
        assert.is_nil(err.text:find("no-such-app", 1, true))
        assert.is_nil(err.text:find("invalid app_id", 1, true)) -- the emulator's sub_msg
      end)

      it("issue 10 item 7: an unknown partner_id says to check partner_id", function()
        local err = apply(helpers.biz(), { partner_id = "no-such-partner" }).err
        assert.equal("invalid-partner-id", err.sub_code)
        assert.matches("check partner_id", err.message, 1, true)
        assert.is_nil(err.text:find("no-such-partner", 1, true))
      end)

      it("issue 10 item 7: a platform key the platform cannot decrypt with (invalid-signature) "
         .. "says to check platform_public_key and app_id", function()
        local res = apply(helpers.biz(),
          { platform_public_key = helpers.keypair("stranger").public_pem })
        local err = res.err
        assert.equal("api", err.kind)
        assert.equal("invalid-signature", err.sub_code)
        assert.matches("platform_public_key", err.message, 1, true)
        assert.matches("app_id", err.message, 1, true)
        assert_no_key(err.text)
      end)

      it("issue 10 item 7: a transport error names host:port", function()
        local port = helpers.free_port()
        local res = apply(helpers.biz(), { base_url = "http://127.0.0.1:" .. port,
                                           max_retries = 0 })
        assert.equal("transport", res.err.kind)
        assert.is_false(res.err.sent)
        assert.matches("127.0.0.1:" .. port, res.err.message, 1, true)
        assert.matches("127.0.0.1:" .. port, res.err.text, 1, true)
      end)
    end)
  end

  describe("TLS", function()
    local tsb

    lazy_setup(function() tsb = launch.start { tls = true } end)
    lazy_teardown(function() if tsb then tsb:stop() end end)

    local function tls_options(over)
      local o = tsb:client_options()
      o.ca_file = nil
      for k, v in pairs(over or {}) do o[k] = v end
      return o
    end

    it("issue 10 item 7: a certificate the trust store does not know (curl) names host:port "
       .. "and ca_file", function()
      local client = assert(issuing.new(tls_options()))
      local card, err = client:apply_card(helpers.biz())
      client:close()
      assert.is_nil(card)
      assert.equal("transport", err.kind)
      assert.is_false(err.sent)
      assert.matches("ca_file", err.message, 1, true)
      assert.matches("127.0.0.1:" .. tsb.port, err.message, 1, true)
      assert.equal("ca_file", err.setting)
    end)

    it("issue 10 item 7: a ca_file that cannot be loaded (curl) names ca_file", function()
      local client = assert(issuing.new(tls_options { ca_file = tsb.prefix .. "/no-such-ca.pem" }))
      local card, err = client:apply_card(helpers.biz())
      client:close()
      assert.is_nil(card)
      assert.matches("ca_file", err.message, 1, true)
      assert.is_nil(err.message:find(tsb.prefix, 1, true)) -- the path is the caller's own
    end)

    it("issue 10 item 7: a certificate nginx does not trust (ngx) names host:port and "
       .. "where nginx's trust comes from", function()
      local res = kit.run_ngx(runner, { options = tls_options(), call = "apply",
                                        biz_data = helpers.biz() })
      local err = res.err
      assert.equal("transport", err.kind)
      assert.is_false(err.sent)
      assert.matches("lua_ssl_trusted_certificate", err.message, 1, true)
      assert.matches("ca_file", err.message, 1, true)
      assert.matches("127.0.0.1:" .. tsb.port, err.message, 1, true)
    end)
  end)

  describe("issue 10 item 7: a method called with a dot instead of a colon", function()
    local client
    lazy_setup(function() client = assert(issuing.new(options())) end)
    lazy_teardown(function() if client then client:close() end end)

    -- not tail calls: a caller's line is there to be named, as in `local card = client.x{}`
    local calls = {
      { "apply_card", function(c) local r = c.apply_card(helpers.biz()); return r end },
      { "query_apply_result", function(c) local r = c.query_apply_result("ORDER-1"); return r end },
      { "apply_card_and_wait", function(c) local r = c.apply_card_and_wait(helpers.biz()); return r end },
      { "parse_notification", function(c) local r = c.parse_notification("{}"); return r end },
      { "confirm_notification", function(c) local r = c.confirm_notification("{}"); return r end },
      { "close", function(c) local r = c.close(); return r end },
    }
    for _, case in ipairs(calls) do
      local name, call = case[1], case[2]
      it("client." .. name .. "(...) says to call client:" .. name .. "(...)", function()
        local before = helpers.api_requests(sb)
        local ok, msg = pcall(call, client)
        assert.is_false(ok)
        assert.matches("client:" .. name .. "(", msg, 1, true)
        -- raised at the caller's line, not inside the library
        assert.matches("38%-messages_spec%.lua:%d+:", msg)
        assert.equal(before, helpers.api_requests(sb))
      end)
    end

    it("the client still works after a dot call", function()
      pcall(client.apply_card, helpers.biz())
      assert(client:apply_card(helpers.biz()))
    end)
  end)
end)
