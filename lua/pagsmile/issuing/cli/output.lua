-- What the command writes besides progress: the results file of a bulk run (--out), a card or
-- a notification as one JSON object, and whether a stream is a terminal.
local deps = require "pagsmile.issuing.cli.deps"
local digest = require "pagsmile.issuing.cli.digest"
local progress = require "pagsmile.issuing.cli.progress"

local output = {}

--- Whether file descriptor `fd` (1 stdout, 2 stderr) is a terminal. The shell's `test -t`
-- sees this process's descriptors: no module needed.
function output.is_tty(fd)
  local ok = os.execute("test -t " .. fd)
  return ok == true or ok == 0
end

-- The columns of --out, in this order (CSV) or as the keys of each object (JSONL).
output.COLUMNS = { "line", "order_no", "status", "order_status", "card_id", "card_token", "card_pan",
                   "holder_id", "error" }

local function result_of(rec)
  return {
    line = rec.line, order_no = rec.order_no, status = progress.status(rec.state),
    order_status = rec.order_status, card_id = rec.card_id, card_token = rec.card_token,
    card_pan = progress.mask_pan(rec.card_pan), holder_id = rec.holder_id, error = rec.error,
  }
end

--- Writes every row's result to `path` (.csv, or .jsonl/.ndjson), whole: into a temporary
-- file first, then renamed over the old one, so a reader never sees half of it.
function output.results(path, recs)
  local jsonl = path:lower():find("%.n?d?jsonl?$") ~= nil
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then deps.fail(deps.USAGE, "--out: cannot write " .. tostring(err)) end
  local csv = not jsonl and require "pagsmile.issuing.cli.csv"
  if csv then f:write(csv.line(output.COLUMNS)) end
  for _, rec in ipairs(recs) do
    local r = result_of(rec)
    if csv then
      local cells = {}
      for i, k in ipairs(output.COLUMNS) do cells[i] = r[k] end
      f:write(csv.line(cells, #output.COLUMNS))
    else
      f:write(digest.canonical(r), "\n")
    end
  end
  f:close()
  local moved, why = os.rename(tmp, path)
  if not moved then deps.fail(deps.USAGE, "--out: " .. tostring(why)) end
end

--- A card (or notification) as one line of JSON on stdout, keys sorted, its PAN masked.
function output.card(card)
  local shown = {}
  for k, v in pairs(card) do shown[k] = v end
  shown.card_pan = progress.mask_pan(shown.card_pan)
  io.stdout:write(digest.canonical(shown), "\n")
  io.stdout:flush()
end

return output
