-- The command line's bulk run next to the library's own batch, on the same load: ROWS rows
-- (default 2,000) against the local emulator answering after LATENCY_MS (default 100 ms), with
-- CONCURRENCY orders in flight (default 32). It prints rows/s for client:apply_cards (rows in
-- memory, nothing recorded) and for `pagsmile-issuing apply --file` (a CSV read and checked,
-- every row journaled before it is sent and after it settles, the results file written), as a
-- process, start to exit. Figures only: nothing is asserted.
--   make bench  (or: tools/bench bench/cli.lua; ROWS=200 tools/bench bench/cli.lua)
local issuing = require "pagsmile.issuing"
local launch = require "sandbox.launch"
local socket = require "socket"
local helpers = require "helpers"
local kit = require "cli_kit"

local ROWS = tonumber(os.getenv("ROWS")) or 2000
local LATENCY_MS = tonumber(os.getenv("LATENCY_MS")) or 100
local CONCURRENCY = tonumber(os.getenv("CONCURRENCY")) or 32

local sb = launch.start { latency_ms = LATENCY_MS }
local dir = helpers.tmpdir()
local ok, err = pcall(function()
  -- The library: the same rows as biz_data tables, order_nos of its own.
  local client = assert(issuing.new(sb:client_options()))
  local list = {}
  for i = 1, ROWS do list[i] = helpers.biz { order_no = "BENCH-LIB-" .. i } end
  local done = 0
  local t0 = socket.gettime()
  client:apply_cards(list, { concurrency = CONCURRENCY, keep_results = false,
    on_result = function(_, card) if card then done = done + 1 end end })
  local lib_s = socket.gettime() - t0
  client:close()
  assert(done == ROWS, ("apply_cards issued %d of %d cards"):format(done, ROWS))

  -- The command, as a process.
  assert(sb:reset())
  assert(sb:settings { latency_ms = LATENCY_MS })
  local file = dir .. "/bench.csv"
  kit.csv(file, ROWS, nil, function(i, row) if row.order_no ~= "" then row.order_no = "BENCH-" .. i end end)
  t0 = socket.gettime()
  local r = kit.run(("apply --file %s --journal %s --order-prefix BENCH --concurrency %d --quiet --out %s")
    :format(kit.q(file), kit.q(dir .. "/bench.journal"), CONCURRENCY, kit.q(dir .. "/out.csv")),
    kit.env(sb))
  local cli_s = socket.gettime() - t0
  assert(r.code == 0, "the command exited " .. tostring(r.code) .. ": " .. r.err)

  print(("%d rows, %d ms latency, concurrency %d"):format(ROWS, LATENCY_MS, CONCURRENCY))
  print(("  client:apply_cards           %7.1f rows/s  (%.2f s)"):format(ROWS / lib_s, lib_s))
  print(("  pagsmile-issuing apply --file %6.1f rows/s  (%.2f s, %.0f%% of apply_cards)"):format(
    ROWS / cli_s, cli_s, 100 * lib_s / cli_s))
end)
sb:stop()
os.execute("rm -rf " .. kit.q(dir))
if not ok then error(err, 0) end
