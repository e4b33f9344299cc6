-- A row's fingerprint, and the order_no derived from it (docs/CLI.md, "order_no").
--   digest.canonical(v)   one text for a biz_data table: keys sorted, JSON scalars
--   digest.hash(text)     16 characters of Crockford Base32 (80 bits), the same on every runtime
-- The hash is three polynomial hashes modulo the three largest primes below 2^31, each with
-- its own multiplier: plain double arithmetic (every product stays below 2^53), so Lua 5.1
-- without bit operations computes what 5.4 does. It is no cryptographic hash: it only has to
-- tell the rows of a file apart and never change, and a collision would be caught (an
-- order_no is UNIQUE in the journal).
local json = require "pagsmile.issuing.json"

local digest = {}

local type, pairs, ipairs, tostring, byte, sub, format, floor, sort, concat = type, pairs, ipairs,
  tostring, string.byte, string.sub, string.format, math.floor, table.sort, table.concat

local LANES = {
  { 1000003, 2147483647 },
  { 999983, 2147483629 },
  { 1048573, 2147483587 },
}
local ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

local function lane(text, mult, prime)
  local h = #text % prime
  for i = 1, #text do h = (h * mult + byte(text, i) + 1) % prime end
  return h
end

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
  local a = lane(text, LANES[1][1], LANES[1][2])
  local b = lane(text, LANES[2][1], LANES[2][2])
  local c = lane(text, LANES[3][1], LANES[3][2])
  -- A few rounds that feed each lane into the next, so that every character reaches every
  -- digit (short or similar texts would otherwise give similar hashes).
  for _ = 1, 4 do
    a = (a * LANES[1][1] + b + 7) % LANES[1][2]
    b = (b * LANES[2][1] + c + 11) % LANES[2][2]
    c = (c * LANES[3][1] + a + 13) % LANES[3][2]
  end
  return base32(a % 2 ^ 30, 6) .. base32(b % 2 ^ 30, 6) .. base32(c % 2 ^ 20, 4)
end

local function number(v)
  if v == floor(v) and v > -2 ^ 63 and v < 2 ^ 63 then return format("%d", v) end
  return format("%.17g", v)
end

-- A string in JSON; one that is not UTF-8 (a row validation refuses) still gets a text.
local function text(s)
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
  local keys, values = {}, {}
  for k, value in pairs(v) do
    if k ~= skip then
      local name = tostring(k)
      keys[#keys + 1], values[name] = name, value
    end
  end
  sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = text(k) .. ":" .. digest.canonical(values[k]) end
  return "{" .. concat(parts, ",") .. "}"
end

return digest
