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
