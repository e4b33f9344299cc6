-- `pagsmile-issuing apply --file FILE --journal PATH`: one card per row, safe to run again.
--
-- A run: read and check every row; match the file against the journal (a row that may have
-- an order on the platform must not have changed); settle first the rows whose outcome may
-- be unknown (Query Apply Result: a card is recorded, "no such order" lets the row be applied
-- again with the same order_no); apply the rest through client:apply_cards, each row committed
-- as "sent" before it is handed over and its outcome recorded as it settles; query once more
-- the rows that ended unknown; with --wait follow the processing ones; write --out complete.
-- Ctrl-C stops the taking of rows; the orders in flight settle before the command exits.
local api = require "pagsmile.issuing.api"
local deps = require "pagsmile.issuing.cli.deps"
local journal = require "pagsmile.issuing.cli.journal"
local output = require "pagsmile.issuing.cli.output"
local progress = require "pagsmile.issuing.cli.progress"
local rows = require "pagsmile.issuing.cli.rows"
local settings = require "pagsmile.issuing.cli.settings"

local bulk = {}

local format, min, tostring = string.format, math.min, tostring

bulk.EXIT = { ok = 0, failed = 1, usage = 2, again = 3 }

-- One line of an error for the journal and the results: tostring(err) never holds biz_data,
-- keys or PANs (errors.lua).
local function why(err)
  return err and tostring(err) or nil
end

--- The journal's outcome for a card or an error of the library.
function bulk.outcome(card, err)
  if card then
    return { state = card.completed and "completed" or "processing", order_status = card.order_status,
      card_id = card.card_id, holder_id = card.holder_id,
      card_token = card.card_token ~= "" and card.card_token or nil,
      card_pan = card.card_pan ~= "" and progress.mask_pan(card.card_pan) or nil }
  end
  if err.outcome == "unknown" then return { state = "unknown", error = why(err) } end
  -- The order_no is taken: the order exists (an earlier attempt of ours); a query settles it.
  if err.kind == "api" and api.ORDER_DUPLICATE[err.sub_code] then
    return { state = "unknown", error = why(err) }
  end
  if err.kind == "validation" then return { state = "invalid", error = why(err) } end
  if err.kind == "api" then return { state = "failed", error = why(err) } end
  -- Nothing of it left this machine (refused connection, a setting): applied again next run.
  return { state = "new", error = why(err) }
end

local OUTCOME_FIELDS = { "state", "order_status", "card_id", "card_token", "card_pan", "holder_id", "error" }

-- The file's rows against the journal's: every row's record (from the journal, or new), and
-- the records to write. A row that may have an order on the platform must be the one recorded.
local function reconcile(list, j, label)
  local recorded, writes, recs = j:rows(), {}, {}
  local prefix = j:meta("order_prefix")
  for _, row in ipairs(list) do
    local rec = recorded[row.index]
    -- (an invalid row is recorded without its order_no: it means nothing yet, and may be
    -- another row's)
    local same = rec and rec.hash == (row.hash or "")
      and (rec.order_no == row.order_no or rec.order_no == nil and not row.valid)
    if rec and not same and journal.LOCKED[rec.state] then
      deps.fail(deps.USAGE, format("%s:%d: this row is not the one the journal recorded as row %d "
        .. "(order_no %s, %s%s): put the file back as it was, or use a new --journal for a new "
        .. "file (a new order_no for this row could issue a second card)", label, row.line,
        row.index, tostring(rec.order_no), progress.status(rec.state),
        rec.derived and (", derived from the row and --order-prefix " .. tostring(prefix)) or ""))
    end
    -- Rows never sent follow the file: new ones, changed ones, and a validity that changed.
    local fresh = not same or not journal.LOCKED[rec.state] and (rec.state == "invalid") == row.valid
    if fresh then
      local first = row.problems[1]
      rec = { row = row.index, line = row.line, order_no = row.valid and row.order_no or nil,
              hash = row.hash or "",
              derived = row.derived, state = row.valid and "new" or "invalid",
              error = first and first.message or nil, attempts = rec and rec.attempts or 0 }
      writes[#writes + 1] = rec
    end
    rec.line, rec.biz, rec.valid = row.line, row.biz, row.valid
    recs[row.index] = rec
  end
  for n, rec in pairs(recorded) do
    if n > #list and journal.LOCKED[rec.state] then
      deps.fail(deps.USAGE, format("%s: the journal has row %d (order_no %s, %s), beyond the end of "
        .. "the file: put the file back as it was, or use a new --journal", label, n,
        tostring(rec.order_no), progress.status(rec.state)))
    end
  end
  return recs, writes
end

-- This process's id (Linux), for the journal's "in use" mark.
local function own_pid()
  local f = io.open("/proc/self/stat", "rb")
  if not f then return nil end
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  return pid
end

local function claim(j)
  local pid = own_pid()
  if not pid then return end
  local other = j:meta("pid")
  if other and other ~= "" and other ~= pid then
    -- a process killed a moment ago may still be a zombie (state Z) until it is reaped
    local f = io.open("/proc/" .. other .. "/stat", "rb")
    local stat = f and f:read("*l") or ""
    if f then f:close() end
    local state = stat:match("%) (%a)")
    if state and state ~= "Z" and state ~= "X" then
      deps.fail(deps.USAGE, j.path .. " is in use by process " .. other .. " (another run of this file)")
    end
  end
  j:set_meta("pid", pid)
end

local Run = {}
Run.__index = Run

-- Records an outcome in the row and the journal (committed with its group, journal.lua), and
-- reports it when `final`.
function Run:settle(rec, outcome, final)
  local was = rec.reported
  for _, k in ipairs(OUTCOME_FIELDS) do rec[k] = outcome[k] end
  self.j:record(rec.row, rec)
  if final then
    self.out:row(rec, was)
    rec.reported = rec.state
  end
end

-- Query Apply Result for rows whose order may exist: a card is recorded; "no such order"
-- makes the row new again, to be applied with the same order_no (reported only in the `last`
-- pass, after the batch: before it, the row is applied next).
function Run:query(list, last)
  for _, rec in ipairs(list) do
    if self:notice_interrupt() then break end
    local card, err = self.client:query_apply_result(rec.order_no)
    if card then
      self:settle(rec, bulk.outcome(card), true)
    elseif err.kind == "api" and api.ORDER_NOT_FOUND[err.sub_code] then
      self:settle(rec, { state = "new" }, last)
    else
      self:settle(rec, { state = rec.state == "sent" and "unknown" or rec.state, error = why(err),
        order_status = rec.order_status, card_id = rec.card_id, card_token = rec.card_token,
        card_pan = rec.card_pan, holder_id = rec.holder_id }, true)
    end
  end
  self.j:commit()
end

-- Reports the rows of `list` not reported yet in this run (the last pass was cut short).
function Run:report(list)
  for _, rec in ipairs(list) do
    if not rec.reported then
      self.out:row(rec)
      rec.reported = rec.state
    end
  end
end

function Run:notice_interrupt()
  if self.stopping or not self.interrupted() then return self.stopping end
  self.stopping = true
  self.out:note("interrupted: no new rows are sent; the orders in flight settle first "
    .. "(Ctrl-C again stops at once: a re-run settles them)")
  return true
end

-- The rows to apply, through client:apply_cards. Each chunk of `concurrency` rows is
-- committed as "sent" before its first row is handed over (one transaction per chunk, not
-- per row); rows of the last chunk never handed over go back to their state afterwards.
function Run:apply(todo, o)
  if #todo == 0 then return end
  local j, pos, marked = self.j, 0, 0
  local function next_row()
    if self:notice_interrupt() or pos >= #todo then return nil end
    pos = pos + 1
    if pos > marked then
      marked = min(#todo, pos + o.concurrency - 1)
      j:mark_sent(todo, pos, marked)
    end
    return todo[pos].biz
  end
  local _, stopped = self.client:apply_cards(next_row, {
    concurrency = o.concurrency, rate = o.rate, keep_results = false,
    on_result = function(i, card, err)
      -- An unknown outcome is asked about once more after the batch, and reported then.
      local outcome = bulk.outcome(card, err)
      self:settle(todo[i], outcome, outcome.state ~= "unknown")
      self:notice_interrupt()
    end,
  })
  j:unmark_sent(todo, pos + 1, marked)
  j:commit()
  if stopped then
    self.out:note("the run stopped: " .. stopped.message)
    self.broken = true
  end
end

-- --wait: follow each processing row until it completes or `seconds` have passed in all.
function Run:follow(list, seconds)
  local deadline = progress.clock() + seconds
  for _, rec in ipairs(list) do
    if self:notice_interrupt() then break end
    local left = deadline - progress.clock()
    if left <= 0 then break end
    local card, err = self.client:wait_apply_result(rec.order_no, { timeout = left, interval = 2 })
    card = card or err.card
    if card then self:settle(rec, bulk.outcome(card), true) end
  end
  self.j:commit()
end

local function by_state(recs, states)
  local out = {}
  for _, rec in ipairs(recs) do
    if states[rec.state] then out[#out + 1] = rec end
  end
  return out
end

local function summary(recs)
  local s = { rows = #recs, completed = 0, processing = 0, failed = 0, unknown = 0, not_sent = 0, invalid = 0 }
  for _, rec in ipairs(recs) do
    local status = progress.status(rec.state)
    s[status] = s[status] + 1
  end
  local again = s.processing + s.unknown + s.not_sent
  if again > 0 then
    s.exit = bulk.EXIT.again
    s.advice = "run the same command again to settle or send the rest"
  elseif s.failed + s.invalid > 0 then
    s.exit = bulk.EXIT.failed
  else
    s.exit = bulk.EXIT.ok
  end
  return s
end

-- Every violation of every invalid row; the number of invalid rows.
local function report_invalid(list, out)
  local n = 0
  for _, row in ipairs(list) do
    if not row.valid then
      n = n + 1
      for _, p in ipairs(row.problems) do out:invalid(row, p) end
    end
  end
  return n
end

local function mode(args)
  if args.json then return "json" end
  if args.quiet then return "quiet" end
  return output.is_tty(2) and "tty" or "plain"
end

-- --dry-run: every violation, and rows the journal (if there is one) recorded otherwise.
local function dry_run(args, list, out)
  local bad = report_invalid(list, out)
  local j = args.journal and journal.open(args.journal, false)
  if j then
    local ok, err = pcall(reconcile, list, j, args.file)
    j:close()
    if not ok then
      if not deps.is_failure(err) then error(err, 0) end
      out:note(err.message)
      bad = bad + 1
    end
  end
  local s = { rows = #list, invalid = bad, exit = bad > 0 and bulk.EXIT.failed or bulk.EXIT.ok,
              dry_run = true }
  if out.mode == "json" then
    out:finish(s)
  else
    out:note(format("%d rows, %d invalid; nothing was sent (dry run)", #list, bad))
  end
  return s.exit
end

--- The command. `interrupted()` says whether Ctrl-C came. Returns the exit status.
function bulk.run(args, interrupted)
  if args.order_prefix then
    local ok, err = rows.check_prefix(args.order_prefix)
    if not ok then deps.fail(deps.USAGE, err) end
  end
  local list = rows.prepare(rows.read(args.file, rows.format(args.file, args.format)), args.order_prefix)
  local out = progress.new { mode = mode(args), every = args.log_every, label = args.file }
  if args.dry_run then return dry_run(args, list, out) end
  if not args.journal then
    deps.fail(deps.USAGE, "--journal PATH is required with --file: it is what makes a run safe "
      .. "to repeat (--dry-run needs none)")
  end
  local bad = 0
  for _, row in ipairs(list) do if not row.valid then bad = bad + 1 end end
  if bad > 0 and not args.skip_invalid then
    report_invalid(list, out)
    out:note(format("%d of %d rows are invalid: nothing was sent (fix them, or give "
      .. "--skip-invalid to apply the others)", bad, #list))
    return bulk.EXIT.failed
  end
  local client = settings.client(args)
  local j = journal.open(args.journal, true)
  claim(j)
  local recs, writes = reconcile(list, j, args.file)
  j:record_rows(writes)
  if args.order_prefix then j:set_meta("order_prefix", args.order_prefix) end

  local run = setmetatable({ j = j, client = client, out = out, interrupted = interrupted }, Run)
  local settle_first = by_state(recs, { sent = true, unknown = true, processing = true })
  local todo = by_state(recs, { new = true, failed = true })
  out:start { rows = #recs, total = #settle_first + #todo, to_apply = #todo,
              to_settle = #settle_first, completed = #by_state(recs, { completed = true }),
              invalid = bad }
  run:query(settle_first)
  todo = by_state(recs, { new = true, failed = true }) -- with the rows the platform did not know
  run:apply(todo, { concurrency = args.concurrency, rate = args.rate })
  local unsure = by_state(todo, { unknown = true })
  if not run.stopping and not run.broken then
    run:query(unsure, true)
    if args.wait then run:follow(by_state(recs, { processing = true }), args.wait_timeout) end
  end
  run:report(unsure)
  if args.out then output.results(args.out, recs) end
  local s = summary(recs)
  s.out = args.out
  j:set_meta("pid", "")
  j:close()
  client:close()
  if run.broken and s.exit == bulk.EXIT.ok then s.exit = bulk.EXIT.again end
  out:finish(s)
  return s.exit
end

return bulk
