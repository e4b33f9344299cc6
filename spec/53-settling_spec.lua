-- Settling an ambiguous apply (issue 9): once an attempt may have reached the platform, the
-- caller gets that very card or outcome "unknown" — never a plain failure for an order that
-- exists, never another order's card. Scripted per-order sandbox faults play the platform's
-- part; every case runs on the curl transport (this process) and on the ngx transport (the
-- runner nginx), against the real sandbox over loopback.
local core = require "pagsmile.issuing.core"
local helpers = require "helpers"
local kit = require "fault_kit"

local APPLY, QUERY = kit.APPLY, kit.QUERY
local BOUND = kit.TIMEOUT + kit.SLACK

-- The randomized matrix: every apply-side fault that fires after the order was processed ×
-- every follow-up × max_retries 0..3. SETTLING_CASES=all runs all of it; otherwise a random
-- sample of this many cases per transport (the seed is printed, SETTLING_SEED replays it).
local SAMPLE = tonumber(os.getenv("SETTLING_CASES") or "") or 12
local SEED = tonumber(os.getenv("SETTLING_SEED") or "") or os.time()

local APPLY_FAULTS = {
  { kind = "reset_after" },
  { kind = "truncated" },
  { kind = "drip", ms = 4000 },
  { kind = "latency", ms = 2500 },
  { kind = "http_500", after = true },
  { kind = "http_503", after = true },
  { kind = "garbage" },
  { kind = "late", ms = 300 },
  { kind = "other_order" },
  { kind = "bad_data", data = "absent" },
  { kind = "bad_data", data = "array" },
}

local SUB_CODES = { "rate-limited", "kyc-hold", "card-bin-disabled" }

-- Follow-ups: what the platform does after the ambiguous apply. `faults(order_no, rng)` gives
-- the scripted entries; `dead_from` sends every request from that one on to a dead port.
local FOLLOW_UPS = {
  { name = "nothing more" , faults = function() return {} end },
  { name = "not found", faults = function(o, rng)
      return { { order_no = o, path = QUERY, kind = "not_found", times = rng(1, 3) } } end },
  { name = "a refusal with another sub_code", faults = function(o, rng)
      return { { order_no = o, path = QUERY, kind = "not_found", times = rng(1, 2) },
               { order_no = o, path = APPLY, kind = "refuse", times = 100,
                 sub_code = SUB_CODES[rng(1, #SUB_CODES)] } } end },
  { name = "another order's data", faults = function(o, rng)
      return { { order_no = o, path = QUERY, kind = "other_order", times = rng(1, 3) } } end },
  { name = "unreachable", dead_from = 2, faults = function() return {} end },
}

local function label(f)
  return f.kind .. (f.after and "(after)" or "") .. (f.data and ("(" .. f.data .. ")") or "")
end

describe("settling an ambiguous apply", function()
  local sb
  local transports = kit.fixture(lazy_setup, lazy_teardown, before_each, function(s) sb = s end)

  local function order_of(order_no) return kit.order_of(sb, order_no) end

  for _, t in ipairs(transports) do
    describe("on the " .. t.name .. " transport", function()
      local function apply(biz, over, extra)
        local input = { options = kit.options(sb, over), call = "apply", biz_data = biz }
        for k, v in pairs(extra or {}) do input[k] = v end
        if input.dead_from then input.dead_port = helpers.free_port() end
        return t.run(input)
      end

      -- The caller's answer against the order book: that very card, or outcome unknown with
      -- the order_no; a definite failure only when no order exists.
      local function assert_settled(biz, res, what)
        local order = order_of(biz.order_no)
        if res.card then
          assert.is_not_nil(order, what .. ": a card for an order the platform does not have")
          assert.equal(biz.order_no, res.card.order_no, what)
          assert.equal(order.card_token, res.card.card_token, what .. ": another card")
        elseif order then
          assert.equal("unknown", res.err.outcome, what .. ": a definite " .. res.err.kind
            .. " error for an order that exists: " .. res.err.message)
          assert.is_true(res.err.sent, what)
          assert.equal(biz.order_no, res.err.order_no, what)
        end
        return order
      end

      it("issue 9 item 1: a re-apply that fails before sending does not hide the first attempt",
         function()
        -- apply processed, answer lost; the query says "not found" (not visible yet); every
        -- later request meets a refused connection
        local biz = helpers.biz()
        assert(sb:faults {
          { order_no = biz.order_no, path = APPLY, kind = "reset_after" },
          { order_no = biz.order_no, path = QUERY, kind = "not_found" },
        })
        local res = apply(biz, nil, { dead_from = 3 })
        assert.is_nil(res.card)
        assert.equal("unknown", res.err.outcome)
        assert.is_true(res.err.sent)
        assert.is_false(res.err.retryable)
        assert.equal(biz.order_no, res.err.order_no)
        assert.matches("failed before it was sent", res.err.message, 1, true)
        assert.is_true(res.elapsed < BOUND, ("took %.2f s"):format(res.elapsed))
        assert.is_not_nil(order_of(biz.order_no)) -- the card the caller must not give up on
      end)

      it("issue 9 item 2: a re-apply refused with another sub_code is not a plain refusal",
         function()
        for _, sub_code in ipairs(SUB_CODES) do
          local biz = helpers.biz()
          assert(sb:faults {
            { order_no = biz.order_no, path = APPLY, kind = "reset_after" },
            { order_no = biz.order_no, path = QUERY, kind = "not_found", times = 2 },
            { order_no = biz.order_no, path = APPLY, kind = "refuse", sub_code = sub_code },
          })
          local res = apply(biz)
          assert.is_nil(res.card, sub_code)
          assert.equal("unknown", res.err.outcome, sub_code)
          assert.is_true(res.err.sent)
          assert.equal("transport", res.err.kind) -- the first attempt's error, with the story
          assert.matches("applying again was refused", res.err.message, 1, true)
          assert.matches(sub_code, res.err.message, 1, true)
          assert.is_not_nil(order_of(biz.order_no))
        end
      end)

      it("issue 9 item 2: after a refused re-apply, a query that finds the order settles it",
         function()
        local biz = helpers.biz()
        assert(sb:faults {
          { order_no = biz.order_no, path = APPLY, kind = "reset_after" },
          { order_no = biz.order_no, path = QUERY, kind = "not_found" },
          { order_no = biz.order_no, path = APPLY, kind = "refuse", sub_code = "rate-limited" },
        })
        local res = apply(biz)
        assert.is_nil(res.err)
        assert.equal(order_of(biz.order_no).card_token, res.card.card_token)
      end)

      it("issue 9 item 3: an apply answered with another order's card is settled by a query",
         function()
        local other = helpers.biz()
        assert.is_nil(apply(other).err)
        local biz = helpers.biz()
        assert(sb:faults { { order_no = biz.order_no, path = APPLY, kind = "other_order",
                             other = other.order_no } })
        local res = apply(biz)
        assert.is_nil(res.err)
        assert.equal(biz.order_no, res.card.order_no)
        assert.equal(order_of(biz.order_no).card_token, res.card.card_token)
        assert.are_not.equal(order_of(other.order_no).card_token, res.card.card_token)
      end)

      it("issue 9 item 3: a query answered with another order's card or no card object is a "
         .. "protocol error, never the card", function()
        local biz = helpers.biz()
        assert.is_nil(apply(biz).err)
        for _, f in ipairs {
          { kind = "other_order" }, { kind = "bad_data", data = "absent" },
          { kind = "bad_data", data = "null" }, { kind = "bad_data", data = "empty" },
          { kind = "bad_data", data = "array" },
        } do
          f.order_no, f.path, f.times = biz.order_no, QUERY, 100
          assert(sb:faults { f })
          local res = t.run { options = kit.options(sb, { max_retries = 1 }), call = "query",
                              order_no = biz.order_no }
          assert.is_nil(res.card, label(f))
          assert.equal("protocol", res.err.kind, label(f))
          assert.matches("where the card of order_no", res.err.message, 1, true)
        end
      end)

      it("issue 9 item 3: an apply answered 10000 without a card object is settled, every form",
         function()
        for _, data in ipairs { "absent", "null", "empty", "array" } do
          local biz = helpers.biz()
          assert(sb:faults { { order_no = biz.order_no, path = APPLY, kind = "bad_data",
                               data = data } })
          local res = apply(biz)
          assert.is_nil(res.err, data)
          assert.equal(order_of(biz.order_no).card_token, res.card.card_token, data)
        end
      end)

      it("issue 9 item 8: close() during an ambiguous apply (from its log) does not break it",
         function()
        local biz = helpers.biz()
        assert(sb:faults { { order_no = biz.order_no, path = APPLY, kind = "reset_after" } })
        local res = apply(biz, nil, { close_on_log = true })
        assert.is_nil(res.err, res.err and res.err.message)
        assert.equal(order_of(biz.order_no).card_token, res.card.card_token)
        assert.is_true(res.freed) -- and the keys were freed once the call ended
      end)

      if t.name == "ngx" then
        it("issue 9 item 8: close() from another light thread while a call is in flight",
           function()
          local biz = helpers.biz()
          assert(sb:faults { { order_no = biz.order_no, path = APPLY, kind = "latency",
                               ms = 600 } })
          local res = apply(biz, nil, { close_after = 0.2 })
          assert.is_nil(res.err, res.err and res.err.message)
          assert.equal(order_of(biz.order_no).card_token, res.card.card_token)
          assert.is_true(res.freed)
        end)
      end

      it("the randomized settling matrix: " .. #APPLY_FAULTS .. " apply faults × "
         .. #FOLLOW_UPS .. " follow-ups × max_retries 0..3", function()
        local cases = {}
        for _, af in ipairs(APPLY_FAULTS) do
          for _, fu in ipairs(FOLLOW_UPS) do
            for retries = 0, 3 do cases[#cases + 1] = { af = af, fu = fu, retries = retries } end
          end
        end
        local seed = SEED + (t.name == "ngx" and 1 or 0)
        math.randomseed(seed)
        local rng = math.random
        for i = #cases, 2, -1 do -- shuffle, then take the sample
          local j = rng(1, i)
          cases[i], cases[j] = cases[j], cases[i]
        end
        local n = os.getenv("SETTLING_CASES") == "all" and #cases or math.min(SAMPLE, #cases)
        print(("[settling] %s: %d of %d cases, SETTLING_SEED=%d"):format(t.name, n, #cases, seed))
        for i = 1, n do
          local c = cases[i]
          local biz = helpers.biz()
          local what = ("case %d/%d (seed %d): %s then %s, max_retries %d"):format(
            i, n, seed, label(c.af), c.fu.name, c.retries)
          local entries = { kit.fault(c.af, { order_no = biz.order_no, path = APPLY }) }
          entries[1].data, entries[1].other = c.af.data, nil
          for _, e in ipairs(c.fu.faults(biz.order_no, rng)) do entries[#entries + 1] = e end
          assert(sb:faults(entries))
          local res = apply(biz, { max_retries = c.retries }, { dead_from = c.fu.dead_from })
          assert.is_true(res.elapsed < BOUND, what .. (": took %.2f s"):format(res.elapsed))
          if c.af.kind == "late" then core.sleep(0.4) end -- let the held-up attempt land
          assert(sb:faults(nil))
          assert_settled(biz, res, what)
        end
      end)
    end)
  end
end)
