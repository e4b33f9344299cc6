-- The journal of a bulk run: one SQLite file (LuaSQL), WAL, synchronous = FULL, so that a
-- committed write survives kill -9 and a power cut. It is the crash-safety contract of
-- `apply --file` (docs/CLI.md, "The journal"): a row's order_no is committed before any
-- request for it can leave, and every outcome is recorded as it settles (committed in groups,
-- at most GROUP_SECONDS later: below).
--
-- One row of `rows` per row of the input file (`row` = its ordinal, 1 = the first after the
-- header), in one of these states:
--   new        recorded; nothing was sent (or the platform said it has no such order)
--   sent       handed to the sender: a request may have left, the outcome is not recorded
--   processing the platform has the order, not completed yet
--   completed  the card is recorded
--   failed     the platform refused the order (no order exists): applied again next run
--   unknown    the library could not learn the outcome: queried first next run
--   invalid    the row broke a rule of the schema (with --skip-invalid); never sent
local deps = require "pagsmile.issuing.cli.deps"

local journal = {}

local type, tostring, format, concat = type, tostring, string.format, table.concat

journal.VERSION = "1"

-- States whose order may exist on the platform: the row must not change, and its outcome is
-- asked before anything is sent again.
journal.LOCKED = { sent = true, processing = true, completed = true, unknown = true }

local SCHEMA = {
  "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
  [[CREATE TABLE IF NOT EXISTS rows (
      row INTEGER PRIMARY KEY, line INTEGER NOT NULL, order_no TEXT UNIQUE,
      hash TEXT NOT NULL, derived INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL,
      order_status INTEGER, card_id TEXT, card_token TEXT, card_pan TEXT, holder_id TEXT,
      error TEXT, attempts INTEGER NOT NULL DEFAULT 0, updated REAL)]],
}

-- The columns a recorded outcome may set, in the order they are written.
local OUTCOME = { "state", "order_status", "card_id", "card_token", "card_pan", "holder_id", "error" }
local COLUMNS = "row, line, order_no, hash, derived, state, order_status, card_id, card_token, "
  .. "card_pan, holder_id, error, attempts"

local Journal = {}
Journal.__index = Journal

local function fail(message)
  deps.fail(deps.USAGE, message)
end

function Journal:value(v)
  if v == nil then return "NULL" end
  if type(v) == "number" then return v == math.floor(v) and format("%d", v) or format("%.17g", v) end
  if type(v) == "boolean" then return v and "1" or "0" end
  return "'" .. self.conn:escape(tostring(v)) .. "'"
end

-- Runs one statement; a failure raises (a journal that cannot be written stops the run).
-- Returns the cursor of a statement that gives rows (close it), or nothing.
function Journal:query(sql)
  local result, err = self.conn:execute(sql)
  if result == nil then error("journal " .. self.path .. ": " .. tostring(err), 0) end
  return type(result) == "userdata" and result or nil
end

-- Runs one statement, dropping any rows it gives (PRAGMA answers); the first value, if any.
function Journal:exec(sql)
  local cur = self:query(sql)
  if not cur then return nil end
  local v = cur:fetch()
  cur:close()
  return v
end

-- Outcomes are committed in groups: a commit (an fsync) per row would cost more than the
-- row's request. An outcome not committed yet when the process dies leaves its row "sent",
-- so the next run asks the platform, and nothing is lost. A group is committed once it is
-- GROUP_SECONDS old or GROUP_ROWS long, whenever rows are marked sent, and by commit().
journal.GROUP_SECONDS = 0.1
journal.GROUP_ROWS = 256

function Journal:begin()
  if not self.open then
    self:exec("BEGIN IMMEDIATE")
    self.open, self.opened, self.grouped = true, deps.clock(), 0
  end
end

--- Commits what is written so far (durably), if anything.
function Journal:commit()
  if self.open then
    self:exec("COMMIT")
    self.open = false
  end
end

-- fn inside a transaction (with the open group, if any), committed before this returns.
function Journal:transaction(fn)
  self:begin()
  local ok, err = pcall(fn)
  if not ok then
    self.conn:execute("ROLLBACK")
    self.open = false
    error(err, 0)
  end
  self:commit()
end

--- Opens (or, with `create`, makes) the journal at `path`.
function journal.open(path, create)
  local driver = deps.need("luasql.sqlite3", "lua-sql-sqlite3", "luasql-sqlite3")
  local exists = io.open(path, "rb")
  if exists then exists:close() end
  if not exists and not create then return nil end
  local env = driver.sqlite3()
  local conn, err = env:connect(path)
  if not conn then fail("cannot open the journal " .. path .. ": " .. tostring(err)) end
  local self = setmetatable({ env = env, conn = conn, path = path }, Journal)
  local ok, why = pcall(function()
    local mode = self:exec("PRAGMA journal_mode = WAL")
    if mode ~= "wal" then error("journal " .. path .. ": SQLite refused WAL mode", 0) end
    self:exec("PRAGMA synchronous = FULL")
    self:exec("PRAGMA busy_timeout = 5000")
    for _, sql in ipairs(SCHEMA) do self:exec(sql) end
    local version = self:meta("version")
    if version and version ~= journal.VERSION then
      error(path .. " is a journal of another version (" .. version .. ")", 0)
    end
    if not version then self:set_meta("version", journal.VERSION) end
  end)
  if not ok then
    self:close()
    fail(tostring(why):find("file is not a database", 1, true)
      and (path .. " is not a journal (not an SQLite file)") or tostring(why))
  end
  return self
end

function Journal:meta(key)
  return self:exec("SELECT value FROM meta WHERE key = " .. self:value(key))
end

function Journal:set_meta(key, value)
  self:exec("INSERT OR REPLACE INTO meta (key, value) VALUES (" .. self:value(key) .. ", "
    .. self:value(value) .. ")")
end

--- Every recorded row: row number → record (the columns as fields).
function Journal:rows()
  local cur = self:query("SELECT " .. COLUMNS .. " FROM rows")
  local out = {}
  while true do
    local rec = cur:fetch({}, "a")
    if not rec then break end
    rec.row, rec.line = tonumber(rec.row), tonumber(rec.line)
    rec.derived = tonumber(rec.derived) == 1
    rec.order_status = tonumber(rec.order_status)
    rec.attempts = tonumber(rec.attempts) or 0
    out[rec.row] = rec
  end
  cur:close()
  return out
end

--- Records rows of the file (new ones, or changed ones that were never sent), in one
-- transaction: { row, line, order_no, hash, derived, state }.
function Journal:record_rows(list)
  if #list == 0 then return end
  self:transaction(function()
    for _, r in ipairs(list) do
      -- (not INSERT OR REPLACE: that would delete another row holding the same order_no,
      -- where a plain INSERT fails)
      self:exec("DELETE FROM rows WHERE row = " .. self:value(r.row))
      self:exec("INSERT INTO rows (row, line, order_no, hash, derived, state, error, "
        .. "attempts, updated) VALUES (" .. concat({ self:value(r.row), self:value(r.line),
        self:value(r.order_no), self:value(r.hash), self:value(r.derived and 1 or 0),
        self:value(r.state), self:value(r.error), self:value(r.attempts or 0),
        self:value(os.time()) }, ", ") .. ")")
    end
  end)
end

--- Marks rows "sent", committed before their requests may leave (one transaction).
function Journal:mark_sent(list, from, to)
  self:transaction(function()
    for i = from, to do
      self:exec("UPDATE rows SET state = 'sent', attempts = attempts + 1, updated = "
        .. self:value(os.time()) .. " WHERE row = " .. self:value(list[i].row))
    end
  end)
end

--- Gives rows marked "sent" but never handed to the sender back their earlier state.
function Journal:unmark_sent(list, from, to)
  if from > to then return end
  self:transaction(function()
    for i = from, to do
      self:exec("UPDATE rows SET state = " .. self:value(list[i].state) .. ", attempts = attempts - 1 "
        .. "WHERE row = " .. self:value(list[i].row))
    end
  end)
end

--- Records one row's outcome (fields of OUTCOME; absent ones become NULL), in the group.
function Journal:record(row, outcome)
  local sets = {}
  for i, k in ipairs(OUTCOME) do sets[i] = k .. " = " .. self:value(outcome[k]) end
  sets[#sets + 1] = "updated = " .. self:value(os.time())
  self:begin()
  self:exec("UPDATE rows SET " .. concat(sets, ", ") .. " WHERE row = " .. self:value(row))
  self.grouped = self.grouped + 1
  if self.grouped >= journal.GROUP_ROWS or deps.clock() - self.opened >= journal.GROUP_SECONDS then
    self:commit()
  end
end

function Journal:close()
  if self.conn then
    self:commit()
    self.conn:close()
  end
  if self.env then self.env:close() end
  self.conn, self.env = nil, nil
end

return journal
