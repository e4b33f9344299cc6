-- Does the OpenResty example block nginx? The sandbox answers every call after 200 ms; 50
-- concurrent POST /cards go to the example (examples/openresty) running as ONE nginx worker.
-- With cosockets the worker keeps serving while calls wait: the batch takes about one
-- latency. With libcurl each call blocks the worker: the requests are served one after
-- another, about 50 x 200 ms. Prints figures; asserts nothing about speed.
--   make bench   (or: tools/bench bench/openresty.lua; BENCH_N=50 BENCH_CURL_N=10)
local socket = require "socket"
local json = require "pagsmile.issuing.json"
local launch = require "sandbox.launch"
local shop_launch = require "examples.openresty.launch"
local helpers = require "helpers"

local LATENCY_MS = 200
local N = tonumber(os.getenv("BENCH_N")) or 50
-- libcurl serialises the batch: fewer requests, and the figure for N extrapolated from them.
local CURL_N = tonumber(os.getenv("BENCH_CURL_N")) or 10

local function request_text(port)
  local body = assert(json.encode(helpers.biz { card_limit = helpers.limits() }))
  return table.concat {
    "POST /cards HTTP/1.1\r\n", "Host: 127.0.0.1:", port, "\r\n",
    "Content-Type: application/json\r\n", "Content-Length: ", #body, "\r\n",
    "Connection: close\r\n\r\n", body,
  }
end

-- n requests at once over n connections, driven with socket.select. Returns the wall time
-- from the first byte sent to the last answer, each request's latency, and the statuses.
local function batch(port, n)
  local conns = {}
  for i = 1, n do
    local c = assert(socket.tcp())
    assert(c:connect("127.0.0.1", port))
    c:settimeout(0)
    conns[i] = { sock = c, out = request_text(port), parts = {} }
  end
  local start = socket.gettime()
  local pending, by_sock = {}, {}
  for _, c in ipairs(conns) do
    c.sent_at = socket.gettime()
    -- a few hundred bytes: one send each, even without blocking
    local last = 0
    repeat
      local sent, err, partial = c.sock:send(c.out, last + 1)
      last = sent or partial or last
      if err and err ~= "timeout" then error("send: " .. err) end
    until last >= #c.out
    pending[#pending + 1], by_sock[c.sock] = c.sock, c
  end
  local left = n
  while left > 0 do
    local readable = socket.select(pending, nil, 30)
    if #readable == 0 then error("no answer within 30 s") end
    for _, s in ipairs(readable) do
      local c = by_sock[s]
      local data, err, partial = s:receive(65536)
      local chunk = data or partial
      if chunk and chunk ~= "" then c.parts[#c.parts + 1] = chunk end
      if err == "closed" then
        c.done_at = socket.gettime()
        c.status = tonumber(table.concat(c.parts):match("^HTTP/1%.%d (%d%d%d)"))
        s:close()
        for i, p in ipairs(pending) do
          if p == s then table.remove(pending, i) break end
        end
        left = left - 1
      elseif err and err ~= "timeout" then
        error("receive: " .. err)
      end
    end
  end
  local latencies, statuses, last_done = {}, {}, start
  for i, c in ipairs(conns) do
    latencies[i] = c.done_at - c.sent_at
    statuses[c.status or 0] = (statuses[c.status or 0] or 0) + 1
    if c.done_at > last_done then last_done = c.done_at end
  end
  table.sort(latencies)
  return last_done - start, latencies, statuses
end

local function statuses_text(statuses)
  local parts = {}
  for code, n in pairs(statuses) do parts[#parts + 1] = n .. " x HTTP " .. code end
  table.sort(parts)
  return table.concat(parts, ", ")
end

local function report(label, port, n, sb)
  batch(port, 1) -- warm-up: the worker makes its client (keys parsed once) and a connection
  local conns = sb:stats().connections
  local wall, lat, statuses = batch(port, n)
  local median = n % 2 == 1 and lat[(n + 1) // 2] or (lat[n // 2] + lat[n // 2 + 1]) / 2
  print(("  %s: %d concurrent POST /cards"):format(label, n))
  print(("    %s; %.3f s in total"):format(statuses_text(statuses), wall))
  print(("    per request: min %.3f s, median %.3f s, max %.3f s"):format(lat[1], median, lat[n]))
  print(("    new upstream connections counted at the sandbox: %d"):format(sb:stats().connections - conns))
  return wall
end

local sb = launch.start {}
local shop, shop_curl
local ok, err = pcall(function()
  assert(sb:settings { latency_ms = LATENCY_MS })
  shop = shop_launch.start(sb)
  shop_curl = shop_launch.start(sb, { transport = "curl" })
  print(("OpenResty example, one nginx worker, the sandbox answering after %d ms"):format(LATENCY_MS))
  report("cosockets (the automatic choice)", shop.port, N, sb)
  report("cosockets again (the pool keeps 32 connections per worker)", shop.port, N, sb)
  local wall = report("libcurl (PAGSMILE_TRANSPORT=curl)", shop_curl.port, CURL_N, sb)
  if CURL_N ~= N then
    print(("    for %d requests: about %.1f s (extrapolated from %d: they run one after another)")
      :format(N, wall / CURL_N * N, CURL_N))
  end
end)
if shop then shop.stop() end
if shop_curl then shop_curl.stop() end
sb:stop()
if not ok then error(err, 0) end
