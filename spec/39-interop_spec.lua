-- luacheck: std +busted
-- Long ids and lua-cjson (issue 10 items 8 and 9): card_id and holder_id have one type per
-- runtime that prints as its digits and survives lua-cjson (decimal strings everywhere), and
-- biz_data decoded by the real lua-cjson (Debian's lua-cjson, on every runtime it is
-- installed for) is the same data as the table written by hand. Cards come from the local
-- sandbox over loopback; its ids count from 2^53 + 1, where doubles stop being exact.
local issuing = require "pagsmile.issuing"
local api = require "pagsmile.issuing.api"
local core = require "pagsmile.issuing.core"
local schema = require "pagsmile.issuing.schema"
local helpers = require "helpers"

-- 5.3+ with 64-bit integers; 5.1 and LuaJIT have only doubles.
local INTEGERS = math.type ~= nil and math.maxinteger > 2 ^ 53
local has_cjson, cjson = pcall(require, "cjson")

-- The one type of a long id on every runtime: its digits as a string.
local function assert_id(v, digits)
  assert.equal("string", type(v))
  assert.matches("^%-?%d+$", tostring(v))
  if digits then assert.equal(digits, tostring(v)) end
  -- Survives every way of printing it, not only tostring.
  assert.equal(tostring(v), ("%s"):format(v))
  assert.equal(tostring(v), "" .. v)
end

-- biz_data as a merchant's service receives it: JSON text.
local BIZ_JSON = [[{
  "order_no": "%s", "card_type": 1, "card_bin": null, "is_share_card": false,
  "card_remark": "team card",
  "card_limit": { "daily_transactions": 10, "single_amount": "500.00",
                  "daily_amount": "1000.00", "monthly_amount": "20000.00" },
  "holder": { "mobile": "+5511987654321", "first_name": "Ana", "last_name": "Souza",
              "id_no": "12345678909", "id_type": 1, "email": "ana.souza@example.com",
              "birthday": "1990-02-28", "gender": null, "nationality_code": "BR",
              "address": { "line": "Rua das Flores, 123", "postal_code": "01310100",
                           "city_name": "Sao Paulo", "state": "Sao Paulo",
                           "country_code": "BR" } }
}]]

describe("long ids, one type per runtime (issue 10 item 8)", function()
  local sb, client

  lazy_setup(function() sb, client = helpers.start_client() end)
  lazy_teardown(function() helpers.stop_client(sb, client) end)

  it("issue 10 item 8: api.card makes card_id and holder_id the runtime's type, exact", function()
    for _, case in ipairs({
      { "9007199254740993", "102012" }, -- beyond 2^53, and a small one
      { "9223372036854775807", "-9223372036854775808" },
      { "0", "9007199254740992" },
    }) do
      local data = assert(core.json_decode(('{"card_id":%s,"holder_id":%s,"order_status":5}')
        :format(case[1], case[2])))
      local card = api.card(data, "rid")
      assert_id(card.card_id, case[1])
      assert_id(card.holder_id, case[2])
      assert.equal(5, card.order_status) -- other numbers are left alone
    end
    -- A field the answer lacks stays absent.
    local card = api.card({ order_no = "X", order_status = 3 }, "rid")
    assert.is_nil(card.card_id)
    assert.is_nil(card.holder_id)
  end)

  it("issue 10 item 8: a card from the sandbox has ids that print as their digits", function()
    local card = assert(client:apply_card(helpers.biz()))
    assert_id(card.card_id)
    assert_id(card.holder_id)
    assert.is_true(#tostring(card.card_id) >= 16)
    assert.equal(tostring(sb:orders()[card.order_no].card_id), tostring(card.card_id))
    local queried = assert(client:query_apply_result(card.order_no))
    assert.equal(card.card_id, queried.card_id) -- same type: plain == works
    assert.equal(card.holder_id, queried.holder_id)
    -- The id goes back as holder_id unchanged: the next card is for the same cardholder.
    local again = assert(client:apply_card(helpers.biz { holder = helpers.NIL,
                                                         holder_id = card.holder_id }))
    assert.equal(card.holder_id, again.holder_id)
  end)

  it("issue 10 item 8: a notification's ids have the same type as the card's", function()
    local body = '{"notify_type":1,"sign_type":"","request_id":"n-1","biz_data":'
      .. '{"order_no":"N-1","order_status":5,"card_id":9007199254740995,'
      .. '"holder_id":9007199254740993,"card_token":"tok_1"}}'
    local note = assert(client:parse_notification(body))
    assert_id(note.card_id, "9007199254740995")
    assert_id(note.holder_id, "9007199254740993")
    assert.is_true(note.completed)
  end)

  it("issue 10 item 8: the OpenResty example's id_string gives the digits", function()
    -- merchant.lua runs only inside nginx (spec 40); its id_string is checked here on every
    -- runtime by loading that one local function from the file's text.
    local text = helpers.read_file("examples/openresty/merchant.lua")
    local src = assert(text:match("\n(local function id_string%(v%).-\nend)\n"))
    local id_string = assert((loadstring or load)(src .. "\nreturn id_string"))()
    assert.is_nil(id_string(nil))
    for _, v in ipairs({ "9007199254740993", core.long("9007199254740993"), 102012, 2 ^ 53 }) do
      assert.matches("^%d+$", id_string(v))
    end
    assert.equal("9007199254740993", id_string(core.long("9007199254740993")))
    assert.equal("9007199254740992", id_string(2 ^ 53))
    if INTEGERS then assert.equal("9007199254740993", id_string(9007199254740993)) end
  end)
end)

describe("lua-cjson interop (issue 10 item 9)", function()
  if not has_cjson then
    pending("lua-cjson is not installed for " .. _VERSION .. " (Debian package lua-cjson)")
    return
  end
  local sb, client

  lazy_setup(function() sb, client = helpers.start_client() end)
  lazy_teardown(function() helpers.stop_client(sb, client) end)

  it("issue 10 item 9: a card table encodes with lua-cjson without losing digits", function()
    local card = assert(client:apply_card(helpers.biz()))
    local platform = sb:orders()[card.order_no]
    local text = cjson.encode(card)
    -- lua-cjson 2.1.0 writes every number as a double with 14 significant digits, 5.3+
    -- integers included: that is why the ids are strings on every runtime.
    local back = cjson.decode(text)
    assert.equal(tostring(platform.card_id), tostring(back.card_id))
    assert.equal(tostring(platform.holder_id), tostring(back.holder_id))
    assert.equal(card.card_pan, back.card_pan)
    assert.equal(card.order_status, back.order_status)
    assert.equal(card.completed, back.completed)
  end)

  it("issue 10 item 9: biz_data decoded by lua-cjson is the same data as by hand", function()
    local order_no = helpers.order_no("cjson")
    local text = BIZ_JSON:format(order_no)
    local by_cjson = cjson.decode(text)
    if INTEGERS then assert.equal("float", math.type(by_cjson.card_type)) end -- 1.0, not 1
    assert.equal(cjson.null, by_cjson.card_bin)
    local by_core = assert(core.json_decode(text))
    local a = assert(schema.validate(schema.apply_card, by_cjson))
    local b = assert(schema.validate(schema.apply_card, by_core))
    assert.equal(core.json_encode(b), core.json_encode(a))
    assert.matches('"card_type":1[,}]', core.json_encode(a)) -- 1.0 goes out as 1
    assert.is_true(issuing.validate("apply_card", by_cjson))
    -- And the platform takes it.
    local card = assert(client:apply_card(by_cjson))
    assert.equal(order_no, card.order_no)
    assert.is_true(card.completed)
  end)

  it("issue 10 item 9: cjson.null counts as absent, for required fields too", function()
    local biz = cjson.decode(BIZ_JSON:format("N-1"))
    biz.card_limit = cjson.null
    assert.is_nil(assert(schema.validate(schema.apply_card, biz)).card_limit)
    biz.order_no = cjson.null
    local clean, field, reason = schema.validate(schema.apply_card, biz)
    assert.is_nil(clean)
    assert.equal("order_no", field)
    assert.equal("is required", reason)
  end)

  it("issue 10 item 9: a holder_id lua-cjson rounded is refused, never sent as another id", function()
    -- 2^53 + 1 has no double: lua-cjson gives 2^53, another cardholder's id.
    local biz = cjson.decode('{"order_no":"R-1","card_type":1,"holder_id":9007199254740993}')
    local clean, field, reason = schema.validate(schema.apply_card, biz)
    assert.is_nil(clean)
    assert.equal("holder_id", field)
    assert.matches("decimal string", reason)
    -- As a JSON string it survives lua-cjson and passes.
    biz = cjson.decode('{"order_no":"R-1","card_type":1,"holder_id":"9007199254740993"}')
    assert.equal("9007199254740993", tostring(assert(schema.validate(schema.apply_card, biz)).holder_id))
    -- Ids lua-cjson holds exactly pass as numbers.
    biz = cjson.decode('{"order_no":"R-1","card_type":1,"holder_id":9007199254740991}')
    assert.equal("9007199254740991", tostring(assert(schema.validate(schema.apply_card, biz)).holder_id))
  end)

  it("issue 10 item 9: an empty JSON array from lua-cjson is an empty table", function()
    -- lua-cjson decodes [] and {} alike; OpenResty's also has cjson.empty_array, a value that
    -- encodes as []: where an object is expected, both are an object with no members.
    local biz = cjson.decode(BIZ_JSON:format("E-1"))
    biz.card_limit = cjson.decode("[]")
    local _, field, reason = schema.validate(schema.apply_card, biz)
    assert.equal("card_limit.daily_transactions", field)
    assert.equal("is required", reason)
    if cjson.empty_array then
      biz.card_limit = cjson.empty_array
      _, field, reason = schema.validate(schema.apply_card, biz)
      assert.equal("card_limit.daily_transactions", field)
      assert.equal("is required", reason)
    end
  end)
end)
