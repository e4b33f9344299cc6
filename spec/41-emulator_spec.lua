-- The local emulator as a tool (issue 10 item 11): `bin/pagsmile-issuing emulator`, run as a
-- user runs it (a separate process, this runtime's interpreter, real nginx on loopback).
local issuing = require "pagsmile.issuing"
local core = require "pagsmile.issuing.core"
local launch = require "sandbox.launch"
local nginx = require "sandbox.nginx"
local socket = require "socket"
local helpers = require "helpers"

local INTERP = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d%.%d"))

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Starts the command in the background; returns { pid, out, err, dir } once it printed its
-- banner, or once it exited (then `exited` is true). opts: env ("NAME=value ..."), cwd,
-- cmd (default: this runtime's interpreter on bin/pagsmile-issuing), rc (append "rc=N" to
-- stderr once it exits; the pid is then a shell's).
local function start_cmd(args, opts)
  opts = opts or {}
  local dir = helpers.tmpdir()
  local run = ("cd %s && %s env %s %s %s"):format(q(opts.cwd or nginx.repo_root()),
    opts.rc and "" or "exec", opts.env or "", opts.cmd or (INTERP .. " bin/pagsmile-issuing"), args)
  if opts.rc then run = run .. "; echo \"rc=$?\" >&2" end
  local p = io.popen(("(%s) >%s/out 2>%s/err & echo $!"):format(run, dir, dir))
  local pid = tonumber(p:read("*l"))
  p:close()
  local r = { pid = pid, dir = dir }
  helpers.wait_for(function()
    r.out = helpers.read_file(dir .. "/out") or ""
    if r.out:find("error log", 1, true) then return true end
    if not nginx.alive(pid) then r.exited = true return true end
  end, 30)
  r.out = helpers.read_file(dir .. "/out") or ""
  r.err = helpers.read_file(dir .. "/err") or ""
  r.url = r.out:match("base_url%s+(%S+)")
  r.control = r.out:match("control%s+(%S+)")
  r.nginx_pid = tonumber(r.out:match("nginx pid (%d+)"))
  return r
end

-- Ends the command as a kill would, and waits until its nginx is gone (the watchdog).
local function stop_cmd(r)
  if r.pid then os.execute("kill -TERM " .. r.pid .. " 2>/dev/null") end
  if r.nginx_pid then
    assert.truthy(helpers.wait_for(function() return not nginx.alive(r.nginx_pid) end, 10),
                  "nginx outlived the command")
  end
  os.execute("rm -rf " .. q(r.dir))
end

local function exit_status(r)
  helpers.wait_for(function() return not nginx.alive(r.pid) end, 10)
  r.err = helpers.read_file(r.dir .. "/err") or ""
  return r.err
end

local function control(url, method, body)
  body = body and assert(core.json_encode(body)) or ""
  local code, got = helpers.http(method, url, body, { ["Content-Type"] = "application/json" })
  return code, core.json_decode(got)
end

local function client_for(r, merchant_private_pem, keys_dir)
  return assert(issuing.new{
    base_url = r.url, app_id = "sandbox-app", partner_id = "sandbox-partner",
    platform_public_key = helpers.read_file(keys_dir .. "/platform_public.pem"),
    merchant_private_key = merchant_private_pem or helpers.read_file(keys_dir .. "/merchant_private.pem"),
    ca_file = r.out:match("ca_file%s+(%S+)"),
    timeout = 5,
  })
end

describe("issue 10 item 11: the local emulator command", function()
  it("--keys DIR makes the keys once (private files 0600); a restart reuses them", function()
    local dir = helpers.tmpdir()
    local keys = dir .. "/emulator keys" -- a space: paths are quoted
    local port = nginx.free_port()
    local r = start_cmd(("emulator --port %d --keys %s"):format(port, q(keys)))
    assert.is_nil(r.exited, r.err)
    local before = {}
    for _, f in ipairs{ "platform_private", "platform_public", "merchant_private", "merchant_public" } do
      before[f] = assert(helpers.read_file(keys .. "/" .. f .. ".pem"), f)
    end
    local modes = helpers.sh("stat -c '%n %a' " .. q(keys) .. "/*_private.pem " .. q(keys))
    assert.equal(2, select(2, modes:gsub(" 600\n", "")), modes)
    assert.matches(" 700\n", modes)
    local client = client_for(r, nil, keys)
    assert(client:apply_card(helpers.biz()))
    stop_cmd(r)

    -- The same client, made before the restart, works with the restarted emulator.
    r = start_cmd(("sandbox --port %d --keys %s"):format(port, q(keys)))
    assert.is_nil(r.exited, r.err)
    for f, text in pairs(before) do assert.equal(text, helpers.read_file(keys .. "/" .. f .. ".pem"), f) end
    local card, err = client:apply_card(helpers.biz())
    assert.is_nil(err)
    assert.equal(issuing.ORDER_STATUS.COMPLETED or 5, card.order_status)
    client:close()
    stop_cmd(r)
    os.execute("rm -rf " .. q(dir))
  end)

  it("a half key pair in DIR is a one-line error, not new keys", function()
    local dir = helpers.tmpdir()
    local priv = core.keygen()
    helpers.write_file(dir .. "/platform_private.pem", priv)
    local r = start_cmd("emulator --port 0 --keys " .. q(dir))
    local err = exit_status(r)
    assert.truthy(r.exited)
    assert.matches("^pagsmile%-issuing: [^\n]*platform_private%.pem but not platform_public%.pem[^\n]*\n$", err)
    os.execute("rm -rf " .. q(dir) .. " " .. q(r.dir))
  end)

  it("a port in use is one line on stderr and exit status 1, no stack trace", function()
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    local r = start_cmd("emulator --port " .. port, { rc = true })
    s:close()
    local err = exit_status(r)
    assert.matches("^pagsmile%-issuing: port " .. port .. " on 127%.0%.0%.1 is in use[^\n]*\nrc=1\n$", err)
    assert.is_nil(err:find("traceback", 1, true))
    os.execute("rm -rf " .. q(r.dir))
  end)

  it("without nginx on PATH: one line naming the Debian packages", function()
    -- PATH without the directories that hold nginx.
    local kept = {}
    for d in os.getenv("PATH"):gmatch("[^:]+") do
      local f = io.open(d .. "/nginx", "rb")
      if f then f:close() else kept[#kept + 1] = d end
    end
    local interp = helpers.sh("command -v " .. INTERP):gsub("%s+$", "")
    local r = start_cmd("emulator --port 0", { rc = true, env = "PATH=" .. q(table.concat(kept, ":")),
                                               cmd = interp .. " bin/pagsmile-issuing" })
    local err = exit_status(r)
    assert.matches("^pagsmile%-issuing: nginx is not installed[^\n]*apt%-get install nginx "
                   .. "libnginx%-mod%-http%-lua%)\nrc=1\n$", err)
    os.execute("rm -rf " .. q(r.dir))
  end)

  it("seals answers for a merchant public key registered by flag or by control call", function()
    local dir = helpers.tmpdir()
    local mine = helpers.keypair("registered by flag")
    helpers.write_file(dir .. "/mine.pem", mine.public_pem)
    local r = start_cmd("emulator --port 0 --keys " .. q(dir .. "/keys") .. " --merchant-public-key "
                        .. q(dir .. "/mine.pem"))
    assert.is_nil(r.exited, r.err)
    assert.matches("registered from", r.out)
    local ok_client = client_for(r, mine.private_pem, dir .. "/keys")
    assert(ok_client:apply_card(helpers.biz()))
    -- The emulator's own merchant key no longer opens its answers.
    local old_client = client_for(r, nil, dir .. "/keys")
    local card, err = old_client:apply_card(helpers.biz())
    assert.is_nil(card)
    assert.truthy(err)

    -- "keygen, paste into the dashboard": the Base64 form, by control call.
    local pasted = helpers.keypair("pasted")
    local code, answer = control(r.control .. "merchant-key", "POST", { public_key = pasted.public_b64 })
    assert.equal(200, code)
    assert.is_true(answer.registered)
    local pasted_client = client_for(r, pasted.private_pem, dir .. "/keys")
    assert(pasted_client:apply_card(helpers.biz()))
    code = control(r.control .. "merchant-key", "POST", { public_key = "not a key" })
    assert.equal(400, code)
    -- false goes back to the emulator's own key
    control(r.control .. "merchant-key", "POST", { public_key = false })
    assert(old_client:apply_card(helpers.biz()))
    for _, c in ipairs{ ok_client, old_client, pasted_client } do c:close() end
    stop_cmd(r)
    os.execute("rm -rf " .. q(dir))
  end)

  it("--tls serves HTTPS; with --keys the CA is kept across restarts", function()
    local dir = helpers.tmpdir()
    local r = start_cmd("emulator --port 0 --tls --keys " .. q(dir))
    assert.is_nil(r.exited, r.err)
    assert.matches("^https://", r.url)
    local ca = r.out:match("ca_file%s+(%S+)")
    local ca_text = assert(helpers.read_file(ca))
    local client = client_for(r, nil, dir)
    assert(client:apply_card(helpers.biz()))
    client:close()
    stop_cmd(r)
    r = start_cmd("emulator --port 0 --tls --keys " .. q(dir))
    assert.is_nil(r.exited, r.err)
    assert.equal(ca_text, helpers.read_file(r.out:match("ca_file%s+(%S+)")))
    stop_cmd(r)
    os.execute("rm -rf " .. q(dir))
  end)
end)

local start_receiver = require("support.receiver").start

describe("issue 10 item 11: pending orders complete by time and fire the callback", function()
  local receiver
  lazy_setup(function() receiver = start_receiver() end)
  lazy_teardown(function() if receiver then receiver.stop() end end)

  it("--complete-after: processing at apply, completed later with no query, callback sent", function()
    local dir = helpers.tmpdir()
    local r = start_cmd(("emulator --port 0 --keys %s --complete-after 1 --callback-url %s")
                        :format(q(dir), receiver.url .. "/callback"))
    assert.is_nil(r.exited, r.err)
    local client = client_for(r, nil, dir)
    local biz = helpers.biz()
    local card = assert(client:apply_card(biz))
    assert.equal(3, card.order_status)
    local raw = receiver.next_callback(10)
    assert.truthy(raw, "no callback arrived")
    local note = assert(client:parse_notification(raw))
    assert.equal(biz.order_no, note.order_no)
    assert.equal(5, note.order_status)
    assert.matches("^658704", note.card_pan)
    local code, orders = control(r.control .. "orders", "GET")
    assert.equal(200, code)
    assert.equal(0, orders[biz.order_no].queries) -- nobody asked: it completed by time
    client:close()
    stop_cmd(r)
    os.execute("rm -rf " .. q(dir))
  end)

  it("per order: pending(order_no, 0, seconds) and complete(order_no) from the control API", function()
    local sb = launch.start{ callback_url = receiver.url .. "/callback" }
    local client = assert(issuing.new(sb:client_options()))
    local timed, held = helpers.biz(), helpers.biz()
    assert(sb:pending(timed.order_no, 0, 0.5))
    assert(sb:pending(held.order_no, 1000))
    assert.equal(3, assert(client:apply_card(timed)).order_status)
    assert.equal(3, assert(client:apply_card(held)).order_status)
    local note = assert(client:parse_notification(assert(receiver.next_callback(10), "no callback")))
    assert.equal(timed.order_no, note.order_no)
    local answer = assert(sb:complete(held.order_no))
    assert.equal(5, answer.order_status)
    note = assert(client:parse_notification(assert(receiver.next_callback(10), "no callback")))
    assert.equal(held.order_no, note.order_no)
    assert.equal(5, assert(client:query_apply_result(held.order_no)).order_status)
    local missing, err = sb:complete("no-such-order")
    assert.is_nil(missing)
    assert.matches("404", err)
    client:close()
    sb:stop()
  end)
end)

describe("issue 10 item 11: finding the library for nginx's LuaJIT", function()
  -- A luarocks tree's layout, made by hand; a Lua 5.4 process looks for the 5.1 build.
  it("takes the Lua 5.1 build beside a 5.4 install, and says how to get one when it is absent", function()
    local tree = helpers.tmpdir()
    local function sh_ok(cmd, ...) assert.is_true(select(2, helpers.sh(cmd:format(...))), cmd) end
    sh_ok("mkdir -p %s/share/lua/5.4/pagsmile/issuing %s/lib/lua/5.4/pagsmile/issuing", tree, tree)
    sh_ok("cp -r lua/pagsmile/* %s/share/lua/5.4/pagsmile/", tree)
    sh_ok("cp -r lua/pagsmile_emulator %s/share/lua/5.4/", tree) -- the emulator's own tree
    sh_ok("cp build/5.4/pagsmile/issuing/core.so %s/lib/lua/5.4/pagsmile/issuing/", tree)
    local probe = ("cd / && LUA_PATH=%s LUA_CPATH=%s lua5.4 -e 'print(require(\"pagsmile_emulator.nginx\")"
      .. ".library_dirs())'"):format(q(tree .. "/share/lua/5.4/?.lua;;"), q(tree .. "/lib/lua/5.4/?.so;;"))
    local out = helpers.sh(probe)
    assert.matches("^nil\tthe local emulator runs in nginx's LuaJIT and needs pagsmile%-issuing built for "
                   .. "Lua 5%.1 too %(luarocks %-%-lua%-version=5%.1 install pagsmile%-issuing%)\n$", out)
    sh_ok("mkdir -p %s/lib/lua/5.1/pagsmile/issuing", tree)
    sh_ok("cp build/jit/pagsmile/issuing/core.so %s/lib/lua/5.1/pagsmile/issuing/", tree)
    out = helpers.sh(probe)
    assert.equal(tree .. "/share/lua/5.4\t" .. tree .. "/lib/lua/5.1\n", out)
    os.execute("rm -rf " .. q(tree))
  end)
end)

-- A user who installed the rock: plain `luarocks make` for Lua 5.1 (the build nginx's
-- LuaJIT loads) into a temporary tree, then the installed command, from /, starts it.
local version = _VERSION:match("^Lua (%d%.%d)$")
if version == "5.4" and not rawget(_G, "jit") then
  describe("issue 10 item 11: the rock #rock", function()
    it("installs bin/pagsmile-issuing, which starts the emulator from the tree alone", function()
      local dir = helpers.tmpdir()
      assert.is_true(select(2, helpers.sh(("cp -r rockspec lua src bin %q/"):format(dir))))
      local log, built = helpers.sh(("cd %q && luarocks --lua-version=5.1 --tree=%q/tree make "
        .. "> build.log 2>&1 && cat build.log || { cat build.log; false; }"):format(dir, dir))
      assert.is_true(built, log)
      local r = start_cmd("emulator --port 0", { cwd = "/", cmd = dir .. "/tree/bin/pagsmile-issuing" })
      assert.is_nil(r.exited, r.err)
      local code, settings = control(r.control .. "settings", "GET")
      assert.equal(200, code)
      assert.equal("table", type(settings))
      stop_cmd(r)
      os.execute("rm -rf " .. q(dir))
    end)
  end)
end

-- What a many-cards-at-once client is tested with (docs/SANDBOX.md "Faults", "Control API"):
-- random faults by seed, the in-flight gauge and the arrival times.
describe("the emulator under many requests at once", function()
  local envelope = require "pagsmile.issuing.envelope"
  local sb, sealer

  lazy_setup(function()
    sb = launch.start{}
    sealer = { app_id = sb.app_id, partner_id = sb.partner_id, version = "2.0",
               platform_key = assert(envelope.public_key(sb.platform_public_key)) }
  end)
  lazy_teardown(function() if sb then sb:stop() end end)
  before_each(function() assert(sb:reset()) end)

  local APPLY = "/issuing/card/apply"
  local QUERY = "/issuing/card/query-apply-card-result"

  -- One sealed request over its own connection, as the client would send it; what came
  -- back: "ok" (a JSON envelope), "closed" (no answer), "garbage" (200 and HTML) or the status.
  local function send(biz, path)
    local body = assert(envelope.request(sealer, biz, os.date("!%Y-%m-%d %H:%M:%S")))
    local code, got = helpers.http("POST", sb.url .. (path or APPLY), body,
                                   { ["Content-Type"] = "application/json" })
    if code == nil then return "closed" end
    if code == 200 then return got:find("^{") and "ok" or "garbage" end
    return tostring(code)
  end

  -- Applies n new orders one after another: their order_nos and what each one got.
  local function apply_many(n)
    local order_nos, got = {}, {}
    for i = 1, n do
      local biz = helpers.biz()
      order_nos[i], got[i] = biz.order_no, send(biz)
    end
    return order_nos, got
  end

  local function tally(list)
    local t = {}
    for _, v in ipairs(list) do t[v] = (t[v] or 0) + 1 end
    return t
  end

  local function stats() return assert(sb:stats()) end

  it("random_faults deals each kind as its scripted fault would, counted by kind", function()
    assert(sb:random_faults{ rate = 0.25, seed = 42 })
    local order_nos, got = apply_many(200)
    local dealt, faulted = stats().random_faults, 0
    for _, kind in ipairs{ "reset_before", "reset_after", "http_503", "garbage", "late" } do
      assert.is_true((dealt[kind] or 0) > 0, kind .. " was never dealt")
      faulted = faulted + dealt[kind]
    end
    local seen = tally(got)
    assert.equal(200 - faulted, seen.ok)
    assert.is_true(faulted >= 30 and faulted <= 70, "rate 0.25 of 200 dealt " .. faulted)
    assert.equal(dealt.reset_before + dealt.reset_after + dealt.late, seen.closed)
    assert.equal(dealt.http_503, seen["503"])
    assert.equal(dealt.garbage, seen.garbage)
    -- reset_before and http_503 come before processing; the others after (late: 500 ms later).
    local book, created
    helpers.wait_for(function()
      book, created = assert(sb:orders()), 0
      for _, order_no in ipairs(order_nos) do
        if book[order_no] then created = created + 1 end
      end
      return created == 200 - dealt.reset_before - dealt.http_503
    end)
    for i, order_no in ipairs(order_nos) do
      if got[i] == "ok" or got[i] == "garbage" then assert.truthy(book[order_no], order_no) end
      if got[i] == "503" then assert.is_nil(book[order_no], order_no) end
    end
    assert.equal(200 - dealt.reset_before - dealt.http_503, created)
  end)

  it("the same seed replays the same faults in the same request order; another seed does not", function()
    local function run(seed)
      assert(sb:reset())
      assert(sb:random_faults{ rate = 0.3, seed = seed, kinds = { "http_502", "garbage", "not_found" } })
      local _, got = apply_many(60)
      return table.concat(got, " ")
    end
    local first = run(42)
    assert.matches("502", first)
    assert.equal(first, run(42))
    assert.are_not.equal(first, run(43))
  end)

  it("scripted faults win over random ones; path limits them; false stops them", function()
    assert(sb:random_faults{ rate = 1, kinds = { "http_503" }, path = APPLY })
    assert(sb:faults{ { kind = "garbage", times = 2 } })
    local order_nos, got = apply_many(3)
    assert.same({ "garbage", "garbage", "503" }, got)
    assert.equal("ok", send({ order_no = order_nos[1] }, QUERY)) -- not the path it is limited to
    local biz = helpers.biz()
    assert(sb:faults{ { kind = "reset_after", order_no = biz.order_no } })
    assert.equal("closed", send(biz))
    assert.truthy(assert(sb:orders())[biz.order_no], "reset_after processes the apply")
    assert.same({ http_503 = 1 }, stats().random_faults)
    assert(sb:random_faults(false))
    assert.is_nil(assert(sb:settings{}).random_faults)
    assert.same({ "ok" }, select(2, apply_many(1)))
  end)

  it("refuses a random_faults setting it cannot follow, naming the part", function()
    for setting, part in pairs{
      [{ rate = 1.5 }] = "rate", [{ rate = 0.1, kinds = { "reset_befor" } }] = "unknown kind reset_befor",
      [{ rate = 0.1, kinds = {} }] = "kinds", [{ rate = 0.1, seed = 1.5 }] = "seed",
    } do
      local ok, err = sb:random_faults(setting)
      assert.is_nil(ok)
      assert.matches("400: random_faults%.[^\n]*" .. part:gsub("%p", "%%%0"), err)
    end
  end)

  it("counts requests in flight on every ending: an answer, a fault, a handler error", function()
    local faults = {}
    for _, kind in ipairs{ "reset_before", "http_503", "garbage", "reset_after", "late", "truncated",
                           "not_found", "wrong_key" } do
      faults[#faults + 1] = { kind = kind }
    end
    faults[#faults + 1] = { kind = "drip", ms = 200 }
    faults[#faults + 1] = { kind = "latency", ms = -1000 } -- ngx.sleep raises: a handler error
    assert(sb:faults(faults))
    for i = 1, #faults + 1 do
      send(helpers.biz())
      assert.truthy(helpers.wait_for(function() return stats().in_flight == 0 end, 5),
                    "request " .. i .. " (" .. (faults[i] and faults[i].kind or "none") .. ") left the gauge up")
    end
    assert.matches("invalid sleep duration", sb:error_log())
    socket.sleep(0.7) -- the late request's processing, in a timer, is no request in flight
    local s = stats()
    assert.equal(0, s.in_flight)
    assert.equal(1, s.max_in_flight)
  end)

  -- n requests that hang (latency_ms = 60000), each on its own connection.
  local function hang(n)
    assert(sb:settings{ latency_ms = 60000 })
    local conns = {}
    for i = 1, n do
      local c = assert(socket.tcp())
      assert(c:connect("127.0.0.1", sb.port))
      assert(c:send("GET " .. APPLY .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
      conns[i] = c
    end
    assert.truthy(helpers.wait_for(function() return stats().in_flight == n end, 10),
                  "the emulator does not see " .. n .. " requests in flight")
    return conns
  end

  it("answers control calls and new requests while 260 requests hang; reset zeroes the gauge", function()
    local conns = hang(260)
    local s = stats()
    assert.equal(260, s.max_in_flight)
    assert(sb:reset())
    s = stats()
    assert.equal(0, s.in_flight)
    assert.equal(0, s.max_in_flight)
    local client = assert(issuing.new(sb:client_options()))
    assert(client:apply_card(helpers.biz()))
    client:close()
    -- Still hanging: the answers above did not wait for them.
    for _, c in ipairs(conns) do
      c:settimeout(0)
      local _, err = c:receive(1)
      assert.equal("timeout", err)
      c:close()
    end
    assert.equal(1, stats().max_in_flight)
  end)

  it("a client that gives up ends its request: the gauge drops without the 60 s wait", function()
    local conns = hang(10)
    for _, c in ipairs(conns) do c:close() end
    assert.truthy(helpers.wait_for(function() return stats().in_flight == 0 end, 10),
                  "requests of closed connections are still in flight")
    assert.equal(10, stats().max_in_flight)
  end)

  it("GET /_sandbox/arrivals: each API request's arrival time, in order; reset forgets them", function()
    local t0 = socket.gettime()
    apply_many(5)
    helpers.http("GET", sb.url .. "/issuing/unknown")
    assert(sb:stats()) -- control calls are not API requests
    local t1 = socket.gettime()
    local arrivals = assert(sb:arrivals())
    assert.equal(6, #arrivals)
    for i, t in ipairs(arrivals) do
      assert.is_true(t >= t0 - 0.01 and t <= t1 + 0.01, "arrival " .. i .. " out of the run's time")
      if i > 1 then assert.is_true(t >= arrivals[i - 1], "arrival " .. i .. " before the one before") end
    end
    assert(sb:reset())
    assert.same({}, assert(sb:arrivals()))
  end)

  -- n API requests pipelined, 1,000 a connection (nginx's keepalive_requests).
  local function flood(n)
    local req = "GET /issuing/unknown HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    local last_req = req:gsub("\r\n\r\n$", "\r\nConnection: close\r\n\r\n")
    while n > 0 do
      local k = math.min(n, 1000)
      local c = assert(socket.tcp())
      assert(c:connect("127.0.0.1", sb.port))
      assert(c:send(req:rep(k - 1) .. last_req))
      assert(c:receive("*a"))
      c:close()
      n = n - k
    end
  end

  it("keeps the last 100,000 arrivals", function()
    flood(50)
    socket.sleep(1.1)
    local t0 = socket.gettime()
    flood(100000)
    local arrivals = assert(sb:arrivals())
    assert.equal(100000, #arrivals)
    assert.is_true(arrivals[1] >= t0 - 0.01, "an arrival of the first 50 was kept")
    for i = 2, #arrivals do
      if arrivals[i] < arrivals[i - 1] then error("arrival " .. i .. " before the one before") end
    end
  end)
end)
