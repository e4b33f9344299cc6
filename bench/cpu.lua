-- Client CPU per apply, whole process: a sequential run of N applies over real HTTP to the
-- local emulator, measured as this process's own CPU time (os.clock: user + system, the
-- emulator's nginx is another process) divided by N, next to the RSA floor an apply cannot
-- go below: one private-key op (the answer's random_key) and one public-key op (the
-- request's), from `openssl speed rsa2048`. Also the same apply with a transport that hands
-- back an answer recorded from the emulator (no HTTP), once at once and once after a 1 ms
-- pause (about the emulator's answer time): the pause alone shows what waiting for an answer
-- costs the next apply (cold caches after the process slept), with no HTTP in it.
-- Prints figures; asserts nothing about speed.
--   make bench   (or: tools/bench bench/cpu.lua; APPLIES=... for another count)
local core = require "pagsmile.issuing.core"
local issuing = require "pagsmile.issuing"
local launch = require "sandbox.launch"
local helpers = require "helpers"

local N = tonumber(os.getenv("APPLIES")) or 2000
local WARMUP = math.max(1, math.min(200, N // 10))

-- Seconds per private op and per public op, from openssl's machine-readable line
-- "+F2:<n>:2048:<private ops/s>:<public ops/s>".
local function rsa_floor()
  local p = io.popen("openssl speed -mr -seconds 2 rsa2048 2>/dev/null")
  local out = p:read("*a")
  p:close()
  local private_per_s, public_per_s = out:match("%+F2:%d+:2048:([%d.]+):([%d.]+)")
  if not private_per_s then return nil end
  return 1 / tonumber(private_per_s), 1 / tonumber(public_per_s)
end

-- CPU seconds (user, system) of this process so far, from /proc (clock ticks of 10 ms).
local function cpu_split()
  local stat = helpers.read_file("/proc/self/stat") or ""
  local utime, stime = stat:gsub("^.*%) ", ""):match("^%S+" .. string.rep(" %S+", 10) .. " (%d+) (%d+)")
  return (tonumber(utime) or 0) / 100, (tonumber(stime) or 0) / 100
end

-- Runs f n times; CPU seconds per call (os.clock), and the user/system split per call.
local function cpu_per_call(n, f)
  local u0, s0 = cpu_split()
  local c0 = os.clock()
  for i = 1, n do f(i) end
  local c1 = os.clock()
  local u1, s1 = cpu_split()
  return (c1 - c0) / n, (u1 - u0) / n, (s1 - s0) / n
end

local function us(s) return ("%8.1f µs"):format(s * 1e6) end

local sb = launch.start {}
local ok, err = pcall(function()
  local client = assert(issuing.new(sb:client_options()))
  local run = ("C%d-%d"):format(os.time(), math.random(1, 999999))
  local biz = helpers.biz { card_limit = helpers.limits(), initial_balance = "50.00" }
  local function apply(i)
    biz.order_no = run .. "-" .. i
    local card, e = client:apply_card(biz)
    if not card then error("apply " .. i .. ": " .. tostring(e)) end
  end
  for i = 1, WARMUP do apply(-i) end
  local t0 = os.time()
  local http_s, http_user, http_sys = cpu_per_call(N, apply)
  local wall = os.time() - t0

  -- The same apply, its request and answer recorded once from the emulator: the answer
  -- handed back as is (no HTTP), and the request sent again alone (HTTP only; the emulator
  -- refuses the repeated order_no, which costs the client nothing more).
  local http = require("pagsmile.issuing.transport.curl").new()
  local request, answer
  local function with_transport(t)
    local o = sb:client_options()
    o.transport = t
    return assert(issuing.new(o))
  end
  local c = with_transport { request = function(_, req)
    request = req
    answer = assert(http:request(req))
    return answer
  end }
  biz.order_no = run .. "-recorded"
  assert(c:apply_card(biz))
  c:close()
  local pause = 0
  c = with_transport { request = function()
    if pause > 0 then core.sleep(pause) end
    return answer
  end }
  for _ = 1, WARMUP do assert(c:apply_card(biz)) end
  local canned_s = cpu_per_call(N, function() assert(c:apply_card(biz)) end)
  pause = 0.001
  local paused_s = cpu_per_call(N, function() assert(c:apply_card(biz)) end)
  c:close()
  local http_only_s = cpu_per_call(N, function() assert(http:request(request)) end)
  http:close()
  client:close()

  local private_s, public_s = rsa_floor()
  print(("%d sequential applies over HTTP to the emulator (%d s wall, emulator in its own process)")
    :format(N, wall))
  print(("%-46s %s   (user %s, system %s)"):format("client CPU per apply, whole process", us(http_s),
    us(http_user), us(http_sys)))
  print(("%-46s %s"):format("client CPU per apply, recorded answer (no HTTP)", us(canned_s)))
  print(("%-46s %s"):format("recorded answer after a 1 ms pause (no HTTP)", us(paused_s)))
  print(("%-46s %s"):format("the difference: HTTP and waiting", us(http_s - canned_s)))
  print(("%-46s %s"):format("one HTTP exchange alone (transport:request)", us(http_only_s)))
  if private_s then
    local floor = private_s + public_s
    print(("%-46s %s   (private %s + public %s)"):format("RSA floor: openssl speed rsa2048", us(floor),
      us(private_s), us(public_s)))
    print(("whole process / RSA floor: %.2fx   recorded answer: %.2fx   after a pause: %.2fx")
      :format(http_s / floor, canned_s / floor, paused_s / floor))
  end
end)
sb:stop()
assert(ok, err)
