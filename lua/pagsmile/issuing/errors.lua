-- Error objects (DESIGN.md "Errors"): plain tables with `kind` and `message`, printable with
-- tostring(). Messages are built from allow-listed facts only (field names, codes, ids):
-- never from bodies, keys, PANs or biz_data values.
local api = require "pagsmile.issuing.api"

local errors = {}

local byte, find, format, gsub, sub = string.byte, string.find, string.format, string.gsub, string.sub

local Error = {}
Error.__index = Error

local CONTEXT = { "code", "sub_code", "http_status", "request_id", "order_no" }

-- Bounds, in bytes, of what tostring(err) echoes: each context value comes from the server, a
-- callback or the caller, and a log line must stay one short line whatever they hold.
local MAX_VALUE = 64
local MAX_MESSAGE = 300
local MAX_KIND = 32
local ELLIPSIS = "…"

local ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function escape_control(c) return ESCAPES[c] or format("\\x%02x", byte(c)) end
-- C1 controls in UTF-8 form (U+0080..U+009F): some terminals act on them like ESC sequences.
local function escape_c1(c) return format("\\u%04x", byte(c)) end

-- Where to cut `t` so at most `room` bytes stay: never inside one of our escapes or inside a
-- UTF-8 character.
local function cut_point(t, room)
  local cut = room
  local bs = find(sub(t, 1, cut), "\\[^\\]*$")
  if bs and bs > cut - 6 then
    local kind = sub(t, bs + 1, bs + 1)
    local len = kind == "x" and 4 or kind == "u" and 6 or 2
    if bs + len - 1 > cut then cut = bs - 1 end
  end
  while cut > 0 do
    local b = byte(t, cut + 1)
    if not b or b < 0x80 or b >= 0xC0 then break end
    cut = cut - 1
  end
  return cut
end

--- `v` as one printable line of at most `limit` bytes: control characters escaped (\n, \x1b),
-- a longer text cut and ended with "…", a non-scalar shown by its type. Idempotent.
function errors.printable(v, limit)
  local t = type(v)
  if t == "number" or t == "boolean" then
    v = tostring(v)
  elseif t ~= "string" then
    return "<a " .. t .. ">"
  end
  -- Escapes only lengthen, so the first limit + 1 bytes decide everything (a 1 MB value
  -- costs no more than a short one).
  local s = gsub(gsub(sub(v, 1, limit + 1), "\194([\128-\159])", escape_c1), "[%c\127]", escape_control)
  if #v <= limit and #s <= limit then return s end
  return sub(s, 1, cut_point(s, limit - #ELLIPSIS)) .. ELLIPSIS
end
local printable = errors.printable

function Error.__tostring(e)
  local parts = {}
  for _, k in ipairs(CONTEXT) do
    if e[k] ~= nil then parts[#parts + 1] = k .. "=" .. printable(e[k], MAX_VALUE) end
  end
  local tail = #parts > 0 and (" [" .. table.concat(parts, " ") .. "]") or ""
  return "pagsmile.issuing " .. printable(e.kind, MAX_KIND) .. " error: "
    .. printable(e.message, MAX_MESSAGE) .. tail
end

-- The message is kept printable too: callers log err.message on its own.
function errors.new(kind, message, fields)
  local e = fields or {}
  e.kind, e.message = kind, printable(message, MAX_MESSAGE)
  return setmetatable(e, Error)
end

function errors.is_error(v)
  return getmetatable(v) == Error
end

function errors.validation(field, reason, order_no)
  return errors.new("validation", field .. ": " .. reason,
    { field = field, reason = reason, order_no = order_no })
end

function errors.config(field, message)
  return errors.new("config", field .. ": " .. message, { field = field })
end

-- The retry rule, for every transport (issue 11 item 3): a failed request may be sent again
-- only when nothing of it left this machine and the failure is one a new attempt can get
-- past. `case` is what the transport saw; a case not listed here (a certificate the trust
-- store rejects, a CA file that cannot be read, a bad URL or header, an answer too large, a
-- closed transport) is final on curl and on ngx alike.
errors.RETRYABLE_CASES = {
  resolve = true,    -- a name that did not resolve (DNS may recover)
  connect = true,    -- refused, unreachable, or the connect timed out
  proxy = true,      -- the proxy's handshake failed
  timeout = true,    -- the deadline of this attempt, before anything was sent
  handshake = true,  -- the TLS handshake itself failed (not the certificate)
  reset = true,      -- the connection failed while sending or reading
}

--- A transport failure: `kind` "transport", "timeout" or "protocol"; `sent` whether any byte
-- of the request left; `case` one of the transport's cases (see RETRYABLE_CASES). `fields`
-- adds curl_code, setting...
function errors.transport(kind, message, sent, case, fields)
  local e = fields or {}
  e.sent = sent == true
  e.retryable = not e.sent and errors.RETRYABLE_CASES[case] == true
  return errors.new(kind, message, e)
end

--- A refusal by the platform (SPEC.md §4: a code other than the success code). The platform's
-- own words stay in err.msg / err.sub_msg: they might echo what was sent (a holder's name, an
-- email), and messages carry no biz_data values. What the refusal means comes from api.lua's
-- table instead (issue 10 item 7).
function errors.api(code, msg, sub_code, sub_msg, fields)
  local e = fields or {}
  e.code, e.msg, e.sub_code, e.sub_msg = code, msg, sub_code, sub_msg
  local setting, hint = api.refusal(code, sub_code)
  e.setting = e.setting or setting
  return errors.new("api", "the platform refused the request" .. (hint and (": " .. hint) or "")
    .. ((msg or sub_msg) and " (its words are in err.msg and err.sub_msg)" or ""), e)
end

--- Adds a call's context (request_id, order_no, http_status...) to an error, keeping what it
-- has.
function errors.with(e, context)
  for k, v in pairs(context) do if e[k] == nil then e[k] = v end end
  return e
end

-- An error from a transport given as a table (`transport = table`, which may return plain
-- tables), given this call's context: our own errors keep their identity.
function errors.wrap(t, context)
  if getmetatable(t) == Error then return errors.with(t, context) end
  local e = {}
  for k, v in pairs(t) do e[k] = v end
  errors.with(e, context)
  if e.kind == "api" then
    return errors.api(e.code, e.msg, e.sub_code, e.sub_msg, e)
  end
  return errors.new(e.kind, e.message, e)
end

return errors
