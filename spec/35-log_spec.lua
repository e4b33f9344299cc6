-- The `log` setting: one event per HTTP attempt and per decision, from an allow-list only.
local issuing = require "pagsmile.issuing"
local core = require "pagsmile.issuing.core"
local helpers = require "helpers"

local ALLOWED = {
  event = true, method = true, path = true, order_no = true, attempt = true, request_id = true,
  status = true, duration = true, error = true, sent = true, code = true, sub_code = true,
  pause = true,
}

describe("log events", function()
  local sb, client, events

  lazy_setup(function()
    sb, client = helpers.start_client({}, { log = function(e) events[#events + 1] = e end })
  end)
  lazy_teardown(function() helpers.stop_client(sb, client) end)

  before_each(function() events = {} end)

  local function names()
    local t = {}
    for i, e in ipairs(events) do t[i] = e.event end
    return t
  end

  it("one http event per attempt, with allow-listed fields only", function()
    local biz = helpers.biz()
    local card = assert(client:apply_card(biz))
    assert.same({ "http" }, names())
    local e = events[1]
    assert.equal("POST", e.method)
    assert.equal("/issuing/card/apply", e.path)
    assert.equal(200, e.status)
    assert.equal(1, e.attempt)
    assert.equal(card.request_id, e.request_id)
    assert.equal(biz.order_no, e.order_no)
    assert.is_number(e.duration)
    for k in pairs(e) do assert.is_true(ALLOWED[k], "field " .. k) end
  end)

  it("tells the story of an apply recovered through Query Apply Result", function()
    local biz = helpers.biz()
    assert(sb:faults { { kind = "reset_after", path = "/issuing/card/apply" } })
    local card = assert(client:apply_card(biz))
    assert(sb:faults(nil))
    assert.equal("completed", card.status)
    assert.same({ "http", "resolve", "http", "resolved" }, names())
    assert.equal("transport", events[1].error)
    assert.is_true(events[1].sent)
    assert.equal("/issuing/card/query-apply-card-result", events[3].path)
    assert.equal(200, events[3].status)
    for _, e in ipairs(events) do
      for k in pairs(e) do assert.is_true(ALLOWED[k], "field " .. k) end
    end
  end)

  it("carries no biz_data values, keys or card data", function()
    local biz = helpers.biz()
    local card = assert(client:apply_card(biz))
    local text = core.json_encode(events)
    for _, secret in ipairs { biz.holder.email, biz.holder.id_no, biz.holder.mobile,
                              biz.holder.first_name, card.card_token, card.card_pan } do
      assert.is_nil(text:find(secret, 1, true), secret)
    end
  end)

  it("a log setting that is not a function is a config error", function()
    local opts = sb:client_options()
    opts.log = "stderr"
    local c, err = issuing.new(opts)
    assert.is_nil(c)
    assert.equal("log", err.field)
  end)
end)

describe("callbacks that raise", function()
  it("a log function that raises cannot lose the card of a call that issued one", function()
    local sb, client = helpers.start_client({}, { log = function() error("logger is down") end })
    local biz = helpers.biz()
    local card, err = client:apply_card(biz)
    local order = sb:orders()[biz.order_no]
    helpers.stop_client(sb, client)
    assert.is_nil(err)
    assert.equal(order.card_token, card.card_token)
  end)

  it("an on_update that raises cannot lose the card apply_card_and_wait followed", function()
    local sb, client = helpers.start_client()
    local biz = helpers.biz()
    sb:pending(biz.order_no, 1)
    local card, err = client:apply_card_and_wait(biz, { timeout = 10, interval = 0.05,
      on_update = function() error("progress bar broke") end })
    helpers.stop_client(sb, client)
    assert.is_nil(err)
    assert.is_true(card.completed)
  end)
end)
