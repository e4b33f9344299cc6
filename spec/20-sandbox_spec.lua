-- The local sandbox, driven from the test process the way a merchant would: core.seal for
-- the request, luasocket for HTTP, envelope.open for the answer. Callbacks land in a receiver
-- nginx started here.
local ltn12 = require "ltn12"
local socket = require "socket"
local core = require "pagsmile.issuing.core"
local open_answer = require("pagsmile.issuing.envelope").open
local nginx = require "sandbox.nginx"
local launch = require "sandbox.launch"
local helpers = require "helpers"

local APPLY = "/issuing/card/apply"
local QUERY = "/issuing/card/query-apply-card-result"
local TWO53 = "9007199254740992"

local function holder() return helpers.holder { last_name = "Silva" } end

-- Decimal digits of a long, whatever the runtime gave back (integer or decimal string).
local function digits(v)
  local l = core.long(v)
  return l and tostring(l)
end

-- a > b for two decimal strings of equal length
local function dec_gt(a, b) return #a > #b or (#a == #b and a > b) end

local function post(url, body)
  return helpers.http("POST", url, body, { ["Content-Type"] = "application/json; charset=UTF-8" })
end

local function get(url)
  local code, body = helpers.http("GET", url)
  return code, body
end

describe("sandbox", function()
  local sb, receiver, platform_pub, merchant_priv, merchant_pub
  local seq = 0

  local function fresh(tag)
    seq = seq + 1
    return (tag or "o") .. "-" .. seq .. "-" .. math.random(1, 1e6)
  end

  -- A request envelope; over: fields to replace (false removes one).
  local function envelope(biz, over)
    local rk, bd = core.seal(platform_pub, biz)
    local env = { app_id = sb.app_id, partner_id = sb.partner_id, sub_partner_id = "",
                  timestamp = "2024-05-06 07:08:09", format = "JSON", version = "2.0",
                  request_id = fresh("req"), sign_type = "RSA", random_key = rk, biz_data = bd }
    for k, v in pairs(over or {}) do
      if v == false then env[k] = nil else env[k] = v end
    end
    return env
  end

  -- Returns http status, decoded envelope, decrypted data (or nil), raw body.
  local function call(path, biz, over)
    local code, body = post(sb.url .. path, assert(core.json_encode(envelope(biz, over))))
    local env = core.json_decode(body)
    local data = open_answer(merchant_priv, body)
    return code, env, data, body
  end

  local function apply_biz(order_no, extra)
    local biz = { order_no = order_no, card_type = 1, card_scheme = 3, holder = holder() }
    for k, v in pairs(extra or {}) do biz[k] = v end
    return biz
  end

  lazy_setup(function()
    sb = launch.start{}
    platform_pub = assert(core.public_key(sb.platform_public_key))
    merchant_priv = assert(core.private_key(sb.merchant_private_key))
    merchant_pub = assert(core.public_key(sb.merchant_public_key))
    receiver = nginx.start{
      name = "receiver",
      http = [[
        lua_shared_dict hooks 4m;
        server {
          listen 127.0.0.1:${port};
          location /hook { content_by_lua_block { require("spec.support.hook_receiver").hook() } }
          location /flaky { content_by_lua_block { require("spec.support.hook_receiver").flaky() } }
          location /count { content_by_lua_block { require("spec.support.hook_receiver").count() } }
          location /body { content_by_lua_block { require("spec.support.hook_receiver").body() } }
        }
      ]],
    }
  end)

  lazy_teardown(function()
    if receiver then receiver.stop() end
    if sb then sb:stop() end
  end)

  local function hook_count()
    local _, b = get(receiver.url .. "/count")
    return tonumber(b) or 0
  end

  describe("apply", function()
    it("completes and decrypts with the merchant key", function()
      local order_no = fresh()
      local code, env, data = call(APPLY, apply_biz(order_no, { pay_account_num = "acc-1" }))
      assert.are.equal(200, code)
      assert.are.equal("10000", env.code)
      assert.are.equal("Success", env.msg)
      assert.are.equal("RSA", env.sign_type)
      assert.are.equal(sb.app_id, env.app_id)
      assert.are.equal("string", type(env.random_key))
      assert.are.equal("string", type(env.data))
      assert.is_table(data)
      assert.are.equal(order_no, data.order_no)
      assert.are.equal(5, data.order_status)
      assert.are.equal(1, data.order_count)
      assert.are.equal(3, data.card_scheme)
      assert.are.equal(1, data.card_type)
      assert.are.equal(false, data.is_share_card)
      assert.are.equal("658704", data.card_bin)
      assert.are.equal("Ana Silva", data.holder_name)
      assert.is_truthy(data.card_token:match("^tok_" .. ("%x"):rep(24) .. "$"))
      assert.is_truthy(data.card_pan:match("^658704%*%*%*%*%*%*%d%d%d%d$"))
      assert.is_nil(data.pay_account_num) -- only the query answer carries it
    end)

    it("gives card_id and holder_id above 2^53, exact", function()
      local _, env1, a = call(APPLY, apply_biz(fresh()))
      local _, env2, b = call(APPLY, apply_biz(fresh()))
      assert.are.equal("10000", env1.code)
      assert.are.equal("10000", env2.code)
      for _, v in ipairs{ a.card_id, a.holder_id, b.card_id, b.holder_id } do
        if math.type then
          assert.are.equal("integer", math.type(v))
        else
          assert.are.equal("string", type(v)) -- beyond 2^53 on 5.1/LuaJIT
        end
        assert.is_true(dec_gt(digits(v), TWO53))
      end
      -- ids count up by one per id handed out: card, holder, card, holder
      local last = tonumber(digits(a.card_id):sub(-6))
      assert.are.equal(last + 1, tonumber(digits(a.holder_id):sub(-6)))
      assert.are.equal(last + 2, tonumber(digits(b.card_id):sub(-6)))
      assert.are.equal(digits(a.card_id):sub(1, 10), digits(b.card_id):sub(1, 10))
    end)

    it("keeps a given holder_id above 2^53 exactly", function()
      local biz = { order_no = fresh(), card_type = 3, card_scheme = 3,
                    holder_id = core.long("9007199254740999"), card_bin = "658705",
                    is_share_card = true }
      local _, env, data = call(APPLY, biz)
      assert.are.equal("10000", env.code)
      assert.are.equal("9007199254740999", digits(data.holder_id))
      assert.are.equal("Sandbox Holder", data.holder_name)
      assert.are.equal("658705", data.card_bin)
      assert.are.equal(true, data.is_share_card)
      assert.is_truthy(data.card_pan:match("^658705%*%*%*%*%*%*%d%d%d%d$"))
    end)
  end)

  describe("error answers", function()
    local function expect_error(code, env, want_code, want_sub)
      assert.are.equal(200, code)
      assert.are.equal(want_code, env.code)
      assert.are.equal(want_sub, env.sub_code)
      assert.are.equal("RSA", env.sign_type)
      assert.are.equal(sb.app_id, env.app_id)
      assert.is_nil(env.data)
    end

    it("body that is not JSON: 40001 invalid-request", function()
      local code, body = post(sb.url .. APPLY, "{not json")
      local env = core.json_decode(body)
      expect_error(code, env, "40001", "invalid-request")
      assert.are.equal("Missing Arguments", env.msg)
    end)

    it("wrong app_id / partner_id: 40002", function()
      local code, env = call(APPLY, apply_biz(fresh()), { app_id = "someone-else" })
      expect_error(code, env, "40002", "invalid-app-id")
      assert.are.equal("Business Failed", env.msg)
      code, env = call(APPLY, apply_biz(fresh()), { partner_id = "nobody" })
      expect_error(code, env, "40002", "invalid-partner-id")
    end)

    it("bad or missing envelope fields: 40001 invalid-/missing-<field>", function()
      local code, env = call(APPLY, apply_biz(fresh()), { timestamp = "2024-05-06T07:08:09Z" })
      expect_error(code, env, "40001", "invalid-timestamp")
      code, env = call(APPLY, apply_biz(fresh()), { format = "XML" })
      expect_error(code, env, "40001", "invalid-format")
      code, env = call(APPLY, apply_biz(fresh()), { sign_type = "MD5" })
      expect_error(code, env, "40001", "invalid-sign_type")
      code, env = call(APPLY, apply_biz(fresh()), { version = false })
      expect_error(code, env, "40001", "missing-version")
      code, env = call(APPLY, apply_biz(fresh()), { request_id = false })
      expect_error(code, env, "40001", "missing-request_id")
    end)

    it("undecryptable biz_data: 40002 invalid-signature", function()
      local rk, bd = core.seal(merchant_pub, apply_biz(fresh())) -- the wrong public key
      local code, env = call(APPLY, apply_biz(fresh()), { random_key = rk, biz_data = bd })
      expect_error(code, env, "40002", "invalid-signature")
      assert.are.equal("invalid signature", env.sub_msg)
    end)

    it("a validation failure: 40002 invalid-parameter naming the field", function()
      local biz = apply_biz(fresh())
      biz.card_type = nil
      local code, env = call(APPLY, biz)
      expect_error(code, env, "40002", "invalid-parameter")
      assert.is_truthy(env.sub_msg:match("^card_type: .+"))
      biz = apply_biz(fresh())
      biz.holder.email = "not-an-email"
      code, env = call(APPLY, biz)
      expect_error(code, env, "40002", "invalid-parameter")
      assert.is_truthy(env.sub_msg:match("^holder%.email: .+"))
    end)

    it("a duplicate order_no: 40002 duplicate-order-no, every attempt counted", function()
      local order_no = fresh()
      local _, env, first = call(APPLY, apply_biz(order_no))
      assert.are.equal("10000", env.code)
      local code
      code, env = call(APPLY, apply_biz(order_no))
      expect_error(code, env, "40002", "duplicate-order-no")
      assert.are.equal("order_no already exists", env.sub_msg)
      local orders = assert(sb:orders())
      assert.are.equal(2, orders[order_no].applies)
      assert.are.equal(digits(first.card_id), digits(orders[order_no].card_id))
    end)

    it("a duplicate request_id: 40002 duplicate-request-id", function()
      local rid = fresh("rid")
      local _, env = call(APPLY, apply_biz(fresh()), { request_id = rid })
      assert.are.equal("10000", env.code)
      local order_no = fresh()
      local code
      code, env = call(APPLY, apply_biz(order_no), { request_id = rid })
      expect_error(code, env, "40002", "duplicate-request-id")
      assert.is_nil(assert(sb:orders())[order_no])
    end)

    it("query for an unknown order: 40002 order-not-found", function()
      local code, env = call(QUERY, { order_no = fresh("missing") })
      expect_error(code, env, "40002", "order-not-found")
      assert.are.equal("order does not exist", env.sub_msg)
    end)

    it("a GET: 40004; an unknown path: HTTP 404 with an envelope", function()
      local code, body = get(sb.url .. APPLY)
      local env = core.json_decode(body)
      assert.are.equal(200, code)
      assert.are.equal("40004", env.code)
      assert.are.equal("Method Not Supported", env.msg)
      local env2
      code, env2 = call("/issuing/card/no-such-thing", { order_no = "x" })
      assert.are.equal(404, code)
      assert.are.equal("40004", env2.code)
    end)
  end)

  describe("pending orders", function()
    it("one order stays processing until queried N times", function()
      local order_no = fresh("p")
      assert(sb:pending(order_no, 2))
      local _, env, data = call(APPLY, apply_biz(order_no, { initial_balance = "10.00",
                                                             card_remark = "team" }))
      assert.are.equal("10000", env.code)
      assert.are.equal(3, data.order_status)
      assert.are.equal("", data.card_token)
      assert.are.equal("", data.card_pan)
      _, env, data = call(QUERY, { order_no = order_no })
      assert.are.equal("10000", env.code)
      assert.are.equal(3, data.order_status)
      assert.are.equal("", data.card_pan)
      _, env, data = call(QUERY, { order_no = order_no })
      assert.are.equal("10000", env.code)
      assert.are.equal(5, data.order_status)
      assert.is_truthy(data.card_token:match("^tok_%x+$"))
      assert.is_truthy(data.card_pan:match("^658704%*+%d%d%d%d$"))
      assert.are.equal("10.00", data.initial_balance)
      assert.are.equal("team", data.card_remark)
      local again
      _, env, again = call(QUERY, { order_no = order_no })
      assert.are.equal("10000", env.code)
      assert.are.equal(data.card_token, again.card_token)
      assert.are.equal(digits(data.card_id), digits(again.card_id))
      assert.are.equal(3, assert(sb:orders())[order_no].queries)
    end)

    it("settings.pending_polls applies to every new order", function()
      assert(sb:settings{ pending_polls = 1 })
      local order_no = fresh("pp")
      local _, _, data = call(APPLY, apply_biz(order_no))
      assert.are.equal(3, data.order_status)
      _, _, data = call(QUERY, { order_no = order_no })
      assert.are.equal(5, data.order_status)
      assert(sb:settings{ pending_polls = 0 })
      _, _, data = call(APPLY, apply_biz(fresh()))
      assert.are.equal(5, data.order_status)
    end)
  end)

  describe("stats", function()
    it("count requests per path and TCP connections", function()
      assert(sb:reset())
      local s = assert(sb:stats())
      assert.are.equal(0, s.connections)
      assert.is_nil(s.requests[APPLY])
      -- two requests on two connections (luasocket closes after each)
      call(QUERY, { order_no = "nope-1" })
      call(QUERY, { order_no = "nope-2" })
      -- three requests on one kept-alive connection
      local c = assert(socket.connect("127.0.0.1", sb.port))
      c:settimeout(10)
      for i = 1, 3 do
        local body = assert(core.json_encode(envelope({ order_no = "ka-" .. i })))
        assert(c:send("POST " .. QUERY .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      .. "application/json\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body))
        local len
        repeat
          local line = assert(c:receive("*l"))
          len = len or tonumber(line:lower():match("^content%-length:%s*(%d+)"))
        until line == ""
        local answer = assert(c:receive(len))
        assert.are.equal("order-not-found", core.json_decode(answer).sub_code)
      end
      c:close()
      s = assert(sb:stats())
      assert.are.equal(5, s.requests[QUERY])
      assert.are.equal(3, s.connections)
    end)

    it("reset forgets orders and settings but not the id sequence", function()
      local _, _, a = call(APPLY, apply_biz(fresh()))
      assert(sb:settings{ pending_polls = 4 })
      assert(sb:reset())
      assert.is_nil(next(assert(sb:orders())))
      local _, _, b = call(APPLY, apply_biz(fresh()))
      assert.are.equal(5, b.order_status)
      assert.is_true(dec_gt(digits(b.card_id), digits(a.card_id)))
    end)
  end)

  describe("callbacks", function()
    after_each(function()
      local s = assert(sb:settings{ callback_url = false, callback_plain = false })
      assert.is_nil(s.callback_url)
    end)

    it("an encrypted notification arrives and decrypts with the merchant key", function()
      assert(sb:reset())
      local before = hook_count()
      assert(sb:settings{ callback_url = receiver.url .. "/hook" })
      local order_no = fresh("cb")
      local _, env, card = call(APPLY, apply_biz(order_no))
      assert.are.equal("10000", env.code)
      assert.is_truthy(helpers.wait_for(function() return hook_count() > before end))
      local _, raw = get(receiver.url .. "/body?n=" .. (before + 1))
      local note = assert(core.json_decode(raw))
      assert.are.equal(sb.partner_id, note.partner_id)
      assert.are.equal("", note.sub_partner_id)
      assert.are.equal("1.0", note.version)
      assert.are.equal(1, note.notify_type)
      assert.are.equal("RSA", note.sign_type)
      assert.is_truthy(note.timestamp:match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$"))
      assert.are.equal("string", type(note.request_id))
      assert.are.equal("string", type(note.biz_data))
      local biz = assert(core.unseal(merchant_priv, note.random_key, note.biz_data))
      assert.are.equal(order_no, biz.order_no)
      assert.are.equal(card.card_token, biz.card_token)
      assert.are.equal(card.card_pan, biz.card_pan)
      assert.are.equal(digits(card.holder_id), digits(biz.holder_id))
      assert.are.equal(5, biz.order_status)
      local cb = helpers.wait_for(function()
        local s = sb:stats()
        return s and s.callbacks[1]
      end)
      assert.are.equal(order_no, cb.order_no)
      assert.are.equal(200, cb.status)
      assert.are.equal(1, cb.attempt)
      assert.are.equal(receiver.url .. "/hook", cb.url)
    end)

    it("a plain notification when callback_plain is set, sent on completion after polling", function()
      local before = hook_count()
      assert(sb:settings{ callback_url = receiver.url .. "/hook", callback_plain = true })
      local order_no = fresh("cbp")
      assert(sb:pending(order_no, 1))
      local _, _, card = call(APPLY, apply_biz(order_no))
      assert.are.equal(3, card.order_status)
      local _, _, done = call(QUERY, { order_no = order_no })
      assert.are.equal(5, done.order_status)
      assert.is_truthy(helpers.wait_for(function() return hook_count() > before end))
      local _, raw = get(receiver.url .. "/body?n=" .. (before + 1))
      local note = assert(core.json_decode(raw))
      assert.are.equal("", note.sign_type)
      assert.is_table(note.biz_data)
      assert.are.equal(order_no, note.biz_data.order_no)
      assert.are.equal(done.card_token, note.biz_data.card_token)
      assert.are.equal(digits(done.holder_id), digits(note.biz_data.holder_id))
    end)

    it("retries quickly after a non-200 answer", function()
      assert(sb:reset())
      local before = hook_count()
      assert(sb:settings{ callback_url = receiver.url .. "/flaky" })
      local order_no = fresh("cbr")
      call(APPLY, apply_biz(order_no))
      assert.is_truthy(helpers.wait_for(function() return hook_count() > before end))
      local cbs = helpers.wait_for(function()
        local s = sb:stats()
        return s and #s.callbacks >= 2 and s.callbacks
      end)
      assert.are.same({ 500, 1 }, { cbs[1].status, cbs[1].attempt })
      assert.are.same({ 200, 2 }, { cbs[2].status, cbs[2].attempt })
      assert.are.equal(order_no, cbs[2].order_no)
    end)
  end)

  describe("faults", function()
    before_each(function() assert(sb:reset()) end)
    after_each(function()
      local s = assert(sb:settings{ faults = false, latency_ms = 0 })
      assert.is_nil(s.faults)
    end)

    it("http_500 answers 500 without processing, once", function()
      assert(sb:settings{ faults = { { path = APPLY, kind = "http_500", times = 1 } } })
      local order_no = fresh("f5")
      local code = call(APPLY, apply_biz(order_no))
      assert.are.equal(500, code)
      assert.is_nil(assert(sb:orders())[order_no])
      local env
      code, env = call(APPLY, apply_biz(order_no))
      assert.are.equal(200, code)
      assert.are.equal("10000", env.code)
    end)

    it("reset_after creates the order, then closes the connection without an answer", function()
      assert(sb:settings{ faults = { { path = APPLY, kind = "reset_after" } } })
      local order_no = fresh("fr")
      local code, body = post(sb.url .. APPLY, assert(core.json_encode(envelope(apply_biz(order_no)))))
      assert.are_not.equal(200, code)
      assert.are.equal("", body)
      local order = assert(sb:orders())[order_no]
      assert.is_table(order)
      assert.are.equal(5, order.order_status)
      local _, env, data = call(QUERY, { order_no = order_no })
      assert.are.equal("10000", env.code)
      assert.are.equal(digits(order.card_id), digits(data.card_id))
    end)

    it("wrong_key seals the answer for another merchant key", function()
      assert(sb:settings{ faults = { { path = APPLY, kind = "wrong_key" } } })
      local code, env, data = call(APPLY, apply_biz(fresh("fw")))
      assert.are.equal(200, code)
      assert.are.equal("10000", env.code)
      assert.is_nil(data)
    end)

    it("garbage and truncated answers after processing", function()
      assert(sb:settings{ faults = { { path = APPLY, kind = "garbage" },
                                     { path = APPLY, kind = "truncated" } } })
      local a, b = fresh("fg"), fresh("ft")
      local code, body = post(sb.url .. APPLY, assert(core.json_encode(envelope(apply_biz(a)))))
      assert.are.equal(200, code)
      assert.is_nil(core.json_decode(body))
      local _, env2 = pcall(post, sb.url .. APPLY, assert(core.json_encode(envelope(apply_biz(b)))))
      assert.are_not.equal(200, env2) -- luasocket reports the short body as an error
      local orders = assert(sb:orders())
      assert.is_table(orders[a])
      assert.is_table(orders[b])
    end)

    it("latency_ms delays the answer", function()
      assert(sb:settings{ latency_ms = 300 })
      local t0 = socket.gettime()
      local _, env = call(QUERY, { order_no = "slow-one" })
      assert.are.equal("order-not-found", env.sub_code)
      assert.is_true(socket.gettime() - t0 >= 0.25)
    end)
  end)

  it("logs no bodies, keys or PANs", function()
    local log = sb:error_log()
    assert.is_nil(log:find("biz_data", 1, true))
    assert.is_nil(log:find("******", 1, true))
    assert.is_nil(log:find("PRIVATE KEY", 1, true))
  end)
end)

describe("sandbox over TLS", function()
  local https = require "ssl.https"
  local sb

  lazy_setup(function() sb = launch.start{ tls = true } end)
  lazy_teardown(function() if sb then sb:stop() end end)

  local function apply(cafile)
    local rk, bd = core.seal(assert(core.public_key(sb.platform_public_key)),
                             { order_no = "tls-1", card_type = 1, holder_id = 42 })
    local body = assert(core.json_encode{
      app_id = sb.app_id, partner_id = sb.partner_id, timestamp = "2024-05-06 07:08:09",
      format = "JSON", version = "2.0", request_id = "tls-rid-" .. math.random(1, 1e9),
      sign_type = "RSA", random_key = rk, biz_data = bd })
    local out = {}
    local _, code = https.request{
      url = sb.url .. APPLY, method = "POST", source = ltn12.source.string(body),
      headers = { ["Content-Type"] = "application/json", ["Content-Length"] = tostring(#body) },
      sink = ltn12.sink.table(out), cafile = cafile, verify = "peer", protocol = "any",
    }
    return code, table.concat(out)
  end

  it("serves https://127.0.0.1 with a certificate from its throwaway CA", function()
    assert.is_truthy(sb.url:match("^https://127%.0%.0%.1:%d+$"))
    assert.are.equal(sb.ca_file, sb:client_options().ca_file)
    local code, body = apply(sb.ca_file)
    assert.are.equal(200, code)
    local data = open_answer(assert(core.private_key(sb.merchant_private_key)), body)
    assert.are.equal("tls-1", data.order_no)
    assert.are.equal(42, tonumber(digits(data.holder_id)))
    assert.is_table(assert(sb:orders())["tls-1"])
  end)

  it("is not trusted without that CA", function()
    local code = apply(nil)
    assert.are_not.equal(200, code)
  end)
end)
