-- Apply For a Card and Query Apply Result through the public API, against the local sandbox
-- over loopback (issue #3).
local issuing = require "pagsmile.issuing"
local helpers = require "helpers"

describe("apply_card", function()
  local sb, client

  lazy_setup(function() sb, client = helpers.start_client() end)
  lazy_teardown(function() helpers.stop_client(sb, client) end)

  local function assert_card(card, biz)
    assert.equal(biz.order_no, card.order_no)
    assert.equal("completed", card.status)
    assert.is_true(card.completed)
    assert.equal(5, card.order_status)
    assert.equal(3, card.card_scheme)
    assert.equal(biz.card_type, card.card_type)
    assert.equal(biz.card_bin or "658704", card.card_bin)
    assert.matches("^tok_%x+$", card.card_token)
    assert.matches("^" .. (biz.card_bin or "658704") .. "%*%*%*%*%*%*%d%d%d%d$", card.card_pan)
    assert.matches("^%x+%-%x+%-4%x+%-%x+%-%x+$", card.request_id)
    assert.equal(1, card.order_count)
    assert.is_boolean(card.is_share_card)
  end

  it("issues a card for a new cardholder", function()
    local biz = helpers.biz()
    local card, err = client:apply_card(biz)
    assert.is_nil(err)
    assert_card(card, biz)
    assert.equal("Ana Souza", card.holder_name)
    -- Long ids come back exact: the sandbox counts from 2^53 + 1.
    local id = tostring(card.card_id)
    assert.matches("^%d+$", id)
    assert.is_true(#id >= 16)
    assert.equal("string", type(card.card_id)) -- on every runtime (survives lua-cjson)
  end)

  it("issue 11: client:call reaches each endpoint of the table by name, as its method does", function()
    local biz = helpers.biz()
    local card, err = client:call("apply_card", biz)
    assert.is_nil(err)
    assert_card(card, biz)
    local again = assert(client:call("query_apply_result", { order_no = biz.order_no }))
    assert.equal(card.card_id, again.card_id)
    local none, verr = client:call("query_apply_result", { order_no = "bad order no" })
    assert.is_nil(none)
    assert.equal("validation", verr.kind)
    assert.has_error(function() client:call("no_such_endpoint", {}) end,
      'pagsmile.issuing: no endpoint "no_such_endpoint"')
  end)

  it("issues a card for an existing cardholder by holder_id, as integer or decimal string", function()
    local ids = { "9007199254740993", 12345 }
    if math.type then ids[#ids + 1] = math.tointeger(9007199254741001) end
    for _, holder_id in ipairs(ids) do
      local biz = helpers.biz { holder = helpers.NIL, holder_id = holder_id }
      local card, err = client:apply_card(biz)
      assert.is_nil(err)
      assert_card(card, biz)
      assert.equal(tostring(holder_id), tostring(card.holder_id))
    end
  end)

  it("with and without card_limit, with both card bins, and a share card", function()
    for _, over in ipairs {
      { card_limit = helpers.limits() },
      { card_limit = helpers.limits(), card_bin = "658705" },
      { card_bin = "658704" },
      { card_bin = "658705", is_share_card = true, initial_balance = "10.50" },
    } do
      local biz = helpers.biz(over)
      local card, err = client:apply_card(biz)
      assert.is_nil(err)
      assert_card(card, biz)
      assert.equal(over.is_share_card == true, card.is_share_card)
    end
  end)

  it("leaves the caller's biz_data untouched", function()
    local biz = helpers.biz { card_limit = helpers.limits() }
    local before = require("pagsmile.issuing.core").json_encode(biz)
    assert(client:apply_card(biz))
    assert.equal(before, require("pagsmile.issuing.core").json_encode(biz))
    assert.is_nil(biz.card_scheme)
  end)

  it("surfaces a duplicate order_no as an api error, and issues nothing more", function()
    local biz = helpers.biz()
    local first = assert(client:apply_card(biz))
    local card, err = client:apply_card(biz)
    assert.is_nil(card)
    assert.equal("api", err.kind)
    assert.equal("40002", err.code)
    assert.equal("duplicate-order-no", err.sub_code)
    assert.equal(biz.order_no, err.order_no)
    assert.matches("query_apply_result", err.message)
    assert.matches("^pagsmile.issuing api error: ", tostring(err))
    local order = sb:orders()[biz.order_no]
    assert.equal(2, order.applies)
    assert.equal(tostring(first.card_id), tostring(order.card_id))
  end)

  describe("query_apply_result", function()
    it("returns the card of a known order, with the apply fields and more", function()
      local biz = helpers.biz { initial_balance = "25.00", card_remark = "team travel",
                                pay_account_num = "ACC-1" }
      local applied = assert(client:apply_card(biz))
      local card, err = client:query_apply_result(biz.order_no)
      assert.is_nil(err)
      assert_card(card, biz)
      assert.equal(tostring(applied.card_id), tostring(card.card_id))
      assert.equal(applied.card_token, card.card_token)
      assert.equal("25.00", card.initial_balance)
      assert.equal("team travel", card.card_remark)
      assert.equal("ACC-1", card.pay_account_num)
      assert.not_equal(applied.request_id, card.request_id)
    end)

    it("answers an unknown order with an api error naming it", function()
      local card, err = client:query_apply_result("NO-SUCH-ORDER-1")
      assert.is_nil(card)
      assert.equal("api", err.kind)
      assert.equal("order-not-found", err.sub_code)
      assert.equal("NO-SUCH-ORDER-1", err.order_no)
      assert.is_string(err.request_id)
    end)

    it("validates order_no before sending", function()
      local before = helpers.api_requests(sb)
      local card, err = client:query_apply_result("bad order no!")
      assert.is_nil(card)
      assert.equal("validation", err.kind)
      assert.equal("order_no", err.field)
      assert.equal(before, helpers.api_requests(sb))
    end)
  end)

  it("sends a well-formed envelope: the sandbox checks it and counts the request", function()
    local before = sb:stats().requests["/issuing/card/apply"] or 0
    assert(client:apply_card(helpers.biz()))
    assert.equal(before + 1, sb:stats().requests["/issuing/card/apply"])
  end)

  it("a client made for another merchant key gets a protocol error, not garbage", function()
    local opts = sb:client_options()
    opts.merchant_private_key = helpers.keypair("stranger").private_pem
    local stranger = assert(issuing.new(opts))
    local card, err = stranger:apply_card(helpers.biz())
    stranger:close()
    assert.is_nil(card)
    assert.equal("protocol", err.kind)
    assert.matches("random_key", err.message)
  end)
end)
