-- luacheck: globals ngx
-- The local emulator: the platform's side of SPEC.md §2–§7, served by nginx + the Lua module.
-- `pagsmile-issuing emulator` starts it (pagsmile_emulator.launch); docs/SANDBOX.md
-- documents it and its control API.
--   init_by_lua:     require("pagsmile_emulator.handler").init{ app_id, partner_id, keys... }
--   init_worker_by_lua: require("pagsmile_emulator.handler").init_worker()
--   /issuing/:       require("pagsmile_emulator.handler").handle()
--   /_sandbox/:      require("pagsmile_emulator.handler").control()   (plain JSON)
-- State lives in a lua_shared_dict (default "pagsmile_sandbox", state.lua). This file
-- keeps the envelope, the faults, the orders (apply, query) and the control API; the other
-- areas are beside it: holders.lua, cards.lua, money.lua, webhooks.lua (issue 13).
-- Never logs bodies, keys or PANs (cards.lua keeps full PANs in the shared dict only).
local sealing = require "pagsmile.issuing.envelope" -- the platform's side of it
local json = require "pagsmile.issuing.json"
local endpoints = require "pagsmile.issuing.endpoints"
local schema = require "pagsmile.issuing.schema"
local state = require "pagsmile_emulator.state"
local holders = require "pagsmile_emulator.holders"
local cards = require "pagsmile_emulator.cards"
local money = require "pagsmile_emulator.money"
local webhooks = require "pagsmile_emulator.webhooks"
local bit = require "bit" -- nginx's LuaJIT

local M = {}

local cfg

local SUCCESS, UNAVAILABLE, MISSING, BUSINESS, METHOD = state.SUCCESS, state.UNAVAILABLE,
  state.MISSING, state.BUSINESS, state.METHOD

-- OrderStatus (SPEC.md §8).
local PROCESSING, COMPLETED = 3, 5

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function load_key(config, name, parse, required)
  local text = config[name]
  if not text and config[name .. "_file"] then
    text = read_file(config[name .. "_file"])
    if not text then error("sandbox: cannot read " .. name .. "_file", 0) end
  end
  if not text then
    if required then error("sandbox: " .. name .. " is required", 0) end
    return nil
  end
  local key, msg = parse(text)
  if not key then error("sandbox: " .. name .. " is not a usable key (" .. tostring(msg) .. ")", 0) end
  return key
end

--- Called from init_by_lua. Keys are given as PEM/base64 text or as *_file paths.
-- config: app_id, partner_id, platform_private_key, merchant_public_key,
-- wrong_merchant_public_key (optional, for the wrong_key fault), dict (optional name),
-- parent_pid and remove_on_orphan (optional: see init_worker).
function M.init(config)
  local wrong = load_key(config, "wrong_merchant_public_key", sealing.public_key, false)
  if not wrong then
    local _, pub = sealing.keygen()
    wrong = assert(sealing.public_key(pub))
  end
  cfg = {
    app_id = assert(config.app_id, "sandbox: app_id is required"),
    partner_id = assert(config.partner_id, "sandbox: partner_id is required"),
    dict = config.dict or "pagsmile_sandbox",
    platform_key = load_key(config, "platform_private_key", sealing.private_key, true),
    merchant_key = load_key(config, "merchant_public_key", sealing.public_key, true),
    wrong_key = wrong,
    parent_pid = tonumber(config.parent_pid),
    remove_on_orphan = config.remove_on_orphan,
  }
  state.cfg = cfg
  return true
end

local function process_alive(pid)
  local f = io.open("/proc/" .. pid .. "/status", "rb")
  if not f then return false end
  local status = f:read("*a")
  f:close()
  local letter = status:match("State:%s*(%a)")
  return letter ~= nil and letter ~= "Z"
end

--- Called from init_worker_by_lua. With parent_pid, the emulator outlives the command that
-- started it by at most a second or two, whatever ended that command (Ctrl-C, kill, a closed
-- terminal): it removes its temporary directory (throwaway keys, logs) and stops.
function M.init_worker()
  local pid = cfg.parent_pid
  if not pid then return end
  local ok, err = ngx.timer.every(1, function(premature)
    if premature or process_alive(pid) then return end
    ngx.log(ngx.NOTICE, "sandbox: the command that started the emulator is gone: stopping")
    local dir = cfg.remove_on_orphan
    if type(dir) == "string" and dir:match("^/[%w%-_./]+$") and not dir:find("..", 1, true) then
      os.execute("rm -rf '" .. dir .. "'")
    end
    os.execute("kill -TERM " .. ngx.worker.pid())
  end)
  if not ok then ngx.log(ngx.ERR, "sandbox: cannot start the watchdog: ", err) end
end

local random_hex, random_digits = state.random_hex, state.random_digits
local dict, get_json, set_json, settings = state.dict, state.get, state.set, state.settings
local merchant_key, next_id, long_string, envelope = state.merchant_key, state.next_id,
  state.long_string, state.envelope

-- Answers ----------------------------------------------------------------------------------

local function json_answer(status, value)
  return { status = status, body = assert(json.encode(value)) }
end

-- Only string fields of the envelope; each rule names the field in the sub_code.
local TIMESTAMP = "^(%d%d%d%d)%-(%d%d)%-(%d%d) (%d%d):(%d%d):(%d%d)$"
local ENVELOPE_RULES = {
  { "timestamp", function(v)
      local _, mo, d, h, mi, s = v:match(TIMESTAMP)
      return mo and tonumber(mo) >= 1 and tonumber(mo) <= 12 and tonumber(d) >= 1
        and tonumber(d) <= 31 and tonumber(h) <= 23 and tonumber(mi) <= 59 and tonumber(s) <= 59
    end },
  { "format", function(v) return v == "JSON" end },
  { "sign_type", function(v) return v == "RSA" end },
  { "version", function(v) return v == "1.0" or v == "2.0" end },
  { "request_id", function(v) return #v <= 128 end },
}

local function check_envelope(req)
  if req.app_id ~= cfg.app_id then
    return envelope(BUSINESS, "invalid-app-id", "invalid app_id")
  end
  if req.partner_id ~= cfg.partner_id then
    return envelope(BUSINESS, "invalid-partner-id", "invalid partner_id")
  end
  for _, rule in ipairs(ENVELOPE_RULES) do
    local name, ok = rule[1], rule[2]
    local v = req[name]
    if v == nil or v == "" or v == json.null then
      return envelope(MISSING, "missing-" .. name, name .. " is required")
    end
    if type(v) ~= "string" or not ok(v) then
      return envelope(MISSING, "invalid-" .. name, name .. " is invalid")
    end
  end
  if req.sub_partner_id ~= nil and type(req.sub_partner_id) ~= "string" then
    return envelope(MISSING, "invalid-sub_partner_id", "sub_partner_id is invalid")
  end
  local added, err = dict():add("rid:" .. req.request_id, true, 86400)
  if not added and err == "exists" then
    return envelope(BUSINESS, "duplicate-request-id", "request_id already used")
  end
  for _, name in ipairs{ "random_key", "biz_data" } do
    if type(req[name]) ~= "string" or req[name] == "" then
      return envelope(MISSING, "missing-" .. name, name .. " is required")
    end
  end
  return nil
end

-- Orders -----------------------------------------------------------------------------------

local function load_order(order_no)
  return get_json("order:" .. order_no)
end

local function save_order(order)
  set_json("order:" .. order.order_no, order)
end

-- Completion issues the card (cards.lua): its token and masked PAN go into the order.
local function complete(order)
  order.order_status = COMPLETED
  cards.issue(order)
end

-- SPEC.md §5 response fields (§6 adds the three extras).
local function card_data(order, extras)
  local data = {
    card_id = json.long(order.card_id), holder_id = json.long(order.holder_id),
    holder_name = order.holder_name, order_no = order.order_no,
    order_status = order.order_status, order_count = order.order_count,
    card_token = order.card_token, card_pan = order.card_pan,
    card_scheme = order.card_scheme, card_type = order.card_type,
    is_share_card = order.is_share_card, card_bin = order.card_bin,
  }
  if extras then
    data.pay_account_num = order.pay_account_num
    data.initial_balance = order.initial_balance
    data.card_remark = order.card_remark
  end
  return data
end

-- Callbacks (SPEC.md §7): to the `callback_url` setting and the type-1 webhooks.
local function schedule_callback(order)
  webhooks.notify(1, {
    order_no = order.order_no, card_token = order.card_token, card_pan = order.card_pan,
    holder_id = json.long(order.holder_id), holder_name = order.holder_name,
    card_scheme = order.card_scheme, card_type = order.card_type,
    order_count = order.order_count, order_status = order.order_status,
    is_share_card = order.is_share_card,
  }, { order_no = order.order_no }, order.sub_partner_id, settings().callback_url)
end

-- Completion by time: a timer per pending order with complete_at. The card_id tells this
-- order from a later one with the same order_no (after a reset).
local function complete_by_time(premature, order_no, card_id)
  if premature then return end
  local order = load_order(order_no)
  if not order or order.card_id ~= card_id or order.order_status ~= PROCESSING then return end
  complete(order)
  save_order(order)
  schedule_callback(order)
end

-- A processing order completes on its `polls`-th query (polls > 0), once complete_at has
-- passed, or on any query when neither is set.
local function due(order)
  if order.order_status ~= PROCESSING then return false end
  local polls = order.polls or 0
  if polls > 0 and (order.queries or 0) >= polls then return true end
  if order.complete_at then return ngx.now() >= order.complete_at end
  return polls <= 0
end

-- Endpoints ----------------------------------------------------------------------------------

local function apply(req, biz)
  local d = dict()
  local order_no = biz.order_no
  local holder = biz.holder
  -- The `known_holders` setting: a holder_id must name an approved cardholder of this
  -- emulator. Off (the default: older scripts apply with made-up ids), a holder_id is taken
  -- as it is, for a "Sandbox Holder".
  local known
  if biz.holder_id ~= nil and settings().known_holders == true then
    known = holders.load(biz.holder_id)
    if not known then return envelope(BUSINESS, "holder-not-found", "cardholder does not exist") end
    if known.audit_status ~= 1 then
      return envelope(BUSINESS, "holder-not-approved", "cardholder is not approved")
    end
  end
  local attempts = d:incr("applies:" .. order_no, 1, 0)
  if attempts > 1 or load_order(order_no) then
    return envelope(BUSINESS, "duplicate-order-no", "order_no already exists")
  end
  -- A per-order plan (control API) replaces the settings for that order.
  local plan = get_json("pending:" .. order_no)
  if plan then d:delete("pending:" .. order_no) else plan = settings() end
  local polls = tonumber(plan.polls or plan.pending_polls) or 0
  local after = tonumber(plan.complete_after) or 0
  -- ids count up by one per id handed out: the card's, then the new holder's
  local card_id = next_id()
  local holder_id = biz.holder_id ~= nil and long_string(biz.holder_id) or next_id()
  if type(holder) == "table" then holders.register(holder_id, holder) end
  local order = {
    order_no = order_no,
    card_id = card_id,
    holder_id = holder_id,
    holder_name = type(holder) == "table" and (holder.first_name .. " " .. holder.last_name)
                  or known and (known.first_name .. " " .. known.last_name) or "Sandbox Holder",
    order_status = PROCESSING, order_count = 1, card_scheme = 3,
    card_type = biz.card_type, is_share_card = biz.is_share_card == true,
    card_bin = biz.card_bin or "658704",
    card_token = "", card_pan = "",
    pay_account_num = biz.pay_account_num, initial_balance = biz.initial_balance,
    card_remark = biz.card_remark, card_limit = biz.card_limit,
    sub_partner_id = req.sub_partner_id or "",
    polls = polls, queries = 0,
    complete_at = after > 0 and ngx.now() + after or nil,
  }
  if polls <= 0 and after <= 0 then complete(order) end
  save_order(order)
  if order.order_status == COMPLETED then
    schedule_callback(order)
  elseif after > 0 then
    local ok, err = ngx.timer.at(after, complete_by_time, order_no, order.card_id)
    if not ok then ngx.log(ngx.ERR, "sandbox: cannot schedule a completion: ", err) end
  end
  return nil, card_data(order, false)
end

-- A pending order answers "processing" to its first polls-1 queries; query number `polls`
-- completes it ("completes after N queries"); one with complete_at completes by time.
local function query(_, biz)
  local order = load_order(biz.order_no)
  if not order then
    return envelope(BUSINESS, "order-not-found", "order does not exist")
  end
  order.queries = (order.queries or 0) + 1
  local now_complete = due(order)
  if now_complete then complete(order) end
  save_order(order)
  if now_complete then schedule_callback(order) end
  return nil, card_data(order, true)
end

-- The emulator's handler of each endpoint of the client's table (endpoints.lua), by name:
-- run(req, biz) -> refusal | nil, data (state.NO_DATA: none), total.
local HANDLERS = {
  apply_card = apply, query_apply_result = query,
  create_holder = holders.create, query_holder = holders.query, update_holder = holders.update,
  upload_holder_document = holders.upload,
  query_card_info = cards.info, query_card_balance = cards.balance,
  query_card_limit = cards.query_limit, update_card_limit = cards.update_limit,
  query_remaining_limit = function(req, biz) return cards.remaining(req, biz, money.spent) end,
  revoke_card = function(req, biz) return cards.revoke(req, biz, money.refund) end,
  create_webhook = webhooks.create, query_webhooks = webhooks.query,
  recharge = money.recharge, recharge_return = money.recharge_return,
  query_transaction = money.query_transaction,
  query_card_transactions = money.query_card_transactions,
}

local ENDPOINTS = {}
for name, ep in pairs(endpoints) do
  ENDPOINTS[ep.path] = { schema = ep.wire or ep.schema, run = assert(HANDLERS[name], name) }
end

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    local file = ngx.req.get_body_file()
    body = file and read_file(file)
  end
  return body
end

local function is_object(v)
  return type(v) == "table" and v[1] == nil
end

-- Faults (for tests): settings.faults = { {kind=, path=, order_no=, times=, after=, ms=}, ... }.
-- A fault matches its path (nil or "*": any) and, when order_no is set, only requests for
-- that order; each use counts `times` down (default 1). The first matching entry wins.
--   reset_before        close the connection before the request is read; nothing is processed
--                       (with order_no the body must be read to learn the order: it closes
--                       after reading, still before processing)
--   http_500/502/503    an HTML error page with that status; before processing, or after it
--                       when `after` is true
--   reset_after         process, then close the connection without an answer
--   late                close the connection without an answer, and process the request
--                       `ms` (default 500) later, as an attempt held up on its way would be
--   garbage             process, then answer 200 with an HTML body
--   truncated           process, then send half the body and close
--   wrong_key           process, then seal the answer for another merchant key
--   latency             process, then wait `ms` (default 1000) before answering
--   drip                process, then send the headers and the body a few bytes at a time
--                       over `ms` (default 10000), outliving a client's deadline
--   not_found           answer "order-not-found" without processing (an order not visible yet)
--   refuse              answer a refusal without processing: code `code` (default "40002"),
--                       sub_code `sub_code` (default "refused"), as a rate limit or a hold would
--   other_order         process, then answer with a card of another order (order_no `other`,
--                       default a made-up one; another token and PAN): a misrouted answer
--   bad_data            process, then answer code 10000 with `data` absent, null, "" or an
--                       array, as `data` = "absent" | "null" | "empty" | "array" says
-- Entries for one order, with `times`, make a script: e.g. { reset_after on the apply,
-- not_found on the query, refuse on the apply } answers the first apply, query and re-apply
-- of that order that way, in turn.
-- settings.latency_ms delays every answer (after processing). docs/SANDBOX.md has the rest.
local HTTP_FAULTS = { http_500 = 500, http_502 = 502, http_503 = 503 }
local REASONS = { [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable" }

local function before_processing(fault)
  return fault.kind == "reset_before" or (HTTP_FAULTS[fault.kind] ~= nil and fault.after ~= true)
end

local function take_fault(path, order_no)
  local s = settings()
  if type(s.faults) ~= "table" then return nil end
  for _, f in ipairs(s.faults) do
    local times = type(f) == "table" and (tonumber(f.times) or 1) or 0
    if times > 0 and (f.path == nil or f.path == "*" or f.path == path)
       and (f.order_no == nil and order_no == nil or f.order_no ~= nil and f.order_no == order_no) then
      f.times = times - 1
      set_json("settings", s)
      return { kind = f.kind, after = f.after == true, ms = tonumber(f.ms),
               code = f.code, sub_code = f.sub_code, other = f.other, data = f.data }
    end
  end
  return nil
end

-- Random faults: settings.random_faults = { rate, kinds, seed, path } gives API request
-- number n (counted from the last reset, the `arrivals` counter) a fault with probability
-- `rate`, of a kind drawn from `kinds`, each as its scripted entry with the default
-- parameters. Both draws hash (seed, n), so one seed replays the same faults for the same
-- order of requests. Scripted entries win: the draw is dealt (and counted) only when no
-- scripted entry matched the request.
local FAULT_KINDS = {
  reset_before = true, reset_after = true, late = true, garbage = true, truncated = true,
  wrong_key = true, latency = true, drip = true, not_found = true, refuse = true,
  other_order = true, bad_data = true, http_500 = true, http_502 = true, http_503 = true,
}
local RANDOM_KINDS = { "reset_before", "reset_after", "http_503", "garbage", "late" }

-- a * b mod 2^32 in exact double arithmetic (each partial product stays below 2^53).
local function mul32(a, b)
  local alo, ahi = bit.band(a, 0xffff), bit.rshift(a, 16)
  local blo, bhi = bit.band(b, 0xffff), bit.rshift(b, 16)
  return bit.tobit(alo * blo + bit.lshift(ahi * blo + alo * bhi, 16))
end

-- MurmurHash3's finaliser: every input bit reaches every output bit.
local function fmix32(h)
  h = mul32(bit.bxor(h, bit.rshift(h, 16)), 0x85ebca6b)
  h = mul32(bit.bxor(h, bit.rshift(h, 13)), 0xc2b2ae35)
  return bit.bxor(h, bit.rshift(h, 16))
end

local TWO32 = 4294967296
local function unit(h) return (h % TWO32) / TWO32 end

-- Two independent numbers in [0, 1) for request n under `seed`.
local function draw(seed, n)
  local h = fmix32(bit.bxor(fmix32(bit.tobit(n % TWO32)), bit.tobit(seed % TWO32)))
  return unit(h), unit(fmix32(bit.tobit(h + 0x9e3779b9)))
end

-- The fault request n on `path` draws, or nil.
local function random_fault(path, n)
  local r = settings().random_faults
  if type(r) ~= "table" or (r.path ~= "*" and r.path ~= path) then return nil end
  local hit, pick = draw(r.seed, n)
  if hit >= r.rate then return nil end
  return { kind = r.kinds[math.floor(pick * #r.kinds) + 1] }
end

-- The setting as stored (defaults filled in), or nil and why it is refused.
local function random_faults_setting(v)
  if type(v) ~= "table" then return nil, "random_faults must be an object or false" end
  local rate, seed, path = tonumber(v.rate), v.seed == nil and 1 or v.seed, v.path or "*"
  if not rate or rate < 0 or rate > 1 then return nil, "random_faults.rate must be a number from 0 to 1" end
  if type(seed) ~= "number" or seed ~= math.floor(seed) or math.abs(seed) >= 2 ^ 53 then
    return nil, "random_faults.seed must be an integer"
  end
  if type(path) ~= "string" then return nil, "random_faults.path must be a path or \"*\"" end
  local kinds = v.kinds == nil and RANDOM_KINDS or v.kinds
  if type(kinds) ~= "table" or kinds[1] == nil then
    return nil, "random_faults.kinds must be a list of fault kinds"
  end
  for _, kind in ipairs(kinds) do
    if not FAULT_KINDS[kind] then return nil, "random_faults.kinds: unknown kind " .. tostring(kind) end
  end
  return { rate = rate, kinds = kinds, seed = seed, path = path }
end

-- Returns the answer { status, body } for a request to a business path, or nil and a
-- per-order fault that fires before processing. `random` is the request's random fault, if
-- it drew one: it is dealt only when no scripted entry matched.
local function business(path, fault, random)
  local endpoint = ENDPOINTS[path]
  if not endpoint then
    return json_answer(404, envelope(METHOD, "invalid-method", "unknown method"))
  end
  if ngx.req.get_method() ~= "POST" then
    return json_answer(200, envelope(METHOD, "invalid-http-method", "POST required"))
  end
  local body = read_body()
  local req = body and json.decode(body)
  if not is_object(req) then
    return json_answer(200, envelope(MISSING, "invalid-request", "body is not a JSON object"))
  end
  local bad = check_envelope(req)
  if bad then return json_answer(200, bad) end
  local biz = sealing.unseal(cfg.platform_key, req.random_key, req.biz_data)
  if not is_object(biz) then
    return json_answer(200, envelope(BUSINESS, "invalid-signature", "invalid signature"))
  end
  if not fault and type(biz.order_no) == "string" then fault = take_fault(path, biz.order_no) end
  if not fault and random then
    fault = random
    dict():incr("rf:" .. random.kind, 1, 0)
  end
  if fault and before_processing(fault) then return nil, fault end
  local clean, field, reason = schema.validate(endpoint.schema, biz)
  if not clean then
    return json_answer(200, envelope(BUSINESS, "invalid-parameter",
                                     schema.describe_error(field, reason))), fault
  end
  local kind = fault and fault.kind
  if kind == "late" then
    ngx.timer.at((fault.ms or 500) / 1000, function() pcall(endpoint.run, req, clean) end)
    return nil, fault
  elseif kind == "not_found" then
    return json_answer(200, envelope(BUSINESS, "order-not-found", "order does not exist")), fault
  elseif kind == "refuse" then
    return json_answer(200, envelope({ tostring(fault.code or BUSINESS[1]), "Refused" },
      fault.sub_code or "refused", "refused by a sandbox fault")), fault
  end
  local refused, data, total = endpoint.run(req, clean)
  if kind == "other_order" then
    data = data or { order_status = COMPLETED, card_scheme = 3, card_type = 1,
                     card_id = json.long(next_id()), holder_id = json.long(next_id()) }
    data.order_no = fault.other or ("OTHER-" .. random_hex(8))
    data.card_token = "tok_" .. random_hex(24)
    data.card_pan = "658704******" .. random_digits(4)
  elseif refused then
    return json_answer(200, refused), fault
  end
  local answer = envelope(SUCCESS)
  local key = kind == "wrong_key" and cfg.wrong_key or merchant_key()
  if kind == "bad_data" then
    if fault.data == "null" then answer.data = json.null
    elseif fault.data == "empty" then answer.data = ""
    elseif fault.data == "array" then answer.random_key, answer.data = sealing.seal(key, { data })
    end
    return json_answer(200, answer), fault
  end
  if data ~= state.NO_DATA then
    answer.random_key, answer.data = sealing.seal(key, data)
    answer.total = total or 1
  end
  return json_answer(200, answer), fault
end

local function html_error(status)
  local title = status .. " " .. REASONS[status]
  ngx.status = status
  ngx.header["Content-Type"] = "text/html"
  ngx.print("<html>\r\n<head><title>", title, "</title></head>\r\n<body>\r\n<center><h1>",
            title, "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
end

-- The answer, a few bytes every 100 ms over `ms`; stops when the client has gone.
local function drip(body, ms)
  ngx.header["Content-Length"] = #body
  ngx.send_headers()
  ngx.flush(true)
  local steps = math.max(1, math.floor((ms or 10000) / 100))
  local size = math.max(1, math.ceil(#body / steps))
  for i = 1, #body, size do
    ngx.sleep(0.1)
    if not ngx.print(body:sub(i, i + size - 1)) or not ngx.flush(true) then
      return ngx.exit(444)
    end
  end
end

-- Arrivals: the time of each API request, in blocks of ARRIVAL_BLOCK comma-separated
-- values ("arr:<block mod ARRIVAL_BLOCKS>"), one block rewritten per request, so keeping
-- the last ARRIVALS_KEPT costs a few bytes each and no key per request.
local ARRIVALS_KEPT, ARRIVAL_BLOCK = 100000, 100
local ARRIVAL_BLOCKS = ARRIVALS_KEPT / ARRIVAL_BLOCK + 1

local function arrival_key(n)
  return "arr:" .. math.floor((n - 1) / ARRIVAL_BLOCK) % ARRIVAL_BLOCKS
end

-- Records this request's arrival; returns its number since the last reset.
local function record_arrival(d)
  ngx.update_time()
  local t = string.format("%.3f", ngx.now())
  local n = d:incr("arrivals", 1, 0)
  local key = arrival_key(n)
  local ok, err = d:set(key, (n - 1) % ARRIVAL_BLOCK == 0 and t or ((d:get(key) or "") .. "," .. t))
  if not ok then ngx.log(ngx.ERR, "sandbox: cannot record an arrival: ", err) end
  return n
end

-- The arrivals JSON, oldest first: the last ARRIVALS_KEPT, so the oldest block is cut.
local function arrivals_json()
  local d = dict()
  local n = d:get("arrivals") or 0
  local first = math.max(1, n - ARRIVALS_KEPT + 1)
  local parts = {}
  for i = first - (first - 1) % ARRIVAL_BLOCK, n, ARRIVAL_BLOCK do
    local text = d:get(arrival_key(i)) or ""
    for _ = i, first - 1 do text = text:match(",(.*)$") or "" end
    if text ~= "" then parts[#parts + 1] = text end
  end
  return '{"arrivals":[' .. table.concat(parts, ",") .. "]}"
end

-- Requests in flight: from the start of handle() to the log phase (M.finish), which nginx
-- runs however the request ended (an answer, a close, a handler error, a client gone). A
-- reset starts a new generation: requests from before it are no longer counted.
local function enter(d)
  local n = d:incr("in_flight", 1, 0)
  if n > (d:get("max_in_flight") or 0) then d:set("max_in_flight", n) end
  ngx.ctx.generation = d:get("generation") or 0
end

--- log_by_lua for the business paths: the request is over.
function M.finish()
  local d = dict()
  local generation = ngx.ctx.generation
  if generation and generation == (d:get("generation") or 0) then d:incr("in_flight", -1, 0) end
end

--- content_by_lua for the business paths (and any unknown path).
function M.handle()
  local d = dict()
  local path = ngx.var.uri
  enter(d)
  local n = record_arrival(d)
  d:incr("req:" .. path, 1, 0)
  if ngx.var.connection_requests == "1" then d:incr("connections", 1, 0) end

  local fault = take_fault(path, nil)
  if fault and fault.kind == "reset_before" then return ngx.exit(444) end
  if fault and before_processing(fault) then return html_error(HTTP_FAULTS[fault.kind]) end

  local ok, answer, order_fault = pcall(business, path, fault, not fault and random_fault(path, n))
  if not ok then
    ngx.log(ngx.ERR, "sandbox: internal error on ", path, ": ", tostring(answer))
    answer = json_answer(200, envelope(UNAVAILABLE, "internal-error", "sandbox internal error"))
  else
    fault = order_fault
  end
  if not answer then
    if fault.kind == "reset_before" or fault.kind == "late" then return ngx.exit(444) end
    return html_error(HTTP_FAULTS[fault.kind])
  end
  local kind = fault and fault.kind

  local latency = tonumber(settings().latency_ms)
  if latency and latency > 0 then ngx.sleep(latency / 1000) end
  if kind == "latency" then ngx.sleep((fault.ms or 1000) / 1000) end

  if kind == "reset_after" then return ngx.exit(444) end
  if HTTP_FAULTS[kind] then return html_error(HTTP_FAULTS[kind]) end
  ngx.status = answer.status
  if kind == "garbage" then
    ngx.header["Content-Type"] = "text/html"
    ngx.print("<html>502 gateway " .. random_hex(16) .. "</html>")
    return
  end
  ngx.header["Content-Type"] = "application/json; charset=UTF-8"
  if kind == "drip" then return drip(answer.body, fault.ms) end
  if kind == "truncated" then
    ngx.header["Content-Length"] = #answer.body
    ngx.print(answer.body:sub(1, math.floor(#answer.body / 2)))
    ngx.flush(true)
    return ngx.exit(444)
  end
  ngx.header["Content-Length"] = #answer.body
  ngx.print(answer.body)
end

-- Control API ------------------------------------------------------------------------------

local names_under = state.names_under

local function orders_view()
  local d = dict()
  local out = {}
  for _, order_no in ipairs(names_under("order:")) do
    local order = load_order(order_no)
    if order then
      local v = card_data(order, true)
      v.applies = d:get("applies:" .. order_no) or 0
      v.queries = order.queries or 0
      v.polls = order.polls or 0
      v.complete_at = order.complete_at
      v.sub_partner_id = order.sub_partner_id
      out[order_no] = v
    end
  end
  return out
end

local function stats_view()
  local d = dict()
  local requests = {}
  for _, path in ipairs(names_under("req:")) do requests[path] = d:get("req:" .. path) end
  local callbacks = {}
  for i = 1, d:get("cb_n") or 0 do
    callbacks[#callbacks + 1] = get_json("cb:" .. i)
  end
  local random = {}
  for _, kind in ipairs(names_under("rf:")) do random[kind] = d:get("rf:" .. kind) end
  return { requests = requests, connections = d:get("connections") or 0, callbacks = callbacks,
           in_flight = d:get("in_flight") or 0, max_in_flight = d:get("max_in_flight") or 0,
           random_faults = random }
end

local function control_answer(status, value)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  local body = type(value) == "string" and value or assert(json.encode(value))
  ngx.header["Content-Length"] = #body
  ngx.print(body)
end

--- content_by_lua for /_sandbox/.
function M.control()
  local method, path = ngx.req.get_method(), ngx.var.uri
  local d = dict()
  if method == "GET" and path == "/_sandbox/stats" then
    return control_answer(200, stats_view())
  elseif method == "GET" and path == "/_sandbox/orders" then
    return control_answer(200, orders_view())
  elseif method == "GET" and path == "/_sandbox/holders" then
    return control_answer(200, holders.view())
  elseif method == "GET" and path == "/_sandbox/cards" then
    return control_answer(200, cards.view())
  elseif method == "GET" and path == "/_sandbox/ledger" then
    return control_answer(200, money.ledger())
  elseif method == "GET" and path == "/_sandbox/arrivals" then
    return control_answer(200, arrivals_json())
  elseif method == "GET" and path == "/_sandbox/settings" then
    return control_answer(200, settings())
  elseif method == "GET" and path == "/_sandbox/merchant-key" then
    local text = d:get("merchant_public_key")
    return control_answer(200, { registered = text ~= nil, public_key = text })
  elseif method == "POST" and path == "/_sandbox/reset" then
    -- Ids keep counting, and a registered merchant key stays: it is setup, not state.
    local seq, key, generation = d:get("seq"), d:get("merchant_public_key"), d:get("generation")
    d:flush_all()
    d:flush_expired()
    if seq then d:set("seq", seq) end
    if key then d:set("merchant_public_key", key) end
    d:set("generation", (generation or 0) + 1)
    return control_answer(200, { ok = true })
  end
  if method ~= "POST" then return control_answer(404, { error = "unknown control call" }) end
  local body = read_body() or "{}"
  local input = json.decode(body)
  if not is_object(input) then return control_answer(400, { error = "a JSON object is required" }) end
  if path == "/_sandbox/settings" then
    local s = settings()
    -- The project's JSON drops null members, so false is what clears a setting.
    if input.random_faults then
      local why
      input.random_faults, why = random_faults_setting(input.random_faults)
      if not input.random_faults then return control_answer(400, { error = why }) end
    end
    for k, v in pairs(input) do
      if v == false then s[k] = nil else s[k] = v end
    end
    set_json("settings", s)
    return control_answer(200, s)
  end
  if path == "/_sandbox/merchant-key" then
    local text = input.public_key
    if text == false then
      d:delete("merchant_public_key")
      return control_answer(200, { registered = false })
    end
    if type(text) ~= "string" or not sealing.public_key(text) then
      return control_answer(400, { error = "public_key must be an RSA public key (PEM or Base64)" })
    end
    d:set("merchant_public_key", text)
    return control_answer(200, { registered = true })
  end
  local order_no = path:match("^/_sandbox/orders/([^/]+)/pending$")
  if order_no then
    local polls, after = tonumber(input.polls or 0), tonumber(input.complete_after or 0)
    if not polls or polls < 0 then return control_answer(400, { error = "polls must be a number >= 0" }) end
    if not after or after < 0 then
      return control_answer(400, { error = "complete_after must be a number of seconds >= 0" })
    end
    set_json("pending:" .. ngx.unescape_uri(order_no), { polls = polls, complete_after = after })
    return control_answer(200, { ok = true })
  end
  local holder_id = path:match("^/_sandbox/holders/(%d+)/approve$")
  if holder_id then
    local h = holders.approve(holder_id)
    if not h then return control_answer(404, { error = "no such holder" }) end
    return control_answer(200, { ok = true, audit_status = h.audit_status })
  end
  local card_token = path:match("^/_sandbox/cards/([^/]+)/transactions$")
  if card_token then
    if input.start_date ~= nil and (type(input.start_date) ~= "string"
       or not input.start_date:match("^%d%d%d%d%-%d%d%-%d%d$")) then
      return control_answer(400, { error = "start_date must be yyyy-MM-dd" })
    end
    local n, why = money.seed(ngx.unescape_uri(card_token), input)
    if not n then return control_answer(404, { error = why }) end
    return control_answer(200, { ok = true, count = n })
  end
  order_no = path:match("^/_sandbox/orders/([^/]+)/complete$")
  if order_no then
    local order = load_order(ngx.unescape_uri(order_no))
    if not order then return control_answer(404, { error = "no such order" }) end
    if order.order_status == PROCESSING then
      complete(order)
      save_order(order)
      schedule_callback(order)
    end
    return control_answer(200, { ok = true, order_status = order.order_status })
  end
  return control_answer(404, { error = "unknown control call" })
end

return M
