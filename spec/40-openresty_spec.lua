-- OpenResty (issue #4): the example merchant service of examples/openresty/ (nginx.conf +
-- merchant.lua) in a real nginx, against the local sandbox over loopback, plain and TLS.
-- A test-only server added to the example's http block runs the client where the example
-- does not: phases without cosockets, a timer, and whole card tables for comparison.
local core = require "pagsmile.issuing.core"
local issuing = require "pagsmile.issuing"
local launch = require "sandbox.launch"
local shop_launch = require "examples.openresty.launch"
local helpers = require "helpers"

local TEST_HTTP = [[
  lua_shared_dict phase_results 1m;
  # The example's lua_package_path has no place for spec/support: this worker adds the root.
  init_worker_by_lua_block {
    package.path = package.path .. ";${root}/?.lua"
    require("spec.support.openresty_probe").init_worker()
  }
  server {
    listen 127.0.0.1:${test_port};
    location = /t/phase { content_by_lua_block { require("spec.support.openresty_probe").phase() } }
    location = /t/header_filter {
      content_by_lua_block { require("spec.support.openresty_probe").body() }
      header_filter_by_lua_block { require("spec.support.openresty_probe").header_filter() }
    }
    location = /t/proxy { content_by_lua_block { require("spec.support.openresty_probe").proxy() } }
    location = /t/timer { content_by_lua_block { require("spec.support.openresty_probe").timer() } }
    location = /t/drip { content_by_lua_block { require("spec.support.openresty_probe").drip() } }
    location = /t/through_drip { content_by_lua_block { require("spec.support.openresty_probe").through_drip() } }
    location = /t/client { content_by_lua_block { require("spec.support.openresty_probe").client() } }
    location = /t/query { content_by_lua_block { require("spec.support.openresty_probe").query() } }
    location = /t/apply { content_by_lua_block { require("spec.support.openresty_probe").apply() } }
  }
]]

local SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"
local LONG = { card_id = true, holder_id = true }
local PUBLIC = { order_no = true, status = true, order_status = true, card_id = true,
                 card_token = true, card_pan = true, card_bin = true, card_type = true }

local function request(method, url, body, headers)
  headers = headers or {}
  if body then headers["Content-Type"] = headers["Content-Type"] or "application/json" end
  return helpers.http(method, url, body, headers)
end

local function post_json(url, value)
  local code, text, h = request("POST", url, assert(core.json_encode(value)))
  return code, core.json_decode(text), h, text
end

local function get_json(url)
  local code, text = request("GET", url)
  return code, core.json_decode(text), text
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Same keys; same Lua types (and number subtypes on 5.3+); long ids compared as decimals.
local function assert_same_shape(a, b)
  assert.equal(count(a), count(b))
  for k, v in pairs(a) do
    local w = b[k]
    assert.is_not_nil(w, "missing " .. k)
    if LONG[k] then
      assert.matches("^%d+$", tostring(v))
      assert.matches("^%d+$", tostring(w))
    else
      assert.equal(type(v), type(w), k)
      if math.type and type(v) == "number" then assert.equal(math.type(v), math.type(w), k) end
    end
  end
end

local function assert_same_card(a, b)
  assert_same_shape(a, b)
  for k, v in pairs(a) do
    if k ~= "request_id" then
      if LONG[k] then assert.equal(tostring(v), tostring(b[k]), k) else assert.equal(v, b[k], k) end
    end
  end
end

-- The apply-card result notification the platform would send for a card (SPEC.md §7).
local function notification(sb, card, plain, partner_id)
  local biz = {
    order_no = card.order_no, card_token = card.card_token, card_pan = card.card_pan,
    holder_id = core.long(tostring(card.holder_id or "9007199254740999")),
    holder_name = "Ana Souza", card_scheme = 3, card_type = card.card_type or 1,
    order_count = 1, order_status = card.order_status or 5, is_share_card = false,
  }
  local note = { partner_id = partner_id or sb.partner_id, sub_partner_id = "",
                 timestamp = os.date("!%Y-%m-%d %H:%M:%S"), version = "1.0",
                 request_id = core.request_id(), notify_type = 1 }
  if plain then
    note.sign_type, note.biz_data = "", biz
  else
    note.sign_type = "RSA"
    local key = core.public_key(sb.merchant_public_key)
    note.random_key, note.biz_data = core.seal(key, biz)
    key:close()
  end
  return assert(core.json_encode(note))
end

describe("OpenResty example (plain HTTP sandbox)", function()
  local sb, shop, test_url

  lazy_setup(function()
    sb = launch.start {}
    shop = shop_launch.start(sb, {
      http = TEST_HTTP,
      prepare = function(_, vars)
        local p
        repeat p = helpers.free_port() until tostring(p) ~= vars.port
        vars.test_port = tostring(p)
        test_url = "http://127.0.0.1:" .. p
      end,
    })
  end)

  lazy_teardown(function()
    if shop then shop.stop() end
    if sb then sb:stop() end
  end)

  local function apply_count()
    return sb:stats().requests["/issuing/card/apply"] or 0
  end

  it("a bad setting stops nginx at startup with a message naming it", function()
    local bad = setmetatable({ merchant_private_key = sb.platform_public_key }, { __index = sb })
    local ok, err = pcall(shop_launch.start, bad)
    assert.is_false(ok)
    assert.matches("merchant: pagsmile.issuing config error: merchant_private_key", err)
    assert.is_nil(err:find(helpers.pem_body(sb.platform_public_key):sub(1, 40), 1, true))
  end)

  describe("POST /cards", function()
    it("applies and answers the card's public fields only", function()
      local biz = helpers.biz { card_limit = helpers.limits(), initial_balance = "50.00" }
      local code, card, h, text = post_json(shop.url .. "/cards", biz)
      assert.equal(200, code, text)
      assert.matches("^application/json", h["content-type"])
      assert.equal(biz.order_no, card.order_no)
      assert.equal("completed", card.status)
      assert.equal(5, card.order_status)
      assert.matches("^tok_%x+$", card.card_token)
      assert.matches("^658704%*%*%*%*%*%*%d%d%d%d$", card.card_pan)
      assert.matches("^%d+$", card.card_id) -- a decimal string: exact for any caller
      assert.equal(tostring(sb:orders()[biz.order_no].card_id), card.card_id)
      for k in pairs(card) do assert.is_true(PUBLIC[k], "unexpected field " .. k) end
      for _, secret in ipairs { "Souza", "39053344705", "random_key", "biz_data", "holder" } do
        assert.is_nil(text:find(secret, 1, true), secret)
      end
    end)

    it("answers 202 while the platform is still processing the order", function()
      local biz = helpers.biz()
      assert(sb:pending(biz.order_no, 1))
      local code, card = post_json(shop.url .. "/cards", biz)
      assert.equal(202, code)
      assert.equal("processing", card.status)
      assert.equal(3, card.order_status)
      assert.equal("", card.card_pan)
    end)

    it("answers 400 naming the field for invalid biz_data, and sends nothing", function()
      local before = apply_count()
      local cases = {
        { helpers.biz { order_no = helpers.NIL }, "order_no" },
        { helpers.biz { card_type = "virtual" }, "card_type" },
        { helpers.biz { holder = helpers.NIL }, nil }, -- one of holder/holder_id
      }
      local bad_email = helpers.biz()
      bad_email.holder.email = "not-an-address"
      cases[#cases + 1] = { bad_email, "holder.email" }
      for _, case in ipairs(cases) do
        local code, err = post_json(shop.url .. "/cards", case[1])
        assert.equal(400, code)
        assert.equal("validation", err.error)
        if case[2] then assert.equal(case[2], err.field) else assert.is_string(err.field) end
        assert.is_string(err.reason)
      end
      local code, text = request("POST", shop.url .. "/cards", "{not json")
      assert.equal(400, code)
      assert.equal("body", core.json_decode(text).field)
      code, text = request("POST", shop.url .. "/cards", "[1, 2]")
      assert.equal(400, code)
      assert.equal("body", core.json_decode(text).field)
      assert.equal(before, apply_count())
    end)

    it("answers 405 to other methods", function()
      local code, _, h = request("GET", shop.url .. "/cards")
      assert.equal(405, code)
      assert.equal("POST", h["allow"])
    end)

    it("maps a duplicate order_no to 409 and issues no second card", function()
      local biz = helpers.biz()
      assert.equal(200, (post_json(shop.url .. "/cards", biz)))
      local code, err, _, text = post_json(shop.url .. "/cards", biz)
      assert.equal(409, code)
      assert.equal("duplicate_order_no", err.error)
      assert.equal(biz.order_no, err.order_no)
      assert.is_nil(text:find("40002", 1, true)) -- the platform's codes stay in the log
      assert.equal(2, sb:orders()[biz.order_no].applies)
      assert.matches("duplicate%-order%-no", shop.error_log())
    end)

    it("reuses upstream connections: 20 requests, at most 2 new connections", function()
      local conns, applies = sb:stats().connections, apply_count()
      for _ = 1, 20 do
        assert.equal(200, (post_json(shop.url .. "/cards", helpers.biz())))
      end
      assert.equal(applies + 20, apply_count())
      assert.is_true(sb:stats().connections - conns <= 2)
    end)
  end)

  describe("the worker's client", function()
    it("is made once and shared by requests", function()
      local code1, a = request("GET", test_url .. "/t/client")
      local code2, b = request("GET", test_url .. "/t/client")
      assert.equal(200, code1)
      assert.equal(200, code2)
      assert.matches("^table: ", a)
      assert.equal(a, b)
    end)

    it("refuses to work without cosockets (init_worker) with a config error that says so", function()
      local _, text = request("GET", test_url .. "/t/phase?name=init_worker")
      local kind, field, message = text:match("^(%w+)|([%w_]+)|(.*)$")
      assert.equal("config", kind, text)
      assert.equal("transport", field)
      assert.matches("cosocket", message)
      assert.matches("init_worker", message)
      assert.matches('transport = "curl"', message, 1, true)
    end)

    it("refuses in a header filter too, and works there with transport = \"curl\" on purpose", function()
      local order_no = select(2, post_json(shop.url .. "/cards", helpers.biz())).order_no
      local before = sb:stats().requests["/issuing/card/query-apply-card-result"] or 0
      local code, _, h = request("GET", test_url .. "/t/header_filter?order_no=" .. order_no)
      assert.equal(200, code)
      assert.equal("config", h["x-kind"])
      assert.equal("transport", h["x-field"])
      assert.matches("header_filter", h["x-message"])
      assert.equal(before, sb:stats().requests["/issuing/card/query-apply-card-result"] or 0)
      code, _, h = request("GET", test_url .. "/t/header_filter?transport=curl&order_no=" .. order_no)
      assert.equal(200, code)
      assert.equal("card", h["x-kind"], h["x-message"])
      assert.equal("completed", h["x-message"])
      assert.equal(before + 1, sb:stats().requests["/issuing/card/query-apply-card-result"])
    end)

    it("refuses a proxy it cannot honour rather than going around it", function()
      local before = helpers.api_requests(sb)
      local _, text = request("GET", test_url .. "/t/proxy")
      local kind, field, message = text:match("^(%w+)|([%w_]+)|(.*)$")
      assert.equal("config", kind, text)
      assert.equal("proxy", field)
      assert.matches('transport = "curl"', message, 1, true)
      assert.equal(before, helpers.api_requests(sb))
    end)

    it("works in a timer (cosockets)", function()
      local order_no = select(2, post_json(shop.url .. "/cards", helpers.biz())).order_no
      local code, text = request("GET", test_url .. "/t/timer?order_no=" .. order_no)
      assert.equal(200, code)
      assert.equal("card|completed|" .. order_no, text)
    end)
  end)

  it("cosocket timeouts cover the whole answer, not each read (a slow chunked answer)", function()
    -- 15 pieces 0.1 s apart, each read well within 0.5 s: only the total is too long.
    local code, text = request("GET", test_url .. "/t/through_drip")
    assert.equal(200, code)
    assert.equal("timeout|true", text)
  end)

  describe("card tables", function()
    it("are identical through the cosocket and curl transports for the same order", function()
      local order_no = select(2, post_json(shop.url .. "/cards", helpers.biz {
        card_limit = helpers.limits(), initial_balance = "12.34", card_remark = "r" })).order_no
      local queries = sb:stats().requests["/issuing/card/query-apply-card-result"] or 0
      local code, both, text = get_json(test_url .. "/t/query?order_no=" .. order_no)
      assert.equal(200, code)
      assert.is_table(both.ngx, text)
      assert.is_table(both.curl, text)
      assert.equal(queries + 2, sb:stats().requests["/issuing/card/query-apply-card-result"])
      -- inside nginx (LuaJIT), the same answer through both transports
      assert.is_string(both.ngx.request_id)
      assert.not_equal(both.ngx.request_id, both.curl.request_id)
      assert_same_card(both.ngx, both.curl)
      assert.equal(order_no, both.ngx.order_no)
      assert.equal("12.34", both.ngx.initial_balance)
      -- and the curl transport of this process gives the same card
      local client = assert(issuing.new(sb:client_options()))
      local card = assert(client:query_apply_result(order_no))
      client:close()
      assert_same_card(card, both.ngx)
    end)

    it("of apply_card have the same fields and types through both transports", function()
      local biz = helpers.biz { card_limit = helpers.limits() }
      local code, via_ngx = post_json(test_url .. "/t/apply", biz)
      assert.equal(200, code)
      assert.is_nil(via_ngx.error)
      local client = assert(issuing.new(sb:client_options()))
      local biz2 = helpers.biz { card_limit = helpers.limits() }
      local via_curl = assert(client:apply_card(biz2))
      client:close()
      assert_same_shape(via_curl, via_ngx)
      for _, k in ipairs { "status", "completed", "order_status", "order_count", "card_scheme",
                           "card_type", "card_bin", "is_share_card", "holder_name" } do
        assert.equal(via_curl[k], via_ngx[k], k)
      end
      assert.equal(biz.order_no, via_ngx.order_no)
    end)
  end)

  describe("POST /pagsmile/callback", function()
    local callback_url

    before_each(function()
      callback_url = shop.url .. "/pagsmile/callback"
    end)

    after_each(function()
      assert(sb:settings { callback_url = "" }) -- the sandbox's JSON drops null members
    end)

    local function delivered(order_no)
      for _, cb in ipairs(sb:stats().callbacks or {}) do
        if cb.order_no == order_no then return cb end
      end
    end

    -- The platform's whole card (holder_id included), asked from this process.
    local function platform_card(order_no)
      local client = assert(issuing.new(sb:client_options()))
      local card = assert(client:query_apply_result(order_no))
      client:close()
      return card
    end

    it("receives the sandbox's delivery, answers 200 and records the card", function()
      assert(sb:settings { callback_url = callback_url })
      local biz = helpers.biz()
      local code, card = post_json(shop.url .. "/cards", biz)
      assert.equal(200, code)
      local cb = helpers.wait_for(function() return delivered(biz.order_no) end)
      assert.is_table(cb, "no callback delivered")
      assert.equal(200, cb.status)
      assert.equal(callback_url, cb.url)
      local got
      code, got = get_json(shop.url .. "/cards/" .. biz.order_no)
      assert.equal(200, code)
      assert.equal(card.card_token, got.card_token)
      assert.equal(card.card_pan, got.card_pan)
      assert.equal("completed", got.status)
      assert.equal(1, got.processed)
      assert.equal(1, got.deliveries)
      -- the platform delivers it again: 200, not processed twice
      code = request("POST", callback_url, notification(sb, platform_card(biz.order_no)))
      assert.equal(200, code)
      code, got = get_json(shop.url .. "/cards/" .. biz.order_no)
      assert.equal(200, code)
      assert.equal(1, got.processed)
      assert.equal(2, got.deliveries)
    end)

    it("is idempotent: the same body twice is processed once, both answered 200", function()
      local code, public = post_json(shop.url .. "/cards", helpers.biz())
      assert.equal(200, code)
      local card = platform_card(public.order_no)
      local body = notification(sb, card)
      local text
      code, text = request("POST", callback_url, body)
      assert.equal(200, code, text)
      assert.is_nil(core.json_decode(text).repeated)
      code, text = request("POST", callback_url, body)
      assert.equal(200, code)
      assert.is_true(core.json_decode(text).repeated)
      local _, got = get_json(shop.url .. "/cards/" .. card.order_no)
      assert.equal(1, got.processed)
      assert.equal(2, got.deliveries)
      assert.equal(card.card_pan, got.card_pan)
      assert.is_nil(shop.error_log():find("disagrees with the platform: order_no=" .. card.order_no
        .. " ", 1, true), "a genuine notification agrees")
    end)

    it("confirms a plain (unencrypted) notification with the platform before acting", function()
      local code, card = post_json(shop.url .. "/cards", helpers.biz())
      assert.equal(200, code)
      local queries = sb:stats().requests["/issuing/card/query-apply-card-result"] or 0
      code = request("POST", callback_url, notification(sb, card, true))
      assert.equal(200, code)
      assert.equal(queries + 1, sb:stats().requests["/issuing/card/query-apply-card-result"])
      local _, got = get_json(shop.url .. "/cards/" .. card.order_no)
      assert.equal(1, got.processed)
      -- a plain notification for an order the platform does not know: not acted on
      local ghost = { order_no = helpers.order_no("GHOST"), card_token = "tok_ff", card_pan = "" }
      local text
      code, text = request("POST", callback_url, notification(sb, ghost, true))
      assert.equal(400, code)
      assert.equal("unknown_order", core.json_decode(text).error)
      assert.equal(404, (get_json(shop.url .. "/cards/" .. ghost.order_no)))
    end)

    it("issue 9 item 5: a forged sealed callback is not stored and the genuine one that follows is", function()
      assert(sb:settings { callback_url = callback_url })
      -- order_nos are guessable: the forgery, sealed with the merchant's PUBLIC key, comes
      -- before the merchant applies.
      local biz = helpers.biz()
      local fake = { order_no = biz.order_no, card_token = "tok_forged0123456789abcdef",
                     card_pan = "658704******6666", order_status = 5 }
      local code, text = request("POST", callback_url, notification(sb, fake))
      assert.equal(400, code, text)
      assert.equal("unknown_order", core.json_decode(text).error)
      assert.equal(404, (get_json(shop.url .. "/cards/" .. biz.order_no)))
      -- the genuine callback of the real apply is stored, not taken for a repeat
      local card
      code, card = post_json(shop.url .. "/cards", biz)
      assert.equal(200, code)
      local cb = helpers.wait_for(function() return delivered(biz.order_no) end)
      assert.is_table(cb, "no callback delivered")
      assert.equal(200, cb.status)
      local got
      code, got = get_json(shop.url .. "/cards/" .. biz.order_no)
      assert.equal(200, code)
      assert.equal(card.card_token, got.card_token)
      assert.equal(card.card_pan, got.card_pan)
      assert.equal(1, got.processed)
      assert.equal(1, got.deliveries)
    end)

    it("issue 9 item 5: a forged callback for a processing order stores only the platform's word", function()
      assert(sb:settings { callback_url = callback_url })
      local biz = helpers.biz()
      assert(sb:pending(biz.order_no, 3))
      local code = post_json(shop.url .. "/cards", biz)
      assert.equal(202, code)
      local fake = { order_no = biz.order_no, card_token = "tok_forged0123456789abcdef",
                     card_pan = "658704******6666", order_status = 5 }
      local text
      code, text = request("POST", callback_url, notification(sb, fake))
      assert.equal(200, code, text) -- handled: the platform's answer (processing) is recorded
      local got
      code, got = get_json(shop.url .. "/cards/" .. biz.order_no)
      assert.equal(200, code)
      assert.equal("processing", got.status)
      assert.equal("", got.card_token)
      assert.matches("callback disagrees with the platform: order_no=" .. biz.order_no
        .. " fields=card_pan,card_token,holder_id,order_status", shop.error_log(), 1, true)
      -- the order completes; its genuine callback is stored
      local card
      for _ = 1, 5 do
        card = platform_card(biz.order_no)
        if card.completed then break end
      end
      local cb = helpers.wait_for(function() return delivered(biz.order_no) end)
      assert.is_table(cb, "no callback delivered")
      assert.equal(200, cb.status)
      code, got = get_json(shop.url .. "/cards/" .. biz.order_no)
      assert.equal(200, code)
      assert.equal("completed", got.status)
      assert.equal(card.card_token, got.card_token)
      assert.equal(2, got.processed) -- processing, then completed
      assert.equal(2, got.deliveries)
    end)

    it("answers 503 while the platform cannot confirm, records nothing, and handles the redelivery", function()
      local code, public = post_json(shop.url .. "/cards", helpers.biz())
      assert.equal(200, code)
      local body = notification(sb, platform_card(public.order_no))
      assert(sb:faults { { path = "/issuing/card/query-apply-card-result", kind = "http_503",
                           order_no = public.order_no, times = 3 } }) -- the client's 1 + 2 retries
      code = request("POST", callback_url, body)
      assert.equal(503, code)
      assert.equal(404, (get_json(shop.url .. "/cards/" .. public.order_no)))
      assert(sb:faults(nil))
      code = request("POST", callback_url, body)
      assert.equal(200, code)
      local _, got = get_json(shop.url .. "/cards/" .. public.order_no)
      assert.equal(1, got.processed)
      assert.equal(1, got.deliveries)
    end)

    it("answers 400 to what it cannot parse, and records nothing", function()
      local card = { order_no = helpers.order_no("BAD"), card_token = "tok_1", card_pan = "" }
      local other_key = helpers.keypair("stranger")
      local stranger = setmetatable({ merchant_public_key = other_key.public_pem }, { __index = sb })
      for _, body in ipairs {
        "", "not json", "[]", "{}",
        notification(stranger, card),               -- encrypted for another merchant key
        notification(sb, card, false, "someone-else"), -- another partner_id
      } do
        local code, text = request("POST", callback_url, body)
        assert.equal(400, code, body)
        assert.equal("unparseable_notification", core.json_decode(text).error)
      end
      assert.equal(404, (get_json(shop.url .. "/cards/" .. card.order_no)))
    end)
  end)

  it("logs no cardholder data, keys or full bodies", function()
    local log = shop.error_log()
    for _, s in ipairs { "Souza", "39053344705", "ana.souza@example.com", "PRIVATE KEY", "tok_" } do
      assert.is_nil(log:find(s, 1, true), s)
    end
  end)
end)

describe("OpenResty example with a TLS sandbox", function()
  local sb, shop, shop_noca

  lazy_setup(function()
    sb = launch.start { tls = true }
    shop = shop_launch.start(sb)                                -- trusts the test CA
    shop_noca = shop_launch.start(sb, { ca_file = SYSTEM_CAS }) -- does not
  end)

  lazy_teardown(function()
    if shop then shop.stop() end
    if shop_noca then shop_noca.stop() end
    if sb then sb:stop() end
  end)

  it("applies over verified TLS and keeps the connection", function()
    assert.matches("^https://", sb.url)
    local conns = sb:stats().connections
    for _ = 1, 5 do
      local biz = helpers.biz()
      local code, card, _, text = post_json(shop.url .. "/cards", biz)
      assert.equal(200, code, text)
      assert.equal(biz.order_no, card.order_no)
      assert.equal("completed", card.status)
    end
    assert.is_true(sb:stats().connections - conns <= 1)
  end)

  it("without the CA: the handshake fails, 502 without internals, nothing applied", function()
    local before = sb:stats().requests["/issuing/card/apply"] or 0
    local biz = helpers.biz()
    local code, err, _, text = post_json(shop_noca.url .. "/cards", biz)
    assert.equal(502, code, text)
    assert.equal("platform_unavailable", err.error)
    assert.equal(biz.order_no, err.order_no)
    for _, s in ipairs { "TLS", "certificate", "127.0.0.1", "transport" } do
      assert.is_nil(text:find(s, 1, true), s)
    end
    assert.equal(before, sb:stats().requests["/issuing/card/apply"] or 0)
    assert.matches("TLS handshake failed", shop_noca.error_log())
  end)
end)
