-- luacheck: globals ngx
-- A merchant's card service in OpenResty, on pagsmile.issuing (see nginx.conf next to it):
--
--   init_by_lua_block   { require("merchant").init() }
--   location = /cards   { content_by_lua_block { require("merchant").apply_card() } }
--   location = /pagsmile/callback { content_by_lua_block { require("merchant").card_callback() } }
--
-- Settings come from the environment (name each with `env NAME;` in nginx.conf):
--   PAGSMILE_APP_ID, PAGSMILE_PARTNER_ID          from the dashboard / Pagsmile
--   PAGSMILE_PLATFORM_PUBLIC_KEY_FILE             the platform's public key (PEM or Base64)
--   PAGSMILE_MERCHANT_PRIVATE_KEY_FILE            your private key (issuing.keygen() makes one)
--   PAGSMILE_BASE_URL     optional; the platform's sandbox when unset
--   PAGSMILE_TIMEOUT      optional; seconds for a whole call, retries included (default 15)
--   PAGSMILE_TRANSPORT    leave unset: requests use cosockets and never block nginx. "curl"
--                         blocks the worker for every call (for comparison only)
--   PAGSMILE_CA_FILE      CAs for libcurl, with PAGSMILE_TRANSPORT=curl only; cosockets trust
--                         lua_ssl_trusted_certificate
--
-- JSON goes through the library's own codec: it keeps 64-bit ids exact (cjson does not).
-- Answers carry ids as decimal strings, so that JavaScript callers keep them exact too.
local issuing = require "pagsmile.issuing"
local json = require "pagsmile.issuing.json"

local json_encode, json_decode = json.encode, json.decode

local M = {}

local settings -- read by init(), before nginx forks its workers
local client   -- this worker's client: made on first use, then shared by every request

-- How long this server remembers a callback. The platform stops repeating one after about
-- 14 hours (SPEC.md §7); with a database, a unique key on order_no does this job.
local REMEMBER_SECONDS = 3 * 24 * 3600

-- Not published by Pagsmile: the local sandbox's word for a taken order_no (README.md).
local DUPLICATE_ORDER_NO = "duplicate-order-no"

local function env(name)
  local v = os.getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

local function read_file(name)
  local path = env(name)
  if not path then error("merchant: set " .. name, 0) end
  local f, err = io.open(path, "rb")
  if not f then error("merchant: " .. name .. ": " .. err, 0) end
  local text = f:read("*a")
  f:close()
  return text
end

--- init_by_lua: reads the settings and checks them by making a client once. Raising here
-- stops nginx at startup with the message, which names the setting (never a key's bytes).
function M.init()
  local timeout = env("PAGSMILE_TIMEOUT") or "15"
  if not tonumber(timeout) then error("merchant: PAGSMILE_TIMEOUT must be a number of seconds", 0) end
  local s = {
    app_id = env("PAGSMILE_APP_ID"),
    partner_id = env("PAGSMILE_PARTNER_ID"),
    platform_public_key = read_file("PAGSMILE_PLATFORM_PUBLIC_KEY_FILE"),
    merchant_private_key = read_file("PAGSMILE_MERCHANT_PRIVATE_KEY_FILE"),
    base_url = env("PAGSMILE_BASE_URL") or issuing.SANDBOX_URL,
    timeout = tonumber(timeout),
    transport = env("PAGSMILE_TRANSPORT"),
    ca_file = env("PAGSMILE_CA_FILE"),
  }
  local c, err = issuing.new(s)
  if not c then error("merchant: " .. tostring(err), 0) end
  c:close()
  settings = s
end

--- This worker's client. Keys are parsed once per worker; every request shares the client.
function M.client()
  if not client then
    if not settings then error("merchant: call require('merchant').init() in init_by_lua", 0) end
    client = assert(issuing.new(settings))
  end
  return client
end

--- A separate client with some settings changed, e.g. { transport = "curl" } for a phase
-- without cosockets (a log_by_lua, a header filter): it blocks the worker while it works.
function M.new_client(changes)
  local s = {}
  for k, v in pairs(settings) do s[k] = v end
  for k, v in pairs(changes) do s[k] = v end
  return issuing.new(s)
end

-- HTTP helpers -------------------------------------------------------------------------------

local function respond(status, value)
  local body = assert(json_encode(value))
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.header["Content-Length"] = #body
  ngx.print(body)
end

local function only(method)
  if ngx.req.get_method() == method then return true end
  ngx.header["Allow"] = method
  respond(405, { error = "method_not_allowed", allow = method })
  return false
end

local function read_body()
  ngx.req.read_body()
  -- client_body_buffer_size = client_max_body_size in nginx.conf: a body is in memory or
  -- nginx already answered 413.
  local body = ngx.req.get_body_data()
  if not body or body == "" then return nil, "is empty" end
  return body
end

local function read_json_object()
  local body, why = read_body()
  if not body then return nil, why end
  local value = json_decode(body)
  if type(value) ~= "table" or value[1] ~= nil then return nil, "must be a JSON object" end
  return value
end

-- Long ids go out as decimal text, exact for any caller's JSON library. The library already
-- gives them as strings on LuaJIT; a double (an id from elsewhere) is written digit by digit,
-- since tostring would give 1.2345678901235e+15.
local function id_string(v)
  if v == nil then return nil end
  if type(v) == "number" and v == math.floor(v) and v >= -2 ^ 53 and v <= 2 ^ 53 then
    return ("%.0f"):format(v)
  end
  return tostring(v)
end

-- A PAN from the platform is masked already (658704******0112); a full one is masked here
-- rather than trusted to every caller and log.
local function masked_pan(pan)
  if type(pan) ~= "string" or not pan:find("^%d+$") then return pan end
  if #pan <= 10 then return ("*"):rep(#pan) end
  return pan:sub(1, 6) .. ("*"):rep(#pan - 10) .. pan:sub(-4)
end

-- What the service tells its callers about a card: no cardholder data, no envelope.
local function public_card(card)
  return {
    order_no = card.order_no,
    status = card.status,
    order_status = card.order_status,
    card_id = id_string(card.card_id),
    card_token = card.card_token,
    card_pan = masked_pan(card.card_pan),
    card_bin = card.card_bin,
    card_type = card.card_type,
  }
end

-- An error of the library → HTTP status and answer. Messages stay in the log: they name the
-- failure (and tostring(err) carries only ids and codes), but callers need none of it.
local function error_answer(err)
  if err.kind == "validation" then
    return 400, { error = "validation", field = err.field, reason = err.reason }
  end
  if err.kind == "api" and err.sub_code == DUPLICATE_ORDER_NO then
    ngx.log(ngx.WARN, "apply_card: ", tostring(err))
    return 409, { error = "duplicate_order_no", order_no = err.order_no,
                  reason = "this order_no was used already: its card comes with the callback" }
  end
  ngx.log(ngx.ERR, "apply_card: ", tostring(err))
  if err.kind == "api" then
    return 502, { error = "refused_by_platform", code = err.code, sub_code = err.sub_code,
                  request_id = err.request_id }
  end
  if err.kind == "config" then return 500, { error = "internal_error" } end
  -- transport, timeout, protocol: the platform could not be reached or answered garbage.
  -- outcome "unknown": applying again with the same order_no cannot issue a second card.
  return err.kind == "timeout" and 504 or 502,
    { error = "platform_unavailable", order_no = err.order_no, outcome = err.outcome,
      request_id = err.request_id }
end

-- Handlers -----------------------------------------------------------------------------------

--- POST /cards: the JSON body is Apply For a Card's biz_data (SPEC.md §5; card_scheme may be
-- left out). 200 with the card when it is issued, 202 while the platform is still processing
-- it (the callback brings the result), 400 naming the field, 409 for a used order_no, 502/504
-- when the platform cannot be reached.
function M.apply_card()
  if not only("POST") then return end
  local biz_data, why = read_json_object()
  if not biz_data then
    return respond(400, { error = "validation", field = "body", reason = why })
  end
  local card, err = M.client():apply_card(biz_data)
  if not card then return respond(error_answer(err)) end
  return respond(card.completed and 200 or 202, public_card(card))
end

local function store()
  return ngx.shared.pagsmile_notifications
end

-- Your side effect for a card result goes here (mark the order, tell the customer...). It
-- runs once per order_no and order status, however often the platform delivers.
local function on_card_result(card)
  local dict = store()
  dict:set("card:" .. card.order_no, json_encode(public_card(card)), REMEMBER_SECONDS)
  dict:incr("processed:" .. card.order_no, 1, 0, REMEMBER_SECONDS)
  ngx.log(ngx.INFO, "card result: order_no=", card.order_no, " status=", card.status)
end

--- POST /pagsmile/callback: the apply-card result notification (SPEC.md §7). Nothing in a
-- notification proves who sent it (anyone with the merchant's public key can seal one), so
-- every one is confirmed with the platform before anything is stored or marked seen, and
-- what is stored is the platform's card. Answers 200 for every notification it handled, the
-- first time and every repeat; 400 for a body it cannot parse or an order the platform does
-- not know (nothing to act on; a genuine one would be delivered again); 503 when it cannot
-- confirm now (the platform delivers again).
function M.card_callback()
  if not only("POST") then return end
  local body, why = read_body()
  if not body then
    ngx.log(ngx.WARN, "callback refused: body ", why)
    return respond(400, { error = "unparseable_notification" })
  end
  local card, err = M.client():confirm_notification(body)
  if not card then
    if err.unknown_order then
      ngx.log(ngx.WARN, "callback refused: ", tostring(err))
      return respond(400, { error = "unknown_order" })
    end
    if not err.retryable then
      ngx.log(ngx.WARN, "callback refused: ", tostring(err))
      return respond(400, { error = "unparseable_notification" })
    end
    ngx.log(ngx.ERR, "callback not confirmed: ", tostring(err))
    return respond(503, { error = "try_again_later" })
  end
  if card.mismatch then
    -- Forged, or overtaken by a later status: the platform's card is acted on either way.
    -- Field names only: the values are card data.
    ngx.log(ngx.WARN, "callback disagrees with the platform: order_no=", card.order_no,
            " fields=", table.concat(card.mismatch, ","))
  end
  local dict = store()
  dict:incr("deliveries:" .. card.order_no, 1, 0, REMEMBER_SECONDS)
  -- add is atomic: of two deliveries racing here, one processes and the other is a repeat.
  local ok, aerr = dict:add("seen:" .. card.order_no .. ":" .. tostring(card.order_status),
                            true, REMEMBER_SECONDS)
  if not ok then
    if aerr == "exists" then return respond(200, { ok = true, repeated = true }) end
    ngx.log(ngx.ERR, "callback not stored: ", aerr)
    return respond(503, { error = "try_again_later" })
  end
  on_card_result(card)
  return respond(200, { ok = true })
end

--- GET /cards/<order_no>: what the callbacks told this server about an order.
function M.show_card(order_no)
  if not only("GET") then return end
  local dict = store()
  local saved = dict:get("card:" .. order_no)
  if not saved then return respond(404, { error = "not_found", order_no = order_no }) end
  local card = json_decode(saved)
  card.deliveries = dict:get("deliveries:" .. order_no) or 0
  card.processed = dict:get("processed:" .. order_no) or 0
  return respond(200, card)
end

return M
