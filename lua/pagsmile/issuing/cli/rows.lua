-- The rows of a bulk file: CSV or JSONL in, one checked biz_data per row out.
--
--   local list = rows.read(path, format)  -- { {index, line, biz, problems}, ... }; raises a
--                                         -- deps failure when the file cannot be read at all
--   rows.prepare(list, prefix)            -- order_nos, fingerprints, every violation
--
-- CSV: the header names each column by its dotted biz_data path (holder.address.line); a
-- column whose name is empty or starts with "#" is a note for people and is ignored. Each cell
-- is converted by the schema's type for its field (integer, boolean, long id kept as digits,
-- amounts and text as written); an empty cell is an absent field. JSONL: one biz_data object
-- per line, decoded by the library's JSON (long ids exact); blank lines are skipped.
local issuing = require "pagsmile.issuing"
local json = require "pagsmile.issuing.json"
local schema = require "pagsmile.issuing.schema"
local deps = require "pagsmile.issuing.cli.deps"
local digest = require "pagsmile.issuing.cli.digest"

local rows = {}

local type, ipairs, tonumber, tostring = type, ipairs, tonumber, tostring
local find, gmatch, gsub, lower, match, sub = string.find, string.gmatch, string.gsub, string.lower,
  string.match, string.sub

-- The longest --order-prefix: it, "-" and 16 hash characters fit order_no's 32.
rows.MAX_PREFIX = 15
local PREFIX_PATTERN = "^[A-Za-z0-9_-]+$"

--- The text of `path` ("-": stdin), or a failure (exit 2) naming it.
function rows.read_text(path)
  if path == "-" then return io.stdin:read("*a") end
  local f, err = io.open(path, "rb")
  if not f then deps.fail(deps.USAGE, "cannot read " .. tostring(err)) end
  local text = f:read("*a")
  f:close()
  return text
end

--- The input's format: `format` if given, else from the file name's extension.
function rows.format(path, format)
  if format then return format end
  local ext = lower(match(path, "%.([%w]+)$") or "")
  if ext == "csv" then return "csv" end
  if ext == "jsonl" or ext == "ndjson" then return "jsonl" end
  deps.fail(deps.USAGE, path .. ": say which format it is (--format csv or --format jsonl)")
end

-- CSV ----------------------------------------------------------------------------------------

-- The schema field at a dotted path, or nil.
local function field_at(path)
  local fields, f = schema.apply_card.fields, nil
  for name in gmatch(path, "[^.]+") do
    if not fields then return nil end
    f = nil
    for _, candidate in ipairs(fields) do
      if candidate.name == name then f = candidate break end
    end
    if not f then return nil end
    fields = f.fields
  end
  return f
end

-- Why a header names no field: the validator's own words (with its "did you mean").
local function not_a_field(path)
  local probe = {}
  local at = probe
  local names = {}
  for name in gmatch(path, "[^.]+") do names[#names + 1] = name end
  for i = 1, #names - 1 do
    at[names[i]] = {}
    at = at[names[i]]
  end
  at[names[#names]] = "x"
  local _, violations = issuing.validate("apply_card", probe)
  for _, v in ipairs(violations or {}) do
    if v.rule == "unknown" then return v.message end
  end
  return path .. " is not a field of apply_card"
end

local BOOLEANS = { ["true"] = true, ["false"] = false, ["1"] = true, ["0"] = false,
                   yes = true, no = false }

-- A cell as its field's type wants it; a cell that does not convert stays a string, so that
-- validation reports it with the field and the rule.
local CONVERT = {
  integer = function(s) return find(s, "^%-?%d+$") and tonumber(s) or s end,
  const = function(s) return find(s, "^%-?%d+$") and tonumber(s) or s end,
  boolean = function(s)
    local b = BOOLEANS[lower(s)]
    if b == nil then return s end
    return b
  end,
}

local function columns(header)
  local cols, seen = {}, {}
  for i, name in ipairs(header) do
    name = match(name, "^%s*(.-)%s*$")
    if name ~= "" and sub(name, 1, 1) ~= "#" then
      if seen[name] then
        deps.fail(deps.USAGE, ("column %d: %s is also column %d"):format(i, name, seen[name]))
      end
      seen[name] = i
      local f = field_at(name)
      if not f then deps.fail(deps.USAGE, ("column %d: %s"):format(i, not_a_field(name))) end
      if f.type == "object" then
        deps.fail(deps.USAGE, ("column %d: %s is an object: name its fields (%s.<field>)"):format(
          i, name, name))
      end
      local path = {}
      for part in gmatch(name, "[^.]+") do path[#path + 1] = part end
      cols[#cols + 1] = { index = i, path = path, convert = CONVERT[f.type] }
    end
  end
  return cols
end

local function set(biz, path, value)
  local t = biz
  for i = 1, #path - 1 do
    local k = path[i]
    if type(t[k]) ~= "table" then t[k] = {} end
    t = t[k]
  end
  t[path[#path]] = value
end

local function read_csv(text, path)
  local csv = require "pagsmile.issuing.cli.csv"
  local list = {}
  local ok, err = pcall(function()
    local next_record = csv.records(text)
    local header_line, header = next_record()
    if not header_line then deps.fail(deps.USAGE, path .. ": no header line") end
    local cols, width = columns(header), #header
    for line, fields in next_record do
      local row = { index = #list + 1, line = line, problems = {} }
      list[row.index] = row
      if #fields ~= width then
        row.problems[1] = { rule = "columns", message = ("has %d fields, the header %d"):format(
          #fields, width) }
      else
        local biz = {}
        for _, col in ipairs(cols) do
          local cell = fields[col.index]
          if cell ~= "" then
            if col.convert then cell = col.convert(cell) end
            set(biz, col.path, cell)
          end
        end
        row.biz = biz
      end
    end
  end)
  if not ok then
    if type(err) == "table" and err.csv_error then deps.fail(deps.USAGE, path .. ": " .. err.csv_error) end
    error(err, 0)
  end
  return list
end

-- JSONL --------------------------------------------------------------------------------------

local function read_jsonl(text)
  local list, line = {}, 0
  for raw in gmatch(gsub(text, "^\239\187\191", ""), "([^\n]*)\n?") do
    line = line + 1
    raw = gsub(raw, "\r$", "")
    if find(raw, "%S") then
      local row = { index = #list + 1, line = line, problems = {} }
      list[row.index] = row
      local value, err = json.decode(raw)
      if type(value) ~= "table" or value[1] ~= nil then
        row.problems[1] = { rule = "json", message = value == nil and ("is not JSON: " .. tostring(err))
                            or "is not a JSON object" }
      else
        row.biz = value
      end
    end
  end
  -- gmatch's last, empty match after a final newline is no line of the file
  return list
end

function rows.read(path, format)
  local text = rows.read_text(path)
  if format == "csv" then return read_csv(text, path) end
  return read_jsonl(text)
end

-- Checking -----------------------------------------------------------------------------------

-- Long ids as their digits, whichever way the file wrote them (a JSON number, a string), so
-- that the same row in CSV and in JSONL has one fingerprint and one order_no.
local function normalize(biz, fields)
  for _, f in ipairs(fields) do
    local v = biz[f.name]
    if f.type == "long" and v ~= nil then
      local l = json.long(v)
      if l then biz[f.name] = tostring(l) end
    elseif f.type == "object" and type(v) == "table" then
      normalize(v, f.fields)
    end
  end
end

--- Checks a prefix given with --order-prefix; nil, why when it cannot be one.
function rows.check_prefix(prefix)
  if #prefix > rows.MAX_PREFIX or not find(prefix, PREFIX_PATTERN) then
    return nil, ("--order-prefix must be 1 to %d characters of A-Z a-z 0-9 _ - (with a dash and "
      .. "16 characters of the row's hash it makes a 32-character order_no)"):format(rows.MAX_PREFIX)
  end
  return true
end

--- Fills each row's `hash` (its content's fingerprint), `order_no` (given, or derived from
-- `prefix` and the hash), `derived`, and `problems` (every violation: field, rule, message).
-- The k-th row with the same content (k > 1) hashes its content with "#k" appended, so that
-- identical rows get distinct order_nos that do not depend on other rows.
function rows.prepare(list, prefix)
  local seen_hash, seen_order = {}, {}
  for _, row in ipairs(list) do
    local biz = row.biz
    if biz then
      normalize(biz, schema.apply_card.fields)
      local content = digest.canonical(biz, "order_no")
      local n = (seen_hash[content] or 0) + 1
      seen_hash[content] = n
      if n > 1 then content = content .. "#" .. n end
      row.hash = digest.hash(content)
      if biz.order_no == nil and prefix then
        biz.order_no = prefix .. "-" .. row.hash
        row.derived = true
      end
      row.order_no = type(biz.order_no) == "string" and biz.order_no or nil
      local ok, violations = issuing.validate("apply_card", biz)
      if not ok then
        for _, v in ipairs(violations) do
          if v.field == "order_no" and v.rule == "required" then
            v.message = "order_no: is required (or give --order-prefix to derive one from the row)"
          end
          row.problems[#row.problems + 1] = v
        end
      end
      local first = row.order_no and seen_order[row.order_no]
      if first then
        row.problems[#row.problems + 1] = { field = "order_no", rule = "duplicate",
          message = ("order_no: the same as line %d's"):format(first.line) }
      elseif row.order_no then
        seen_order[row.order_no] = row
      end
    end
    row.valid = #row.problems == 0
  end
  return list
end

return rows
