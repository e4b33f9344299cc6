-- Memory over a long life (issue #5): 10,000 applies on one client must leave resident
-- memory flat. Prints this process's RSS and the sandbox nginx's at the start, after the
-- 1,000-apply warm-up, every 2,000 applies and at the end, with the time per apply.
--   make bench   (or: tools/bench bench/memory.lua; APPLIES=... for another count)
local issuing = require "pagsmile.issuing"
local launch = require "sandbox.launch"
local helpers = require "helpers"
local core = require "pagsmile.issuing.core"

local N = tonumber(os.getenv("APPLIES")) or 10000
local WARMUP = math.min(1000, N)

local function rss_kb(pid)
  local s = helpers.read_file("/proc/" .. (pid or "self") .. "/status")
  return s and tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local sb = launch.start {}
local ok, err = pcall(function()
  local client = assert(issuing.new(sb:client_options()))
  local nginx_pid = sb.server.pid()
  local run = ("M%d-%d"):format(os.time(), math.random(1, 999999))

  local rows = {}
  local function row(label, done, seconds_per_apply)
    collectgarbage("collect")
    rows[#rows + 1] = { label = label, done = done, rss = rss_kb(), nginx = rss_kb(nginx_pid),
                        lua = collectgarbage("count"), per = seconds_per_apply }
    local r = rows[#rows]
    print(("%-10s %6d applies   client RSS %7d kB   Lua heap %7.0f kB   sandbox nginx RSS %7d kB%s")
      :format(label, done, r.rss, r.lua, r.nginx,
              r.per and ("   %.2f ms/apply"):format(r.per * 1e3) or ""))
  end

  local biz = helpers.biz { card_limit = helpers.limits(), initial_balance = "50.00" }
  local done, t0 = 0, core.monotime()
  local function apply_until(target)
    local t = core.monotime()
    local start = done
    while done < target do
      done = done + 1
      biz.order_no = run .. "-" .. done
      local card, e = client:apply_card(biz)
      if not card then error("apply " .. done .. ": " .. tostring(e)) end
    end
    return (core.monotime() - t) / math.max(1, done - start)
  end

  row("start", 0)
  row("warm-up", WARMUP, apply_until(WARMUP))
  local warm = rows[#rows]
  while done < N do
    local per = apply_until(math.min(N, done + 2000))
    row(done < N and "" or "end", done, per)
  end
  local last = rows[#rows]
  local total = core.monotime() - t0
  print(("%d applies in %.1f s (%.2f ms/apply over loopback, sandbox included)")
    :format(N, total, total / N * 1e3))
  print(("client RSS after warm-up → end: %+d kB (%+.1f%%); Lua heap %+.0f kB; sandbox nginx %+d kB")
    :format(last.rss - warm.rss, (last.rss - warm.rss) / warm.rss * 100, last.lua - warm.lua,
            last.nginx - warm.nginx))
  client:close()
end)
sb:stop()
assert(ok, err)
