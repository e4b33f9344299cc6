-- Key loading and generation (issue #2): every accepted form, every wrong one.
local core = require "pagsmile.issuing.core"
local helpers = require "helpers"

describe("keys #core", function()
  local kp, dir

  lazy_setup(function()
    kp = helpers.keypair()
    dir = helpers.tmpdir("keys")
    helpers.write_file(dir .. "/priv.pem", kp.private_pem)
  end)

  lazy_teardown(function() os.execute("rm -rf " .. dir) end)

  -- The other encodings of the same pair, made by the openssl command line.
  local function openssl_form(args)
    local out, ok = helpers.sh("openssl " .. args)
    assert.is_true(ok, "openssl " .. args)
    return out
  end

  it("keygen gives a 2048-bit pair as PEM and the dashboard's bare Base64", function()
    assert.matches("^%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-\n", kp.private_pem)
    assert.matches("^%-%-%-%-%-BEGIN PUBLIC KEY%-%-%-%-%-\n", kp.public_pem)
    assert.equal(helpers.pem_body(kp.public_pem), kp.public_b64)
    assert.not_matches("%s", kp.public_b64)
    assert.equal(2048, core.private_key(kp.private_pem):bits())
    assert.equal(2048, core.public_key(kp.public_b64):bits())
  end)

  it("keygen makes a different pair each time", function()
    local _, pub2 = core.keygen()
    assert.not_equal(kp.public_pem, pub2)
  end)

  it("loads public keys as SPKI PEM, PKCS#1 PEM, bare Base64 and Base64 with whitespace", function()
    local pkcs1 = openssl_form("rsa -in " .. dir .. "/priv.pem -RSAPublicKey_out")
    assert.matches("BEGIN RSA PUBLIC KEY", pkcs1)
    local wrapped = kp.public_b64:gsub("(" .. ("."):rep(64) .. ")", "%1\n  ")
    for _, form in ipairs { kp.public_pem, pkcs1, kp.public_b64, wrapped, "\n" .. kp.public_pem } do
      local key, err = core.public_key(form)
      assert.is_nil(err)
      assert.is_false(key:is_private())
    end
  end)

  it("loads private keys as PKCS#8 PEM, PKCS#1 PEM and bare Base64 of either", function()
    local pkcs1 = openssl_form("rsa -in " .. dir .. "/priv.pem -traditional")
    assert.matches("BEGIN RSA PRIVATE KEY", pkcs1)
    for _, form in ipairs { kp.private_pem, pkcs1, helpers.pem_body(kp.private_pem), helpers.pem_body(pkcs1) } do
      local key, err = core.private_key(form)
      assert.is_nil(err)
      assert.is_true(key:is_private())
    end
  end)

  it("every accepted form of a pair round-trips a seal", function()
    local pkcs1_pub = openssl_form("rsa -in " .. dir .. "/priv.pem -RSAPublicKey_out")
    local pkcs1_priv = openssl_form("rsa -in " .. dir .. "/priv.pem -traditional")
    for _, pub in ipairs { kp.public_pem, pkcs1_pub, kp.public_b64 } do
      for _, priv in ipairs { kp.private_pem, pkcs1_priv, helpers.pem_body(pkcs1_priv) } do
        local rk, data = core.seal(core.public_key(pub), { n = 1 })
        assert.same({ n = 1 }, core.unseal(core.private_key(priv), rk, data))
      end
    end
  end)

  it("refuses a private key where a public one belongs, and the reverse", function()
    local k, err = core.public_key(kp.private_pem)
    assert.is_nil(k)
    assert.matches("is a private key", err)
    k, err = core.public_key(helpers.pem_body(kp.private_pem))
    assert.is_nil(k)
    assert.matches("is a private key", err)
    k, err = core.private_key(kp.public_pem)
    assert.is_nil(k)
    assert.matches("is a public key", err)
    k, err = core.private_key(kp.public_b64)
    assert.is_nil(k)
    assert.matches("is a public key", err)
  end)

  it("refuses keys that are not 2048-bit RSA", function()
    local small = openssl_form("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024")
    local k, err = core.private_key(small)
    assert.is_nil(k)
    assert.equal("is a 1024-bit RSA key; the API needs 2048-bit", err)
    local ec = openssl_form("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256")
    k, err = core.private_key(ec)
    assert.is_nil(k)
    assert.equal("is not an RSA key", err)
  end)

  it("refuses malformed and truncated keys with a message and no key material", function()
    local body = kp.public_b64
    local cases = {
      "", "   ", "not a key", body:sub(1, 200), body:sub(1, #body - 8) .. "AAAAAAAA",
      body .. "!!", kp.public_pem:sub(1, 300),
      "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
      "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    }
    for _, text in ipairs(cases) do
      local k, err = core.public_key(text)
      assert.is_nil(k)
      assert.is_string(err)
      assert.is_nil(err:find(body:sub(20, 40), 1, true))
    end
    local k, err = core.private_key(helpers.pem_body(kp.private_pem):sub(1, 500))
    assert.is_nil(k)
    assert.is_string(err)
  end)

  it("refuses an encrypted private key with a clear reason", function()
    local enc = openssl_form("pkcs8 -topk8 -in " .. dir .. "/priv.pem -passout pass:x -v2 aes-128-cbc")
    local k, err = core.private_key(enc)
    assert.is_nil(k)
    assert.matches("encrypted private key", err)
  end)

  it("close is idempotent and a closed key is refused", function()
    local key = core.public_key(kp.public_pem)
    key:close()
    key:close()
    assert.matches("closed", tostring(key))
    assert.has_error(function() core.seal(key, {}) end)
    assert.has_error(function() key:bits() end)
  end)

  it("argument misuse raises", function()
    assert.has_error(function() core.public_key(nil) end)
    assert.has_error(function() core.seal(core.private_key(kp.private_pem), {}) end)
    assert.has_error(function() core.unseal(core.public_key(kp.public_pem), "x", "y") end)
  end)
end)
