--- The biz_data of SPEC.md as data, and the one validator that walks it.
--
-- Each endpoint is one table; each field of SPEC.md appears once, in SPEC.md's order. The
-- client validates before anything is sent and the local sandbox validates what it receives,
-- with this same module, so both give the same field path and reason for the same mistake.
--
--   local clean, field, reason, rule = schema.validate(schema.apply_card, biz_data)
--   local clean, violations = schema.validate_all(schema.apply_card, biz_data)
--
-- Reasons state the rule and never echo the offending value: it may be personal data.
local core = require "pagsmile.issuing.core"
local api = require "pagsmile.issuing.api"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local byte, find, sub, gsub, gmatch, match, format = string.byte, string.find, string.sub,
  string.gsub, string.gmatch, string.match, string.format
local floor, min = math.floor, math.min
local math_type = math.type -- nil on 5.1 and LuaJIT
local sort, concat = table.sort, table.concat

local schema = {}

-- Project choices where SPEC.md is silent; one place each ----------------------------------

-- SPEC.md gives no length for these free-text fields: 255 is the project's cap.
local FREE_TEXT_MAX = 255
-- SPEC.md §5 gives order_no no length; the other endpoints cap it at 32, so apply does too,
-- and the character set is the one that survives every endpoint and log unchanged.
local ORDER_NO = {
  pattern = "^[A-Za-z0-9_%-]+$",
  reason = "must be 1 to 32 characters of A-Z a-z 0-9 _ -",
}
local MOBILE = {
  pattern = "^%+%d%d%d%d%d%d%d+$", -- then at most 16 characters: 7 to 15 digits
  reason = "must be an international number like +5511987654321",
}
-- Loose on purpose: the platform validates RFC 6530 itself.
local EMAIL = {
  pattern = "^[^@%s]+@[^@%s.][^@%s]*%.[^@%s.]+$",
  reason = "must be an email address",
}

-- The schemas ------------------------------------------------------------------------------
--
-- Field keys: name; type (string, integer, boolean, long, amount, date, country, enum,
-- const, token, bytes, object); required; for strings min/max in characters (UTF-8 code
-- points) and an optional shape {pattern or test, reason} (length_reason overrides the
-- length text); for integers min, max and digits (a string of digits is taken too: the
-- docs' examples send some integers so); for tokens max (a string, or an integral number
-- sent as its digits: the docs' examples send card_token both ways); for bytes max in bytes
-- (any bytes: a file's content); for enum values; for const value (and default, filled in
-- when absent); requires (a field given only with another); for objects fields,
-- exactly_one_of (alternatives: a field, or a list of fields given together) and date_range
-- {from, to, max_days}. validate fills in the rest at load (see compile below).

local address = {
  { name = "line", type = "string", required = true, min = 12, max = 128 },
  { name = "line2", type = "string", max = 128 },
  { name = "postal_code", type = "string", required = true, min = 4, max = 8 },
  { name = "city_name", type = "string", required = true, min = 4, max = 80 },
  { name = "state", type = "string", required = true, min = 4, max = 48 },
  { name = "country_code", type = "country", required = true },
}

local holder = {
  { name = "mobile", type = "string", required = true, max = 16, shape = MOBILE,
    length_reason = MOBILE.reason },
  { name = "first_name", type = "string", required = true, min = 1, max = 50 },
  { name = "last_name", type = "string", required = true, min = 1, max = 50 },
  { name = "id_no", type = "string", required = true, min = 6, max = 20 },
  { name = "id_type", type = "integer", required = true },
  { name = "issuance_date", type = "date" },
  { name = "expires_on", type = "date" },
  { name = "email", type = "string", required = true, max = 80, shape = EMAIL },
  { name = "birthday", type = "date", required = true },
  { name = "gender", type = "integer" },
  { name = "nationality_code", type = "country", required = true },
  { name = "address", type = "object", required = true, fields = address },
}

local card_limit = {
  { name = "daily_transactions", type = "integer", required = true },
  { name = "single_amount", type = "amount", required = true },
  { name = "daily_amount", type = "amount", required = true },
  { name = "monthly_amount", type = "amount", required = true },
  { name = "total_amount", type = "amount" },
}

--- POST /issuing/card/apply (SPEC.md §5).
schema.apply_card = {
  name = "apply_card",
  fields = {
    { name = "order_no", type = "string", required = true, min = 1, max = 32, shape = ORDER_NO,
      length_reason = ORDER_NO.reason },
    { name = "card_scheme", type = "const", value = 3, default = 3 },
    { name = "card_type", type = "integer", required = true, min = 1 },
    -- The platform's default (658704) is left to the platform.
    { name = "card_bin", type = "enum", values = { "658704", "658705" } },
    { name = "is_share_card", type = "boolean" },
    { name = "shared_account_num", type = "string", max = FREE_TEXT_MAX },
    { name = "pay_account_num", type = "string", max = FREE_TEXT_MAX },
    { name = "initial_balance", type = "amount" },
    { name = "card_remark", type = "string", max = FREE_TEXT_MAX },
    { name = "card_limit", type = "object", fields = card_limit },
    { name = "holder_id", type = "long" },
    { name = "holder", type = "object", fields = holder },
  },
  exactly_one_of = { "holder_id", "holder" },
}

--- POST /issuing/card/query-apply-card-result (SPEC.md §6).
schema.query_apply_result = {
  name = "query_apply_result",
  fields = {
    { name = "order_no", type = "string", required = true, min = 1, max = 32, shape = ORDER_NO,
      length_reason = ORDER_NO.reason },
  },
}

-- The endpoints around the apply (issue 13; SPEC.md §9-§13) ------------------------------
--
-- A field table belongs to one schema (compile writes its path into it): a list used at two
-- places is copied.
local function copy(list)
  local out = {}
  for i, f in ipairs(list) do
    local c = {}
    for k, v in pairs(f) do c[k] = v end
    if f.fields then c.fields = copy(f.fields) end
    out[i] = c
  end
  return out
end

local function with(first, list)
  local out = copy(first)
  for _, f in ipairs(copy(list)) do out[#out + 1] = f end
  return out
end

local ORDER_NO_FIELD = { name = "order_no", type = "string", required = true, min = 1, max = 32,
  shape = ORDER_NO, length_reason = ORDER_NO.reason }
local function card_token(max, required)
  return { name = "card_token", type = "token", required = required, max = max }
end
local CURRENCY = { pattern = "^%u%u%u$", reason = "must be an ISO 4217 code (three upper-case letters)" }
local WEBHOOK_URL = { pattern = "^[Hh][Tt][Tt][Pp][Ss]?://[^%s/]+", reason = "must be an http(s) URL" }
-- Document file names (SPEC.md §10): the current page's formats; api.lua has the list.
local FILE_NAME = { test = api.document_extension_ok,
  reason = "must end in ." .. table.concat(api.DOCUMENT_EXTENSIONS, ", .") }

--- POST /issuing/holder/create (SPEC.md §9): the holder of §5, at the top level.
schema.create_holder = { name = "create_holder", fields = copy(holder) }

--- POST /issuing/holder/update: a full replace (every create field again), by holder_id.
schema.update_holder = {
  name = "update_holder",
  fields = with({ { name = "holder_id", type = "long", required = true } }, holder),
}

--- POST /issuing/holder/query: holder_id, or the pair (id_no, id_type).
schema.query_holder = {
  name = "query_holder",
  fields = {
    { name = "holder_id", type = "long" },
    { name = "id_no", type = "string", min = 6, max = 20 },
    { name = "id_type", type = "integer" },
  },
  exactly_one_of = { "holder_id", { "id_no", "id_type" } },
}

local document = {
  { name = "holder_id", type = "long", required = true },
  { name = "file_type", type = "integer", required = true, min = 1 },
  { name = "file_name", type = "string", required = true, min = 5, max = 80, shape = FILE_NAME },
}

--- POST /issuing/holder/upload-document, as the caller gives it: the file's bytes
-- (file_content) or its path (file_path); the client reads, checks and Base64-encodes it.
schema.upload_holder_document = {
  name = "upload_holder_document",
  fields = with(document, {
    { name = "file_content", type = "bytes", max = api.DOCUMENT_MAX_BYTES },
    { name = "file_path", type = "string", min = 1, max = 4096 },
    { name = "file_desc", type = "string", max = 128 },
  }),
  exactly_one_of = { "file_content", "file_path" },
}

--- The same endpoint as it travels (the emulator checks this): file_content in Base64.
schema.upload_holder_document_wire = {
  name = "upload_holder_document",
  fields = with(document, {
    { name = "file_content", type = "string", required = true, min = 4,
      max = math.ceil(api.DOCUMENT_MAX_BYTES / 3) * 4,
      shape = { pattern = "^[A-Za-z0-9+/]+=?=?$", reason = "must be Base64" } },
    { name = "file_desc", type = "string", max = 128 },
  }),
}

--- POST /issuing/card/query-card-info, query-card-balance, revoke: the card alone.
schema.query_card_info = { name = "query_card_info", fields = { card_token(48, true) } }
schema.query_card_balance = { name = "query_card_balance", fields = { card_token(48, true) } }
schema.revoke_card = { name = "revoke_card", fields = { card_token(48, true) } }

--- POST /issuing/card/query-remaining-limit.
schema.query_remaining_limit = {
  name = "query_remaining_limit",
  fields = { card_token(48, true), { name = "stat_date", type = "date" } },
}

--- POST /issuing/card/query-limit: limit_id or card_token.
schema.query_card_limit = {
  name = "query_card_limit",
  fields = { { name = "limit_id", type = "long" }, card_token(48) },
  exactly_one_of = { "limit_id", "card_token" },
}

--- POST /issuing/card/update-limit. The docs' example sends daily_transactions as a string.
schema.update_card_limit = {
  name = "update_card_limit",
  fields = with({
    { name = "limit_id", type = "long", required = true },
    card_token(48, true),
    { name = "daily_transactions", type = "integer", required = true, min = 0, digits = true },
  }, { card_limit[2], card_limit[3], card_limit[4], card_limit[5] }),
}

--- POST /issuing/webhook/create.
schema.create_webhook = {
  name = "create_webhook",
  fields = {
    { name = "webhook_type", type = "integer", required = true, min = 1 },
    { name = "webhook_url", type = "string", required = true, max = 128, shape = WEBHOOK_URL },
    { name = "webhook_desc", type = "string", max = 128 },
  },
}

local webhook_filters = {
  { name = "webhook_id", type = "long" },
  { name = "webhook_type", type = "integer", min = 1 },
}

--- POST /issuing/webhook/query-webhook-list, as the caller gives it (filters only: the
-- client names the owner from its settings).
schema.query_webhooks = { name = "query_webhooks", fields = copy(webhook_filters) }

--- The same as it travels: the owner as sub_partner_id (or partner_id, as one copy of the
-- page says; the emulator takes either).
schema.query_webhooks_wire = {
  name = "query_webhooks",
  fields = with({
    { name = "sub_partner_id", type = "string", min = 1, max = 64 },
    { name = "partner_id", type = "string", min = 1, max = 64 },
  }, webhook_filters),
  exactly_one_of = { "sub_partner_id", "partner_id" },
}

local function money(account)
  return {
    name = account,
    fields = {
      { name = account .. "_num", type = "string", required = true, min = 1, max = 48 },
      card_token(48, true), -- string(20) on these pages, 48 on the others: one rule (DESIGN.md)
      ORDER_NO_FIELD,
      { name = "amount", type = "amount", required = true },
      { name = "currency", type = "string", required = true, shape = CURRENCY, max = 3 },
      { name = "reference", type = "string", max = 128 },
    },
  }
end

--- POST /issuing/card/recharge (a top-up) and /issuing/card/recharge-return.
schema.recharge = money("pay_account")
schema.recharge.name = "recharge"
schema.recharge_return = money("payee_account")
schema.recharge_return.name = "recharge_return"

--- POST /issuing/card/query-card-transaction-detail: transaction_id, or order_no (with
-- transaction_type, as the newest page asks; alone, as the older ones allow).
schema.query_transaction = {
  name = "query_transaction",
  fields = {
    { name = "transaction_id", type = "string", min = 1, max = 64 },
    copy({ ORDER_NO_FIELD })[1],
    { name = "transaction_type", type = "integer", min = 1, requires = "order_no" },
  },
  exactly_one_of = { "transaction_id", "order_no" },
}
schema.query_transaction.fields[2].required = nil

local transaction_filters = {
  card_token(48),
  { name = "order_no", type = "string", min = 1, max = 32, shape = ORDER_NO,
    length_reason = ORDER_NO.reason },
  { name = "transaction_status", type = "integer" },
  { name = "transaction_type", type = "integer" },
  { name = "currency", type = "string", shape = CURRENCY, max = 3 },
  { name = "start_date", type = "date", required = true },
  { name = "end_date", type = "date", required = true },
}

--- POST /issuing/card/query-card-transactions: one page of at most 30, dates at most
-- api.MAX_RANGE_DAYS apart.
schema.query_card_transactions = {
  name = "query_card_transactions",
  fields = with(transaction_filters, {
    { name = "page_num", type = "integer", min = 1 },
    { name = "page_size", type = "integer", min = 1, max = api.MAX_PAGE_SIZE },
  }),
  date_range = { "start_date", "end_date", max_days = api.MAX_RANGE_DAYS },
}

--- client:card_transactions: the same filters, any range (the iterator splits it) and no
-- page fields (the iterator walks them).
schema.card_transactions = {
  name = "card_transactions",
  fields = copy(transaction_filters),
  date_range = { "start_date", "end_date" },
}

-- Reasons ----------------------------------------------------------------------------------

local REQUIRED = "is required"
local NOT_STRING = "must be a string"
local NOT_INTEGER = "must be an integer"
local NOT_BOOLEAN = "must be a boolean"
local NOT_OBJECT = "must be an object (table)"
local BAD_UTF8 = "must be valid UTF-8"
local CONTROL = "must not contain control characters"
local NOT_LONG = "must be a 64-bit integer (number or decimal string)"
local NOT_AMOUNT = 'must be a decimal amount like "100.00"'
-- Amounts are strings in the API, and a Lua number would already have lost cents to binary
-- floating point (0.29 is not 0.29), so numbers are refused rather than converted.
local AMOUNT_NOT_STRING = "must be a string (decimal amount)"
local NOT_DATE = "must be a real date in yyyy-MM-dd form"
local NOT_COUNTRY = "must be an ISO 3166-1 alpha-2 code (two upper-case letters)"
local NOT_TOKEN = "must be a string (or an integer)"
local NOT_BYTES = "must be a string of bytes"

-- ISO 3166-1 alpha-2: the 249 assigned codes.
local COUNTRIES = {}
for code in gmatch([[
  AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
  BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
  DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
  GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
  KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
  MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
  PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
  SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
  VN VU WF WS YE YT ZA ZM ZW]], "%u%u") do
  COUNTRIES[code] = true
end

-- JSON null as decoded by the core (objects drop null members, but a caller may pass it):
-- a null field counts as absent. nil when the core has no null sentinel.
local NULL = core.null

-- Text -------------------------------------------------------------------------------------

-- Length in code points of a valid UTF-8 string without control characters (C0, DEL, C1),
-- or nil and the reason. Overlongs, surrogates, code points above U+10FFFF and truncated
-- sequences are invalid: the C core's rule (core.text_length), the JSON encoder's own, so
-- what passes here always encodes.
local TEXT_REASONS = { utf8 = BAD_UTF8, control = CONTROL }
local core_text_length = core.text_length
local function text_length(s)
  if not find(s, "[^ -~]") then return #s end -- printable ASCII, the common case
  local n, why = core_text_length(s)
  if n then return n end
  return nil, TEXT_REASONS[why]
end

-- Numbers ----------------------------------------------------------------------------------

local MAX_EXACT = 2 ^ 53 -- beyond this a float no longer holds every integer

-- An integral Lua number: a 5.3+ integer, or a float that holds an integer exactly (floats
-- beyond 2^53 are refused: they would not reach JSON as the integer the caller meant).
local function is_integral(v)
  if type(v) ~= "number" then return false end
  if math_type and math_type(v) == "integer" then return true end
  return v == floor(v) and v >= -MAX_EXACT and v <= MAX_EXACT
end

local INT64_MAX, INT64_MIN_ABS = "9223372036854775807", "9223372036854775808"

-- "-?%d+" within the int64 range, compared as digit strings so nothing is lost to floats.
local function is_int64_string(s)
  if not find(s, "^%-?%d+$") then return false end
  local first = find(s, "[1-9]")
  if not first then return true end -- zero
  local digits = #s - first + 1
  if digits < 19 then return true end
  if digits > 19 then return false end
  return sub(s, first) <= (byte(s) == 45 and INT64_MIN_ABS or INT64_MAX)
end

local DAYS_IN_MONTH = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

local function digits_at(s, i, n)
  local v = 0
  for k = i, i + n - 1 do v = v * 10 + byte(s, k) - 48 end
  return v
end

local function is_date(s)
  if #s ~= 10 or not find(s, "^%d%d%d%d%-%d%d%-%d%d$") then return false end
  local y, m, d = digits_at(s, 1, 4), digits_at(s, 6, 2), digits_at(s, 9, 2)
  if y < 1 or m < 1 or m > 12 or d < 1 then return false end
  local last = DAYS_IN_MONTH[m]
  if m == 2 and y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then last = 29 end
  return d <= last
end

-- Digits with at most 12 before the point and 1 or 2 after it; no sign, exponent or space.
local function is_amount(s)
  local point = find(s, ".", 1, true)
  if point then return point <= 13 and find(s, "^%d+%.%d%d?$") ~= nil end
  return #s <= 12 and find(s, "^%d+$") ~= nil
end

-- Field checks: check(field, value, length) -> true, clean value | false, reason, rule -------
-- length is the character count, given for strings (already checked for UTF-8 and controls).
-- rule names the kind of check that failed (README, "Validation"): type, length, format,
-- range, enum, const.

local check = {}

local function shape_ok(shape, v)
  if shape.test then return shape.test(v) end
  return find(v, shape.pattern) ~= nil
end

function check.string(f, v, len)
  if not len then return false, NOT_STRING, "type" end
  if (f.min and len < f.min) or (f.max and len > f.max) then
    return false, f.length_reason, "length"
  end
  if f.shape and not shape_ok(f.shape, v) then return false, f.shape.reason, "format" end
  return true, v
end

function check.integer(f, v)
  if f.digits and type(v) == "string" and find(v, "^%d+$") and #v <= 15 then v = tonumber(v) end
  if not is_integral(v) then return false, NOT_INTEGER, "type" end
  if (f.min and v < f.min) or (f.max and v > f.max) then return false, f.min_reason, "range" end
  return true, v
end

-- A string as it is, or an integral number as its decimal digits (what the table says is
-- sent: a string).
function check.token(f, v, len)
  if not len then
    if not is_integral(v) or v < 0 then return false, NOT_TOKEN, "type" end
    v = format("%d", v)
    len = #v
  end
  if len < 1 or (f.max and len > f.max) then return false, f.length_reason, "length" end
  return true, v
end

-- Any bytes (a file), counted in bytes.
function check.bytes(f, v)
  if type(v) ~= "string" then return false, NOT_BYTES, "type" end
  if #v == 0 or (f.max and #v > f.max) then return false, f.length_reason, "length" end
  return true, v
end

function check.boolean(_, v)
  if type(v) ~= "boolean" then return false, NOT_BOOLEAN, "type" end
  return true, v
end

-- A double of magnitude 2^53 may be a rounded 2^53 + 1 (lua-cjson decodes 9007199254740993
-- so), and then it is another cardholder's id: ids as doubles must stay below it.
local function is_exact_id(v)
  if math_type and math_type(v) == "integer" then return true end
  return v == floor(v) and v > -MAX_EXACT and v < MAX_EXACT
end

function check.long(_, v)
  if core.is_long and core.is_long(v) then return true, v end
  local t = type(v)
  if t == "cdata" then -- LuaJIT's 123LL / 123ULL (OpenResty code has them): as decimal text
    v = match(tostring(v), "^(%-?%d+)U?LL$")
    t = v and "string"
  end
  if not ((t == "number" and is_exact_id(v)) or (t == "string" and is_int64_string(v))) then
    return false, NOT_LONG, "type"
  end
  local long = core.long
  if not long then error("pagsmile.issuing.core has no long(): rebuild the C module", 0) end
  local boxed = long(v)
  if boxed == nil then return false, NOT_LONG, "type" end
  return true, boxed
end

function check.amount(_, v, len)
  if not len then return false, AMOUNT_NOT_STRING, "type" end
  if not is_amount(v) then return false, NOT_AMOUNT, "format" end
  return true, v
end

function check.date(_, v, len)
  if not len then return false, NOT_STRING, "type" end
  if not is_date(v) then return false, NOT_DATE, "format" end
  return true, v
end

function check.country(_, v, len)
  if not len then return false, NOT_STRING, "type" end
  if not COUNTRIES[v] then return false, NOT_COUNTRY, "format" end
  return true, v
end

function check.enum(f, v, len)
  if not len then return false, NOT_STRING, "type" end
  if not f.allowed[v] then return false, f.enum_reason, "enum" end
  return true, v
end

function check.const(f, v)
  if v ~= f.value then return false, f.const_reason, "const" end
  return true, f.value
end

-- Unknown fields (the failure path only: free to allocate) ----------------------------------

-- Optimal string alignment distance (a swap of neighbours counts as one edit), capped early.
local function edit_distance(a, b)
  local la, lb = #a, #b
  if la - lb > 2 or lb - la > 2 then return 3 end
  local prev2, prev = {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    local cur = { [0] = i }
    local ca = byte(a, i)
    for j = 1, lb do
      local cb = byte(b, j)
      local cost = ca == cb and 0 or 1
      local d = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if i > 1 and j > 1 and ca == byte(b, j - 1) and byte(a, i - 1) == cb then
        d = min(d, prev2[j - 2] + 1)
      end
      cur[j] = d
    end
    prev2, prev = prev, cur
  end
  return prev[lb]
end

-- A key as it may appear in a message: names are ours to echo, odd bytes are not.
local function key_label(k)
  if type(k) == "string" then
    local shown = gsub(sub(k, 1, 64), "[^%w_%-%.]", "?")
    return shown
  end
  if type(k) == "number" then return "[" .. tostring(k) .. "]" end
  return "[" .. type(k) .. "]"
end

-- The unknown keys of input as messages show them, sorted.
local function unknown_labels(obj, input)
  local unknown = {}
  for k in pairs(input) do
    if not obj.known[k] then unknown[#unknown + 1] = key_label(k) end
  end
  sort(unknown)
  return unknown
end

-- Path and reason for one unknown key, with the closest field name as a suggestion.
local function unknown_field(obj, label)
  local best, best_d = nil, 3
  for _, f in ipairs(obj.fields) do
    local d = edit_distance(label, f.name)
    if d < best_d then best, best_d = f.name, d end
  end
  local reason = "is not a field of " .. obj.label
  if best then reason = reason .. ' (did you mean "' .. best .. '"?)' end
  local path = obj.prefix == "" and label or obj.prefix .. (find(label, "^%[") and "" or ".") .. label
  return path, reason
end

-- The walk ---------------------------------------------------------------------------------
--
-- One walk for both uses. With `all` nil it stops at the first violation and returns nil,
-- path, reason, rule (the client's case: no strings built on success). With `all` a list it
-- appends every violation to it, at most one per field, in the same order, so all[1] is
-- always the error the first-error walk reports.

local function absent(v)
  return v == nil or (NULL ~= nil and v == NULL)
end

-- OpenResty's lua-cjson has empty_array, a value that encodes as []; lua-cjson decodes [] and
-- {} alike, as an empty table, so where an object is expected it stands for one with no
-- members. Looked up on use: this module never loads cjson itself.
local loaded = package.loaded
local function is_empty_array(v)
  if type(v) ~= "userdata" then return false end
  for _, name in ipairs({ "cjson", "cjson.safe" }) do
    local m = loaded[name]
    if type(m) == "table" and m.empty_array ~= nil and v == m.empty_array then return true end
  end
  return false
end

local function add(all, field, reason, rule)
  all[#all + 1] = { field = field, rule = rule, reason = reason,
                    message = schema.describe_error(field, reason) }
end

local validate_object

-- true, clean value | false, path, reason, rule (path nil: already added to `all`)
local function validate_field(f, v, all)
  if f.type == "object" then
    if is_empty_array(v) then v = {} end
    if type(v) ~= "table" then return false, f.path, NOT_OBJECT, "type" end
    local clean, field, reason, rule = validate_object(f, v, all)
    if not clean then return false, field, reason, rule end
    return true, clean
  end
  local len
  if type(v) == "string" and f.type ~= "bytes" then
    local why
    len, why = text_length(v)
    if not len then return false, f.path, why, "text" end
  end
  local ok, r, rule = check[f.type](f, v, len)
  if not ok then return false, f.path, r, rule end
  return true, r
end

-- Per object: unknown names first, then the fields in declared order, then cross-field rules.
function validate_object(obj, input, all)
  local known = obj.known
  local failed = false
  for k in pairs(input) do
    if not known[k] then
      local labels = unknown_labels(obj, input)
      if not all then
        local path, reason = unknown_field(obj, labels[1])
        return nil, path, reason, "unknown"
      end
      for _, label in ipairs(labels) do
        local path, reason = unknown_field(obj, label)
        add(all, path, reason, "unknown")
      end
      failed = true
      break
    end
  end
  local clean = {}
  local fields = obj.fields
  for i = 1, #fields do
    local f = fields[i]
    local v = input[f.name]
    if absent(v) then
      if f.required then
        if not all then return nil, f.path, REQUIRED, "required" end
        add(all, f.path, REQUIRED, "required")
        failed = true
      elseif f.default ~= nil then
        clean[f.name] = f.default
      end
    else
      local ok, r, reason, rule = validate_field(f, v, all)
      if ok then
        clean[f.name] = r
      elseif not all then
        return nil, r, reason, rule
      else
        if r then add(all, r, reason, rule) end
        failed = true
      end
    end
  end
  for _, rule in ipairs(obj.cross) do
    local path, reason, name = rule(obj, input, clean)
    if path then
      if not all then return nil, path, reason, name end
      add(all, path, reason, name)
      failed = true
    end
  end
  if failed then return nil end
  return clean
end

-- Cross-field rules: rule(obj, input, clean) -> path, reason, rule name | nil. Given or not
-- as the caller wrote it: a field that failed its own check was given.

-- exactly_one_of: one alternative (a field, or fields that go together), complete.
local function one_of(obj, input)
  local alts = obj.one_of
  local given = {}
  for i, alt in ipairs(alts) do
    for _, name in ipairs(alt) do
      if not absent(input[name]) then given[i] = true end
    end
  end
  if given[1] and given[2] then return obj.one_of_paths[1], obj.one_of_both, "exactly_one_of" end
  if not given[1] and not given[2] then
    return obj.one_of_paths[2], obj.one_of_neither, "exactly_one_of"
  end
  local alt = alts[given[1] and 1 or 2]
  for _, name in ipairs(alt) do
    if absent(input[name]) then
      return obj.prefix == "" and name or obj.prefix .. "." .. name, alt.reason, "required"
    end
  end
end

-- requires: a field given only together with another.
local function requires(obj, input)
  for _, f in ipairs(obj.fields) do
    if f.requires and not absent(input[f.name]) and absent(input[f.requires]) then
      return f.path, f.requires_reason, "requires"
    end
  end
end

--- The day number of a valid yyyy-MM-dd date (days since 1970-01-01, proleptic Gregorian).
function schema.day_number(s)
  local y, m, d = digits_at(s, 1, 4), digits_at(s, 6, 2), digits_at(s, 9, 2)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local doy = floor((153 * (m + (m > 2 and -3 or 9)) + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy - 719468
end

-- date_range: `to` not before `from`, and at most max_days days counted inclusively.
local function date_range(obj, _, clean)
  local r = obj.date_range
  local from, to = clean[r[1]], clean[r[2]]
  if not from or not to then return nil end
  local days = schema.day_number(to) - schema.day_number(from) + 1
  if days < 1 then return obj.range_path, obj.range_before, "range" end
  if r.max_days and days > r.max_days then return obj.range_path, obj.range_long, "range" end
end

--- Checks biz_data against an endpoint's schema table.
-- Returns a new table ready for JSON encoding (biz_data itself is never modified), or nil,
-- the dotted path of the first violation, the reason (a sentence) and the rule it breaks.
function schema.validate(obj, biz_data)
  if type(obj) ~= "table" or not obj.fields then error("not a schema table", 2) end
  if not obj.known then schema.register(obj) end
  if type(biz_data) ~= "table" then error("biz_data must be a table", 2) end
  return validate_object(obj, biz_data)
end

--- Like validate, but on failure returns nil and every violation, in validate's order (the
-- first is validate's error), each { field =, rule =, reason =, message = }.
function schema.validate_all(obj, biz_data)
  if type(obj) ~= "table" or not obj.fields then error("not a schema table", 2) end
  if not obj.known then schema.register(obj) end
  if type(biz_data) ~= "table" then error("biz_data must be a table", 2) end
  local all = {}
  local clean = validate_object(obj, biz_data, all)
  if all[1] then return nil, all end
  return clean
end

--- The one sentence for a validation failure: "holder.email: must be an email address".
function schema.describe_error(field, reason)
  if field == nil then return tostring(reason) end
  return tostring(field) .. ": " .. tostring(reason)
end

-- Load time: paths, name sets and reason texts, so the walk builds no strings ---------------

local function length_reason(f)
  if f.min and f.min > 0 and f.max then
    return "must be " .. f.min .. " to " .. f.max .. " characters"
  elseif f.max then
    return "must be at most " .. f.max .. " characters"
  end
  return "must be at least " .. f.min .. " characters"
end

local function compile(obj, prefix, label)
  obj.prefix, obj.label, obj.known = prefix, label, {}
  for _, f in ipairs(obj.fields) do
    assert(check[f.type] or f.type == "object", f.name)
    obj.known[f.name] = true
    f.path = prefix == "" and f.name or prefix .. "." .. f.name
    if f.type == "string" and (f.min or f.max) and not f.length_reason then
      f.length_reason = length_reason(f)
    elseif f.type == "integer" and f.max then
      f.min_reason = "must be from " .. (f.min or "any") .. " to " .. f.max
    elseif f.type == "integer" and f.min then
      f.min_reason = f.min == 1 and "must be a positive integer" or "must be at least " .. f.min
    elseif (f.type == "token" or f.type == "bytes") and f.max then
      f.length_reason = "must be 1 to " .. f.max .. (f.type == "bytes" and " bytes" or " characters")
    elseif f.type == "enum" then
      f.allowed = {}
      for _, v in ipairs(f.values) do f.allowed[v] = true end
      f.enum_reason = "must be one of " .. concat(f.values, ", ")
    elseif f.type == "const" then
      f.const_reason = "must be " .. tostring(f.value)
    elseif f.type == "object" then
      compile(f, f.path, f.path)
    end
  end
  local function at(name) return prefix == "" and name or prefix .. "." .. name end
  obj.cross = {}
  local pair = obj.exactly_one_of
  if pair then
    local alts, labels = {}, {}
    for i, alt in ipairs(pair) do
      alts[i] = type(alt) == "table" and alt or { alt }
      labels[i] = #alts[i] == 1 and alts[i][1] or "(" .. concat(alts[i], ", ") .. ")"
      alts[i].reason = "is required with " .. alts[i][1]
    end
    obj.one_of = alts
    obj.one_of_paths = { at(alts[1][1]), at(alts[2][1]) }
    obj.one_of_both = "give exactly one of " .. labels[1] .. " and " .. labels[2] .. ", not both"
    obj.one_of_neither = "is required when " .. labels[1] .. " is not given"
    obj.cross[#obj.cross + 1] = one_of
  end
  for _, f in ipairs(obj.fields) do
    if f.requires then
      f.requires_reason = "is given only with " .. f.requires
      obj.cross[#obj.cross + 1] = requires
      break
    end
  end
  local range = obj.date_range
  if range then
    obj.range_path = at(range[2])
    obj.range_before = "must not be before " .. range[1]
    obj.range_long = range.max_days and ("must be less than " .. range.max_days .. " days after "
      .. range[1] .. " (" .. range.max_days .. " days at most, both counted)")
    obj.cross[#obj.cross + 1] = date_range
  end
end

--- Prepares an endpoint's schema table (paths, name sets, reason texts) once; endpoints.lua
-- registers every endpoint's, and validate does it for a table it has not seen.
function schema.register(obj)
  if not obj.known then compile(obj, "", obj.name) end
  return obj
end

return schema
