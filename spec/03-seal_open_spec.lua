-- Seal and open (issue #2): SPEC.md §3 byte for byte, checked against the openssl command
-- line both ways, and every malformed answer refused with the right kind and no crash.
local core = require "pagsmile.issuing.core"
local envelope = require "pagsmile.issuing.envelope"
local helpers = require "helpers"
local hostile = require "support.hostile"

local KEY, IV = "0123456789abcdef", "A1B2C3D4E5F60718"
local unpack = table.unpack or unpack

describe("seal and open #core", function()
  local platform, merchant, dir
  local platform_pub, platform_priv, merchant_pub, merchant_priv

  lazy_setup(function()
    platform, merchant = helpers.keypair("platform"), helpers.keypair("merchant")
    platform_pub, platform_priv = core.public_key(platform.public_pem), core.private_key(platform.private_pem)
    merchant_pub, merchant_priv = core.public_key(merchant.public_pem), core.private_key(merchant.private_pem)
    dir = helpers.tmpdir("seal")
    helpers.write_file(dir .. "/platform.pem", platform.private_pem)
    helpers.write_file(dir .. "/platform.pub", platform.public_pem)
  end)

  lazy_teardown(function() os.execute("rm -rf " .. dir) end)

  -- What a platform answer looks like: data sealed for the merchant.
  local function answer(data, extra)
    local rk, sealed = core.seal(merchant_pub, data)
    local env = { code = "10000", msg = "Success", random_key = rk, data = sealed, sign_type = "RSA" }
    for k, v in pairs(extra or {}) do env[k] = v end
    return core.json_encode(env)
  end

  describe("known answers (vectors made with openssl enc -aes-128-cbc)", function()
    local vectors = {
      { { order_no = "A1" }, "A1B2C3D4E5F60718wLSQ0vxcmUEu/PxtqUh3Yq6ed4nsRzf9S1GO9rroatY=" },
      { { order_no = "ORD-1", card_type = 1, holder_id = core.long("9007199254740993") },
        "A1B2C3D4E5F60718Se7iIlshLjqE9DbiCBm6bBK+tFIcB4nWQ+Z/BgVR9fTT8asgLpp+j0U/7fVrsu13cn0xh"
        .. "oS65z22YsFry/7M4w==" },
      { { order_no = "X", holder = { first_name = "José", last_name = "Ñúñez" } },
        "A1B2C3D4E5F60718QLPy7Y5TMlVoMmHV+82Qg/PRBmDbuuOKbex/ZE5hKohSVSd11y/7Zd4pN/bmAoAAGfrAhVvuUtFy"
        .. "6H4lln9lo4iSlHrIcvbky7IjB1Sfwj8=" },
    }
    for i, v in ipairs(vectors) do
      it("vector " .. i .. ": biz_data is the IV then Base64 of AES-128-CBC/PKCS#7", function()
        local rk, biz_data = core.seal(platform_pub, v[1], KEY, IV)
        assert.equal(v[2], biz_data)
        -- random_key carries exactly the 16 key bytes, RSA PKCS#1 v1.5 (randomised padding).
        assert.equal(344, #rk)
        helpers.write_file(dir .. "/rk.b64", rk)
        local key = helpers.sh("base64 -d " .. dir .. "/rk.b64 | openssl pkeyutl -decrypt -inkey "
          .. dir .. "/platform.pem -pkeyopt rsa_padding_mode:pkcs1")
        assert.equal(KEY, key)
      end)
    end
  end)

  it("a fresh seal uses a 16-character [A-Za-z0-9] key and an uppercase hex IV", function()
    local keys = {}
    for _ = 1, 20 do
      local rk, biz_data = core.seal(platform_pub, { a = 1 })
      assert.matches("^%x+$", biz_data:sub(1, 16))
      assert.equal(biz_data:sub(1, 16):upper(), biz_data:sub(1, 16))
      helpers.write_file(dir .. "/rk.b64", rk)
      local key = helpers.sh("base64 -d " .. dir .. "/rk.b64 | openssl pkeyutl -decrypt -inkey "
        .. dir .. "/platform.pem -pkeyopt rsa_padding_mode:pkcs1")
      assert.matches("^[A-Za-z0-9]+$", key)
      assert.equal(16, #key)
      assert.is_nil(keys[key])
      keys[key] = true
    end
  end)

  it("what the core seals, the openssl command line opens", function()
    local biz = { order_no = "CLI-1", holder = { first_name = "Zoë" }, card_type = 3 }
    local rk, biz_data = core.seal(platform_pub, biz)
    helpers.write_file(dir .. "/rk.b64", rk)
    local key = helpers.sh("base64 -d " .. dir .. "/rk.b64 | openssl pkeyutl -decrypt -inkey "
      .. dir .. "/platform.pem -pkeyopt rsa_padding_mode:pkcs1")
    helpers.write_file(dir .. "/ct.b64", biz_data:sub(17))
    local plain, ok = helpers.sh("base64 -d " .. dir .. "/ct.b64 | openssl enc -d -aes-128-cbc -K "
      .. helpers.hex(key) .. " -iv " .. helpers.hex(biz_data:sub(1, 16)))
    assert.is_true(ok)
    assert.equal(core.json_encode(biz), plain)
    assert.same(biz, core.json_decode(plain))
  end)

  it("what the openssl command line seals, the core opens", function()
    local key, iv = "Zz09Yy18Xx27Ww36", "00FF11EE22DD33CC"
    local plain = '{"card_id":9007199254740993,"order_no":"CLI-2","card_pan":"658704******0112"}'
    helpers.write_file(dir .. "/plain.json", plain)
    helpers.write_file(dir .. "/key.bin", key)
    local ct = helpers.sh("openssl enc -aes-128-cbc -K " .. helpers.hex(key) .. " -iv "
      .. helpers.hex(iv) .. " -in " .. dir .. "/plain.json | base64 -w0")
    local rk = helpers.sh("openssl pkeyutl -encrypt -pubin -inkey " .. dir
      .. "/platform.pub -pkeyopt rsa_padding_mode:pkcs1 -in " .. dir .. "/key.bin | base64 -w0")
    local v, err = core.unseal(platform_priv, rk, iv .. ct)
    assert.is_nil(err)
    assert.equal("CLI-2", v.order_no)
    assert.equal("9007199254740993", tostring(v.card_id))
    -- Java's MIME Base64 breaks lines: tolerated.
    local wrapped = core.unseal(platform_priv, rk, iv .. ct:gsub("(" .. ("."):rep(76) .. ")", "%1\r\n"))
    assert.same(v, wrapped)
  end)

  describe("open", function()
    it("returns data and the envelope of a success answer", function()
      local data, env = envelope.open(merchant_priv,
        answer({ card_token = "tok_1", order_status = 5 }, { app_id = "a" }))
      assert.same({ card_token = "tok_1", order_status = 5 }, data)
      assert.equal("10000", env.code)
      assert.equal("a", env.app_id)
      assert.is_nil(env.data)
      assert.is_nil(env.random_key)
    end)

    it("accepts AES-192 and AES-256 keys in random_key", function()
      for _, key in ipairs { ("k"):rep(24), ("k"):rep(32) } do
        helpers.write_file(dir .. "/plain.json", '{"n":1}')
        helpers.write_file(dir .. "/key.bin", key)
        local iv = "0123456789ABCDEF"
        local ct = helpers.sh("openssl enc -aes-" .. (#key * 8) .. "-cbc -K " .. helpers.hex(key) .. " -iv "
          .. helpers.hex(iv) .. " -in " .. dir .. "/plain.json | base64 -w0")
        local pub = dir .. "/merchant.pub"
        helpers.write_file(pub, merchant.public_pem)
        local rk = helpers.sh("openssl pkeyutl -encrypt -pubin -inkey " .. pub
          .. " -pkeyopt rsa_padding_mode:pkcs1 -in " .. dir .. "/key.bin | base64 -w0")
        local data = envelope.open(merchant_priv, core.json_encode { code = "10000", random_key = rk, data = iv .. ct })
        assert.same({ n = 1 }, data)
      end
    end)

    it("tolerates plaintext data, a numeric code, and absent or empty data", function()
      assert.same({ card_id = 7 }, (envelope.open(merchant_priv, '{"code":"10000","data":{"card_id":7}}')))
      assert.same({ { a = 1 } }, (envelope.open(merchant_priv, '{"code":10000,"data":[{"a":1}]}')))
      assert.same({}, (envelope.open(merchant_priv, '{"code":"10000"}')))
      assert.same({}, (envelope.open(merchant_priv, '{"code":"10000","data":""}')))
      assert.same({}, (envelope.open(merchant_priv, '{"code":"10000","data":null}')))
    end)

    it("decrypts data without random_key with the request's own key (older wording)", function()
      local _, _, session = core.seal(platform_pub, { order_no = "S" })
      -- The answer's data sealed with the same AES key as the request (fixed key KEY).
      local _, biz_data = core.seal(platform_pub, { card_token = "t" }, KEY, IV)
      local _, _, fixed_session = core.seal(platform_pub, { order_no = "S" }, KEY, IV)
      local data = envelope.open(merchant_priv, core.json_encode { code = "10000", data = biz_data }, fixed_session)
      assert.same({ card_token = "t" }, data)
      -- Another request's key does not open it.
      local none, e2 = envelope.open(merchant_priv, core.json_encode { code = "10000", data = biz_data }, session)
      assert.is_nil(none)
      assert.equal("protocol", e2.kind)
      -- And with no session at all it says what is missing.
      local _, e3 = envelope.open(merchant_priv, core.json_encode { code = "10000", data = biz_data })
      assert.matches("without random_key", e3.message)
    end)

    it("turns a refusal into an api error with code, msg, sub_code, sub_msg", function()
      local data, err = envelope.open(merchant_priv,
        '{"code":"40002","msg":"Business Failed","sub_code":"invalid-signature","sub_msg":"invalid signature"}')
      assert.is_nil(data)
      -- The same fields; the message now carries api.lua's hint and the setting it names
      -- (errors.api, issue 11: the envelope moved out of C into envelope.lua).
      assert.matches("^the platform refused the request", err.message)
      assert.same({ kind = "api", message = err.message, code = "40002", setting = "platform_public_key",
        msg = "Business Failed", sub_code = "invalid-signature", sub_msg = "invalid signature" }, err)
      local _, e2 = envelope.open(merchant_priv, '{"code":40001,"msg":"Missing Arguments"}')
      assert.equal("40001", e2.code)
    end)

    local good_rk, good_data
    -- The shared table of hostile answers (spec/support/hostile.lua): its protocol cases.
    local function malformed()
      local rk, data = core.seal(merchant_pub, { card_token = "tok" })
      good_rk, good_data = rk, data
      local other = core.public_key(helpers.keypair("other").public_pem)
      local wrong_rk, wrong_data = core.seal(other, { card_token = "tok" })
      local function envelope_of(k, d) return core.json_encode { code = "10000", random_key = k, data = d } end
      local cases = {}
      for _, c in ipairs(hostile.answers { answer = envelope_of, rk = rk, data = data,
                                           wrong_rk = wrong_rk, wrong_data = wrong_data }) do
        if c[3] == "protocol" then cases[#cases + 1] = c end
      end
      return cases
    end

    it("refuses every malformed answer as a protocol error, without crashing", function()
      for _, case in ipairs(malformed()) do
        local data, err = envelope.open(merchant_priv, case[2])
        assert.is_nil(data, case[1])
        assert.equal("protocol", err.kind, case[1])
        assert.is_string(err.message, case[1])
        assert.matches(case[4], err.message, nil, nil, case[1])
      end
      -- The good pair still opens: the failures above left no stale state behind.
      assert.same({ card_token = "tok" },
        (envelope.open(merchant_priv, core.json_encode { code = "10000", random_key = good_rk, data = good_data })))
    end)

    it("gives no padding oracle: every wrong random_key fails the same way", function()
      local rk, data = core.seal(merchant_pub, { card_token = "tok" })
      local other = core.public_key(helpers.keypair("other").public_pem)
      local foreign_rk = core.seal(other, { card_token = "tok" })          -- bad PKCS#1 padding for us
      local tampered = rk:sub(1, 10) .. (rk:sub(11, 11) == "A" and "B" or "A") .. rk:sub(12)
      helpers.write_file(dir .. "/short.bin", "12345")                     -- well padded, not an AES key
      helpers.write_file(dir .. "/merchant.pub", merchant.public_pem)
      local short_rk = helpers.sh("openssl pkeyutl -encrypt -pubin -inkey " .. dir .. "/merchant.pub"
        .. " -pkeyopt rsa_padding_mode:pkcs1 -in " .. dir .. "/short.bin | base64 -w0")
      local _, wrong_data = core.seal(merchant_pub, { card_token = "x" })  -- good key, other data
      local messages = {}
      for _, pair in ipairs { { foreign_rk, data }, { tampered, data }, { short_rk, data }, { rk, wrong_data } } do
        local body = core.json_encode { code = "10000", random_key = pair[1], data = pair[2] }
        local v, err = envelope.open(merchant_priv, body)
        assert.is_nil(v)
        messages[#messages + 1] = err.message
      end
      for i = 2, #messages do assert.equal(messages[1], messages[i]) end
      assert.matches("do not decrypt to JSON with the merchant private key", messages[1])
    end)

    it("decrypted bytes that are not JSON are a protocol error", function()
      helpers.write_file(dir .. "/plain.json", "not json at all")
      local ct = helpers.sh("openssl enc -aes-128-cbc -K " .. helpers.hex(KEY) .. " -iv "
        .. helpers.hex(IV) .. " -in " .. dir .. "/plain.json | base64 -w0")
      local _, _, session = core.seal(platform_pub, {}, KEY, IV)
      local data, err = envelope.open(merchant_priv, core.json_encode { code = "10000", data = IV .. ct }, session)
      assert.is_nil(data)
      assert.matches("do not decrypt to JSON", err.message)
      assert.is_nil(err.message:find("not json at all", 1, true))
    end)

    it("hostile mutations of a real answer never crash", function()
      local body = answer { card_id = core.long("9007199254740993"), card_pan = "658704******0112" }
      math.randomseed(42)
      for _ = 1, 300 do
        local b = { body:byte(1, -1) }
        for _ = 1, math.random(1, 4) do
          b[math.random(#b)] = math.random(0, 255)
        end
        local ok, data, err = pcall(envelope.open, merchant_priv, string.char(unpack(b)))
        assert.is_true(ok)
        assert.is_true(data ~= nil or type(err) == "table")
      end
    end)
  end)

  describe("exactness of long ids and integers", function()
    it("holder_id 9007199254740993 survives seal → open as given (integer or string)", function()
      local inputs = { core.long("9007199254740993") }
      if math.type then inputs[#inputs + 1] = math.tointeger(9007199254740993) end
      for _, id in ipairs(inputs) do
        local rk, biz_data = core.seal(merchant_pub, { holder_id = id })
        local v = core.unseal(merchant_priv, rk, biz_data)
        if math.type then
          assert.equal("integer", math.type(v.holder_id))
          assert.equal(9007199254740993, v.holder_id)
        else
          assert.equal("9007199254740993", v.holder_id)
        end
      end
    end)

    it("102012 comes back as an integer (not 102012.0) where Lua has integers", function()
      local rk, biz_data = core.seal(merchant_pub, { card_id = 102012, amount = "10.50" })
      local v = core.unseal(merchant_priv, rk, biz_data)
      assert.equal(102012, v.card_id)
      assert.equal("102012", tostring(v.card_id))
      if math.type then assert.equal("integer", math.type(v.card_id)) end
      assert.equal("10.50", v.amount)
    end)
  end)

  it("invalid UTF-8 in biz_data is refused before anything is encrypted", function()
    local rk, err = core.seal(platform_pub, { holder = { first_name = "bad\255name" } })
    assert.is_nil(rk)
    assert.matches("UTF%-8", err)
    assert.is_nil(err:find("bad", 1, true))
  end)
end)
