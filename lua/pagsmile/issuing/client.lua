-- The client: apply_card and the calls around it (cardholders, the card, money, webhooks),
-- apply_card_and_wait, parse_notification. Policy lives here (deadlines, retries, what an
-- ambiguous answer means), with one call path for every endpoint (endpoints.lua);
-- envelope.lua reads and writes the envelope, a transport does the HTTP, the runtime of the
-- call (runtime.lua) gives its clock.
local api = require "pagsmile.issuing.api"
local batch = require "pagsmile.issuing.batch"
local endpoints = require "pagsmile.issuing.endpoints"
local envelope = require "pagsmile.issuing.envelope"
local errors = require "pagsmile.issuing.errors"
local options = require "pagsmile.issuing.options"
local pager = require "pagsmile.issuing.pager"
local results = require "pagsmile.issuing.results"
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
  if ep.key then e[ep.key] = call.key end
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

-- The first of `fields` that `obj` contradicts, with what it carries instead: a field the
-- request `biz` has and obj names otherwise, or (`required`) does not name.
local function contradicts(obj, fields, biz, required)
  if not fields then return nil end
  for _, f in ipairs(fields) do
    local asked = biz[f]
    if asked ~= nil then
      local got = obj[f]
      if got == nil then
        if required then return f, "no " .. f end
      elseif api.key_text(got) ~= api.key_text(asked) then
        return f, "another " .. f
      end
    end
  end
end

-- The first thing that makes `data` not the answer to `biz`, as "no x" / "another x".
local function not_bound(data, ep, biz)
  if ep.answer == "none" then return nil end
  if type(data) ~= "table" then return "no data object" end
  if ep.answer == "list" then
    for _, entry in ipairs(data[1] == nil and { data } or data) do
      local _, what = contradicts(type(entry) == "table" and entry or {}, ep.echo, biz)
      if what then return what end
    end
    return nil
  end
  local _, what = contradicts(data, ep.bind, biz, true)
  if not what then _, what = contradicts(data, ep.echo, biz) end
  if what then return what end
  for _, f in ipairs(ep.expect or {}) do
    if data[f] == nil then return "no " .. f end
  end
end

-- An answer is this call's only if its data is bound to the request (the endpoint's bind,
-- echo and expect: for an apply, an object naming the order_no asked about): anything else
-- (no data, an array, another order's card) is a `protocol` error, never a result (issue 9:
-- a stale or misrouted answer must not hand out another order's card). Only the call's key
-- is named in the message: other bound fields (id_no) may be personal data.
local function unbound(data, ep, biz, key, request_id)
  local what = not_bound(data, ep, biz)
  if not what then return nil end
  local about = (ep.key and key) and ((ep.answer_noun or "answer") .. " of " .. ep.key .. " " .. key)
    or "answer to this request"
  local e = errors.new("protocol", "the answer carries " .. what .. " where the " .. about
    .. " belongs", { sent = true, retryable = false, request_id = request_id, http_status = 200 })
  if ep.key then e[ep.key] = key end
  return e
end

-- One HTTP attempt of endpoint `ep` (the call's, or the read settling it): seal, send, open,
-- bind. Returns the endpoint's result or nil, err.
function Client:_exchange(call, ep, biz, deadline, attempt)
  local now = call.rt.now
  local t0 = now()
  local data, r, env = self:_exchange1(call, ep, biz, deadline)
  if self.o.log then
    local err = not data and r or nil
    self:_log(call, ep, "http", attempt, {
      request_id = data and r or err.request_id, status = err and err.http_status or (data and 200),
      duration = now() - t0, error = err and err.kind, sent = err and err.sent,
      code = err and err.code, sub_code = err and err.sub_code,
    })
  end
  if not data then return nil, r end
  local err = unbound(data, ep, biz, call.key, r)
  if err then return nil, err end
  return ep.result(data, r, biz, env)
end

function Client:_exchange1(call, ep, biz, deadline)
  local rt = call.rt
  if not rt.transport then return nil, rt.error end
  local o = self.o
  local ctx = {}
  if ep.key then ctx[ep.key] = call.key end
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
  return data, request_id, e
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
-- `sent`, for a "repeat" write: { ambiguous = the first error after which the write may have
-- been processed }; a refusal in ep.already after one means it was done.
function Client:_read(call, ep, biz, deadline, persist, settle, sent)
  local now = call.rt.now
  local attempt, last = 0, settle and settle.last
  while true do
    local result, err = self:_exchange(call, ep, biz, deadline, attempt + 1)
    if result then return result end
    if sent then
      if sent.ambiguous and err.kind == "api" and ep.already and ep.already[err.sub_code] then
        return ep.result({}, err.request_id, biz)
      end
      if err.sent and err.kind ~= "api" then sent.ambiguous = sent.ambiguous or err end
    end
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
    local err = errors.validation(field, reason)
    local key = ep.key and biz_data[ep.key]
    if type(key) == "string" then err[ep.key] = key end
    return nil, err
  end
  return clean
end

-- The write may or may not have happened: say so, and what to do. `err` is the error of the
-- first attempt that may have reached the platform; `why` what came after.
local function unknown_outcome(ep, err, why)
  err.outcome, err.sent, err.retryable = "unknown", true, false
  err.message = err.message .. "; the outcome of the " .. ep.noun .. " is unknown (" .. why
    .. "): " .. ep.advice(ep.key and err[ep.key])
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
-- early (issue 10 item 6), and the write may still have been processed (issue 9).
local function misconfigured(ep, err, setting)
  err.outcome, err.sent, err.retryable, err.setting = "unknown", true, false, setting
  err.message = setting .. ": " .. (SAME_FAILURE[setting] or "the answers fail the same way")
    .. "; the outcome of the " .. ep.noun .. " is unknown (it may have been processed): fix "
    .. setting .. ", then " .. ep.advice(ep.key and err[ep.key]) .. " (the " .. ep.noun
    .. " got: " .. err.message .. ")"
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
  if ep.transform then
    local wire, field, reason = ep.transform(clean, self.o)
    if not wire then return nil, errors.validation(field, reason) end
    clean = wire
  end
  local call = self:_begin(ep, ep.key and api.key_text(clean[ep.key]))
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
  local settle_with = ep.settle_biz(clean)
  if ep.settle.transform then settle_with = ep.settle.transform(settle_with, self.o) end
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
        if ep.duplicate[err.sub_code] and ep.taken then err.message = err.message .. ep.taken end
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
        return nil, unknown_outcome(ep, ambiguous, (ep.again or "sending it again")
          .. " failed before it was sent: " .. err.message)
      end
      self:_log(call, ep, "retry", attempt, { pause = pause, error = err.kind })
      rt.sleep(pause)
    elseif definite_refusal and not ep.duplicate[err.sub_code] then
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
      local found, qerr = self:_read(call, ep.settle, settle_with, deadline, true, settling)
      if found and ep.settled then found = ep.settled(found, clean) end
      if found then
        self:_log(call, ep, "resolved", attempt, { status = found.status })
        return found
      end
      if settling.repeated then
        self:_log(call, ep, "unknown", attempt, { error = qerr.kind })
        return nil, misconfigured(ep, ambiguous or err, qerr.setting)
      end
      if qerr and not (qerr.kind == "api" and ep.settle.not_found[qerr.sub_code]) then
        self:_log(call, ep, "unknown", attempt, { error = qerr.kind })
        return nil, unknown_outcome(ep, ambiguous, (ep.settle.label or ep.settle.name)
          .. " failed too: " .. qerr.message)
      end
      -- Not found *yet*: the attempt may still be on its way to the platform, so this proves
      -- nothing for good. Applying again is safe (a late original would be refused as a
      -- duplicate, and that refusal is settled by a query), and settles it, unless the last
      -- re-apply was itself refused: then the platform will not take it, and we cannot know.
      -- Money is never sent again (ep.resend): a late original might move it twice.
      self:_log(call, ep, "not_found", attempt, {})
      local yet = "the platform did not know " .. (ep.key == "order_no" and "the order" or "it")
        .. " yet"
      if not ep.resend then
        return nil, unknown_outcome(ep, ambiguous, yet)
      end
      if err ~= ambiguous and definite_refusal then
        return nil, unknown_outcome(ep, ambiguous, (ep.again or "sending it again")
          .. " was refused (code " .. tostring(err.code) .. ", sub_code "
          .. tostring(err.sub_code) .. ") and " .. yet)
      end
      if attempt > self.o.max_retries or now() >= deadline then
        return nil, unknown_outcome(ep, ambiguous, yet)
      end
    end
  end
end

-- A read call: one endpoint, retried up to max_retries (Client:_read). A "repeat" write is
-- retried the same way; once an attempt may have been processed, its failure says the
-- outcome is unknown, and that the same call is safe to make again.
function Client:_read_call(call, biz, deadline)
  local ep = call.ep
  if ep.kind ~= "repeat" then return self:_read(call, ep, biz, deadline) end
  local sent = {}
  local result, err = self:_read(call, ep, biz, deadline, false, nil, sent)
  if result or not sent.ambiguous then return result, err end
  err.outcome, err.sent, err.retryable = "unknown", true, true
  err.message = err.message .. "; the outcome of the " .. ep.noun .. " is unknown: making the "
    .. "same call again is safe (it has the same effect)"
  return nil, err
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

-- The calls around the apply (issue 13): each one endpoint of the table, through
-- _one_call (validation before anything is sent, the deadline, retries, settling). `wrap`
-- makes the biz_data of a method that takes one value (a card_token); a table is taken as
-- the biz_data itself.
local function define(name, wrap)
  local ep = assert(endpoints[name], name)
  Client[name] = function(self, arg)
    check_open(self, name)
    if wrap and type(arg) ~= "table" then arg = wrap(arg) end
    local result, err = self:_one_call(ep, arg)
    return result, err
  end
end

local function by_card_token(card_token) return { card_token = card_token } end

--- Create Cardholder (SPEC.md §9). No idempotency key exists: after an answer that may have
-- been lost, the client asks Query Cardholder by (id_no, id_type) before anything is sent
-- again, as apply_card does with its order_no.
-- @function Client:create_holder
-- @tparam holder_data holder the cardholder, validated before anything is sent
-- @treturn[1] holder the new cardholder (`holder_id`, `audit_status`, `audit`, `approved`)
-- @return[2] nil
-- @treturn[2] error `err.outcome == "unknown"`: query_holder{id_no, id_type} tells
define("create_holder")

--- Query Cardholder by `holder_id`, or by `id_no` and `id_type` together.
-- @function Client:query_holder
-- @tparam table query `{holder_id = ...}` or `{id_no = ..., id_type = ...}`
-- @treturn[1] holder
-- @return[2] nil
-- @treturn[2] error `sub_code == "holder-not-found"` when there is none
define("query_holder")

--- Update Cardholder: a full replace of the record (every field of create_holder, and
-- holder_id). Repeating it has the same effect, so it is retried like a read.
-- @function Client:update_holder
-- @tparam holder_data holder the cardholder with its `holder_id`
-- @treturn[1] holder
-- @return[2] nil
-- @treturn[2] error
define("update_holder")

--- Upload Supporting Documents: the library reads `file_path` (or takes the bytes in
-- `file_content`), checks the 2 MiB limit and the extension of `file_name`, and
-- Base64-encodes the bytes itself. An ID document and a proof of address are both required
-- for the review (api `FILE_TYPE`: 1 and 2, the project's reading).
-- @function Client:upload_holder_document
-- @tparam document doc `holder_id`, `file_type`, `file_name`, `file_content` or `file_path`, `file_desc`
-- @treturn[1] done `ok = true`, `id` (the document id, when the platform gives one)
-- @return[2] nil
-- @treturn[2] error
define("upload_holder_document")

--- Query Card Information: the card's details. The full PAN, CVV, ACS password and PIN (when
-- the platform sends them) are kept out of the table: `card_pan` is masked there, and
-- `info:reveal()` returns them. `tostring(info)` never shows them.
-- @function Client:query_card_info
-- @tparam string card_token
-- @treturn[1] card_details
-- @return[2] nil
-- @treturn[2] error
define("query_card_info", by_card_token)

--- Query Card Balance: one account per currency.
-- @function Client:query_card_balance
-- @tparam string card_token
-- @treturn[1] balances `accounts` (list), `by_currency` (code → account), `total`
-- @return[2] nil
-- @treturn[2] error
define("query_card_balance", by_card_token)

--- Query Remaining Card Limit.
-- @function Client:query_remaining_limit
-- @tparam table query `card_token`, optional `stat_date` (`"yyyy-MM-dd"`)
-- @treturn[1] table the answer's fields; `total_remaining_limit` also from the old name
-- `total_remaining_amount`
-- @return[2] nil
-- @treturn[2] error
define("query_remaining_limit")

--- Query Card Limit: the limit set of a card (its `limit_id` is what update_card_limit needs).
-- @function Client:query_card_limit
-- @tparam table query `{card_token = ...}` or `{limit_id = ...}`
-- @treturn[1] table `limit_id`, `card_token`, `daily_transactions`, `single_amount`,
-- `daily_amount`, `monthly_amount`, `total_amount`, `create_time`
-- @return[2] nil
-- @treturn[2] error
define("query_card_limit")

--- Update Card Limit: absolute values, so a repetition has the same effect (retried like a
-- read).
-- @function Client:update_card_limit
-- @tparam table limit `limit_id`, `card_token`, `daily_transactions`, `single_amount`,
-- `daily_amount`, `monthly_amount`, optional `total_amount`
-- @treturn[1] done `ok = true`, `card_token`, `limit_id`
-- @return[2] nil
-- @treturn[2] error
define("update_card_limit")

--- Revoke a card, for good: the platform moves its balance back to the partner account. A
-- repetition after a lost answer that the platform refuses as "card revoked" counts as done.
-- @function Client:revoke_card
-- @tparam string card_token
-- @treturn[1] done `ok = true`, `card_token`
-- @return[2] nil
-- @treturn[2] error
define("revoke_card", by_card_token)

--- Create Webhook URL for one notification type. An answer that may have been lost is
-- settled through query_webhooks (the URL registered for that type) before it is sent again.
-- @function Client:create_webhook
-- @tparam table webhook `webhook_type`, `webhook_url`, optional `webhook_desc`
-- @treturn[1] table `webhook_id`
-- @return[2] nil
-- @treturn[2] error
define("create_webhook")

--- Query Webhook URL: the registered webhooks, optionally of one `webhook_type` or
-- `webhook_id`. The owner (`sub_partner_id`, or `partner_id` when there is none) comes from
-- the settings.
-- @function Client:query_webhooks
-- @tparam[opt] table filter `webhook_type`, `webhook_id`
-- @treturn[1] table `webhooks` (list of `webhook_id`, `webhook_type`, `webhook_url`,
-- `webhook_desc`, `create_time`), `total`
-- @return[2] nil
-- @treturn[2] error
define("query_webhooks", function() return {} end)

--- Top up a card from the partner account, keyed by `order_no`. An answer that may have been
-- lost is settled through the transaction detail by order_no; a top-up whose outcome stays
-- unknown is never sent again automatically (moving money twice is worse than not knowing).
-- @function Client:recharge
-- @tparam table topup `pay_account_num`, `card_token`, `order_no`, `amount`, `currency`,
-- optional `reference`
-- @treturn[1] transaction `transaction_id`, `order_no`
-- @return[2] nil
-- @treturn[2] error `err.outcome == "unknown"` with `err.order_no`: check it with
-- query_transaction before sending anything again
define("recharge")

--- Card Balance Return: from the card back to the partner account, keyed by `order_no`;
-- settled and never re-sent as @{Client:recharge} is.
-- @function Client:recharge_return
-- @tparam table refund `payee_account_num`, `card_token`, `order_no`, `amount`, `currency`,
-- optional `reference`
-- @treturn[1] transaction `transaction_id`, `order_no`
-- @return[2] nil
-- @treturn[2] error as for @{Client:recharge}
define("recharge_return")

--- Query Transaction Detail: by `transaction_id`, or by `order_no` (with
-- `transaction_type`, as the newest page asks).
-- @function Client:query_transaction
-- @tparam table query `{transaction_id = ...}` or `{order_no = ..., transaction_type = ...}`
-- @treturn[1] transaction
-- @return[2] nil
-- @treturn[2] error `sub_code == "transaction-not-found"` when there is none
define("query_transaction")

local CARD_TRANSACTIONS = { schema = schema.card_transactions, key = "card_token" }

--- Every transaction of a query, as an iterator: the range (any length) is cut into windows
-- of 31 days and each is read 30 entries a page, each page one call (its own `timeout` and
-- retries). `for tx, err in client:card_transactions{...} do if not tx then ... end end`:
-- an invalid query or a failed page comes once as `false, err`, and ends the walk.
-- @tparam table query `start_date`, `end_date` (`"yyyy-MM-dd"`), optional `card_token`,
-- `order_no`, `transaction_status`, `transaction_type`, `currency`
-- @treturn function the iterator
function Client:card_transactions(query)
  check_open(self, "card_transactions")
  local clean, err = validate(CARD_TRANSACTIONS, query, 3)
  if not clean then
    local given = err
    return function()
      local e = given
      given = nil
      if e then return false, e end
    end
  end
  local page_ep = endpoints.query_card_transactions
  return pager.walk(function(biz) return self:_one_call(page_ep, biz) end, clean,
    "transactions", api.MAX_PAGE_SIZE, api.MAX_RANGE_DAYS, function(message, request_id)
      return errors.new("protocol", message, { request_id = request_id, sent = true,
        retryable = false })
    end)
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
  -- By notify_type (api.NOTIFICATIONS): an apply-card result is a card table (as is a body
  -- without notify_type, as before); the others are their fields as sent.
  local kind = api.NOTIFICATIONS[env.notify_type == nil and 1 or env.notify_type]
  local note = (not kind or kind.event == "apply_card") and api.card(biz, env.request_id)
    or results.object(biz, env.request_id)
  note.event = kind and kind.event or "other"
  note.notify_type = env.notify_type
  note.sealed = sealed       -- how it travelled; not who sent it
  note.confirmed = false
  return note
end


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
  local kind = api.NOTIFICATIONS[note.notify_type == nil and 1 or note.notify_type]
  if not kind then
    return nil, errors.new("protocol", "notify_type " .. errors.printable(note.notify_type, 16)
      .. " has no read to confirm it with (parse_notification reads it)",
      { request_id = note.request_id, retryable = false })
  end
  local ep = endpoints[kind.confirm]
  local by = kind.by
  local card, qerr = self:_one_call(ep, { [by] = note[by] })
  if not card then
    local ctx = { request_id = qerr.request_id, retryable = false }
    if qerr.kind == "validation" then
      -- Checked before anything is sent; the value itself is not echoed.
      return nil, errors.new("protocol", "the notification's " .. by .. " " .. qerr.reason, ctx)
    end
    if qerr.kind == "api" and ep.not_found[qerr.sub_code] then
      ctx[ep.key], ctx.unknown_order = note[by], true
      return nil, errors.new("protocol", "the platform does not know this "
        .. (by == "order_no" and "order" or by) .. ": the notification is not to be acted on", ctx)
    end
    qerr.retryable = true
    return nil, qerr
  end
  local mismatch = {}
  for k, truth in pairs(kind.claims) do
    -- key_text: long ids may be numbers on one side and decimal strings on the other
    if note[k] ~= nil and api.key_text(note[k]) ~= api.key_text(card[truth]) then
      mismatch[#mismatch + 1] = k
    end
  end
  table.sort(mismatch)
  card.mismatch = mismatch[1] and mismatch or nil
  card.notify_type = note.notify_type
  card.event = note.event
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
