-- The first hour of a new user (issue 10 items 4, 5 and part of 7): key files, settings of
-- the wrong type, timeouts that do what they say, and the README's quick start run as pasted
-- against a freshly started local emulator.
local issuing = require "pagsmile.issuing"
local core = require "pagsmile.issuing.core"
local launch = require "sandbox.launch"
local helpers = require "helpers"

local base, refused = helpers.settings, helpers.refused_setting

describe("issue 10 item 7: a setting of the wrong type #core", function()
  it("app_id = 12345 says 'must be a string', not 'required'", function()
    local err = refused({ app_id = 12345 }, "app_id", "must be a string")
    assert.is_nil(err.message:find("required", 1, true))
  end)

  it("every setting given a value of the wrong type says what type it must be", function()
    local wrong = {
      app_id = 12345, partner_id = true, sub_partner_id = 7,
      platform_public_key = 1, merchant_private_key = {},
      platform_public_key_file = 2, merchant_private_key_file = false,
      base_url = 443, timeout = "30", connect_timeout = "5", max_retries = "2",
      utc_offset = 8, version = 2, transport = 1, ca_file = 1, proxy = {},
      user_agent = 5, log = "print",
    }
    for name, value in pairs(wrong) do
      local over = { [name] = value }
      -- a key's _file form replaces the key itself
      if name:find("_file$") then over[name:gsub("_file$", "")] = helpers.NIL end
      local err = refused(over, name)
      assert.matches("must be a", err.message, 1, true)
      assert.is_nil(err.message:find("required", 1, true), name .. ": " .. err.message)
    end
  end)

  it("a missing or blank app_id is still 'required'", function()
    refused({ app_id = helpers.NIL }, "app_id", "required")
    refused({ app_id = " " }, "app_id", "required")
  end)
end)

describe("issue 10 item 4: key files #core", function()
  local dir
  lazy_setup(function() dir = helpers.tmpdir("keyfiles") end)
  lazy_teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  local function file(name, text)
    local path = dir .. "/" .. name
    helpers.write_file(path, text)
    return path
  end

  it("platform_public_key_file and merchant_private_key_file are read at issuing.new", function()
    local client = assert(issuing.new(base {
      platform_public_key = helpers.NIL, merchant_private_key = helpers.NIL,
      platform_public_key_file = file("platform_public.pem", helpers.keypair("platform").public_pem),
      merchant_private_key_file = file("merchant_private.pem", helpers.keypair("merchant").private_pem),
    }))
    client:close()
  end)

  it("an unreadable key file is a config error naming the setting", function()
    refused({ platform_public_key = helpers.NIL, platform_public_key_file = dir .. "/nope.pem" },
      "platform_public_key_file", "cannot be read")
    refused({ merchant_private_key = helpers.NIL, merchant_private_key_file = dir },
      "merchant_private_key_file", "cannot be read")
  end)

  it("a key file with the wrong key names the setting and never echoes the contents", function()
    local pem = helpers.keypair("merchant").private_pem
    local err = refused({ platform_public_key = helpers.NIL,
                          platform_public_key_file = file("swapped.pem", pem) },
      "platform_public_key_file", "private key")
    assert.is_nil(tostring(err):find(helpers.pem_body(pem):sub(40, 70), 1, true))
    err = refused({ merchant_private_key = helpers.NIL,
                    merchant_private_key_file = file("garbage.key", "not a key at all\n") },
      "merchant_private_key_file")
    assert.is_nil(tostring(err):find("not a key at all", 1, true))
  end)

  it("key contents given as a _file setting are not echoed as a file name", function()
    local pem = helpers.keypair("merchant").private_pem
    local err = refused({ merchant_private_key = helpers.NIL, merchant_private_key_file = pem },
      "merchant_private_key_file", "use merchant_private_key")
    assert.is_nil(tostring(err):find(helpers.pem_body(pem):sub(40, 70), 1, true))
  end)

  it("a key and its _file together are refused", function()
    refused({ platform_public_key_file = file("p.pem", helpers.keypair("platform").public_pem) },
      "platform_public_key_file", "not both")
  end)

  it("a key setting that looks like a file path says to use the _file setting", function()
    for _, path in ipairs { "/etc/pagsmile/platform_public.pem", "./platform.pem",
                            "~/keys/platform", "keys/platform_public.pem", "platform.key" } do
      refused({ platform_public_key = path }, "platform_public_key",
        "looks like a file path: use platform_public_key_file")
    end
    refused({ merchant_private_key = "merchant_private.pem" }, "merchant_private_key",
      "looks like a file path: use merchant_private_key_file")
  end)

  it("with neither the key nor its file, both are named", function()
    refused({ platform_public_key = helpers.NIL }, "platform_public_key",
      "required.*platform_public_key_file")
  end)
end)

describe("issue 10 item 5: timeouts #core", function()
  it("timeout = 2 alone is no config error: connect_timeout defaults to at most timeout", function()
    local client = assert(issuing.new(base { timeout = 2 }))
    assert.equal(2, client.o.connect_timeout)
    client:close()
    client = assert(issuing.new(base { timeout = 10 }))
    assert.equal(5, client.o.connect_timeout)
    client:close()
  end)

  it("an explicit connect_timeout above timeout is still refused", function()
    refused({ timeout = 2, connect_timeout = 3 }, "connect_timeout", "must not exceed timeout")
  end)
end)

describe("issue 10 item 5: waiting", function()
  local sb, client

  lazy_setup(function() sb, client = helpers.start_client() end)
  lazy_teardown(function() helpers.stop_client(sb, client) end)

  it("apply_card_and_wait(biz, {timeout = 2}) polls until the deadline, at least once", function()
    local biz = helpers.biz()
    sb:pending(biz.order_no, 1000)
    local t0 = core.monotime()
    local card, err = client:apply_card_and_wait(biz, { timeout = 2 })
    local elapsed = core.monotime() - t0
    assert.is_nil(card)
    assert.equal("timeout", err.kind)
    assert.equal("processing", err.card.status)
    assert.is_true(sb:orders()[biz.order_no].queries >= 1)
    -- it waited out its deadline (not 0.01 s), and not much past it
    assert.is_true(elapsed >= 1.8 and elapsed < 4, ("took %.2f s"):format(elapsed))
  end)

  it("the last pause shrinks to fit: a long interval still ends in a query", function()
    local biz = helpers.biz()
    sb:pending(biz.order_no, 2) -- its second query completes it
    local card = assert(client:apply_card_and_wait(biz, { timeout = 3, interval = 10 }))
    assert.is_true(card.completed)
    assert.equal(2, sb:orders()[biz.order_no].queries)
  end)

  it("a misspelt wait option is a config error, and nothing is sent", function()
    for _, wait in ipairs { { timout = 2 }, { on_updte = print }, { interval = 1, [1] = 2 } } do
      local biz = helpers.biz()
      local card, err = client:apply_card_and_wait(biz, wait)
      assert.is_nil(card)
      assert.equal("config", err.kind)
      assert.matches("is not an option of apply_card_and_wait", err.message)
      assert.is_nil(sb:orders()[biz.order_no])
    end
    local _, err = client:apply_card_and_wait(helpers.biz(), { timout = 2 })
    assert.equal("timout", err.field)
  end)

  it("a wait option of the wrong value raises, as a programming error (spec 06)", function()
    for _, wait in ipairs { { timeout = -1 }, { interval = "2" }, { on_update = true } } do
      assert.has_error(function() client:apply_card_and_wait(helpers.biz(), wait) end)
      assert.has_error(function() client:wait_apply_result("ORD-1", wait) end)
    end
  end)

  it("wait_apply_result follows an order that already exists, without applying again", function()
    local biz = helpers.biz()
    sb:pending(biz.order_no, 3)
    local card = assert(client:apply_card(biz))
    assert.is_false(card.completed)
    local seen = {}
    card = assert(client:wait_apply_result(biz.order_no, {
      timeout = 20, interval = 0.05, on_update = function(c) seen[#seen + 1] = c.status end,
    }))
    assert.is_true(card.completed)
    assert.same({ "processing", "processing", "completed" }, seen)
    local order = sb:orders()[biz.order_no]
    assert.equal(1, order.applies)
    assert.equal(3, order.queries)
  end)

  it("wait_apply_result of a completed order queries once", function()
    local biz = helpers.biz()
    assert(client:apply_card(biz))
    local card = assert(client:wait_apply_result(biz.order_no))
    assert.is_true(card.completed)
    assert.equal(1, sb:orders()[biz.order_no].queries)
  end)

  it("wait_apply_result of an unknown order returns the platform's refusal at once", function()
    local t0 = core.monotime()
    local card, err = client:wait_apply_result(helpers.order_no("NONE"), { timeout = 20 })
    assert.is_nil(card)
    assert.equal("api", err.kind)
    assert.is_true(core.monotime() - t0 < 10)
  end)

  it("wait_apply_result times out with the last card, and checks its options", function()
    local biz = helpers.biz()
    sb:pending(biz.order_no, 1000)
    assert(client:apply_card(biz))
    local card, err = client:wait_apply_result(biz.order_no, { timeout = 0.5, interval = 0.1 })
    assert.is_nil(card)
    assert.equal("timeout", err.kind)
    assert.equal("processing", err.card.status)
    local _, cerr = client:wait_apply_result(biz.order_no, { intervall = 1 })
    assert.equal("config", cerr.kind)
    assert.matches("is not an option of wait_apply_result", cerr.message)
    local _, verr = client:wait_apply_result("bad order no!")
    assert.equal("validation", verr.kind)
  end)
end)

-- The README's quick start, run as a user runs it: `make sandbox` (tools/sandbox: the
-- emulator command with its default key dir), then the README's `export` lines, then its
-- code block verbatim, on the interpreter running this spec. Only the port and the key dir
-- differ from the user's (a free port, a temporary dir), swapped into the export lines.
describe("issue 10 item 4: the README quick start runs as pasted", function()
  local MARKER = "<!-- quickstart"
  local PORT, KEYS = "127.0.0.1:8090", "build/emulator-keys"

  local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

  local function readme()
    local text = assert(helpers.read_file("README.md"))
    local at = assert(text:find(MARKER, 1, true), "README.md has no quickstart marker")
    local code = assert(text:match("```lua\n(.-)\n```", at), "no ```lua block after the marker")
    local section = text:sub(assert(text:find("## A complete example", 1, true)), at)
    local exports = {}
    for line in section:gmatch("[^\n]+") do
      if line:find("^export PAGSMILE_") then exports[#exports + 1] = line end
    end
    return code, table.concat(exports, "\n"), text
  end

  -- The interpreter running this spec (busted's; the ASan build's under --asan).
  local function interpreter()
    local exe = helpers.sh("readlink /proc/$PPID/exe")
    return (assert(exe:match("^(%S+)"), "cannot find the running interpreter"))
  end

  local emu, dir
  lazy_setup(function()
    dir = helpers.tmpdir("quickstart")
    local port = helpers.free_port()
    local p = io.popen(("PORT=%d KEYS=%s tools/sandbox >%s 2>&1 & echo $!")
      :format(port, q(dir .. "/keys"), q(dir .. "/emulator.out")))
    emu = { pid = tonumber(p:read("*l")), port = port }
    p:close()
    emu.banner = helpers.wait_for(function()
      local out = helpers.read_file(dir .. "/emulator.out") or ""
      if out:find("error log", 1, true) then return out end
    end, 30)
    assert(emu.banner, "make sandbox did not start: " .. tostring(helpers.read_file(dir .. "/emulator.out")))
    emu.control = assert(emu.banner:match("control%s+(%S+)"))
  end)
  lazy_teardown(function()
    if emu and emu.pid then
      os.execute("kill -INT " .. emu.pid .. " 2>/dev/null")
      helpers.wait_for(function() return not helpers.alive(emu.pid) end, 10)
    end
    if dir then os.execute("rm -rf " .. q(dir)) end
  end)

  local function control(path, body)
    local code, got = helpers.http("POST", emu.control .. path, body, { ["Content-Type"] = "application/json" })
    assert(code == 200, path .. ": " .. tostring(code) .. " " .. got)
    return core.json_decode(got)
  end

  local function orders()
    local code, got = helpers.http("GET", emu.control .. "orders")
    assert.equal(200, code)
    return core.json_decode(got)
  end

  local function run()
    local code, exports = readme()
    local file = dir .. "/quickstart.lua"
    helpers.write_file(file, code .. "\n")
    local n1, n2
    exports, n1 = exports:gsub(PORT:gsub("%p", "%%%0"), "127.0.0.1:" .. emu.port)
    exports, n2 = exports:gsub(KEYS:gsub("%p", "%%%0"), dir .. "/keys")
    assert(n1 == 1 and n2 == 2, "the README's export lines changed shape:\n" .. exports)
    local cpath = assert(package.cpath:match("build/[^/;]+/%?%.so"), "no build/<runtime> on cpath")
    local lpath = "lua/?.lua;lua/?/init.lua;;"
    local env = {
      "LUA_PATH=" .. q(lpath), "LUA_PATH_5_3=" .. q(lpath), "LUA_PATH_5_4=" .. q(lpath),
      "LUA_CPATH=" .. q(cpath .. ";;"), "LUA_CPATH_5_3=" .. q(cpath .. ";;"),
      "LUA_CPATH_5_4=" .. q(cpath .. ";;"),
    }
    -- Nothing else of this process's environment, but what the ASan interpreter needs.
    for _, name in ipairs { "PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS" } do
      local v = os.getenv(name)
      if v then env[#env + 1] = name .. "=" .. q(v) end
    end
    local script = exports .. "\nexec " .. q(interpreter()) .. " " .. q(file)
    local p = io.popen("env -i " .. table.concat(env, " ") .. " sh -c " .. q(script)
                       .. " 2>&1; echo \"::$?\"")
    local out = p:read("*a")
    p:close()
    local body, rc = out:match("^(.-)::(%d+)%s*$")
    return body, tonumber(rc)
  end

  it("the quick start is marked, and its settings are make sandbox's", function()
    local code, exports, text = readme()
    assert.matches("PAGSMILE_BASE_URL", code, 1, true)
    assert.matches("platform_public_key_file", code, 1, true)
    assert.matches("wait_apply_result", code, 1, true)
    assert.is_nil(code:find("read(", 1, true))
    assert.matches("PAGSMILE_APP_ID=" .. launch.APP_ID, exports, 1, true)
    assert.matches("PAGSMILE_PARTNER_ID=" .. launch.PARTNER_ID, exports, 1, true)
    -- the port and key dir the README names are make sandbox's defaults
    local script = assert(helpers.read_file("tools/sandbox"))
    assert.matches("PORT:-8090", script, 1, true)
    assert.matches("KEYS:-" .. KEYS, script, 1, true)
    assert.matches("make sandbox", text, 1, true)
  end)

  -- Each run starts from an empty order book (the quick start's order_no is per second).
  it("issues a card, verbatim", function()
    control("reset", "")
    local out, rc = run()
    assert.equal(0, rc, out)
    assert.matches("completed", out)
    local n = 0
    for _ in pairs(orders()) do n = n + 1 end
    assert.equal(1, n)
  end)

  it("follows an order the emulator keeps processing, with wait_apply_result", function()
    control("reset", "")
    control("settings", '{"pending_polls":2}')
    local out, rc = run()
    control("settings", '{"pending_polls":false}')
    assert.equal(0, rc, out)
    assert.matches("processing", out)
    assert.matches("completed", out)
    for _, o in pairs(orders()) do assert.equal(1, o.applies) end
  end)
end)
