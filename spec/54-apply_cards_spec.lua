-- client:apply_cards (issue 12): many orders at once against the local sandbox over loopback,
-- on both engines: the busted process (coroutines over libcurl's multi interface) and a real
-- nginx (light threads over cosockets, spec/support/batch.lua). Each order must keep the
-- no-duplicate guarantee of apply_card whatever the faults, the deadlines and the limits.
local issuing = require "pagsmile.issuing"
local nginx = require "sandbox.nginx"
local helpers = require "helpers"
local runner = require "spec.support.batch"

local RUNNER_HTTP = [[
  client_body_buffer_size 8m;
  client_max_body_size 8m;
  server {
    listen 127.0.0.1:${port};
    location = /batch { content_by_lua_block { require("spec.support.batch").handler() } }
  }
]]

local function rows(n, over)
  local list = {}
  for i = 1, n do list[i] = helpers.biz(over) end
  return list
end

-- The engines: each runs apply_cards(rows, opts) with a client of `client_over` settings
-- pointed at the sandbox, and returns spec/support/batch.lua's summary.
local function engines(get)
  return {
    curl = function(list, opts, client_over)
      local o = get().sb:client_options()
      for k, v in pairs(client_over or {}) do o[k] = v end
      local client = assert(issuing.new(o))
      local s = runner.run(client, list, opts or {}, helpers.biz)
      client:close()
      return s
    end,
    ngx = function(list, opts, client_over)
      local o = get().sb:client_options()
      for k, v in pairs(client_over or {}) do o[k] = v end
      local s = helpers.post_json(get().runner.url .. "/batch",
        { client = o, rows = list, opts = opts or {}, holder = helpers.holder() })
      local results = {}
      for k, r in pairs(s.results) do results[tonumber(k)] = r end
      s.results = results
      return s
    end,
  }
end

-- Every result against the sandbox's book: a card is that very order's card; an error for an
-- order the sandbox holds says the outcome is unknown; a definite error has no order behind it.
local function check_book(sb, list, s)
  local book = assert(sb:orders())
  local issued, unknown = 0, 0
  for i, row in ipairs(list) do
    local r, order = s.results[i], book[row.order_no]
    assert(r, "no result for row " .. i)
    if r.card then
      assert.equal(row.order_no, r.card.order_no)
      assert(order, "a card came back for an order the sandbox does not have: " .. row.order_no)
      assert.equal(order.card_token, r.card.card_token)
      issued = issued + 1
    elseif order then
      assert.equal("unknown", r.err.outcome,
        "a definite error for order " .. row.order_no .. " that the sandbox issued: " .. r.err.message)
      assert.is_true(r.err.sent)
      unknown = unknown + 1
    end
    -- an error for an order the sandbox does not hold may be definite or unknown: both true
  end
  return issued, unknown
end

-- The largest number of arrivals in any window of `width` seconds.
local function densest(arrivals, width)
  local most, j = 0, 1
  for i = 1, #arrivals do
    while arrivals[i] - arrivals[j] >= width do j = j + 1 end
    most = math.max(most, i - j + 1)
  end
  return most
end

describe("apply_cards", function()
  local ctx = {}

  lazy_setup(function()
    ctx.sb = require("sandbox.launch").start {}
    ctx.runner = nginx.start { name = "batch-runner", http = RUNNER_HTTP }
  end)
  lazy_teardown(function()
    if ctx.runner then ctx.runner.stop() end
    if ctx.sb then ctx.sb:stop() end
  end)
  before_each(function()
    assert(ctx.sb:reset())
  end)

  for _, name in ipairs { "curl", "ngx" } do
    local run = function(...) return engines(function() return ctx end)[name](...) end

    describe("on " .. name, function()
      it("issues every order once; a row with a bad field fails alone, naming the field", function()
        local list = rows(12)
        list[4].card_type = 0
        list[9] = { order_no = "BAD-ROW", card_type = 1 } -- no holder
        local s = run(list, { concurrency = 4 })
        assert.equal(12, s.calls)
        local seen = {}
        for _, i in ipairs(s.order) do
          assert.is_nil(seen[i], "on_result twice for row " .. i)
          seen[i] = true
        end
        assert.equal("validation", s.results[4].err.kind)
        assert.equal("card_type", s.results[4].err.field)
        assert.equal("validation", s.results[9].err.kind)
        assert.matches("^holder", s.results[9].err.field)
        local book = ctx.sb:orders()
        for i, row in ipairs(list) do
          if i ~= 4 and i ~= 9 then
            assert.equal(row.order_no, s.results[i].card.order_no)
            assert.equal(book[row.order_no].card_token, s.results[i].card.card_token)
            assert.equal(1, book[row.order_no].applies)
          end
        end
        assert.is_nil(book[list[4].order_no])
        assert.is_nil(s.stop)
      end)

      it("never has more than `concurrency` requests in flight, and does run them at once", function()
        assert(ctx.sb:settings { latency_ms = 200 })
        local s = run(rows(40), { concurrency = 8 })
        local stats = assert(ctx.sb:stats())
        assert(stats.max_in_flight <= 8, "the sandbox saw " .. stats.max_in_flight .. " in flight")
        assert(stats.max_in_flight >= 4, "only " .. stats.max_in_flight .. " at once: not concurrent")
        for i = 1, 40 do assert(s.results[i].card, "row " .. i .. " has no card") end
      end)

      it("honours `rate` over any 1-second window", function()
        local s = run(rows(24), { concurrency = 16, rate = 8 })
        local arrivals = assert(ctx.sb:arrivals())
        assert.equal(24, #arrivals)
        -- 8 per second: a window a little under 1 s (arrival jitter) holds at most 8
        local most = densest(arrivals, 0.95)
        assert(most <= 8, most .. " requests arrived within 0.95 s")
        assert(s.elapsed >= 1.9, "24 requests at 8/s took only " .. s.elapsed .. " s")
      end)

      it("under random faults on 25% of requests, no order is issued twice, lost or mixed up", function()
        local seed = tonumber(os.getenv("BATCH_SEED")) or os.time()
        assert(ctx.sb:settings { random_faults = { rate = 0.25, seed = seed, kinds = {
          "reset_before", "reset_after", "http_503", "garbage", "late" } } })
        local list = rows(200)
        local s = run(list, { concurrency = 32 })
        assert(ctx.sb:settings { random_faults = false })
        local stats = ctx.sb:stats()
        assert(stats.max_in_flight <= 32, "the sandbox saw " .. stats.max_in_flight .. " in flight")
        local dealt = 0
        for _, n in pairs(stats.random_faults) do dealt = dealt + n end
        assert(dealt >= 30, "only " .. dealt .. " faults were dealt")
        local issued, unknown = check_book(ctx.sb, list, s)
        assert(issued >= 150, "only " .. issued .. " of 200 cards came back (seed " .. seed .. ")")
        print(("  [%s] 200 orders, seed %d: %d faults, %d cards, %d unknown, %.1f s"):format(name,
          seed, dealt, issued, unknown, s.elapsed))
      end)

      it("a batch `timeout` bounds the whole batch against a hung sandbox", function()
        assert(ctx.sb:settings { latency_ms = 60000 })
        local s = run(rows(50), { concurrency = 10, timeout = 2 }, { timeout = 10 })
        assert(s.elapsed < 2 + 1.5, "the batch took " .. s.elapsed .. " s")
        for i = 1, 50 do
          local e = s.results[i].err
          assert(e, "row " .. i .. " has a card")
          assert(e.kind == "timeout" or e.outcome == "unknown", e.message)
          if e.sent then assert.equal("unknown", e.outcome) end
        end
      end)

      it("counts each order's `timeout` from that order's start", function()
        assert(ctx.sb:settings { latency_ms = 60000 })
        -- two waves of 5: the second starts when the first gives up, and gets its own 1 s
        local s = run(rows(10), { concurrency = 5 }, { timeout = 1 })
        assert(s.elapsed >= 1.8, "the second wave gave up at once: " .. s.elapsed .. " s")
        assert(s.elapsed < 2 + 1.5, "the batch took " .. s.elapsed .. " s")
        for i = 1, 10 do assert.equal("unknown", s.results[i].err.outcome) end
      end)

      it("takes an iterator: results by arrival, keep_results = false keeps none", function()
        local s = run({ iterate = 30, every = 3 }, { concurrency = 6, keep_results = false })
        assert.equal(30, s.calls)
        assert.same({}, s.results)
        table.sort(s.order)
        for i = 1, 30 do assert.equal(i, s.order[i]) end
        local n = 0
        for _ in pairs(ctx.sb:orders()) do n = n + 1 end
        assert.equal(10, n)
      end)

      it("stops taking rows when on_result raises, and finishes the orders in flight", function()
        local list = rows(40)
        local s = run(list, { concurrency = 4, raise_at = 3 })
        assert.equal("stopped", s.stop.kind)
        assert.matches("on_result raised", s.stop.message)
        local book = ctx.sb:orders()
        for i, row in ipairs(list) do
          if i < s.stop.not_started then
            assert(s.results[i] and s.results[i].card, "row " .. i .. " was started: it has its card")
          else
            assert.is_nil(s.results[i])
            assert.is_nil(book[row.order_no], "row " .. i .. " was sent after the stop")
          end
        end
        assert(s.stop.not_started <= 3 + 4 + 1)
      end)
    end)
  end

  it("close() during a batch stops it; the orders in flight end with their cards", function()
    local list = rows(30)
    local s = engines(function() return ctx end).curl(list, { concurrency = 4, close_at = 2 })
    assert.equal("stopped", s.stop.kind)
    assert.matches("closed", s.stop.message)
    for i = 1, s.stop.not_started - 1 do assert(s.results[i].card) end
  end)

  it("checks its options: a misspelt one is a config error, a bad value raises", function()
    local client = assert(issuing.new(ctx.sb:client_options()))
    local r, err = client:apply_cards({}, { concurency = 4 })
    assert.is_nil(r)
    assert.equal("config", err.kind)
    assert.equal("concurency", err.field)
    assert.has_error(function() client:apply_cards({}, { concurrency = 0 }) end,
      "pagsmile.issuing: concurrency must be a whole number from 1 to 256")
    assert.has_error(function() client:apply_cards({}, { concurrency = 257 }) end)
    assert.has_error(function() client:apply_cards({}, { rate = -1 }) end)
    assert.has_error(function() client:apply_cards("rows") end)
    assert.same({}, (client:apply_cards({})))
    client:close()
  end)

  it("runs in flat memory over a long iterator with keep_results = false", function()
    local client = assert(issuing.new(ctx.sb:client_options()))
    local k, marks = 0, {}
    local function list()
      k = k + 1
      if k > 20000 then return nil end
      local row = helpers.biz()
      if k % 500 ~= 0 then row.card_type = nil end
      return row
    end
    local results = client:apply_cards(list, { concurrency = 8, keep_results = false,
      on_result = function(i)
        if i % 5000 == 0 then
          collectgarbage("collect")
          marks[#marks + 1] = collectgarbage("count")
        end
      end })
    client:close()
    assert.same({}, results)
    assert.equal(4, #marks)
    -- the heap after 20,000 rows is within 512 kB of the heap after 5,000
    assert(marks[4] - marks[1] < 512, ("heap grew from %.0f kB to %.0f kB"):format(marks[1], marks[4]))
  end)
end)
