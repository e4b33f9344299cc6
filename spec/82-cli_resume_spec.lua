-- The journal as the crash-safety contract of `apply --file` (docs/CLI.md, "The journal"): the
-- command killed with SIGKILL mid-run and run again issues each row's card once; the same with
-- random faults on a fifth of the emulator's answers; Ctrl-C (SIGINT) lets the orders in flight
-- settle; a file changed under a journal is refused where a second card could follow.
local helpers = require "helpers"
local kit = require "cli_kit"

local q = kit.q
local ROWS = 300

describe("pagsmile-issuing apply --file, interrupted and run again", function()
  local ctx = kit.fixture(lazy_setup, lazy_teardown, { PAGSMILE_TIMEOUT = "5" })
  before_each(function() assert(ctx.sb:reset()) end)

  -- Each scenario has its own file: its rows' given order_nos are its own too.
  local function args(name)
    local file = ctx.dir .. "/" .. name .. "-rows.csv"
    if not helpers.read_file(file) then
      kit.csv(file, ROWS, nil, function(i, row)
        if row.order_no ~= "" then row.order_no = name .. "-" .. i end
      end)
    end
    return ("apply --file %s --journal %s --order-prefix %s --concurrency 4 --out %s"):format(
      q(file), q(ctx.dir .. "/" .. name .. ".journal"), name, q(ctx.dir .. "/" .. name .. ".csv"))
  end

  -- Starts the command and kills it with `signal` once the emulator holds `orders` orders.
  local function interrupt(name, signal, orders)
    local r = kit.start(args(name), ctx.env)
    local seen = helpers.wait_for(function()
      local _, n = kit.book(ctx.sb)
      return n >= orders and n
    end, 60)
    assert(seen, "the run never reached " .. orders .. " orders")
    kit.signal(r, signal)
    kit.wait(r, 60)
    return r
  end

  -- Every order in the book has its journal row (written ahead), in a state that says so.
  local function written_ahead(journal)
    local by_order = {}
    for _, rec in pairs(journal) do if rec.order_no then by_order[rec.order_no] = rec end end
    for order_no in pairs((kit.book(ctx.sb))) do
      local rec = by_order[order_no]
      assert(rec, order_no .. " is in the book but not in the journal")
      assert(rec.state == "sent" or rec.state == "completed" or rec.state == "unknown",
        order_no .. " is " .. rec.state)
    end
  end

  -- The end state every scenario must reach: ROWS orders, one per row, as the results say.
  local function one_card_per_row(name)
    local book, n = kit.book(ctx.sb)
    assert.equal(ROWS, n)
    local results = kit.results(ctx.dir .. "/" .. name .. ".csv")
    assert.equal(ROWS, #results)
    local journal = kit.journal(ctx.dir .. "/" .. name .. ".journal")
    for i, res in ipairs(results) do
      assert.equal("completed", res.status, res.error)
      local card = assert(book[res.order_no], res.order_no)
      assert.equal(tostring(card.card_id), res.card_id)
      assert.equal(journal[i].card_id, res.card_id)
      assert.equal(kit.row(i)["holder.first_name"] .. " " .. kit.row(i)["holder.last_name"],
        card.holder_name)
    end
  end

  it("kill -9 mid-run, then the same command: each row's order once, results complete, exit 0", function()
    assert(ctx.sb:settings { latency_ms = 20 })
    local r = interrupt("K9", "KILL", 40)
    assert.equal(137, r.code)
    local journal, n = kit.journal(ctx.dir .. "/K9.journal")
    assert.equal(ROWS, n) -- every row recorded before the first send
    written_ahead(journal)
    local again = kit.run(args("K9"), ctx.env)
    assert.equal(0, again.code, again.err)
    assert.matches("to settle first", again.err)
    one_card_per_row("K9")
  end)

  it("the same with random faults on 20% of the emulator's answers", function()
    assert(ctx.sb:settings { latency_ms = 20 })
    assert(ctx.sb:random_faults { rate = 0.2, seed = 14,
      kinds = { "reset_before", "reset_after", "http_503", "garbage", "late" } })
    local r = interrupt("RF", "KILL", 40)
    assert.equal(137, r.code)
    written_ahead((kit.journal(ctx.dir .. "/RF.journal")))
    local code
    local runs = 0
    repeat
      runs = runs + 1
      local again = kit.run(args("RF"), ctx.env)
      code = again.code
      assert(code == 0 or code == 3, again.err)
    until code == 0 or runs == 5
    assert.equal(0, code)
    local dealt = 0
    for _, count in pairs(assert(ctx.sb:stats()).random_faults) do dealt = dealt + count end
    assert.is_true(dealt >= 30, "only " .. dealt .. " faults were dealt")
    one_card_per_row("RF")
    kit.sleep(1) -- a "late" request still on its way lands now, not in the next scenario's book
  end)

  it("Ctrl-C (SIGINT): no new rows, the orders in flight settle, journal and book agree, exit 3", function()
    assert(ctx.sb:settings { latency_ms = 40 })
    local r = interrupt("CC", "INT", 20)
    assert.equal(3, r.code, r.err)
    assert.matches("interrupted: no new rows are sent", r.err)
    local journal = kit.journal(ctx.dir .. "/CC.journal")
    local book, n = kit.book(ctx.sb)
    local completed = 0
    for _, rec in pairs(journal) do
      assert(rec.state == "completed" or rec.state == "new", rec.order_no .. " is " .. rec.state)
      if rec.state == "completed" then
        completed = completed + 1
        assert.equal(rec.card_id, tostring(assert(book[rec.order_no]).card_id))
      else
        assert.is_nil(book[rec.order_no], "an order sent but recorded as not sent")
      end
    end
    assert.equal(n, completed)
    assert.is_true(n < ROWS)
    local results = kit.results(ctx.dir .. "/CC.csv")
    assert.equal(ROWS, #results) -- written whole, the rows not sent included
  end)

  it("a row changed after its order was sent is refused; a row never sent may change", function()
    local small = ctx.dir .. "/small.csv"
    kit.csv(small, 6, "\n")
    local run = ("apply --file %s --journal %s --order-prefix CH"):format(q(small), q(ctx.dir .. "/small.journal"))
    local r = kit.run(run, ctx.env)
    assert.equal(0, r.code, r.err)
    kit.csv(small, 6, "\n", function(i, row) if i == 4 then row["holder.email"] = "changed@example.com" end end)
    r = kit.run(run, ctx.env)
    assert.equal(2, r.code)
    assert.matches("small.csv:5: this row is not the one the journal recorded as row 4 %(order_no CH%-"
      .. "%w+, completed, derived from the row and %-%-order%-prefix CH%)", r.err)
    local _, n = kit.book(ctx.sb)
    assert.equal(6, n)
    -- A row that was invalid (never sent) is fixed in the file: it goes out on the next run.
    kit.csv(small, 7, "\n", function(i, row) if i == 7 then row["holder.email"] = "bad" end end)
    local fixed = ("apply --file %s --journal %s --order-prefix CH --skip-invalid"):format(q(small),
      q(ctx.dir .. "/small2.journal"))
    r = kit.run(fixed, ctx.env)
    assert.equal(1, r.code, r.err)
    kit.csv(small, 7, "\n")
    r = kit.run(fixed, ctx.env)
    assert.equal(0, r.code, r.err)
    assert.matches("1 to apply", r.err)
  end)
end)
