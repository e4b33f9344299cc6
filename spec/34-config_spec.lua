-- issuing.new: every setting checked once, with a config error naming it (issue #3).
local issuing = require "pagsmile.issuing"
local helpers = require "helpers"

describe("issuing.new #core", function()
  local base, refused = helpers.settings, helpers.refused_setting

  it("makes a client from good settings, with the documented defaults", function()
    local client = assert(issuing.new(base { base_url = helpers.NIL }))
    assert.equal(issuing.SANDBOX_URL, client.o.base_url)
    assert.equal(30, client.o.timeout)
    assert.equal(5, client.o.connect_timeout)
    assert.equal(2, client.o.max_retries)
    assert.equal("+08:00", client.o.utc_offset)
    assert.equal("2.0", client.o.version)
    client:close()
    client:close()
    assert.has_error(function() client:apply_card(helpers.biz()) end)
  end)

  it("requires app_id, partner_id and both keys", function()
    refused({ app_id = helpers.NIL }, "app_id", "required")
    refused({ partner_id = "  " }, "partner_id", "required")
    refused({ platform_public_key = helpers.NIL }, "platform_public_key", "required")
    refused({ merchant_private_key = helpers.NIL }, "merchant_private_key", "required")
  end)

  it("names the key setting that is wrong, and why", function()
    refused({ platform_public_key = helpers.keypair("platform").private_pem },
      "platform_public_key", "is a private key")
    refused({ merchant_private_key = helpers.keypair("merchant").public_pem },
      "merchant_private_key", "is a public key")
    refused({ merchant_private_key = "garbage" }, "merchant_private_key", "neither PEM nor")
  end)

  it("accepts keys in the dashboard's bare Base64 form", function()
    local client = assert(issuing.new(base { platform_public_key = helpers.keypair("platform").public_b64 }))
    client:close()
  end)

  it("wants https for anything but this machine", function()
    refused({ base_url = "http://card-api.example.com" }, "base_url", "https")
    refused({ base_url = "ftp://127.0.0.1" }, "base_url")
    refused({ base_url = "card-api.example.com" }, "base_url")
    for _, url in ipairs { "https://card-api.example.com", "http://localhost:8090", "http://127.0.0.1:9/",
                           "https://card-api.example.com:8443/" } do
      local c = assert(issuing.new(base { base_url = url }))
      assert.is_nil(c.o.base_url:find("/$"))
      c:close()
    end
  end)

  it("checks timeouts, retries, offset, version and transport", function()
    refused({ timeout = 0 }, "timeout")
    refused({ timeout = "30" }, "timeout")
    refused({ timeout = 0 / 0 }, "timeout")
    refused({ connect_timeout = 10, timeout = 5 }, "connect_timeout")
    refused({ max_retries = 1.5 }, "max_retries")
    refused({ max_retries = -1 }, "max_retries")
    refused({ utc_offset = "+8" }, "utc_offset")
    refused({ utc_offset = "+15:00" }, "utc_offset")
    refused({ version = "" }, "version")
    refused({ transport = "http" }, "transport")
    assert(issuing.new(base { timeout = 0.25, connect_timeout = 0.1, utc_offset = "-03:00" })):close()
  end)

  it("refuses control characters where they would reach the HTTP request head", function()
    refused({ base_url = "http://127.0.0.1:1/x HTTP/1.1\r\nX-Injected: 1" }, "base_url",
      "control characters")
    refused({ user_agent = "agent\r\nX-Injected: 1" }, "user_agent", "control characters")
    refused({ proxy = "http://proxy\n" }, "proxy", "control characters")
  end)

  it("catches a misspelt setting", function()
    refused({ time_out = 5 }, "time_out", "is not a setting")
  end)

  it("the messages carry no key material", function()
    local pem = helpers.keypair("merchant").private_pem
    local _, err = issuing.new(base { platform_public_key = pem })
    local body = helpers.pem_body(pem)
    assert.is_nil(tostring(err):find(body:sub(30, 60), 1, true))
  end)
end)

describe("issuing.keygen #core", function()
  it("gives a merchant pair a client accepts", function()
    local private_pem, public_pem, public_b64 = issuing.keygen()
    local client = assert(issuing.new {
      app_id = "a", partner_id = "p", base_url = "http://127.0.0.1:1",
      platform_public_key = public_b64, merchant_private_key = private_pem,
    })
    client:close()
    assert.matches("BEGIN PUBLIC KEY", public_pem)
  end)
end)
