-- Many cards at once: client:apply_cards against the local emulator answering after 100 ms,
-- at concurrency 1, 8, 32, 64 and 128, in cards/s next to the ideal (concurrency / latency)
-- and to the CPU ceiling of this machine (the same batch with no latency at concurrency 32:
-- the most the client and the emulator manage together on its cores). Then an iterator of
-- rows with keep_results = false, most of them invalid, to show memory stays flat. Draws
-- build/bench/apply_cards.svg with gnuplot. Prints figures; asserts nothing about speed.
--   make bench   (or: tools/bench bench/apply_cards.lua)
--   BENCH_N=2000 applies a batch; BENCH_C1_N=200 at concurrency 1; BENCH_ROWS=100000 rows
--   for the iterator (1000000: the million-row run)
local issuing = require "pagsmile.issuing"
local launch = require "sandbox.launch"
local helpers = require "helpers"
local core = require "pagsmile.issuing.core"

local LATENCY_MS = 100
local CONCURRENCY = { 1, 8, 32, 64, 128 }
local CEILING_CONCURRENCY = 32
local N = tonumber(os.getenv("BENCH_N")) or 2000
local C1_N = tonumber(os.getenv("BENCH_C1_N")) or 200
local ROWS = tonumber(os.getenv("BENCH_ROWS")) or 100000
local ROWS_CONCURRENCY = 64
local VALID_EVERY = 50 -- one row in 50 is a valid apply; the others fail validation at once
local REPORT_EVERY = 20000
local PLOT_DIR = "build/bench"

do
  local probe = assert(issuing.new(helpers.settings()))
  local missing = type(probe.apply_cards) ~= "function"
  probe:close()
  if missing then
    io.stderr:write("bench/apply_cards.lua: client:apply_cards is missing: this tree has no "
                    .. "concurrent engine yet (issue 12); nothing measured\n")
    os.exit(1)
  end
end

local function rss_kb()
  local s = helpers.read_file("/proc/self/status")
  return s and tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local function heap_kb()
  collectgarbage("collect")
  return collectgarbage("count")
end

-- CPU seconds (user + system) of a process, from /proc/<pid>/stat.
local TICKS = tonumber((helpers.sh("getconf CLK_TCK"))) or 100
local function cpu_seconds(pid)
  local stat = helpers.read_file("/proc/" .. pid .. "/stat") or ""
  local fields = {}
  for f in stat:gsub("^.*%) ", ""):gmatch("%S+") do fields[#fields + 1] = f end
  return ((tonumber(fields[12]) or 0) + (tonumber(fields[13]) or 0)) / TICKS
end

local sb = launch.start {}
local client

-- One batch of n new orders at `concurrency`, the emulator answering after latency_ms:
-- cards/s and what it cost.
local function batch(n, concurrency, latency_ms)
  assert(sb:reset())
  assert(sb:settings { latency_ms = latency_ms })
  local list = {}
  for i = 1, n do list[i] = helpers.biz { card_limit = helpers.limits(), initial_balance = "50.00" } end
  local nginx_pid = sb.server.pid()
  local cpu0, nginx0, t0 = os.clock(), cpu_seconds(nginx_pid), core.monotime()
  local results = client:apply_cards(list, { concurrency = concurrency })
  local seconds = core.monotime() - t0
  local r = { n = n, concurrency = concurrency, seconds = seconds, cards = 0, errors = 0,
              client_cpu = (os.clock() - cpu0) / n, emulator_cpu = (cpu_seconds(nginx_pid) - nginx0) / n }
  for i = 1, n do
    local res = results[i]
    if res and res.card then
      r.cards = r.cards + 1
    else
      r.errors = r.errors + 1
      r.first_error = r.first_error or (res and tostring(res.err) or "no result " .. i)
    end
  end
  r.rate = r.cards / seconds
  r.max_in_flight = assert(sb:stats()).max_in_flight
  r.rss, r.heap = rss_kb(), heap_kb()
  return r
end

local function report_errors(r)
  if r.errors > 0 then print(("    %d errors; the first: %s"):format(r.errors, r.first_error)) end
end

-- The rows of the memory run: an iterator, one valid apply in VALID_EVERY, memory printed
-- every REPORT_EVERY rows.
local function rows_run()
  assert(sb:reset())
  assert(sb:settings { latency_ms = LATENCY_MS })
  local given, settled, cards, invalid, other = 0, 0, 0, 0, 0
  local function report(label)
    print(("  %-6s %8d rows   %8d settled   RSS %7d kB   Lua heap %7.0f kB")
      :format(label, given, settled, rss_kb(), heap_kb()))
  end
  local function rows()
    if given >= ROWS then return nil end
    given = given + 1
    if given % REPORT_EVERY == 0 then report("") end
    if given % VALID_EVERY == 0 then return helpers.biz() end
    return helpers.biz { card_type = 0 }
  end
  local function on_result(_, card, err)
    settled = settled + 1
    if card then cards = cards + 1
    elseif err.kind == "validation" then invalid = invalid + 1
    else other = other + 1 end
  end
  print(("iterator of %d rows (1 in %d valid), concurrency %d, keep_results = false, emulator latency %d ms")
    :format(ROWS, VALID_EVERY, ROWS_CONCURRENCY, LATENCY_MS))
  report("start")
  local t0 = core.monotime()
  client:apply_cards(rows, { concurrency = ROWS_CONCURRENCY, keep_results = false, on_result = on_result })
  local seconds = core.monotime() - t0
  report("end")
  print(("  %d settled in %.1f s: %d cards, %d validation errors, %d other errors")
    :format(settled, seconds, cards, invalid, other))
end

-- The SVG: cards/s against concurrency (log-log), the measured points, the ideal line, the
-- CPU ceiling.
local function plot(rows, ceiling)
  if not select(2, helpers.sh("command -v gnuplot")) then
    print("no plot: gnuplot is not installed (tools/deps bench installs it: gnuplot-nox); "
          .. "make bench then draws " .. PLOT_DIR .. "/apply_cards.svg")
    return
  end
  assert(select(2, helpers.sh("mkdir -p " .. PLOT_DIR)))
  local data, top = {}, ceiling.rate
  for _, r in ipairs(rows) do
    data[#data + 1] = ("%d %.2f"):format(r.concurrency, r.rate)
    top = math.max(top, r.rate)
  end
  helpers.write_file(PLOT_DIR .. "/apply_cards.dat", table.concat(data, "\n") .. "\n")
  local svg = PLOT_DIR .. "/apply_cards.svg"
  helpers.write_file(PLOT_DIR .. "/apply_cards.gp", table.concat({
    'set terminal svg size 900,600 dynamic noenhanced font "sans,13" background rgb "white"',
    ('set output "%s"'):format(svg),
    ('set title "client:apply_cards: %d applies a batch, the local emulator answering after %d ms"')
      :format(N, LATENCY_MS),
    'set xlabel "concurrency (orders in flight)"',
    'set ylabel "cards/s"',
    'set logscale xy',
    'set xrange [0.8:180]',
    ('set yrange [5:%.0f]'):format(top * 2),
    'set xtics (1, 8, 32, 64, 128)',
    'set grid',
    'set key below',
    ('ideal(x) = x * 1000.0 / %d'):format(LATENCY_MS),
    ('plot ideal(x) with lines dashtype 2 linewidth 2 title "ideal: concurrency / latency", \\'),
    ('  %.2f with lines linewidth 2 title "CPU ceiling: %.0f cards/s (latency 0, concurrency %d)", \\')
      :format(ceiling.rate, ceiling.rate, CEILING_CONCURRENCY),
    ('  "%s/apply_cards.dat" using 1:2 with linespoints pointtype 7 linewidth 2 title "measured", \\')
      :format(PLOT_DIR),
    ('  "%s/apply_cards.dat" using 1:2:(sprintf("%%.0f", $2)) with labels offset 0,1 notitle')
      :format(PLOT_DIR),
  }, "\n") .. "\n")
  local out, ok = helpers.sh("gnuplot " .. PLOT_DIR .. "/apply_cards.gp 2>&1")
  if ok then print("plot: " .. svg) else print("gnuplot failed: " .. out) end
end

local ok, err = pcall(function()
  client = assert(issuing.new(sb:client_options()))
  print(("client RSS at start: %d kB, Lua heap %.0f kB"):format(rss_kb(), heap_kb()))
  local ceiling = batch(N, CEILING_CONCURRENCY, 0)
  print(("CPU ceiling: %d applies, latency 0, concurrency %d: %.1f cards/s in %.2f s "
         .. "(CPU per apply: client %.2f ms, emulator %.2f ms; %d cores)")
    :format(N, CEILING_CONCURRENCY, ceiling.rate, ceiling.seconds, ceiling.client_cpu * 1e3,
            ceiling.emulator_cpu * 1e3, tonumber((helpers.sh("nproc"))) or 0))
  report_errors(ceiling)
  print(("batches against the emulator at latency %d ms (concurrency 1: %d applies, BENCH_C1_N; "
         .. "the others: %d, BENCH_N)"):format(LATENCY_MS, C1_N, N))
  print(("%11s %7s %8s %9s %8s %7s %8s %9s %10s %10s %9s %9s"):format("concurrency", "applies",
    "seconds", "cards/s", "ideal", "x ideal", "x ceil.", "in flight", "client CPU", "emul. CPU",
    "RSS kB", "heap kB"))
  local rows = {}
  for _, c in ipairs(CONCURRENCY) do
    local r = batch(c == 1 and C1_N or N, c, LATENCY_MS)
    local ideal = c * 1000 / LATENCY_MS
    print(("%11d %7d %8.2f %9.1f %8.1f %7.2f %8.2f %9d %7.2f ms %7.2f ms %9d %9.0f"):format(c, r.n,
      r.seconds, r.rate, ideal, r.rate / ideal, r.rate / ceiling.rate, r.max_in_flight,
      r.client_cpu * 1e3, r.emulator_cpu * 1e3, r.rss, r.heap))
    report_errors(r)
    rows[#rows + 1] = r
  end
  rows_run()
  print(("client RSS at end: %d kB, Lua heap %.0f kB"):format(rss_kb(), heap_kb()))
  plot(rows, ceiling)
  client:close()
end)
sb:stop()
assert(ok, err)
