-- Issue 11 (one call path for every endpoint): the seams the refactor made, and the fixes
-- that came with it. Each test names its item.
local issuing = require "pagsmile.issuing"
local envelope = require "pagsmile.issuing.envelope"
local errors = require "pagsmile.issuing.errors"
local json = require "pagsmile.issuing.json"
local helpers = require "helpers"

describe("issue 11", function()
  -- LuaJIT only: the other runtimes have no 64-bit cdata literals.
  local on_jit = jit and it or function() end
  on_jit("item 6: issuing.long takes LuaJIT's 123LL, as apply_card{holder_id = 123LL} does", function()
    local lit = assert(load("return 9007199254740993LL, 123ULL"))
    local big, small = lit()
    assert.equal("9007199254740993", tostring(issuing.long(big)))
    assert.equal("123", tostring(issuing.long(small)))
    assert.equal(tostring(issuing.long("9007199254740993")), tostring(json.long(big)))
    assert.is_true(issuing.validate("apply_card", helpers.biz { holder = helpers.NIL, holder_id = big }))
  end)

  it("item 6: a request's AES key is wiped once its answer is read, not left to the GC", function()
    local merchant = helpers.keypair("merchant")
    local platform = helpers.keypair("platform")
    local pub = assert(envelope.public_key(platform.public_pem))
    local merchant_key = assert(envelope.private_key(merchant.private_pem))
    local _, sealed = envelope.seal(pub, { order_no = "W1" }, "0123456789abcdef", "A1B2C3D4E5F60718")
    local _, _, session = envelope.seal(pub, {}, "0123456789abcdef", "A1B2C3D4E5F60718")
    local body = json.encode { code = "10000", data = sealed }
    assert.same({ order_no = "W1" }, (envelope.open(merchant_key, body, session)))
    session:wipe()
    local none, err = envelope.open(merchant_key, body, session)
    assert.is_nil(none)
    assert.matches("without random_key", err.message)
  end)

  it("item 3: one retry rule for every transport; a rejected certificate is final", function()
    for cause, retry in pairs { connect = true, timeout = true, handshake = true, reset = true,
                                certificate = false, ca_file = false, url = false, too_big = false } do
      local e = errors.transport("transport", "x", false, cause)
      assert.equal(retry, e.retryable, cause)
      assert.is_true(errors.is_error(e))
      assert.is_false(errors.transport("transport", "x", true, cause).retryable, cause)
    end
  end)

  it("item 5: require 'pagsmile.issuing' loads neither the emulator nor anything outside its tree", function()
    local rt = jit and "jit" or _VERSION:match("%d+%.%d+")
    local lua = jit and "luajit" or ("lua" .. rt)
    local out, ok = helpers.sh(lua .. [[ -e '
      package.path = "lua/?.lua;" .. package.path
      package.cpath = "build/]] .. rt .. [[/?.so;" .. package.cpath
      require "pagsmile.issuing"
      local names = {}
      for name in pairs(package.loaded) do
        if name:find("pagsmile") then names[#names + 1] = name end
      end
      table.sort(names)
      io.write(table.concat(names, " "))']])
    assert.is_true(ok)
    assert.is_nil(out:find("emulator", 1, true), out)
    for name in out:gmatch("%S+") do
      assert.truthy(name == "pagsmile.issuing" or name:find("^pagsmile%.issuing%."), name)
    end
  end)

  it("item 5: the examples and the emulator do not require the C core", function()
    local out = helpers.sh("grep -rlnE 'require[ (]*.pagsmile.issuing.core' examples lua/pagsmile_emulator")
    assert.equal("", out)
  end)
end)
