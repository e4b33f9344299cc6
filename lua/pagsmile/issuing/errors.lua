-- Error objects (DESIGN.md "Errors"): plain tables with `kind` and `message`, printable with
-- tostring(). Messages are built from allow-listed facts only (field names, codes, ids):
-- never from bodies, keys, PANs or biz_data values.
local errors = {}

local Error = {}
Error.__index = Error

local CONTEXT = { "code", "sub_code", "http_status", "request_id", "order_no" }

function Error.__tostring(e)
  local parts = {}
  for _, k in ipairs(CONTEXT) do
    if e[k] ~= nil then parts[#parts + 1] = k .. "=" .. tostring(e[k]) end
  end
  local tail = #parts > 0 and (" [" .. table.concat(parts, " ") .. "]") or ""
  return "pagsmile.issuing " .. e.kind .. " error: " .. e.message .. tail
end

function errors.new(kind, message, fields)
  local e = fields or {}
  e.kind, e.message = kind, message
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

-- An error table from a transport or from core.open, given this call's context.
function errors.wrap(t, context)
  local e = {}
  for k, v in pairs(t) do e[k] = v end
  for k, v in pairs(context) do if e[k] == nil then e[k] = v end end
  if e.kind == "api" then
    -- The platform's own words stay in err.msg / err.sub_msg: they might echo what was
    -- sent (a holder's name, an email), and messages carry no biz_data values.
    e.message = "the platform refused the request"
      .. ((e.msg or e.sub_msg) and " (its words are in err.msg and err.sub_msg)" or "")
  end
  return setmetatable(e, Error)
end

return errors
