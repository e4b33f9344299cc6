-- Following a processing order, and one connection for many calls (issue #3).
local helpers = require "helpers"

describe("apply_card_and_wait", function()
  local sb, client

  lazy_setup(function() sb, client = helpers.start_client() end)
  lazy_teardown(function() helpers.stop_client(sb, client) end)

  it("a plain apply of a pending order returns it processing, with no token or PAN", function()
    local biz = helpers.biz()
    sb:pending(biz.order_no, 2)
    local card = assert(client:apply_card(biz))
    assert.equal("processing", card.status)
    assert.is_false(card.completed)
    assert.equal(3, card.order_status)
    assert.equal("", card.card_token)
    assert.equal("", card.card_pan)
  end)

  it("follows a pending order until it completes", function()
    local biz = helpers.biz()
    sb:pending(biz.order_no, 3)
    local seen = {}
    local card, err = client:apply_card_and_wait(biz, {
      timeout = 20, interval = 0.05,
      on_update = function(c) seen[#seen + 1] = c.status end,
    })
    assert.is_nil(err)
    assert.equal("completed", card.status)
    assert.matches("^tok_", card.card_token)
    assert.same({ "processing", "processing", "processing", "completed" }, seen)
    local order = sb:orders()[biz.order_no]
    assert.equal(1, order.applies)
    assert.equal(3, order.queries)
  end)

  it("returns a timeout error carrying the last known card when it never completes", function()
    local biz = helpers.biz()
    sb:pending(biz.order_no, 1000)
    local card, err = client:apply_card_and_wait(biz, { timeout = 0.5, interval = 0.1 })
    assert.is_nil(card)
    assert.equal("timeout", err.kind)
    assert.equal(biz.order_no, err.order_no)
    assert.equal("processing", err.card.status)
    assert.matches("still processing", err.message)
    assert.equal(1, sb:orders()[biz.order_no].applies)
  end)

  it("its timeout bounds the apply too, not only the polling after it", function()
    local biz = helpers.biz()
    -- The client's own timeout (30 s) would let this apply wait out its 5 s latency.
    assert(sb:faults { { order_no = biz.order_no, path = "/issuing/card/apply",
                         kind = "latency", ms = 5000 } })
    local t0 = require("pagsmile.issuing.core").monotime()
    local card, err = client:apply_card_and_wait(biz, { timeout = 1, interval = 0.1 })
    local elapsed = require("pagsmile.issuing.core").monotime() - t0
    -- The apply attempt gave up inside the 1 s; the order it had placed was then found by
    -- Query Apply Result, so the card comes back, and one order exists.
    assert.is_nil(err)
    assert.is_true(card.completed)
    assert.is_true(elapsed < 2, ("took %.2f s"):format(elapsed))
    assert.equal(1, sb:orders()[biz.order_no].applies)
    assert(sb:faults(false))
  end)

  it("a completed apply returns at once without querying", function()
    local biz = helpers.biz()
    local card = assert(client:apply_card_and_wait(biz))
    assert.is_true(card.completed)
    assert.equal(0, sb:orders()[biz.order_no].queries)
  end)
end)

describe("connection reuse", function()
  it("N calls over one client open one TCP connection (counted by the sandbox)", function()
    local sb, client = helpers.start_client()
    local before = sb:stats().connections
    local n = 12
    for i = 1, n do
      local biz = helpers.biz()
      assert(client:apply_card(biz))
      if i % 3 == 0 then assert(client:query_apply_result(biz.order_no)) end
    end
    local stats = sb:stats()
    helpers.stop_client(sb, client)
    local r = stats.requests
    assert.equal(n + n / 3, r["/issuing/card/apply"] + r["/issuing/card/query-apply-card-result"])
    -- The sandbox counts connections on its API paths only (control calls are not counted).
    assert.equal(1, stats.connections - before)
  end)
end)
