-- The client: apply_card, query_apply_result, apply_card_and_wait, parse_notification.
-- Policy lives here (deadlines, retries, what an ambiguous answer means), with one call path
-- for every endpoint (endpoints.lua); envelope.lua reads and writes the envelope, a
-- transport does the HTTP, the runtime of the call (runtime.lua) gives its clock.
local api = require "pagsmile.issuing.api"
local batch = require "pagsmile.issuing.batch"
local endpoints = require "pagsmile.issuing.endpoints"
local envelope = require "pagsmile.issuing.envelope"
local errors = require "pagsmile.issuing.errors"
local options = require "pagsmile.issuing.options"
local core_monotime = require("pagsmile.issuing.core").monotime
local runtime = require "pagsmile.issuing.runtime"
local schema = require "pagsmile.issuing.schema"

local Client = {}
Client.__index = Client

local HEADERS = { ["Content-Type"] = api.CONTENT_TYPE }
local APPLY, QUERY = endpoints.apply_card, endpoints.query_apply_result

-- A write attempt may use this share of the time left, so that an ambiguous outcome can
-- still be settled through its read endpoint (Query Apply Result) before the deadline.
local APPLY_SHARE = 0.7

-- Exponential backoff with jitter: 0.1 s, 0.2 s, 0.4 s ... capped at 2 s.
local function backoff(attempt)
  return math.min(0.1 * 2 ^ (attempt - 1), 2) * (0.5 + math.random() * 0.5)
end

function Client.new(opts)
  local o, err = options.check(opts)
  if not o then return nil, err end
  return setmetatable({ o = o, url = {}, busy = 0 }, Client)
end

-- Runs self:fn(call, ...) as a call in flight (see close()), `call` being { rt, ep, key }:
-- the runtime chosen once for the whole call, its endpoint, and the key value (order_no) it
-- is about. No pcall: a call may yield (cosockets, coroutine transports), and PUC Lua 5.1
-- cannot yield across one; a call that raises leaves the count up, and its handles are then
-- freed by the garbage collector.
function Client:_call(call, fn, ...)
  self.busy = self.busy + 1
  return self:_done(fn(self, call, ...))
end

function Client:_done(...)
  self.busy = self.busy - 1
  if self.busy == 0 and self.closed then self:_free() end
  return ...
end

-- The first line of every public method. `client.apply_card{…}` (a dot for the colon) would
-- otherwise die inside the library on a nil field; say how to call it, at the caller's line.
local function dot_call(method)
  return "pagsmile.issuing: call it as client:" .. method .. "(...), with a colon (not client."
    .. method .. "(...))"
end

local function check_self(self, method)
  if getmetatable(self) ~= Client then error(dot_call(method), 3) end
end

local function check_open(self, method)
  if getmetatable(self) ~= Client then error(dot_call(method), 3) end
  if self.closed then error("pagsmile.issuing: the client is closed", 3) end
end

-- The transport for a call made now, or nil and a config error. Inside nginx the choice
-- depends on the phase of the call, not of the client's creation: clients are made in
-- init_by_lua and used by requests.
function Client:_transport()
  local t = self.o.transport
  if type(t) == "table" then return t end
  if t == "curl" or (t == nil and not runtime.in_nginx()) then
    if not self.curl then
      self.curl = require("pagsmile.issuing.transport.curl").new {
        ca_file = self.o.ca_file, proxy = self.o.proxy, user_agent = self.o.user_agent,
      }
    end
    return self.curl
  end
  if not runtime.in_nginx() then
    return nil, errors.config("transport", '"ngx" works only inside OpenResty (nginx with ngx_lua)')
  end
  if not runtime.in_cosocket_phase() then
    return nil, errors.config("transport", "nginx has no cosockets in the " .. runtime.phase()
      .. ' phase; call from rewrite/access/content/timer, or set transport = "curl"'
      .. " to block this worker knowingly")
  end
  if self.o.proxy and self.o.proxy ~= "" then
    -- Silently going around an egress proxy would be worse than refusing.
    return nil, errors.config("proxy", "is honoured by libcurl only; the cosocket transport "
      .. 'connects directly: leave proxy unset inside nginx, or set transport = "curl"')
  end
  if not self.ngx then
    self.ngx = require("pagsmile.issuing.transport.ngx").new { user_agent = self.o.user_agent }
  end
  return self.ngx
end

-- A call of endpoint `ep` about `key` (its order_no), with the runtime of a call starting
-- now (runtime.lua: a small table, made per call; the transport behind it is the client's).
-- A transport that cannot serve here is not an error yet: the call's first exchange returns
-- it, logged like any failed attempt.
function Client:_begin(ep, key, rt)
  return { rt = rt or runtime.new(self:_transport()), ep = ep, key = key }
end

function Client:_timestamp()
  return os.date("!%Y-%m-%d %H:%M:%S", os.time() + self.o.utc_offset_seconds)
end

-- The `log` setting sees one event per HTTP attempt and one per decision the client takes.
-- Events are built from an allow-list: never bodies, keys, card data or biz_data values.
-- `ep` is the endpoint the event is about (a write's decisions name the write's path).
function Client:_log(call, ep, event, attempt, fields)
  local log = self.o.log
  if not log then return end
  local e = { event = event, method = "POST", path = ep.path, attempt = attempt }
  e[ep.key] = call.key
  for k, v in pairs(fields) do e[k] = v end
  pcall(log, e) -- a failing logger must not lose the card of a call that succeeded
end

-- An answer that fails pointing at the same setting as the one before it (an HTTP 404 on
-- base_url's path, an answer that does not decrypt with merchant_private_key, a certificate
-- the trust store rejects) is a configuration mistake: asking again until the deadline cannot
-- fix it (issue 10 item 6). One such answer alone may be a glitch; two in a row are not.
local function repeated(err, before)
  return err.setting ~= nil and before ~= nil and err.setting == before.setting
end

-- An answer is this call's only if its data is an object naming the key asked about (the
-- order_no): anything else (no data, an array, another order's card) is a `protocol` error,
-- never a result (issue 9: a stale or misrouted answer must not hand out another order's
-- card).
local function unbound(data, ep, key, request_id)
  local name = ep.key
  local named = type(data) == "table" and data[name] or nil
  if named == key then return nil end
  local what = type(data) ~= "table" and "no data object"
    or named == nil and ("no " .. name)
    or ("another " .. name)
  local e = errors.new("protocol", "the answer carries " .. what .. " where the card of " .. name
    .. " " .. key .. " belongs", { sent = true, retryable = false, request_id = request_id,
    http_status = 200 })
  e[name] = key
  return e
end

-- One HTTP attempt of endpoint `ep` (the call's, or the read settling it): seal, send, open,
-- bind. Returns the endpoint's result or nil, err.
function Client:_exchange(call, ep, biz, deadline, attempt)
  local now = call.rt.now
  local t0 = now()
  local data, r = self:_exchange1(call, ep, biz, deadline)
  if self.o.log then
    local err = not data and r or nil
    self:_log(call, ep, "http", attempt, {
      request_id = data and r or err.request_id, status = err and err.http_status or (data and 200),
      duration = now() - t0, error = err and err.kind, sent = err and err.sent,
      code = err and err.code, sub_code = err and err.sub_code,
    })
  end
  if not data then return nil, r end
  local err = unbound(data, ep, call.key, r)
  if err then return nil, err end
  return ep.result(data, r)
end

function Client:_exchange1(call, ep, biz, deadline)
  local rt = call.rt
  if not rt.transport then return nil, rt.error end
  local o = self.o
  local ctx = { [ep.key] = call.key }
  local body, request_id, session = envelope.request(o, biz, self:_timestamp())
  if not body then return nil, errors.with(request_id, ctx) end -- (nil, err): not encodable
  ctx.request_id = request_id
  -- A batch's rate limit (apply_cards' `rate`): wait for this request's slot, unless it
  -- comes after the deadline.
  local left = (not rt.gate or rt.gate(deadline)) and deadline - rt.now() or 0
  if left <= 0 then
    session:wipe()
    ctx.sent, ctx.retryable = false, false
    return nil, errors.new("timeout", "the deadline passed before the request was sent", ctx)
  end
  local url = self.url[ep.path]
  if not url then url = o.base_url .. ep.path; self.url[ep.path] = url end
  local res, err = rt.transport:request {
    url = url, body = body, headers = HEADERS,
    timeout = math.min(o.timeout, left), connect_timeout = math.min(o.connect_timeout, left),
  }
  if not res then
    session:wipe()
    return nil, errors.wrap(err, ctx)
  end
  ctx.http_status = res.status
  if res.status ~= 200 then
    session:wipe()
    ctx.sent, ctx.retryable = true, false
    local hint = ""
    if res.status == 404 then
      ctx.setting, hint = "base_url", " (check base_url: is its path prefix right?)"
    end
    return nil, errors.new("protocol", "HTTP status " .. tostring(res.status)
      .. " where the API answers 200" .. hint, ctx)
  end
  local data, e = envelope.open(o.merchant_key, res.body, session)
  session:wipe() -- the answer is read: its AES key is of no further use
  if not data then
    ctx.sent, ctx.retryable = true, false
    return nil, errors.with(e, ctx)
  end
  return data, request_id
end

-- A read may be repeated freely: retried on any failure but a definite refusal by the
-- platform.
local function read_retryable(err)
  if err.kind == "api" then return err.code == api.SERVICE_UNAVAILABLE end
  return err.kind == "transport" or err.kind == "timeout" or err.kind == "protocol"
end

-- A read endpoint with retries: up to max_retries, or, when `persist` is set (settling an
-- ambiguous write, where giving up early leaves the caller not knowing), until the deadline;
-- never past a failure that repeats the one before. `settle`, when settling a write:
-- { last = the write's error }, and `repeated = true` is set on it when that is why it stopped.
function Client:_read(call, ep, biz, deadline, persist, settle)
  local now = call.rt.now
  local attempt, last = 0, settle and settle.last
  while true do
    local result, err = self:_exchange(call, ep, biz, deadline, attempt + 1)
    if result then return result end
    attempt = attempt + 1
    local pause = backoff(attempt)
    if repeated(err, last) then
      if settle then settle.repeated = true end
      return nil, err
    end
    if not read_retryable(err) or (attempt > self.o.max_retries and not persist)
       or now() + pause >= deadline then
      return nil, err
    end
    last = err
    self:_log(call, ep, "retry", attempt, { pause = pause, error = err.kind })
    call.rt.sleep(pause)
  end
end

-- The endpoint's biz_data, validated: the clean copy, or nil and a validation error. A
-- non-table raises at the public method's caller (`level`, 3 from a public method).
local function validate(ep, biz_data, level)
  if type(biz_data) ~= "table" then error("pagsmile.issuing: biz_data must be a table", level or 3) end
  local clean, field, reason = schema.validate(ep.schema, biz_data)
  if not clean then
    local key = biz_data[ep.key]
    return nil, errors.validation(field, reason, type(key) == "string" and key or nil)
  end
  return clean
end

-- Why the caller of an apply whose outcome is unknown may safely act on it.
local SAME_ORDER_NO = "; applying again with it cannot issue a second card"

-- The write may or may not have happened: say so, and what to do. `err` is the error of the
-- first attempt that may have reached the platform; `why` what came after.
local function unknown_outcome(err, why)
  err.outcome, err.sent, err.retryable = "unknown", true, false
  err.message = err.message .. "; the outcome of the apply is unknown (" .. why .. "): query "
    .. "order_no " .. tostring(err.order_no) .. " later" .. SAME_ORDER_NO
  return err
end

-- What the same failure of the apply and of the query settling it says about the setting.
-- The setting leads the message, so that tostring's 300 bytes keep it.
local SAME_FAILURE = {
  base_url = "the API answers HTTP 404 under it: is its path prefix right?",
  merchant_private_key = "the answers do not decrypt with it: does the platform have its "
    .. "public half?",
}

-- unknown_outcome, when the answers failed the same way twice in a row: stopped
-- early (issue 10 item 6), and the apply may still have been processed (issue 9).
local function misconfigured(err, setting)
  err.outcome, err.sent, err.retryable, err.setting = "unknown", true, false, setting
  err.message = setting .. ": " .. (SAME_FAILURE[setting] or "the answers fail the same way")
    .. "; the outcome of the apply is unknown (it may have been processed): fix " .. setting
    .. ", then query order_no " .. tostring(err.order_no) .. SAME_ORDER_NO .. " (the apply got: " .. err.message .. ")"
  return err
end

--- (LDoc: the client's methods join the pagsmile.issuing page; see config.ld.)
-- @module pagsmile.issuing

--- The client that @{new} makes. A call returns its result, or `nil` and an @{error}.
-- @type Client

--- Apply For a Card. Never issues two cards for one order_no: a request that may have reached
-- the platform is never blindly repeated; its outcome is asked for with Query Apply Result,
-- and only a definite "no such order" allows another apply.
-- @tparam biz_data biz_data the order (SPEC.md §5), validated before anything is sent
-- @treturn[1] card the card; `card.completed` may be false (still processing)
-- @return[2] nil
-- @treturn[2] error `err.outcome == "unknown"` when the apply may have created the order
function Client:apply_card(biz_data)
  check_open(self, "apply_card")
  local result, err = self:_one_call(APPLY, biz_data)
  return result, err -- not a tail call: a raise in _one_call names the caller's line
end

-- One call of endpoint `ep`, its deadline `timeout` from now: a write settled as apply_card
-- is, a read retried up to max_retries. Validation errors are returned; a biz_data that is
-- not a table raises at the public method's caller.
function Client:_one_call(ep, biz_data)
  local clean, verr = validate(ep, biz_data, 4)
  if not clean then return nil, verr end
  local call = self:_begin(ep, clean[ep.key])
  return self:_call(call, ep.kind == "write" and self._write or self._read_call, clean,
    call.rt.now() + self.o.timeout)
end

-- The write loop (apply_card's). Once one attempt may have reached the platform (`ambiguous`
-- holds its error), only a definite answer about the order settles the call: the card (from
-- the settling read, or from a write answer bound to this order_no), or "not found" followed
-- by a re-apply that is answered. Every other exit from then on is outcome "unknown",
-- sent = true (issue 9 items 1 and 2): a re-apply that never left this machine, or that the
-- platform refused for a reason of its own, says nothing about the first attempt.
function Client:_write(call, clean, deadline)
  local ep, rt = call.ep, call.rt
  local now = rt.now
  local settle_with = { [ep.settle.key] = call.key }
  local attempt, ambiguous = 0, nil
  while true do
    local attempt_deadline = now() + (deadline - now()) * APPLY_SHARE
    local result, err = self:_exchange(call, ep, clean, attempt_deadline, attempt + 1)
    if result then return result end
    attempt = attempt + 1
    local definite_refusal = err.kind == "api" and err.code ~= api.SERVICE_UNAVAILABLE
    if not ambiguous then
      if err.kind == "config" or err.kind == "validation" then return nil, err end
      if definite_refusal then
        if api.ORDER_DUPLICATE[err.sub_code] then
          err.message = err.message .. " (order_no is taken: query_apply_result(order_no) "
            .. "returns the card it issued)"
        end
        return nil, err
      end
    end
    local settle = false
    if err.sent == false then
      -- It never left this machine: the same apply is safe to send again.
      local pause = backoff(attempt)
      if not err.retryable or attempt > self.o.max_retries or now() + pause >= deadline then
        if not ambiguous then return nil, err end
        self:_log(call, ep, "unknown", attempt, { error = err.kind })
        return nil, unknown_outcome(ambiguous, "applying again failed before it was sent: "
          .. err.message)
      end
      self:_log(call, ep, "retry", attempt, { pause = pause, error = err.kind })
      rt.sleep(pause)
    elseif definite_refusal and not api.ORDER_DUPLICATE[err.sub_code] then
      -- A re-apply refused for its own reasons (a rate limit, a hold...): the first attempt
      -- may still have made the card. Only the order's own state can say.
      settle = true
    else
      -- Ambiguous (sent, no definite answer), or a duplicate after our own earlier attempt.
      ambiguous = ambiguous or err
      settle = true
    end
    if settle then
      self:_log(call, ep, "resolve", attempt, { error = err.kind })
      local settling = { last = err }
      local card, qerr = self:_read(call, ep.settle, settle_with, deadline, true, settling)
      if card then
        self:_log(call, ep, "resolved", attempt, { status = card.status })
        return card
      end
      if settling.repeated then
        self:_log(call, ep, "unknown", attempt, { error = qerr.kind })
        return nil, misconfigured(ambiguous or err, qerr.setting)
      end
      if not (qerr.kind == "api" and api.ORDER_NOT_FOUND[qerr.sub_code]) then
        self:_log(call, ep, "unknown", attempt, { error = qerr.kind })
        return nil, unknown_outcome(ambiguous, "Query Apply Result failed too: " .. qerr.message)
      end
      -- Not found *yet*: the attempt may still be on its way to the platform, so this proves
      -- nothing for good. Applying again is safe (a late original would be refused as a
      -- duplicate, and that refusal is settled by a query), and settles it, unless the last
      -- re-apply was itself refused: then the platform will not take it, and we cannot know.
      self:_log(call, ep, "not_found", attempt, {})
      if err ~= ambiguous and definite_refusal then
        return nil, unknown_outcome(ambiguous, "applying again was refused (code "
          .. tostring(err.code) .. ", sub_code " .. tostring(err.sub_code) .. ") and the "
          .. "platform did not know the order yet")
      end
      if attempt > self.o.max_retries or now() >= deadline then
        return nil, unknown_outcome(ambiguous, "the platform did not know the order yet")
      end
    end
  end
end

-- A read call: one endpoint, retried up to max_retries (Client:_read).
function Client:_read_call(call, biz, deadline)
  return self:_read(call, call.ep, biz, deadline)
end

--- Query Apply Result: the card of an existing order, retried up to `max_retries` on
-- failures that are safe to repeat.
-- @tparam string order_no the order's `order_no`
-- @treturn[1] card
-- @return[2] nil
-- @treturn[2] error `sub_code == "order-not-found"` for an order the platform does not know
function Client:query_apply_result(order_no)
  check_open(self, "query_apply_result")
  return self:_one_call(QUERY, { order_no = order_no })
end

--- Any endpoint of the client's table by name, with its biz_data: what apply_card and
-- query_apply_result are for their endpoints (the same validation, deadline, retries and
-- settling), for an endpoint that has no method of its own yet.
-- @tparam string endpoint `"apply_card"`, `"query_apply_result"`, or a newer one
-- @tparam biz_data biz_data the endpoint's biz_data, validated before anything is sent
-- @treturn[1] table the endpoint's result (a card for these two)
-- @return[2] nil
-- @treturn[2] error as for the endpoint's own method
function Client:call(endpoint, biz_data)
  check_open(self, "call")
  local ep = type(endpoint) == "string" and endpoints[endpoint]
  if not ep then error('pagsmile.issuing: no endpoint "' .. tostring(endpoint) .. '"', 2) end
  local result, err = self:_one_call(ep, biz_data)
  return result, err
end

--- Apply For a Card for many orders at once: `concurrency` orders in flight, each run as
-- @{Client:apply_card} runs it (validation, retries, settling, its own `timeout` counted from
-- its own start). Plain Lua: coroutines over one libcurl multi handle; inside nginx: light
-- threads over cosockets (never blocking the worker). A row that fails validation is that
-- row's error; the others go on.
-- @tparam {biz_data,...}|function list the orders, or an iterator function returning
-- biz_data tables (then results are indexed by arrival order) and nil at the end
-- @tparam[opt] batch_options opts `concurrency` (default 8, at most 256), `rate` (HTTP
-- requests per second over any 1-second window; nil: no limit), `timeout` (seconds for the
-- whole batch: rows not started by then fail with kind "timeout", nothing sent, and orders in
-- flight are settled by then; nil: none), `on_result(i, card, err)`
-- (as each order settles, in completion order), `keep_results` (default true; false keeps
-- nothing, for lists too long to hold)
-- @treturn {result,...} results: `results[i]` is `{card = card}` or `{err = err}`
-- @treturn[opt] error kind `"stopped"`: on_result or the iterator raised, or the client was
-- closed: the orders already started were finished (their results are in), later rows were
-- not started (from `err.not_started` on)
function Client:apply_cards(list, opts)
  check_open(self, "apply_cards")
  local o, err = batch.options(opts, 3)
  if not o then return nil, err end
  local rt, pool = self:_batch_runtime(o)
  local until_ = o.timeout and rt.now() + o.timeout
  -- The batch is a call in flight from its first row to its last: close() waits for it.
  self.busy = self.busy + 1
  return self:_done(batch.run(list, o, {
    run = function(row) return self:_batch_order(rt, row, until_) end,
    closed = function() return self.closed end,
    pool = pool,
  }, 3))
end

-- The runtime every order of a batch shares, and the pool its tasks run in (batch.lua).
function Client:_batch_runtime(o)
  local t, err = self:_transport()
  local rt = runtime.new(t, err)
  local pool = batch.sequential_pool
  if t and t == self.curl then
    local sched = batch.scheduler(t)
    rt.name, rt.now, rt.transport = "batch", core_monotime, sched
    rt.sleep = function(seconds) sched:sleep(seconds) end
    pool = function(n, worker) sched:pool(n, worker) end
  elseif t and rt.name == "ngx" then
    pool = batch.ngx_pool
  end
  if o.rate then rt.gate = batch.rate_gate(o.rate, rt.now, rt.sleep) end
  return rt, pool
end

-- One order of a batch: apply_card's policy on the batch's runtime, its deadline `timeout`
-- from its own start, or the batch's (`until_`) if that comes first. A row started after the
-- batch's deadline is not sent at all.
function Client:_batch_order(rt, row, until_)
  if type(row) ~= "table" then return nil, errors.validation("biz_data", "must be a table") end
  local clean, verr = validate(APPLY, row)
  if not clean then return nil, verr end
  local t = rt.now()
  if until_ and t >= until_ then
    return nil, errors.new("timeout", "the batch's timeout passed before this order was "
      .. "started: nothing was sent", { order_no = clean.order_no, sent = false, retryable = false })
  end
  local call = self:_begin(APPLY, clean.order_no, rt)
  return self:_call(call, self._write, clean, math.min(t + self.o.timeout, until_ or math.huge))
end

local function positive_seconds(v)
  return type(v) == "number" and v > 0 and v < math.huge -- NaN fails v > 0
end

-- The options of apply_card_and_wait and wait_apply_result. As with issuing.new's settings,
-- a misspelt one is a `config` error naming it, not silently ignored (issue 10 item 5):
-- `{timout = 2}` would otherwise wait the default 60 s. A bad value is a programming error
-- and raises, as before.
local WAIT_OPTIONS = { timeout = true, interval = true, on_update = true }

-- Raises at `level` (the public method's caller) for a bad value.
local function check_wait(wait, call, level)
  if wait == nil then wait = {} end
  if type(wait) ~= "table" then
    error("pagsmile.issuing: the options of " .. call .. " must be a table or nil", level)
  end
  for k in pairs(wait) do
    if not WAIT_OPTIONS[k] then
      return nil, errors.config(options.shown_name(k), "is not an option of " .. call
        .. " (timeout, interval, on_update)")
    end
  end
  local w = { timeout = wait.timeout or 60, interval = wait.interval or 2, on_update = wait.on_update }
  for _, name in ipairs { "timeout", "interval" } do
    if not positive_seconds(w[name]) then
      error("pagsmile.issuing: wait." .. name .. " must be a positive, finite number of seconds", level)
    end
  end
  if w.on_update ~= nil and type(w.on_update) ~= "function" then
    error("pagsmile.issuing: wait.on_update must be a function(card) or nil", level)
  end
  return w
end

-- The start both waiting calls share: their options, a deadline counted from the call on
-- the call's own clock, validation. Returns call, clean biz, deadline, w, or nil, err; a bad
-- value raises at the caller of the public method `method`.
function Client:_start_wait(method, ep, biz_data, wait)
  local w, werr = check_wait(wait, method, 4)
  if not w then return nil, werr end
  local clean, verr = validate(ep, biz_data, 4)
  if not clean then return nil, verr end
  local call = self:_begin(ep, clean[ep.key])
  return call, clean, call.rt.now() + w.timeout, w
end

--- Applies, then follows a processing order with Query Apply Result every `interval` seconds
-- until it completes or `timeout` seconds (counted from the call, the apply included) have
-- passed. On timeout the error carries the last known card as err.card. wait.on_update(card),
-- if given, sees every card the calls return (for progress logs).
-- @tparam biz_data biz_data as for @{Client:apply_card}
-- @tparam[opt] wait wait `timeout`, `interval`, `on_update`
-- @treturn[1] card a completed card
-- @return[2] nil
-- @treturn[2] error kind `"timeout"` with `err.card` when the order is still processing
function Client:apply_card_and_wait(biz_data, wait)
  check_open(self, "apply_card_and_wait")
  local call, clean, deadline, w = self:_start_wait("apply_card_and_wait", APPLY, biz_data, wait)
  if not call then return nil, clean end
  return self:_call(call, self._apply_and_wait, clean, deadline, w)
end

function Client:_apply_and_wait(call, clean, deadline, w)
  local card, err = self:_write(call, clean, math.min(deadline, call.rt.now() + self.o.timeout))
  if not card then return nil, err end
  -- A failing on_update must not lose the card: its errors are dropped.
  if w.on_update then pcall(w.on_update, card) end
  return self:_follow(call, card, deadline, w)
end

--- Follows an order that already exists (the README's follow-up for an apply that came back
-- processing, or one applied in an earlier run): Query Apply Result at once, then every
-- `interval` seconds until it completes or `timeout` seconds pass. Same options and timeout
-- error as apply_card_and_wait; a definite refusal of a query before any card is known (no
-- such order) is returned at once.
-- @tparam string order_no the order to follow
-- @tparam[opt] wait wait `timeout`, `interval`, `on_update`
-- @treturn[1] card a completed card
-- @return[2] nil
-- @treturn[2] error kind `"timeout"` with `err.card` when the order is still processing, or
-- the refusal of the query (e.g. kind `"api"`, sub_code `"order-not-found"`)
function Client:wait_apply_result(order_no, wait)
  check_open(self, "wait_apply_result")
  local call, clean, deadline, w = self:_start_wait("wait_apply_result", QUERY,
    { order_no = order_no }, wait)
  if not call then return nil, clean end
  return self:_call(call, self._follow, nil, deadline, w)
end

-- Waiting stops once less than this is left after at least one query: too little for
-- another query to be answered.
local MIN_LEFT = 0.1

-- Polls until the order completes or the deadline. There is at least one query while time
-- is left, and the pause shrinks to half the time left near the deadline (issue 10 item 5):
-- `{timeout = 2}` with the default 2 s interval still polls until its deadline.
function Client:_follow(call, card, deadline, w)
  local now, order_no = call.rt.now, call.key
  local query = { order_no = order_no }
  local last_err, queries = nil, 0
  while not (card and card.completed) do
    local left = deadline - now()
    if left <= 0 or (queries > 0 and left < MIN_LEFT) then
      return nil, errors.new("timeout", "order " .. order_no .. " is "
        .. (card and ("still " .. card.status) or "not known to be processed")
        .. " after " .. w.timeout .. " s"
        .. (last_err and (" (last query: " .. last_err.message .. ")") or ""),
        { card = card, order_no = order_no, request_id = card and card.request_id,
          sent = card ~= nil })
    end
    -- wait_apply_result's first query goes at once; every other one after a pause.
    if card or queries > 0 then call.rt.sleep(math.min(w.interval, left / 2)) end
    local c, e = self:_read(call, QUERY, query, math.min(deadline, now() + self.o.timeout))
    queries = queries + 1
    if c then
      card = c
      if w.on_update then pcall(w.on_update, card) end
    elseif not card and not read_retryable(e) then
      return nil, e -- no such order, a bad setting...: waiting cannot change it
    else
      last_err = e
    end
  end
  return card
end

--- The apply-card result callback (SPEC.md §7): raw request body in, card table out, with
-- `notify_type`, the notification's `request_id`, `sealed` and `confirmed = false`. Nothing in a
-- notification proves who sent it: a sealed biz_data is encrypted to the merchant's *public*
-- key, which anyone may hold, and a plain one is plain. Act on confirm_notification's card.
-- @tparam string raw_body the request body as received
-- @treturn[1] card what the notification claims (`confirmed == false`)
-- @return[2] nil
-- @treturn[2] error kind `"protocol"`: not a notification for this merchant
function Client:parse_notification(raw_body)
  check_open(self, "parse_notification")
  if type(raw_body) ~= "string" then
    error("pagsmile.issuing: parse_notification expects the raw body as a string", 2)
  end
  local biz, env, sealed = envelope.notification(self.o.merchant_key, self.o.partner_id, raw_body)
  if not biz then return nil, env end
  local note = api.card(biz, env.request_id)
  note.notify_type = env.notify_type
  note.sealed = sealed       -- how it travelled; not who sent it
  note.confirmed = false
  return note
end

-- The fields of a notification that are compared with the platform's card.
local CLAIMS = { "order_no", "order_status", "card_token", "card_pan", "card_id", "holder_id" }

--- parse_notification, then the platform's own word on that order (Query Apply Result): the
-- card to act on, with `confirmed = true`, notify_type, and `mismatch`, the sorted names of
-- the fields the notification got wrong (nil when it agreed; the platform's card is the
-- truth either way). Errors carry `retryable`: true when the query failed (the same
-- notification may be confirmed later), false when there is nothing to act on: a body that
-- does not parse, an invalid order_no, or an order the platform does not know
-- (`unknown_order = true`).
-- @tparam string raw_body the request body as received
-- @treturn[1] card the platform's card (`confirmed == true`, `mismatch`)
-- @return[2] nil
-- @treturn[2] error `err.retryable`: answer 5xx and be notified again; `err.unknown_order`
function Client:confirm_notification(raw_body)
  check_open(self, "confirm_notification")
  if type(raw_body) ~= "string" then
    error("pagsmile.issuing: confirm_notification expects the raw body as a string", 2)
  end
  local note, err = self:parse_notification(raw_body)
  if not note then
    err.retryable = false
    return nil, err
  end
  local card, qerr = self:query_apply_result(note.order_no)
  if not card then
    local ctx = { request_id = qerr.request_id, retryable = false }
    if qerr.kind == "validation" then
      -- Checked before anything is sent; the value itself is not echoed.
      return nil, errors.new("protocol", "the notification's order_no " .. qerr.reason, ctx)
    end
    if qerr.kind == "api" and api.ORDER_NOT_FOUND[qerr.sub_code] then
      ctx.order_no, ctx.unknown_order = note.order_no, true
      return nil, errors.new("protocol", "the platform does not know this order: the "
        .. "notification is not to be acted on", ctx)
    end
    qerr.retryable = true
    return nil, qerr
  end
  local mismatch = {}
  for _, k in ipairs(CLAIMS) do
    -- tostring: long ids may be numbers on one side and decimal strings on the other
    if note[k] ~= nil and tostring(note[k]) ~= tostring(card[k]) then
      mismatch[#mismatch + 1] = k
    end
  end
  table.sort(mismatch)
  card.mismatch = mismatch[1] and mismatch or nil
  card.notify_type = note.notify_type
  card.confirmed = true
  return card
end

--- Frees the HTTP handle and the keys; idempotent; `<close>` works on Lua 5.4.
-- close() while a call is in flight (another coroutine or ngx.thread, or the call's own
-- log/on_update) must not break that call after the platform may have issued its card
-- (issue 9 item 8): new calls are refused at once, the handles and keys are freed when the
-- last call in flight ends.
function Client:close()
  check_self(self, "close")
  if self.closed then return end
  self.closed = true
  if self.busy == 0 then self:_free() end
end

function Client:_free()
  if self.curl then self.curl:close() end
  if self.ngx then self.ngx:close() end
  self.o.platform_key:close()
  self.o.merchant_key:close()
end

Client.__close = Client.close

return Client
