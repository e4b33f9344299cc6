-- luacheck: globals ngx
-- The emulator's state and the pieces every area of it shares: the shared dict (JSON values),
-- ids, random values, amounts in cents, the answer envelope. handler.init sets `state.cfg`.
-- State lives in a lua_shared_dict; the launcher runs one nginx process, so a
-- read-modify-write without a yield in between is atomic.
local sealing = require "pagsmile.issuing.envelope"
local json = require "pagsmile.issuing.json"

local state = {}

-- Gateway codes (SPEC.md §4).
state.SUCCESS = { "10000", "Success" }
state.UNAVAILABLE = { "20000", "Service Unavailable" }
state.MISSING = { "40001", "Missing Arguments" }
state.BUSINESS = { "40002", "Business Failed" }
state.METHOD = { "40004", "Method Not Supported" }

-- An answer with no data at all (update-limit, revoke: `{code, msg}` only).
state.NO_DATA = {}

-- card_id and holder_id start above 2^53 so every call exercises exact 64-bit ids.
local ID_HIGH, ID_LOW = 9007199254, 740992 -- 9007199254740992 = 2^53, split to stay exact

-- Random hex and digits from the kernel, so tokens never repeat across restarts.
local function random_bytes(n)
  local f = io.open("/dev/urandom", "rb")
  local s = f and f:read(n)
  if f then f:close() end
  if not s or #s < n then
    local t = {}
    for i = 1, n do t[i] = string.char(math.random(0, 255)) end
    s = table.concat(t)
  end
  return s
end

function state.random_hex(n)
  return (random_bytes(n / 2):gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function state.random_digits(n)
  return (random_bytes(n):gsub(".", function(c) return tostring(c:byte() % 10) end))
end

function state.dict()
  return ngx.shared[state.cfg.dict]
end

function state.get(key)
  local s = state.dict():get(key)
  if not s then return nil end
  return json.decode(s)
end

function state.set(key, value)
  local s = assert(json.encode(value))
  local ok, err = state.dict():set(key, s)
  if not ok then error("sandbox: shared dict full (" .. tostring(err) .. ")", 0) end
end

function state.settings()
  local s = state.get("settings")
  return type(s) == "table" and s or {}
end

-- The merchant public key answers and callbacks are sealed for: a registered one (control
-- API or --merchant-public-key) or the one the emulator started with. Parsed once per change.
local registered = {}
function state.merchant_key()
  local text = state.dict():get("merchant_public_key")
  if not text then return state.cfg.merchant_key end
  if text ~= registered.text then
    registered.key, registered.text = assert(sealing.public_key(text)), text
  end
  return registered.key
end

-- The next id as a decimal string: 2^53 + n, computed in two exact halves. `counter`: a
-- sequence of its own (default the cards' and holders' one, which the specs count).
function state.next_id(counter)
  local n = state.dict():incr(counter or "seq", 1, 0)
  local low = ID_LOW + n
  return string.format("%d%06d", ID_HIGH + math.floor(low / 1000000), low % 1000000)
end

function state.long_string(v)
  local l = json.long(v)
  return l and tostring(l) or nil
end

--- The names stored under a key prefix ("order:", "card:"), without it.
function state.names_under(prefix)
  local names = {}
  for _, key in ipairs(state.dict():get_keys(0)) do
    if key:sub(1, #prefix) == prefix then names[#names + 1] = key:sub(#prefix + 1) end
  end
  return names
end

-- A list kept under one key (ids of an index): appended to, read whole.
function state.append(key, value)
  local list = state.get(key) or {}
  list[#list + 1] = value
  state.set(key, list)
  return list
end

-- The answer envelope: code is one of the gateway codes above.
function state.envelope(code, sub_code, sub_msg)
  return { code = code[1], msg = code[2], sub_code = sub_code, sub_msg = sub_msg,
           sign_type = "RSA", app_id = state.cfg.app_id }
end

--- A business refusal (40002 and a sub_code of the emulator's own: the platform's catalogue
-- is not published; api.REFUSALS on the client side knows these words).
function state.refuse(sub_code, sub_msg)
  return state.envelope(state.BUSINESS, sub_code, sub_msg)
end

-- Times: the platform stamps notifications in UTC+8 and its records in UTC (SPEC.md §2, §12).
function state.stamp(offset_hours)
  return os.date("!%Y-%m-%d %H:%M:%S", ngx.time() + (offset_hours or 0) * 3600)
end

function state.today()
  return os.date("!%Y-%m-%d", ngx.time())
end

-- Amounts: decimal strings ("1.23") as whole cents, and back. Up to 12 digits before the
-- point (the schema's rule), so cents stay exact in a double.
function state.cents(amount)
  local whole, frac = tostring(amount):match("^(%-?%d+)%.?(%d*)$")
  if not whole then return nil end
  frac = (frac .. "00"):sub(1, 2)
  local sign = whole:sub(1, 1) == "-" and -1 or 1
  return sign * (math.abs(tonumber(whole)) * 100 + tonumber(frac))
end

function state.amount(cents)
  local sign = cents < 0 and "-" or ""
  cents = math.abs(cents)
  return string.format("%s%d.%02d", sign, math.floor(cents / 100), cents % 100)
end

return state
