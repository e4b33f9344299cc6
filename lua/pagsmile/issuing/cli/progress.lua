-- What a bulk run tells as it goes. Four modes:
--   tty    a live line on stderr (done/total, completed, processing, failed, unknown, cards/s,
--          ETA), redrawn at most ten times a second; failures on lines of their own
--   plain  one line on stderr every `every` rows, and one per failure (logs, CI)
--   quiet  nothing but the command's fatal errors
--   json   one JSON object per line on stdout for every event (start, invalid, row, note,
--          done); nothing on stderr
-- Data goes to stdout only in json mode; people's text goes to stderr. Card PANs are shown
-- masked, as the API returns them (and masked here again if one ever came whole).
local deps = require "pagsmile.issuing.cli.deps"
local digest = require "pagsmile.issuing.cli.digest"

local progress = {}

local format, floor, max = string.format, math.floor, math.max

local clock = deps.clock
progress.clock = clock

--- A PAN as it may be shown: a run of 12 or more digits keeps its first 6 and last 4. One the
-- API already masked ("658704******0112") passes unchanged.
function progress.mask_pan(pan)
  if type(pan) ~= "string" then return pan end
  return (pan:gsub("%d%d%d%d%d%d%d%d%d%d%d%d+", function(d)
    return d:sub(1, 6) .. string.rep("*", #d - 10) .. d:sub(-4)
  end))
end

local Progress = {}
Progress.__index = Progress

--- opts: mode ("tty", "plain", "quiet", "json"), every (plain mode: rows between lines),
-- label (the input's name, in messages), out/err (files; default io.stdout/io.stderr).
function progress.new(opts)
  return setmetatable({
    mode = opts.mode, every = opts.every or 100, label = opts.label or "",
    out = opts.out or io.stdout, err = opts.err or io.stderr,
    total = 0, done = 0, counts = { completed = 0, processing = 0, failed = 0, unknown = 0 },
    started = clock(), drawn = 0, shown = false,
  }, Progress)
end

-- One JSON line: {"event": name, ...fields} (fields is not changed).
function Progress:event(name, fields)
  local e = { event = name }
  for k, v in pairs(fields) do e[k] = v end
  self.out:write(digest.canonical(e), "\n")
  self.out:flush()
end

function Progress:line()
  local c = self.counts
  local elapsed = max(clock() - self.started, 1e-3)
  local rate = self.done / elapsed
  local text = format("%d/%d done, %d completed, %d processing, %d failed, %d unknown, %.1f cards/s",
    self.done, self.total, c.completed, c.processing, c.failed, c.unknown, rate)
  if self.mode == "tty" and rate > 0 and self.done < self.total then
    local eta = floor((self.total - self.done) / rate + 0.5)
    text = text .. format(", ETA %d:%02d", floor(eta / 60), eta % 60)
  end
  return text
end

-- The live line: cleared before any other text, redrawn after it.
function Progress:clear()
  if self.shown then
    self.err:write("\r\27[K")
    self.shown = false
  end
end

function Progress:draw(force)
  local now = clock()
  if not force and now - self.drawn < 0.1 then return end
  self.drawn = now
  self.err:write("\r\27[K", self:line())
  self.err:flush()
  self.shown = true
end

--- Text for people (stderr), or a "note" event.
function Progress:note(text)
  if self.mode == "json" then return self:event("note", { message = text }) end
  if self.mode == "quiet" then return end
  self:clear()
  self.err:write("pagsmile-issuing: ", text, "\n")
  if self.mode == "tty" then self:draw(true) end
  self.err:flush()
end

--- One violation of one row (a dry run, or a run that refuses to start).
function Progress:invalid(row, problem)
  if self.mode == "json" then
    return self:event("invalid", { line = row.line, row = row.index, field = problem.field,
                                   rule = problem.rule, message = problem.message })
  end
  if self.mode == "quiet" then return end
  self.err:write(format("%s:%d: %s (%s)\n", self.label, row.line,
    problem.field and problem.message or ("the row " .. problem.message), problem.rule))
end

--- The run begins: `total` rows to settle or apply, and what was already done.
function Progress:start(info)
  self.total, self.started = info.total, clock()
  if self.mode == "json" then
    return self:event("start", info)
  end
  if self.mode == "quiet" then return end
  self:note(format("%d rows: %d to apply, %d to settle first, %d already completed%s", info.rows,
    info.to_apply, info.to_settle, info.completed,
    info.invalid > 0 and format(", %d invalid (skipped)", info.invalid) or ""))
end

local COUNTED = { completed = "completed", processing = "processing", failed = "failed",
                  unknown = "unknown", sent = "unknown", new = "failed" }

--- A row settled (rec: the journal's record after the outcome). `was`: the state it was
-- reported with before in this run, if it was (a later query changed it): counted once.
function Progress:row(rec, was)
  if was then
    local before = COUNTED[was] or "failed"
    self.counts[before] = self.counts[before] - 1
  else
    self.done = self.done + 1
  end
  local counted = COUNTED[rec.state] or "failed"
  self.counts[counted] = self.counts[counted] + 1
  if self.mode == "json" then
    return self:event("row", { line = rec.line, row = rec.row, order_no = rec.order_no,
      status = progress.status(rec.state), order_status = rec.order_status, card_id = rec.card_id,
      card_token = rec.card_token, card_pan = progress.mask_pan(rec.card_pan),
      error = rec.error })
  end
  if self.mode == "quiet" then return end
  if rec.error and rec.state ~= "completed" then
    self:clear()
    self.err:write(format("pagsmile-issuing: line %d (order_no %s): %s: %s\n", rec.line,
      tostring(rec.order_no), progress.status(rec.state), rec.error))
  end
  if self.mode == "tty" then
    self:draw(false)
  elseif not was and self.done % self.every == 0 then
    self.err:write("pagsmile-issuing: ", self:line(), "\n")
  end
  self.err:flush()
end

--- The run ended: `summary` = { counts by status, exit, out }.
function Progress:finish(summary)
  if self.mode == "json" then
    return self:event("done", summary)
  end
  if self.mode == "quiet" then return end
  self:clear()
  if self.mode == "plain" and self.done % self.every ~= 0 then
    self.err:write("pagsmile-issuing: ", self:line(), "\n")
  elseif self.mode == "tty" and self.total > 0 then
    self.err:write(self:line(), "\n")
  end
  local parts = {}
  for _, k in ipairs { "completed", "processing", "failed", "unknown", "not_sent", "invalid" } do
    if (summary[k] or 0) > 0 then parts[#parts + 1] = summary[k] .. " " .. k:gsub("_", " ") end
  end
  self.err:write(format("pagsmile-issuing: %d rows: %s%s\n", summary.rows,
    #parts > 0 and table.concat(parts, ", ") or "none", summary.advice and ("; " .. summary.advice) or ""))
  self.err:flush()
end

-- A journal state as results show it.
local STATUS = { new = "not_sent", sent = "unknown" }
function progress.status(state)
  return STATUS[state] or state
end

return progress
