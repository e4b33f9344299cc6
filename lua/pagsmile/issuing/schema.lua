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

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local byte, find, sub, gsub, gmatch, match = string.byte, string.find, string.sub, string.gsub,
  string.gmatch, string.match
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
-- const, object); required; for strings min/max in characters (UTF-8 code points) and an
-- optional shape {pattern, reason} (length_reason overrides the length text); for integers
-- min; for enum values; for const value (and default, filled in when absent); for objects
-- fields and exactly_one_of. validate fills in the rest at load (see compile below).

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

function check.string(f, v, len)
  if not len then return false, NOT_STRING, "type" end
  if (f.min and len < f.min) or (f.max and len > f.max) then
    return false, f.length_reason, "length"
  end
  if f.shape and not find(v, f.shape.pattern) then return false, f.shape.reason, "format" end
  return true, v
end

function check.integer(f, v)
  if not is_integral(v) then return false, NOT_INTEGER, "type" end
  if f.min and v < f.min then return false, f.min_reason, "range" end
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
  if type(v) == "string" then
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
  local pair = obj.exactly_one_of
  if pair then
    -- Given or not as the caller wrote it: a field that failed its own check was given.
    local has_a, has_b = not absent(input[pair[1]]), not absent(input[pair[2]])
    local path, reason
    if has_a and has_b then
      path, reason = obj.one_of_paths[1], obj.one_of_both
    elseif not has_a and not has_b then
      path, reason = obj.one_of_paths[2], obj.one_of_neither
    end
    if path then
      if not all then return nil, path, reason, "exactly_one_of" end
      add(all, path, reason, "exactly_one_of")
      failed = true
    end
  end
  if failed then return nil end
  return clean
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
    elseif f.type == "integer" and f.min then
      f.min_reason = f.min == 1 and "must be a positive integer" or "must be at least " .. f.min
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
  local pair = obj.exactly_one_of
  if pair then
    local a, b = pair[1], pair[2]
    local function at(name) return prefix == "" and name or prefix .. "." .. name end
    obj.one_of_paths = { at(a), at(b) }
    obj.one_of_both = "give exactly one of " .. a .. " and " .. b .. ", not both"
    obj.one_of_neither = "is required when " .. a .. " is not given"
  end
end

--- Prepares an endpoint's schema table (paths, name sets, reason texts) once; endpoints.lua
-- registers every endpoint's, and validate does it for a table it has not seen.
function schema.register(obj)
  if not obj.known then compile(obj, "", obj.name) end
  return obj
end

return schema
