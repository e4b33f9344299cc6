-- Many orders at once (issue 12): client:apply_cards. Each order runs the policy apply_card
-- runs (client.lua: validation, retries before send, settling an ambiguous outcome by a
-- query, a deadline from its own start); what changes is how the orders share the time:
--   plain Lua   `concurrency` coroutines over one libcurl multi handle (the client's): a
--               request or a pause yields to the scheduler below, which drives every
--               transfer in flight with multi:perform and wakes the order whose transfer
--               finished or whose pause is over;
--   nginx       `concurrency` light threads (ngx.thread) over cosockets: nginx is the
--               scheduler, and a request or a pause yields the thread, never the worker.
-- Either way a task is a worker that takes the next row, runs it to its end and takes
-- another: memory is bounded by `concurrency`, not by the list. A custom transport
-- (`transport = table`) runs under the scheduler too, one request at a time.
local core = require "pagsmile.issuing.core"
local errors = require "pagsmile.issuing.errors"
local options = require "pagsmile.issuing.options"

local batch = {}

local co_create, co_resume, co_running, co_status, co_yield =
  coroutine.create, coroutine.resume, coroutine.running, coroutine.status, coroutine.yield
local floor, huge, max, min = math.floor, math.huge, math.max, math.min
local monotime = core.monotime

batch.MAX_CONCURRENCY = 256
batch.DEFAULT_CONCURRENCY = 8

local OPTIONS = { concurrency = true, rate = true, timeout = true, on_result = true, keep_results = true }
local NAMES = "concurrency, rate, timeout, on_result, keep_results"

--- The options of apply_cards, checked: a misspelt name is a `config` error naming it (as
-- for issuing.new and the wait calls); a bad value raises at the caller's line (`level`).
function batch.options(opts, level)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error("pagsmile.issuing: the options of apply_cards must be a table or nil", level)
  end
  for k in pairs(opts) do
    if not OPTIONS[k] then
      return nil, errors.config(options.shown_name(k), "is not an option of apply_cards (" .. NAMES .. ")")
    end
  end
  local o = {
    concurrency = opts.concurrency or batch.DEFAULT_CONCURRENCY, rate = opts.rate,
    timeout = opts.timeout,
    on_result = opts.on_result, keep_results = opts.keep_results ~= false,
  }
  local c = o.concurrency
  if type(c) ~= "number" or c ~= floor(c) or c < 1 or c > batch.MAX_CONCURRENCY then
    error("pagsmile.issuing: concurrency must be a whole number from 1 to "
      .. batch.MAX_CONCURRENCY, level)
  end
  if o.rate ~= nil and not (type(o.rate) == "number" and o.rate > 0 and o.rate < huge) then
    error("pagsmile.issuing: rate must be a positive, finite number of requests per second, "
      .. "or nil", level)
  end
  if o.timeout ~= nil and not (type(o.timeout) == "number" and o.timeout > 0 and o.timeout < huge) then
    error("pagsmile.issuing: timeout must be a positive, finite number of seconds, or nil", level)
  end
  if o.on_result ~= nil and type(o.on_result) ~= "function" then
    error("pagsmile.issuing: on_result must be a function(i, card, err) or nil", level)
  end
  if opts.keep_results ~= nil and type(opts.keep_results) ~= "boolean" then
    error("pagsmile.issuing: keep_results must be a boolean or nil", level)
  end
  return o
end

--- The rate limit: at most `rate` requests start in any 1-second window (floor(rate) of them
-- for a rate of 1 or more; one every 1/rate seconds below 1). The start times of the last
-- `n` requests are kept in a ring; a request takes the slot `window` seconds after the n-th
-- last one. Slots are taken in the order requests ask, so the ring stays sorted.
-- gate(deadline) -> true once the request may start, false (no slot taken) when its slot
-- comes after `deadline`.
function batch.rate_gate(rate, now, sleep)
  local n = max(1, floor(rate))
  local window = rate >= 1 and 1 or 1 / rate
  local ring, pos = {}, 0
  for i = 1, n do ring[i] = -huge end
  return function(deadline)
    local t = now()
    local at = max(t, ring[pos + 1] + window)
    if at > deadline then return false end
    ring[pos + 1] = at
    pos = (pos + 1) % n
    if at > t then sleep(at - t) end
    return true
  end
end

-- The rows: a list (results aligned with it) or an iterator function (results by arrival).
-- next_row() -> i, row | nil at the end. An iterator that raises stops the batch (below).
local function row_source(list, level)
  if type(list) == "table" then
    local i, n = 0, #list
    return function()
      if i >= n then return nil end
      i = i + 1
      return i, list[i]
    end
  end
  if type(list) ~= "function" then
    error("pagsmile.issuing: apply_cards expects a list of biz_data tables or an iterator "
      .. "function returning them", level)
  end
  local i = 0
  return function()
    local row = list()
    if row == nil then return nil end
    i = i + 1
    return i, row
  end
end

--------------------------------------------------------------------------------------------
-- The scheduler of plain Lua: coroutines over a libcurl multi handle (core.multi).

local Scheduler = {}
Scheduler.__index = Scheduler

--- A scheduler over `t`, the client's libcurl transport (transport/curl.lua): its start and
-- result, and the perform of its multi handle. The scheduler is the batch's transport too:
-- sched:request(req) is called from inside a task.
function batch.scheduler(t)
  return setmetatable({
    t = t,
    multi = t.multi,
    waiting = {},   -- transfer id -> the coroutine waiting for it
    sleeping = {},  -- coroutine -> the time it wakes
    due = {},       -- scratch: the sleepers waking now
    done = {},      -- scratch: the transfers multi:perform finished
    live = 0,       -- coroutines not dead
    failure = nil,  -- the first error a coroutine died of
  }, Scheduler)
end

-- From inside a task: starts the request and yields until its transfer is finished; returns
-- what t:request would have.
function Scheduler:request(req)
  local t = self.t
  local id = t:start(req)
  self.waiting[id] = co_running()
  co_yield()
  return t:result(id)
end

-- From inside a task: yields for `seconds`.
function Scheduler:sleep(seconds)
  if seconds <= 0 then return end
  self.sleeping[co_running()] = monotime() + seconds
  co_yield()
end

function Scheduler:_resume(co)
  local ok, err = co_resume(co)
  if not ok then
    -- A bug, or a raise in code the library calls (a custom transport): keep the first one
    -- with its traceback, to raise once the other tasks are done.
    self.failure = self.failure or debug.traceback(co, tostring(err))
  end
  if co_status(co) == "dead" then self.live = self.live - 1 end
end

function Scheduler:spawn(fn)
  self.live = self.live + 1
  self:_resume(co_create(fn))
end

--- The pool of plain Lua: runs `worker` as n coroutines until all have ended, then raises
-- the first error one of them died of.
function Scheduler:pool(n, worker)
  for _ = 1, n do self:spawn(worker) end
  self:run()
  if self.failure then error(self.failure, 0) end
end

-- Runs until every task has ended. Between wake-ups it waits in multi:perform (for a socket
-- or libcurl's own timer) at most until the next sleeper is due.
function Scheduler:run()
  local multi, waiting, sleeping, due, done = self.multi, self.waiting, self.sleeping, self.due, self.done
  while self.live > 0 do
    local t, next_at, n = monotime(), huge, 0
    for co, at in pairs(sleeping) do
      if at <= t then
        n = n + 1
        due[n] = co
      elseif at < next_at then
        next_at = at
      end
    end
    for k = 1, n do
      local co = due[k]
      due[k] = nil
      sleeping[co] = nil
      self:_resume(co)
    end
    if n == 0 then
      if next_at == huge and multi:active() == 0 then
        -- Every task is waiting and nothing can wake one: a task yielded to us from code
        -- of the caller's (a log function that yields, say).
        error("pagsmile.issuing: apply_cards: a task yielded outside a request or a pause")
      end
      local wait = next_at == huge and 1 or min(1, max(0, next_at - monotime()))
      local m = multi:perform(wait, done)
      for k = 1, m do
        local co = waiting[done[k]]
        waiting[done[k]] = nil
        if co then self:_resume(co) end
      end
    end
  end
end

--------------------------------------------------------------------------------------------
-- The other pools.

--- Inside nginx, with cosockets: n light threads. nginx schedules them; a request or a pause
-- yields the thread.
function batch.ngx_pool(n, worker)
  local ngx = rawget(_G, "ngx")
  local threads = {}
  for k = 1, n do threads[k] = assert(ngx.thread.spawn(worker)) end
  local failure
  for k = 1, n do
    local ok, err = ngx.thread.wait(threads[k])
    if not ok then failure = failure or err end
  end
  if failure then error(failure, 0) end
end

--- A transport that cannot be driven concurrently (a custom `transport = table`, or none
-- here): one order at a time, with the same per-order policy, results and callbacks.
function batch.sequential_pool(_, worker)
  worker()
end

--------------------------------------------------------------------------------------------
-- The batch.

-- Why the batch stopped taking rows (the caller's callback or iterator raised, or the client
-- was closed): returned as the second value, after the results of every row started.
local function stopped(why, next_i)
  return errors.new("stopped", why .. "; rows from " .. next_i .. " on were not started",
    { not_started = next_i })
end

--- Runs the batch. `env` is what the client gives: { run = function(row) -> card | nil, err
-- (one order, on the batch's runtime), closed = function() -> bool }, and `pool`, how tasks
-- run: pool(n, worker) runs `worker` n times concurrently and returns when all have ended.
function batch.run(list, o, env, level)
  local next_row = row_source(list, level + 1)
  local results = o.keep_results and {} or nil
  local on_result = o.on_result
  local stop, taken = nil, 0

  local function take()
    if stop then return nil end
    if env.closed() then
      stop = stopped("the client was closed", taken + 1)
      return nil
    end
    local ok, i, row = pcall(next_row)
    if not ok then
      stop = stopped("the row iterator raised: " .. tostring(i), taken + 1)
      return nil
    end
    if i then taken = i end
    return i, row
  end

  local function deliver(i, card, err)
    if results then results[i] = card and { card = card } or { err = err } end
    if on_result then
      local ok, e = pcall(on_result, i, card, err)
      if not ok and not stop then stop = stopped("on_result raised: " .. tostring(e), taken + 1) end
    end
  end

  local function worker()
    while true do
      local i, row = take()
      if not i then return end
      deliver(i, env.run(row))
    end
  end

  env.pool(o.concurrency, worker)
  return results or {}, stop
end

return batch
