-- Reads what `busted -o json` wrote (its JSON report, on the last line that starts with
-- "{", after whatever the specs printed) and prints, for tools/run-specs: the specs' own
-- lines, each failure and error with its message, and last one line
--   COUNTS <successes> <failures> <errors> <pending>
-- or nothing of the kind when there is no report (busted did not finish).
local cjson = require "cjson.safe"

local lines = {}
for line in io.lines() do lines[#lines + 1] = line end
local report
for i = #lines, 1, -1 do
  if lines[i]:sub(1, 1) == "{" then
    report = cjson.decode(lines[i])
    if report then table.remove(lines, i) break end
  end
end
for _, line in ipairs(lines) do print(line) end
if type(report) ~= "table" then os.exit(0) end

local function show(title, list)
  for _, t in ipairs(list or {}) do
    local tr = t.trace or {}
    local where = tr.short_src and ("%s:%d"):format(tr.short_src, tonumber(tr.currentline) or 0) or "?"
    print(title .. " → " .. where)
    print(tostring(t.name))
    print(tostring(t.message))
  end
end
show("Failure", report.failures)
show("Error", report.errors)
for _, t in ipairs(report.pendings or {}) do print("Pending: " .. tostring(t.name)) end
print(("COUNTS %d %d %d %d"):format(#(report.successes or {}), #(report.failures or {}),
  #(report.errors or {}), #(report.pendings or {})))
