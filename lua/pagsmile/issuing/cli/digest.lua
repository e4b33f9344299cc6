-- A row's fingerprint, and the order_no derived from it (docs/CLI.md, "order_no").
--   digest.canonical(v)   one text for a biz_data table: keys sorted, JSON scalars
--   digest.hash(text)     16 characters of Crockford Base32 (80 bits), the same on every runtime
-- The hash is three polynomial hashes (over 3-byte steps) modulo the three largest primes
-- below 2^31, each with its own multiplier: plain double arithmetic (every product stays
-- below 2^53), so Lua 5.1 without bit operations computes what 5.4 does. It is no
-- cryptographic hash: it only has to tell the rows of a file apart and never change, and a
-- collision would be caught (an order_no is UNIQUE in the journal).
local json = require "pagsmile.issuing.json"

local digest = {}

local type, pairs, tostring, byte, find, sub, format, floor, sort, concat = type, pairs,
  tostring, string.byte, string.find, string.sub, string.format, math.floor, table.sort,
  table.concat

local LANES = {
  { 1000003, 2147483647 },
  { 999983, 2147483629 },
  { 1048573, 2147483587 },
}
local ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

-- `chars` Base32 digits of the low 5 * chars bits of h.
local function base32(h, chars)
  local out = {}
  for i = chars, 1, -1 do
    local d = h % 32
    out[i] = sub(ALPHABET, d + 1, d + 1)
    h = (h - d) / 32
  end
  return concat(out)
end

function digest.hash(text)
  local m1, p1, m2, p2, m3, p3 = LANES[1][1], LANES[1][2], LANES[2][1], LANES[2][2], LANES[3][1],
    LANES[3][2]
  local n = #text
  local a, b, c = n % p1, n % p2, n % p3
  -- Three bytes a step (x < 2^24, a * m < 2^52: still exact); the length, mixed in first,
  -- tells a last short step from bytes of zero.
  for i = 1, n, 3 do
    local x1, x2, x3 = byte(text, i, i + 2)
    local x = (x1 * 256 + (x2 or 0)) * 256 + (x3 or 0)
    a, b, c = (a * m1 + x) % p1, (b * m2 + x) % p2, (c * m3 + x) % p3
  end
  -- A few rounds that feed each lane into the next, so that every character reaches every
  -- digit (short or similar texts would otherwise give similar hashes).
  for _ = 1, 4 do
    a = (a * m1 + b + 7) % p1
    b = (b * m2 + c + 11) % p2
    c = (c * m3 + a + 13) % p3
  end
  return base32(a % 2 ^ 30, 6) .. base32(b % 2 ^ 30, 6) .. base32(c % 2 ^ 20, 4)
end

local function number(v)
  if v == floor(v) and v > -2 ^ 63 and v < 2 ^ 63 then return format("%d", v) end
  return format("%.17g", v)
end

-- A string in JSON; one that is not UTF-8 (a row validation refuses) still gets a text.
-- Printable ASCII without quote or backslash is its JSON as it stands (the common case, fast).
local function text(s)
  if not find(s, '[^ !#-%[%]-~]') then return '"' .. s .. '"' end
  return json.encode(s) or format("%q", s)
end

--- biz_data as one text: objects with sorted keys, strings in JSON, integral numbers without
-- a fraction on every runtime, long ids as their digits. `skip` (a key) is left out at the top.
function digest.canonical(v, skip)
  local t = type(v)
  if t == "string" then return text(v) end
  if t == "number" then return number(v) end
  if t == "boolean" then return tostring(v) end
  if t ~= "table" then return json.is_long(v) and tostring(v) or "null" end
  local keys, n, other = {}, 0, nil
  for k, value in pairs(v) do
    if k ~= skip then
      n = n + 1
      if type(k) ~= "string" then
        -- (biz_data has string keys; a list from JSONL is named by its indexes)
        k = tostring(k)
        other = other or {}
        other[k] = value
      end
      keys[n] = k
    end
  end
  sort(keys)
  local parts = {}
  for i = 1, n do
    local k = keys[i]
    local value = v[k]
    if value == nil and other then value = other[k] end
    parts[i] = text(k) .. ":" .. digest.canonical(value)
  end
  return "{" .. concat(parts, ",") .. "}"
end

return digest
