-- CSV as spreadsheets write it (RFC 4180), read with LPeg: fields separated by commas,
-- records by CRLF or LF; a field in double quotes may hold commas, line breaks and doubled
-- quotes (""); a UTF-8 byte order mark at the start is dropped. Cells come back byte for byte.
--
--   for line, fields in csv.records(text) do ... end   -- raises csv.Error on a broken file
--   csv.line(fields, n)                                -- one record, quoted where needed
local deps = require "pagsmile.issuing.cli.deps"

local lpeg = deps.need("lpeg", "lua-lpeg")
local P, C, Cs, Ct, Cp, S = lpeg.P, lpeg.C, lpeg.Cs, lpeg.Ct, lpeg.Cp, lpeg.S

local csv = {}

local find, sub, gsub, concat = string.find, string.sub, string.gsub, table.concat

local EOL = P "\r\n" + P "\n"
local quoted = P '"' * Cs(((1 - P '"') + P '""' / '"') ^ 0) * P '"'
local bare = C((1 - (S ',"\n' + P "\r\n")) ^ 0)
local field = quoted + bare
-- One record: its fields and where it stopped (at an end of line, the end, or a mistake).
local record = Ct(field * (P "," * field) ^ 0) * Cp()
local BOM = "\239\187\191"

-- Newlines in text[from, to): how far the line count moves.
local function newlines(text, from, to)
  local n = 0
  while true do
    local at = find(text, "\n", from, true)
    if not at or at >= to then return n end
    n, from = n + 1, at + 1
  end
end

-- Why the record starting at `start` stopped at `pos` instead of at an end of line.
local function broken(text, start, pos, line)
  local at_line = line + newlines(text, start, pos)
  local c = sub(text, pos, pos)
  local opens = pos == start or sub(text, pos - 1, pos - 1) == ","
  local why
  if c == '"' and opens then
    why = 'a quoted field is never closed (a missing ")'
  elseif c == '"' then
    why = "a quote inside an unquoted field (quote the field and double its quotes)"
  else
    why = "text after the closing quote of a field"
  end
  return ("line %d: %s"):format(at_line, why)
end

--- The records of `text`: an iterator giving (line where the record starts, list of fields).
-- Empty lines are skipped. A broken file raises a table { csv_error = message }.
function csv.records(text)
  local pos, line = 1, 1
  if sub(text, 1, 3) == BOM then pos = 4 end
  local len = #text
  return function()
    while pos <= len do
      local start, at = pos, line
      local fields, stop = record:match(text, pos)
      local eol = EOL:match(text, stop)
      if not eol and stop <= len then error({ csv_error = broken(text, start, stop, line) }, 0) end
      pos = eol or stop
      line = line + newlines(text, start, pos)
      if not (#fields == 1 and fields[1] == "" and stop == start) then return at, fields end
    end
    return nil
  end
end

local function cell(v)
  v = v == nil and "" or tostring(v)
  if find(v, '[,"\r\n]') then return '"' .. gsub(v, '"', '""') .. '"' end
  return v
end

--- One record as a CSV line (ending in "\n"), each field quoted only when it must be; `n`
-- fields (default #fields), nil ones empty.
function csv.line(fields, n)
  local out = {}
  for i = 1, n or #fields do out[i] = cell(fields[i]) end
  return concat(out, ",") .. "\n"
end

return csv
