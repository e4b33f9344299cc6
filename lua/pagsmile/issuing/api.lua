-- The facts of the Pagsmile Issuing Card API that the client relies on, in one place
-- (SPEC.md). Where the public documentation is silent, the value here is the project's
-- choice; change it here when the live service says otherwise.
local json = require "pagsmile.issuing.json"

local api = {}

local type, pairs, ipairs, tonumber = type, pairs, ipairs, tonumber

api.SANDBOX_URL = "https://card-api-sandbox.pagsmile.com"

-- The endpoints' paths are in endpoints.lua, with the rest of each endpoint.

-- §1: the docs misspell "chartset"; the correct word is sent.
api.CONTENT_TYPE = "application/json; charset=UTF-8"

-- §2 envelope constants and defaults.
api.FORMAT = "JSON"
api.SIGN_TYPE = "RSA"
api.DEFAULT_VERSION = "2.0"      -- current endpoint examples; the security page shows "1.0"
api.DEFAULT_UTC_OFFSET = "+08:00" -- the docs' examples were stamped in UTC+8

-- §4 response codes.
api.SUCCESS = "10000"
api.SERVICE_UNAVAILABLE = "20000"

-- The sub_codes that mean "this order_no is unknown" and "this order_no is taken". Not
-- published: these are the local sandbox's words. A definite "not found" is the only answer
-- that lets the client apply again after an ambiguous attempt.
api.ORDER_NOT_FOUND = { ["order-not-found"] = true }
api.ORDER_DUPLICATE = { ["duplicate-order-no"] = true }

-- What a refusal points at (issue 10 item 7), by sub_code: the setting to check, if any, and
-- a hint for the error's message. These are the local sandbox's sub_codes (the platform's
-- catalogue is not published, SPEC.md §4): correct them here when the live platform answers
-- otherwise. Hints quote nothing of the platform's msg/sub_msg, which may echo what was sent.
-- Keys are compared lower-case with "_" read as "-".
api.REFUSALS = {
  ["invalid-app-id"] = { "app_id", "the platform does not know this app_id: check app_id" },
  ["invalid-partner-id"] = { "partner_id",
    "the platform does not know this partner_id for this app_id: check partner_id" },
  ["invalid-sub-partner-id"] = { "sub_partner_id", "check sub_partner_id" },
  ["invalid-signature"] = { "platform_public_key", "the platform could not decrypt the "
    .. "request: check platform_public_key (the platform's key for this app_id) and app_id" },
  ["invalid-version"] = { "version", 'check version ("2.0" or "1.0")' },
  ["invalid-timestamp"] = { "utc_offset",
    "the platform refused the request's time: check utc_offset and this machine's clock" },
  ["duplicate-request-id"] = { nil, "a request_id was sent twice; the next call makes a new one" },
  ["invalid-parameter"] = { nil, "a biz_data field broke a rule of the platform's; "
    .. "err.sub_msg may say which" },
  ["order-not-found"] = { nil, "the platform has no order with this order_no" },
}

-- By code, when the sub_code has no entry.
api.CODE_HINTS = {
  [api.SERVICE_UNAVAILABLE] = "the platform is unavailable for now; try again later",
}

--- The setting a refusal points at (or nil) and a hint for its message (or nil).
function api.refusal(code, sub_code)
  if type(sub_code) == "string" and #sub_code <= 64 then
    local r = api.REFUSALS[(sub_code:lower():gsub("_", "-"))]
    if r then return r[1], r[2] end
  end
  return nil, type(code) == "string" and api.CODE_HINTS[code] or nil
end

-- §8 OrderStatus: only 3 and 5 appear in the docs' examples.
api.ORDER_STATUS = { [3] = "processing", [5] = "completed" }

-- §5 "long" fields of the answers (Java int64): decoded exactly by the core.
api.LONG_FIELDS = { "card_id", "holder_id" }

-- One type for a long id on every runtime: its decimal digits as a string. A string prints
-- as itself, survives lua-cjson (which writes every number with 14 significant digits, on
-- 5.3+ too: 9007199254740993 would come out as 9.007199254741e+15, another card), and
-- compares the same on 5.1, 5.3, 5.4 and LuaJIT. Pass it back as is: the schema takes
-- decimal strings for long ids.
local function long_id(v)
  if type(v) == "number" then
    -- The core decodes integers up to 2^53 as exact doubles on 5.1/LuaJIT, and beyond as
    -- strings; json.long takes exactly the integral numbers, and its tostring is the one
    -- int64 formatter there is (src/json.c).
    local l = json.long(v)
    if l then return tostring(l) end
  end
  return v -- a string already, or not an integer: the platform's value, untouched
end

-- The card table of DESIGN.md: every field of the answer, plus status, completed and the
-- request_id of the call that produced it. Long ids have the runtime's one type (long_id).
function api.card(data, request_id)
  local card = {}
  for k, v in pairs(data) do card[k] = v end
  for _, k in ipairs(api.LONG_FIELDS) do
    if card[k] ~= nil then card[k] = long_id(card[k]) end
  end
  local n = tonumber(card.order_status)
  card.status = api.ORDER_STATUS[n] or "unknown"
  card.completed = card.status == "completed"
  card.request_id = request_id
  return card
end

return api
