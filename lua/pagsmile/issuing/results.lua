-- What the calls around the apply return (issue 13), made from an answer's data: plain tables
-- holding every field the platform sent, long ids as decimal strings (as in the card table),
-- plus `request_id`. The card table itself is api.card.
--   result(data, request_id, biz, env): biz is the biz_data sent, env the answer's envelope
--   (its `total`).
-- Card details (query_card_info) keep the full PAN, CVV, ACS password and PIN out of the
-- table: `info:reveal()` returns them, and nothing that prints or encodes the table sees them.
local api = require "pagsmile.issuing.api"
local json = require "pagsmile.issuing.json"

local results = {}

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local sort, concat = table.sort, table.concat

-- The long ids of these answers (SPEC.md §9-§13: `long`), decimal strings on every runtime.
local LONGS = { "holder_id", "card_id", "limit_id", "webhook_id", "address_id", "id" }

local function copy(data)
  local out = {}
  if type(data) ~= "table" then return out end
  for k, v in pairs(data) do
    if type(v) == "table" then v = copy(v) end
    out[k] = v
  end
  for _, k in ipairs(LONGS) do
    if out[k] ~= nil then out[k] = api.long_id(out[k]) end
  end
  return out
end

--- An object answer: its fields, long ids as strings, and request_id.
function results.object(data, request_id)
  local out = copy(data)
  out.request_id = request_id
  return out
end

-- The fields of biz_data that name what a call was about, echoed into results that the
-- platform answers without data (update-limit, revoke) or with an id alone (upload).
local ECHO = { "card_token", "holder_id", "limit_id", "order_no", "file_type" }

--- A write the platform answers with `{code, msg}` and at most an id: `ok = true`, the ids
-- the call named, and whatever data came.
function results.done(data, request_id, biz)
  local out = results.object(data, request_id)
  for _, k in ipairs(ECHO) do
    if out[k] == nil and biz and biz[k] ~= nil then out[k] = api.key_text(biz[k]) end
  end
  out.ok = true
  return out
end

--- A cardholder: the answer's fields, plus `audit` (api.AUDIT_STATUS's name of
-- audit_status, or "unknown") and `approved`.
function results.holder(data, request_id)
  local out = results.object(data, request_id)
  out.audit = api.AUDIT_STATUS[tonumber(out.audit_status)] or "unknown"
  out.approved = out.audit == "approved"
  return out
end

--- The remaining limit: both names of the last field (SPEC.md §11: `total_remaining_limit`
-- on the new page, `total_remaining_amount` on the old one) read as the new one.
function results.remaining_limit(data, request_id)
  local out = results.object(data, request_id)
  if out.total_remaining_limit == nil then out.total_remaining_limit = out.total_remaining_amount end
  return out
end

--- A transaction (a top-up or a return, or the detail of one): its fields; an answer that
-- names only the transaction_id gets the order_no it was sent with.
function results.transaction(data, request_id, biz)
  local out = results.object(data, request_id)
  if out.order_no == nil and biz then out.order_no = biz.order_no end
  return out
end

-- A list answer (SPEC.md §13): data is an array; an object (one old page answers so) is a
-- list of one; absent data is an empty list.
local function entries(data)
  if type(data) ~= "table" then return {} end
  if data[1] == nil and next(data) ~= nil then data = { data } end
  local out = {}
  for i, v in ipairs(data) do out[i] = copy(v) end
  return out
end

--- A list result maker: `{ [name] = entries, total = n, request_id = ... }`; `total` is the
-- answer's (the platform's count, which may exceed one page) or the number of entries.
function results.list(name)
  return function(data, request_id, _, env)
    local list = entries(data)
    local total = env and tonumber(env.total)
    return { [name] = list, total = total or #list, request_id = request_id }
  end
end

local list_of_accounts = results.list("accounts")

--- A card's balances (a list, one entry per currency): `accounts`, and `by_currency`
-- (currency code → entry).
function results.balances(data, request_id, biz, env)
  local out = list_of_accounts(data, request_id, biz, env)
  out.card_token = biz and biz.card_token
  out.by_currency = {}
  for _, a in ipairs(out.accounts) do
    if type(a.currency) == "string" then out.by_currency[a.currency] = a end
  end
  return out
end

-- Card details ------------------------------------------------------------------------------

-- The fields that stay out of a card-details table (SPEC.md §11: the old page's answer
-- carries them in full).
results.SECRET_FIELDS = { "card_pan", "cvv", "acs_password", "pin" }

local secrets = setmetatable({}, { __mode = "k" }) -- details table -> its secret fields

--- A PAN as logs and tables may show it: first 6 and last 4 digits. Anything that is not a
-- run of 12 to 19 digits is shown as it is (already masked, or empty).
function results.mask_pan(pan)
  if type(pan) ~= "string" or not pan:find("^%d+$") or #pan < 12 or #pan > 19 then return pan end
  return pan:sub(1, 6) .. ("*"):rep(#pan - 10) .. pan:sub(-4)
end

local Details = {}

--- The secret fields as the platform sent them: card_pan (full, when the platform gives it),
-- cvv, acs_password, pin (nil when withheld).
function Details.reveal(info)
  local s = secrets[info] or {}
  local out = {}
  for _, k in ipairs(results.SECRET_FIELDS) do out[k] = s[k] end
  return out
end

local function shown(v)
  if type(v) == "string" then return v end
  return tostring(v)
end

local DetailsMeta = { __index = Details }

function DetailsMeta.__tostring(info)
  local keys = {}
  for k in pairs(info) do if type(k) == "string" then keys[#keys + 1] = k end end
  sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. shown(info[k]) end
  return "card details {" .. concat(parts, ", ") .. "} (cvv, acs_password, pin hidden)"
end

--- Card details: every field of the answer but the secrets; `card_pan` masked; the secrets
-- through `info:reveal()`.
function results.card_info(data, request_id)
  local out = results.object(data, request_id)
  local s = {}
  for _, k in ipairs(results.SECRET_FIELDS) do
    if out[k] ~= json.null then s[k] = out[k] end
    out[k] = nil
  end
  out.card_pan = results.mask_pan(s.card_pan)
  secrets[out] = s
  return setmetatable(out, DetailsMeta)
end

return results
