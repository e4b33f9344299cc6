-- A cardholder's KYC document on its way to Upload Supporting Documents (SPEC.md §10): the
-- file's bytes, from the caller or read from file_path, checked (size, as the schema checks
-- the name's extension) and Base64-encoded here, so the caller hands over a file and never
-- a Base64 text. Nothing here echoes a path or a byte of the file in a message.
local api = require "pagsmile.issuing.api"

local document = {}

local byte, sub, floor, concat = string.byte, string.sub, math.floor, table.concat
local open = io.open

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Every 12-bit value as its two Base64 characters: three bytes are two lookups, and no new
-- string is made per group.
local PAIR = {}
for v = 0, 4095 do
  local hi, lo = floor(v / 64), v % 64
  PAIR[v] = sub(ALPHABET, hi + 1, hi + 1) .. sub(ALPHABET, lo + 1, lo + 1)
end

local function char(v) return sub(ALPHABET, v + 1, v + 1) end

local BLOCK = 3 * 4096 -- bytes per block: one concat of 8192 pieces each

--- Standard Base64 with padding, no line breaks (RFC 4648 §4).
function document.base64(s)
  local len = #s
  local full = len - len % 3
  local blocks, nb = {}, 0
  for first = 1, full, BLOCK do
    local out, n = {}, 0
    for i = first, math.min(first + BLOCK - 1, full), 3 do
      local a, b, c = byte(s, i, i + 2)
      local v = a * 65536 + b * 256 + c
      out[n + 1], out[n + 2] = PAIR[floor(v / 4096)], PAIR[v % 4096]
      n = n + 2
    end
    nb = nb + 1
    blocks[nb] = concat(out)
  end
  local rest = len - full
  if rest > 0 then
    local a, b = byte(s, full + 1, len)
    local v = a * 65536 + (b or 0) * 256
    blocks[nb + 1] = PAIR[floor(v / 4096)] .. (b and char(floor(v / 64) % 64) or "=") .. "="
  end
  return concat(blocks)
end

-- The file at `path`, at most `max` bytes: bytes | nil, reason (never the path: it may say
-- whose document it is).
local function read(path, max)
  local f, msg = open(path, "rb")
  if not f then
    return nil, "cannot be opened (" .. tostring(msg):gsub("^.*: ", "") .. ")"
  end
  local size = f:seek("end")
  if not size then
    f:close()
    return nil, "is not a regular file"
  end
  if size > max then
    f:close()
    return nil, "names a file larger than " .. max .. " bytes (2 MiB)"
  end
  f:seek("set", 0)
  local bytes = f:read("*a")
  f:close()
  if not bytes or #bytes == 0 then return nil, "names an empty file" end
  if #bytes > max then return nil, "names a file larger than " .. max .. " bytes (2 MiB)" end
  return bytes
end

--- The biz_data that travels, from the validated input (schema.upload_holder_document):
-- file_content Base64 of the file's bytes. Returns it, or nil, field, reason.
function document.wire(clean)
  local bytes = clean.file_content
  if clean.file_path then
    local why
    bytes, why = read(clean.file_path, api.DOCUMENT_MAX_BYTES)
    if not bytes then return nil, "file_path", why end
  end
  return {
    holder_id = clean.holder_id, file_type = clean.file_type, file_name = clean.file_name,
    file_content = document.base64(bytes), file_desc = clean.file_desc,
  }
end

return document
