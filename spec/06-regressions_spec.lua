-- Regressions found by fuzzing and review (issue #5), each named after its bug, and the most
-- hostile inputs of the fuzz corpus (fuzz/make-corpus.lua) as a smoke test: no crash, no
-- raised error, and the right error kind. Run on every runtime and, in `make test`, once
-- over the ASan+UBSan build, where a memory error fails the run even if the result looks right.
local core = require "pagsmile.issuing.core"
local envelope = require "pagsmile.issuing.envelope"
local helpers = require "helpers"
local hostile = require "support.hostile"

describe("regressions #core", function()
  local merchant_key, merchant_pub

  lazy_setup(function()
    local pair = helpers.keypair("merchant")
    merchant_key = assert(core.private_key(pair.private_pem))
    merchant_pub = assert(core.public_key(pair.public_pem))
  end)

  local IV_AND_BLOCKS = "0123456789ABCDEF" .. ("A"):rep(64)

  local function answer(random_key, data)
    return core.json_encode { code = "10000", msg = "Success", random_key = random_key, data = data }
  end

  local function refused(kind, pattern, data, err)
    assert.is_nil(data)
    assert.is_table(err)
    assert.equal(kind, err.kind)
    assert.is_string(err.message)
    assert.matches(pattern, err.message)
  end

  describe("random_key of 1366 to 1368 Base64 characters overflowed the stack buffer in unseal", function()
    -- b64_decode wrote up to 1026 bytes into unsigned char rk[1024] (RSA_MAX_BYTES): the
    -- length check allowed B64_LEN(1024) = 1368 characters, which decode to 1026 bytes.
    -- Found by review of the fuzz target "open"; caught by the sanitizer pass.
    for _, n in ipairs { 1364, 1365, 1366, 1367, 1368, 1369, 1372 } do
      it(n .. " characters: an answer is refused as protocol, without a memory error", function()
        local data, err = envelope.open(merchant_key, answer(("A"):rep(n), IV_AND_BLOCKS))
        refused("protocol", "random_key", data, err)
      end)
      it(n .. " characters: a notification's unseal refuses it", function()
        local value, msg = core.unseal(merchant_key, ("A"):rep(n), IV_AND_BLOCKS)
        assert.is_nil(value)
        assert.matches("random_key", msg)
      end)
    end
    it("1368 characters with whitespace among them is refused the same way", function()
      local rk = ("AAAAAAAA\r\n"):rep(171)
      local data, err = envelope.open(merchant_key, answer(rk, IV_AND_BLOCKS))
      refused("protocol", "random_key", data, err)
    end)
  end)

  describe("hostile answers (fuzz corpus smoke)", function()
    local sealed_rk, sealed_data
    lazy_setup(function()
      sealed_rk, sealed_data = core.seal(merchant_pub, { order_no = "F-1", card_id = core.long("9007199254740993") })
    end)

    -- The shared table (spec/support/hostile.lua), also the fuzzer's seeds.
    local function cases()
      local other = core.public_key(helpers.keypair("other").public_pem)
      local wrong_rk, wrong_data = core.seal(other, { card_token = "tok" })
      return hostile.answers { answer = answer, rk = sealed_rk, data = sealed_data,
                               wrong_rk = wrong_rk, wrong_data = wrong_data }
    end

    it("each is refused with the right kind and message, never raised", function()
      for _, c in ipairs(cases()) do
        local ok, data, err = pcall(envelope.open, merchant_key, c[2])
        assert(ok, c[1] .. ": raised " .. tostring(data))
        assert(data == nil, c[1] .. ": accepted")
        assert(type(err) == "table" and err.kind == c[3], c[1] .. ": kind " .. tostring(err and err.kind))
        assert(tostring(err.message):find(c[4]), c[1] .. ": message " .. tostring(err.message))
      end
    end)

    it("the untouched answer opens (the cases above differ from it only by their fault)", function()
      local data, env = envelope.open(merchant_key, answer(sealed_rk, sealed_data))
      assert.is_table(env)
      assert.equal("F-1", data.order_no)
      assert.equal("9007199254740993", tostring(data.card_id))
    end)
  end)

  describe("hostile keys (fuzz corpus smoke)", function()
    local KEYS = {
      { "empty", "", "neither PEM nor valid Base64" },
      { "Base64 of three bytes", "QUJD", "not a DER%-encoded RSA key" },
      { "too much padding", "QUJD====", "neither PEM nor valid Base64" },
      { "non-canonical trailing bits", "QUJ=", "neither PEM nor valid Base64" },
      { "NUL inside Base64", "MII\0BIjAN", "neither PEM nor valid Base64" },
      { "an empty PEM block", "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n", "not a valid PEM block" },
      { "a PEM header alone", "-----BEGIN ", "not a valid PEM block" },
      { "a PEM block of garbage", "-----BEGIN PRIVATE KEY-----\n%%%%\n-----END PRIVATE KEY-----\n",
        "not a valid PEM block" },
      { "a certificate", "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n", "unsupported type" },
      { "an encrypted key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nQUJD\n-----END ENCRYPTED PRIVATE KEY-----\n",
        "encrypted private key" },
    }
    for _, c in ipairs(KEYS) do
      it(c[1] .. " is refused as public and as private key", function()
        for _, parse in ipairs { core.public_key, core.private_key } do
          local k, msg = parse(c[2])
          assert.is_nil(k)
          assert.matches(c[3], msg)
        end
      end)
    end

    it("a truncated real key is refused, and the whole one accepted", function()
      local pair = helpers.keypair("merchant")
      for _, text in ipairs { pair.private_pem, pair.public_pem, helpers.pem_body(pair.public_pem) } do
        local half = text:sub(1, math.floor(#text / 2))
        assert.is_nil(core.public_key(half))
        assert.is_nil(core.private_key(half))
      end
      assert.equal(2048, core.private_key(pair.private_pem):bits())
      assert.equal(2048, core.public_key(helpers.pem_body(pair.public_pem)):bits())
    end)
  end)

  describe("hostile JSON (fuzz corpus smoke)", function()
    local REFUSED = hostile.JSON_REFUSED
    for _, c in ipairs(REFUSED) do
      it(c[1] .. " is refused with its position", function()
        local v, msg = core.json_decode(c[2])
        assert.is_nil(v)
        assert.matches("^invalid JSON at byte %d+: .*" .. c[3], msg)
      end)
    end

    it("nested 64 deep decodes", function()
      assert.is_table(core.json_decode(("["):rep(64) .. ("]"):rep(64)))
    end)

    it("integers beyond int64 stay exact as decimal strings; int64 bounds are exact", function()
      assert.equal("18446744073709551616", core.json_decode("18446744073709551616"))
      assert.equal("-9223372036854775809", core.json_decode("-9223372036854775809"))
      assert.equal("9223372036854775807", tostring(core.json_decode("9223372036854775807")))
      assert.equal("-9223372036854775808", tostring(core.json_decode("-9223372036854775808")))
    end)

    it("an escaped NUL decodes; duplicate keys are refused (issue 9 item 3)", function()
      assert.equal("\0", core.json_decode('"\\u0000"'))
      local v, err = core.json_decode('{"a":1,"a":2}')
      assert.is_nil(v)
      assert.matches("duplicate key", err, 1, true)
    end)
  end)

  describe("found by review", function()
    it("an envelope code of 10000 as a float means success on every runtime", function()
      -- 5.3+ printed 10000.0 as "10000.0", which is not "10000"
      for _, code in ipairs { "1e4", "10000.0", "10000" } do
        assert.same({ ok = true }, (envelope.open(nil, '{"code":' .. code .. ',"data":{"ok":true}}')))
      end
      local data, err = envelope.open(nil, '{"code":4.0002e4,"msg":"Business Failed"}')
      refused("api", "refused", data, err)
      assert.equal("40002", err.code)
      refused("protocol", "no code", envelope.open(nil, '{"code":10000.5}'))
    end)

    it("core.sleep of NaN, infinity or a negative number returns at once", function()
      local t0 = core.monotime()
      core.sleep(0 / 0)
      core.sleep(-1)
      core.sleep(-math.huge)
      assert.is_true(core.monotime() - t0 < 1)
    end)

    it("apply_card_and_wait refuses a NaN or infinite interval or timeout (it never ended)", function()
      local issuing = require "pagsmile.issuing"
      local pair = helpers.keypair("merchant")
      local client = assert(issuing.new {
        app_id = "a", partner_id = "p", base_url = "http://127.0.0.1:1",
        platform_public_key = pair.public_pem, merchant_private_key = pair.private_pem,
      })
      for _, wait in ipairs { { interval = 0 / 0 }, { timeout = 0 / 0 }, { timeout = math.huge } } do
        assert.has_error(function() client:apply_card_and_wait(helpers.biz(), wait) end)
      end
      client:close()
    end)
  end)
end)
