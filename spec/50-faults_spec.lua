-- Faults (issue #5): every sandbox fault gives the error kind DESIGN.md promises, within the
-- caller's deadline, with `sent` and `retryable` told truthfully; an ambiguous apply is
-- settled through Query Apply Result and never applied twice; a connect failure is retried.
-- Each case runs on the curl transport (this process) and on the ngx transport (a client
-- inside the runner nginx), against the real sandbox over loopback.
local core = require "pagsmile.issuing.core"
local issuing = require "pagsmile.issuing"
local launch = require "sandbox.launch"
local nginx = require "sandbox.nginx"
local helpers = require "helpers"
local kit = require "fault_kit"

local APPLY, QUERY = kit.APPLY, kit.QUERY
local BOUND = kit.TIMEOUT + kit.SLACK

describe("faults", function()
  local sb
  local transports = kit.fixture(lazy_setup, lazy_teardown, before_each, function(s) sb = s end)

  local function order_of(order_no) return kit.order_of(sb, order_no) end

  -- What became of an order, asked after the faults are gone (nothing lost, nothing extra).
  local function settled(order_no)
    assert(sb:faults(nil))
    local client = assert(issuing.new(kit.options(sb)))
    local card, err = client:query_apply_result(order_no)
    client:close()
    return card, err
  end

  for _, t in ipairs(transports) do
    describe("on the " .. t.name .. " transport", function()
      local function apply(biz, over)
        return t.run { options = kit.options(sb, over), call = "apply", biz_data = biz }
      end

      for _, row in ipairs(kit.FAULTS) do
        it(kit.label(row) .. " on every request: a " .. row.error .. " error, sent, not "
           .. "retryable, outcome unknown, within the deadline, never a second apply", function()
          local biz = helpers.biz()
          assert(sb:faults { kit.fault(row, { times = 100 }) })
          local res = apply(biz)
          assert.is_nil(res.card)
          local err = res.err
          assert.equal(row.error, err.kind)
          assert.is_true(err.sent)
          assert.is_false(err.retryable)
          assert.equal(row.http_status, err.http_status)
          assert.equal("unknown", err.outcome)
          assert.equal(biz.order_no, err.order_no)
          assert.is_string(err.request_id)
          assert.matches("outcome of the apply is unknown", err.message, 1, true)
          assert.matches(biz.order_no, err.text, 1, true)
          assert.is_true(res.elapsed < BOUND, ("took %.2f s"):format(res.elapsed))
          local order = order_of(biz.order_no)
          local card, qerr = settled(biz.order_no)
          if row.processed then
            assert.equal(1, order.applies)
            assert.equal(order.card_token, card.card_token)
          else
            assert.is_nil(order)
            assert.is_nil(card)
            assert.equal("order-not-found", qerr.sub_code)
          end
        end)

        it(kit.label(row) .. " on the apply only: settled, exactly one card", function()
          local biz = helpers.biz()
          assert(sb:faults { kit.fault(row, { path = APPLY }) })
          local queries = assert(sb:stats()).requests[QUERY] or 0
          local res = apply(biz)
          assert.is_nil(res.err)
          assert.equal(biz.order_no, res.card.order_no)
          assert.equal("completed", res.card.status)
          assert.is_true(res.elapsed < BOUND, ("took %.2f s"):format(res.elapsed))
          local order = order_of(biz.order_no)
          assert.equal(1, order.applies)
          assert.equal(order.card_token, res.card.card_token)
          -- settled by asking first: a second apply only after a definite "no such order"
          assert.is_true(assert(sb:stats()).requests[QUERY] > queries)
          assert.equal(0, assert(sb:settings()).faults[1].times) -- the fault did fire
        end)
      end

      it("reset after processing, then the query fails too: outcome unknown, one apply", function()
        local biz = helpers.biz()
        assert(sb:faults {
          { order_no = biz.order_no, path = APPLY, kind = "reset_after" },
          { order_no = biz.order_no, path = QUERY, kind = "http_503", times = 100 },
        })
        local res = apply(biz)
        assert.is_nil(res.card)
        assert.equal("transport", res.err.kind)
        assert.equal("unknown", res.err.outcome)
        assert.equal(biz.order_no, res.err.order_no)
        assert.matches("outcome of the apply is unknown", res.err.message, 1, true)
        assert.matches("HTTP status 503", res.err.message, 1, true)
        assert.is_true(res.elapsed < BOUND)
        local order = order_of(biz.order_no)
        assert.equal(1, order.applies)
        -- every query was refused by the fault; settling an apply, the client went on asking
        -- past max_retries (2) until the deadline
        assert.is_true(100 - assert(sb:settings()).faults[2].times > 3)
        local card = assert(settled(biz.order_no))
        assert.equal(order.card_token, card.card_token)
      end)

      it("an attempt held up on its way (not found yet) is never reported as not created",
         function()
        -- the first apply's connection dies at once and the sandbox acts on it 1 s later,
        -- after the client's query has been told "no such order"
        local biz = helpers.biz()
        assert(sb:faults { { order_no = biz.order_no, path = APPLY, kind = "late", ms = 1000 } })
        local res = apply(biz, { max_retries = 0 })
        assert.is_nil(res.card)
        assert.equal("unknown", res.err.outcome)
        assert.equal(biz.order_no, res.err.order_no)
        assert.matches("did not know the order yet", res.err.message, 1, true)
        assert.is_nil(res.err.message:find("no card was issued", 1, true))
        core.sleep(1.2)
        local card = assert(settled(biz.order_no)) -- the card the caller must not give up on
        assert.equal(biz.order_no, card.order_no)
      end)

      it("a held-up attempt with retries left: applied again, one order, the card returned",
         function()
        local biz = helpers.biz()
        assert(sb:faults { { order_no = biz.order_no, path = APPLY, kind = "late", ms = 1000 } })
        local res = apply(biz)
        assert.is_nil(res.err)
        assert.equal(biz.order_no, res.card.order_no)
        core.sleep(1.2) -- the held-up original arrives, and is refused as a duplicate
        local order = order_of(biz.order_no)
        assert.equal(2, order.applies)
        assert.equal(order.card_token, res.card.card_token)
      end)

      it("a per-order fault leaves other orders alone", function()
        local hit, other = helpers.biz(), helpers.biz()
        assert(sb:faults { { order_no = hit.order_no, kind = "http_503", times = 100 } })
        local res = apply(other)
        assert.is_nil(res.err)
        assert.equal(other.order_no, res.card.order_no)
        res = apply(hit)
        assert.equal("protocol", res.err.kind)
        assert.equal(503, res.err.http_status)
        assert.is_nil(order_of(hit.order_no))
      end)

      it("a timeout after processing (the apply only) is settled within the deadline", function()
        local biz = helpers.biz()
        assert(sb:faults { { order_no = biz.order_no, path = APPLY, kind = "latency",
                             ms = (kit.TIMEOUT + 1) * 1000 } })
        local res = apply(biz)
        assert.is_nil(res.err)
        assert.equal(biz.order_no, res.card.order_no)
        assert.is_true(res.elapsed < BOUND, ("took %.2f s"):format(res.elapsed))
        assert.equal(1, order_of(biz.order_no).applies)
      end)

      it("connection refused: a transport error, not sent, retryable", function()
        local res = apply(helpers.biz(), { base_url = "http://127.0.0.1:" .. helpers.free_port() })
        assert.equal("transport", res.err.kind)
        assert.is_false(res.err.sent)
        assert.is_true(res.err.retryable)
        assert.is_nil(res.err.outcome)
        assert.is_true(res.elapsed < BOUND)
      end)
    end)
  end

  describe("a connect failure before sending", function()
    local curl_transport = require "pagsmile.issuing.transport.curl"

    -- The real curl transport, counting attempts; `after_failure` runs once, after the first
    -- failed attempt (this process is single-threaded: that is where the sandbox comes back).
    local function counting(after_failure)
      local real = assert(curl_transport.new())
      local w = { attempts = 0, kinds = {}, real = real }
      function w.request(_, req)
        w.attempts = w.attempts + 1
        local res, err = real:request(req)
        w.kinds[w.attempts] = res and res.status or err.kind
        if not res and after_failure then
          after_failure()
          after_failure = nil
        end
        return res, err
      end
      return w
    end

    it("is retried with backoff and succeeds when the sandbox comes back", function()
      local port = helpers.free_port()
      local back
      local w = counting(function() back = launch.start { port = port, keys = sb.keys } end)
      local client = assert(issuing.new(kit.options(sb, {
        base_url = "http://127.0.0.1:" .. port, transport = w, max_retries = 5, timeout = 20,
      })))
      local biz = helpers.biz()
      local ok, card, err = pcall(client.apply_card, client, biz)
      client:close()
      w.real:close()
      local order = back and back:orders()[biz.order_no]
      if back then back:stop() end
      assert.is_true(ok, tostring(card))
      assert.is_nil(err)
      assert.equal(biz.order_no, card.order_no)
      assert.is_true(w.attempts >= 2)
      assert.equal("transport", w.kinds[1])
      assert.equal(200, w.kinds[w.attempts])
      assert.equal(1, order.applies)
    end)

    it("gives up after max_retries + 1 attempts: transport, not sent, retryable", function()
      local w = counting(nil)
      local client = assert(issuing.new(kit.options(sb, {
        base_url = "http://127.0.0.1:" .. helpers.free_port(), transport = w, max_retries = 3,
        timeout = 10,
      })))
      local t0 = core.monotime()
      local card, err = client:apply_card(helpers.biz())
      local elapsed = core.monotime() - t0
      client:close()
      w.real:close()
      assert.is_nil(card)
      assert.equal("transport", err.kind)
      assert.is_false(err.sent)
      assert.is_true(err.retryable)
      assert.equal(4, w.attempts)
      -- three backoff pauses of at least 0.05, 0.1 and 0.2 s (half of 0.1 * 2^n, jittered)
      assert.is_true(elapsed >= 0.35, ("took %.2f s"):format(elapsed))
      assert.is_true(elapsed < 10 + kit.SLACK)
    end)
  end)
end)

-- The same fault matrix over the calls around the apply (issue 13): the new reads fail with
-- the row's error (or succeed on a retry when the fault fires once); an ambiguous
-- create_holder is settled through Query Cardholder by (id_no, id_type) before it is sent
-- again; an ambiguous top-up is settled through the transaction detail and never sent again,
-- so the emulator's ledger never shows an order_no moved twice (`money_duplicates = "move"`:
-- a re-sent top-up would move the money again).
describe("faults around the apply", function()
  local calls = require "support.calls"
  local around = require "support.around"
  local sb, runner
  local fx = {} -- a card, a cardholder, a top-up and a webhook made before any fault

  lazy_setup(function()
    sb = launch.start {}
    runner = nginx.start { name = "calls-runner", http = calls.CONFIG }
    local client = assert(issuing.new(sb:client_options()))
    fx.card = around.card(client, { initial_balance = "50.00" })
    fx.holder = assert(client:create_holder(around.holder()))
    fx.topup = around.topup(sb, fx.card.card_token)
    fx.tx = assert(client:recharge(fx.topup))
    assert(client:create_webhook { webhook_type = 2, webhook_url = "https://example.com/status" })
    client:close()
  end)
  lazy_teardown(function()
    if runner then runner.stop() end
    if sb then sb:stop() end
  end)
  before_each(function() assert(sb:settings { faults = false, money_duplicates = "move" }) end)

  local RUN = calls.engines(function() return runner end, core.monotime)

  -- Each new read: its path, its argument, and the field of its result that must be right.
  local READS = {
    { "query_card_info", "/issuing/card/query-card-info", function() return fx.card.card_token end,
      "card_token", function() return fx.card.card_token end },
    { "query_card_balance", "/issuing/card/query-card-balance", function() return fx.card.card_token end,
      "total", function() return 1 end },
    { "query_remaining_limit", "/issuing/card/query-remaining-limit",
      function() return { card_token = fx.card.card_token } end, "card_token",
      function() return fx.card.card_token end },
    { "query_card_limit", "/issuing/card/query-limit",
      function() return { card_token = fx.card.card_token } end, "card_token",
      function() return fx.card.card_token end },
    { "query_holder", "/issuing/holder/query", function() return { holder_id = fx.holder.holder_id } end,
      "holder_id", function() return fx.holder.holder_id end },
    { "query_transaction", "/issuing/card/query-card-transaction-detail",
      function() return { order_no = fx.topup.order_no, transaction_type = 121 } end,
      "transaction_id", function() return fx.tx.transaction_id end },
    { "query_webhooks", "/issuing/webhook/query-webhook-list", function() return nil end,
      "total", function() return 1 end },
  }
  local SLOW = { latency = true, drip = true } -- each costs the whole deadline: one read only

  -- A 1 s deadline (the apply's matrix uses 2): an ambiguous write is settled until its
  -- deadline, and the matrix has many of them; every row's error kind is the same.
  local function run(t, method, arg)
    return RUN[t] { options = kit.options(sb, { timeout = 1 }), method = method, arg = arg }
  end

  for _, t in ipairs { "curl", "ngx" } do
    describe("on the " .. t .. " transport", function()
      for _, row in ipairs(kit.FAULTS) do
        it(kit.label(row) .. ": every new read fails with " .. row.error .. ", and succeeds on a retry", function()
          for i, read in ipairs(READS) do
            if i == 1 or not SLOW[row.kind] then
              local method, path, arg, field, want = read[1], read[2], read[3], read[4], read[5]
              assert(sb:faults { kit.fault(row, { path = path, times = 100 }) })
              local res = run(t, method, arg())
              assert.is_nil(res.result, method)
              assert.equal(row.error, res.err.kind, method)
              assert.is_true(res.err.sent, method)
              assert.is_false(res.err.retryable, method)
              assert.is_nil(res.err.outcome, method)
              assert.equal(row.http_status, res.err.http_status, method)
              assert.is_true(res.elapsed < BOUND, method .. (" took %.2f s"):format(res.elapsed))
              if not SLOW[row.kind] then
                assert(sb:faults { kit.fault(row, { path = path }) })
                res = run(t, method, arg())
                assert(res.result, method .. ": " .. tostring(res.err and res.err.message))
                assert.equal(want(), res.result[field], method)
              end
            end
          end
        end)

        it(kit.label(row) .. ": create_holder settled by query_holder{id_no, id_type}, one holder", function()
          local h = around.holder()
          local stats = assert(sb:stats()).requests
          local creates, queries = stats["/issuing/holder/create"] or 0, stats["/issuing/holder/query"] or 0
          assert(sb:faults { kit.fault(row, { path = "/issuing/holder/create" }) })
          local res = run(t, "create_holder", h)
          assert(res.result, res.err and res.err.message)
          assert.is_true(res.elapsed < BOUND, ("took %.2f s"):format(res.elapsed))
          stats = assert(sb:stats()).requests
          assert.is_true(stats["/issuing/holder/query"] > queries, "settled by asking first")
          -- processed: one create and the query's answer; not processed: created again after
          -- a definite "no such cardholder"
          assert.equal(creates + (row.processed and 1 or 2), stats["/issuing/holder/create"])
          assert(sb:faults(nil))
          local got = assert(run(t, "query_holder", { id_no = h.id_no, id_type = h.id_type }).result)
          assert.equal(got.holder_id, res.result.holder_id)
        end)

        it(kit.label(row) .. " on every request: create_holder's outcome unknown, never a second holder", function()
          local h = around.holder()
          assert(sb:faults { kit.fault(row, { path = "/issuing/holder/create", times = 100 }),
                             kit.fault(row, { path = "/issuing/holder/query", times = 100 }) })
          local res = run(t, "create_holder", h)
          assert.is_nil(res.result)
          assert.equal(row.error, res.err.kind)
          assert.equal("unknown", res.err.outcome)
          assert.is_true(res.err.sent)
          assert.is_false(res.err.retryable)
          assert.matches("outcome of the cardholder creation is unknown", res.err.message, 1, true)
          assert.matches("query_holder", res.err.message, 1, true)
          assert.is_nil(res.err.message:find(h.id_no, 1, true))
          assert.is_true(res.elapsed < BOUND, ("took %.2f s"):format(res.elapsed))
          assert(sb:faults(nil))
          local got = run(t, "query_holder", { id_no = h.id_no, id_type = h.id_type })
          if row.processed then assert(got.result) else assert.equal("holder-not-found", got.err.sub_code) end
        end)

        it(kit.label(row) .. ": a top-up settled by the transaction detail, or unknown; never moved twice", function()
          for _, every in ipairs { false, true } do
            local topup = around.topup(sb, fx.card.card_token, "1.00")
            -- with order_no the fault hits that order's top-up and (every) its settling query
            assert(sb:faults { kit.fault(row, { order_no = topup.order_no, times = every and 100 or 1,
                                                path = not every and "/issuing/card/recharge" or nil }) })
            local res = run(t, "recharge", topup)
            local ledger = assert(sb:ledger()).orders[topup.order_no] or { requests = 0, moves = 0 }
            assert.is_true(res.elapsed < BOUND, ("took %.2f s"):format(res.elapsed))
            assert.is_true(ledger.requests <= 1, "the top-up was sent again")
            assert.equal(row.processed and 1 or 0, ledger.moves)
            if row.processed and not every then
              assert(res.result, res.err and res.err.message)
              assert.equal(ledger.transactions[1], res.result.transaction_id)
            else
              assert.is_nil(res.result)
              assert.equal("unknown", res.err.outcome)
              assert.equal(topup.order_no, res.err.order_no)
              assert.matches("not sent again automatically", res.err.message, 1, true)
            end
          end
        end)
      end
    end)
  end

  it("no order_no of the whole matrix moved twice", function()
    local n = 0
    for order_no, entry in pairs(assert(sb:ledger()).orders) do
      n = n + 1
      assert.is_true(entry.moves <= 1, order_no .. " moved " .. entry.moves .. " times")
    end
    assert.is_true(n > 2 * #kit.FAULTS)
  end)
end)
