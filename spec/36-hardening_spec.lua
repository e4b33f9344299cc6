-- Settings checks and error printing (issue 9 items 6, 7 and 11): base_url is parsed, not
-- pattern-guessed; a setting name echoed in an error is bounded and never key material;
-- tostring(err) is one bounded line whatever the server, a callback or the caller put in it.
local issuing = require "pagsmile.issuing"
local nginx = require "sandbox.nginx"
local helpers = require "helpers"

local base = helpers.settings

-- One line of printable text: no control character, no C1 control in UTF-8 form. A failure
-- does not print the text: it is the unbounded thing under test.
local function one_line(s)
  return type(s) == "string" and not s:find("[%c\127]") and not s:find("\194[\128-\159]")
end
local function assert_one_line(s)
  assert(one_line(s), ("not one printable line (%d bytes)"):format(#tostring(s)))
end

-- A 40-character window of any test key's Base64 in s (spec 51's notion of key material).
local function has_key_material(s)
  for _, name in ipairs { "platform", "merchant" } do
    for _, pem in pairs(helpers.keypair(name)) do
      local b64 = helpers.pem_body(pem)
      for i = 1, #b64 - 39, 7 do
        if s:find(b64:sub(i, i + 39), 1, true) then return true end
      end
    end
  end
  return false
end

describe("hardening #core", function()
  it("issue 9 item 6: base_url is scheme://host[:port][/path], no userinfo, plain http only to loopback", function()
    local refused = {
      -- userinfo: libcurl would send a Basic Authorization header, and the host is "other-host"
      "http://localhost@other-host", "http://localhost:80@evil", "http://[::1]@x",
      "http://127.0.0.1%2f@evil", "https://user:secret@card-api.example.com",
      "http://127.0.0.1/@evil",
      -- a loopback-looking prefix of another host, encoded or shorthand hosts
      "http://127.0.0.1.evil.com", "http://localhost.evil.com", "http://%6c%6fcalhost",
      "http://127.1", "http://0x7f.0.0.1", "http://0177.0.0.1", "http://127.0.0.256",
      "https://card-api.example.com.1", "https://-card.example.com", "https://card..example.com",
      "http://localhost.", "http://[::ffff:127.0.0.1]", "http://[::1%25eth0]", "http://[::1",
      "http://::1", "https://[1:2:3:4:5:6:7:8:9]", "https://[1::2::3]",
      -- backslashes (some parsers read them as "/"), query, fragment
      "http://127.0.0.1\\@evil", "http://127.0.0.1\\evil.com", "http://127.0.0.1:9?x=1",
      "https://card-api.example.com/#x", "https://card-api.example.com?",
      -- ports
      "http://127.0.0.1:0", "http://127.0.0.1:65536", "http://127.0.0.1:", "http://127.0.0.1:+80",
      "http://127.0.0.1:80a", "http://127.0.0.1:-1", "http://127.0.0.1:99999999999999999999",
      -- paths that make no sense as a prefix
      "https://card-api.example.com/../x", "https://card-api.example.com/a/./b",
      "https://card-api.example.com//x", "https://card-api.example.com/a%zz",
      -- no host, other schemes, not ASCII
      "http://", "https:///x", "http:/127.0.0.1", "HTTP://127.0.0.1", "file:///etc/passwd",
      "https://cárd.example.com", "https://card-api.example.com/" .. ("a"):rep(3000),
    }
    for _, url in ipairs(refused) do
      local client, err = issuing.new(base { base_url = url })
      if client then client:close() end
      assert(not client, "accepted " .. url)
      assert.equal("config", err.kind)
      assert.equal("base_url", err.field)
      assert_one_line(tostring(err))
      -- the URL is not echoed: it may carry a password
      assert.is_nil(tostring(err):find("secret", 1, true))
    end
    local _, err = issuing.new(base { base_url = "http://card-api.example.com" })
    assert.matches("https", err.message)
    _, err = issuing.new(base { base_url = "http://localhost@other-host" })
    assert.matches("userinfo", err.message)

    local accepted = {
      ["http://127.0.0.1:9"] = "http://127.0.0.1:9",
      ["http://127.255.255.254/"] = "http://127.255.255.254",
      ["http://localhost:8090"] = "http://localhost:8090",
      ["http://LocalHost:8090"] = "http://LocalHost:8090",
      ["http://[::1]:8080/"] = "http://[::1]:8080",
      ["https://[2001:db8::1]:8443"] = "https://[2001:db8::1]:8443",
      ["https://[::ffff:192.0.2.1]"] = "https://[::ffff:192.0.2.1]",
      ["https://192.0.2.10"] = "https://192.0.2.10",
      ["https://card-api.example.com:8443/"] = "https://card-api.example.com:8443",
      ["https://gw.example.com/pagsmile/v1//"] = "https://gw.example.com/pagsmile/v1",
      ["https://gw.example.com/a-b_c~d/%41"] = "https://gw.example.com/a-b_c~d/%41",
      ["https://card_api.internal:65535"] = "https://card_api.internal:65535",
    }
    for url, want in pairs(accepted) do
      local c, e = issuing.new(base { base_url = url })
      assert(c, url .. ": " .. tostring(e))
      assert.equal(want, c.o.base_url)
      c:close()
    end
  end)

  it("issue 9 item 7: a setting name echoed in an error is bounded, escaped and never key material", function()
    local pem = helpers.keypair("merchant").private_pem
    local b64 = helpers.keypair("platform").public_b64
    -- a config loaded with names and values swapped: whichever name is reported, no key
    local swapped = { app = "app_id", partner = "partner_id", [pem] = "merchant_private_key",
                      [b64] = "platform_public_key", ["http://127.0.0.1:1"] = "base_url" }
    for _ = 1, 5 do
      local client, err = issuing.new(swapped)
      assert.is_nil(client)
      assert.equal("config", err.kind)
      local text = tostring(err)
      assert_one_line(text)
      assert(not has_key_material(text) and not has_key_material(err.field), "key material echoed")
      assert(#err.field <= 40, err.field)
    end

    local function refused_name(name, want_field, want_message)
      local over = base()
      over[name] = "x"
      local client, err = issuing.new(over)
      assert.is_nil(client)
      assert.equal("config", err.kind)
      -- (the failure message shows no key either)
      assert(err.field == want_field, "field is " .. (has_key_material(err.field) and "key material"
        or #err.field > 100 and #err.field .. " bytes" or err.field))
      local text = tostring(err)
      assert_one_line(text)
      assert(not has_key_material(text), "key material echoed")
      assert.matches("is not a setting", err.message)
      if want_message then assert.matches(want_message, err.message) end
      return err
    end
    refused_name(pem, "<a " .. #pem .. "-character string>")
    refused_name(b64, "<a " .. #b64 .. "-character string>")
    -- short, but Base64 through and through: a slice of a key is key material too
    refused_name(b64:sub(60, 90), "<a 31-character string>")
    refused_name(("long_setting_name_"):rep(5), "<a 90-character string>")
    refused_name("time\nout\27[2J", "time\\nout\\x1b[2J")
    refused_name("tab\there\194\155", "tab\\there\\u009b")
    refused_name({}, "<a table>")
    refused_name(7, "7")
    refused_name("time_out", "time_out")
    -- the value names a setting: say what probably happened
    local over = base()
    over[pem] = "merchant_private_key"
    local _, err = issuing.new(over)
    assert.matches("swapped", err.message)
  end)

  it("issue 9 item 11: tostring(err) is one line with every echoed value escaped and bounded", function()
    -- server-chosen code and sub_code: a real nginx answers an API refusal over loopback
    -- (spec/support/refusal_server.lua: a 3000-character code, a 300 kB sub_code)
    local srv = nginx.start { name = "hardening", http = [[
      server {
        listen 127.0.0.1:${port};
        location = /issuing/card/apply {
          content_by_lua_block { require("spec.support.refusal_server").refuse() }
        }
      }
    ]] }
    local ok, failure = pcall(function()
      local client = assert(issuing.new(base { base_url = srv.url, max_retries = 0 }))
      local card, err = client:apply_card(helpers.biz())
      client:close()
      assert.is_nil(card)
      assert.equal("api", err.kind)
      local text = tostring(err)
      assert_one_line(text)
      assert.matches("^pagsmile.issuing api error: the platform refused the request", text)
      assert.matches("code=E\\n\\x1b[2Jccc", text, 1, true)
      assert(#text < 400, "tostring is " .. #text .. " bytes")
      assert(text:find("…", 1, true), "a cut value ends in …")
    end)
    srv.stop()
    assert(ok, failure)

    -- a request_id from an unauthenticated callback
    local client = assert(issuing.new(base()))
    local raw = '{"partner_id":"someone-else","request_id":"rid\\r\\nX-Forged: 1\\u001b]0;'
      .. ("z"):rep(20000) .. '"}'
    local note, err = client:parse_notification(raw)
    assert.is_nil(note)
    local text = tostring(err)
    assert_one_line(text)
    assert.matches("request_id=rid\\r\\nX-Forged: 1\\x1b]0;zzz", text, 1, true)
    assert(#text < 300, "tostring is " .. #text .. " bytes")
    note, err = client:parse_notification('{"partner_id":"someone-else","request_id":{"a":1}}')
    assert.is_nil(note)
    assert.matches("request_id=<a table>", tostring(err), 1, true)

    -- the caller's invalid order_no: newlines and a megabyte
    local card
    card, err = client:apply_card(helpers.biz { order_no = "ord\n" .. ("9"):rep(1000000) })
    assert.is_nil(card)
    text = tostring(err)
    assert_one_line(text)
    assert.matches("^pagsmile.issuing validation error: order_no: ", text)
    assert.matches("[order_no=ord\\n999", text, 1, true)
    assert(#text < 400, "tostring is " .. #text .. " bytes")
    -- a cut never splits a UTF-8 character
    card, err = client:apply_card(helpers.biz { order_no = ("é"):rep(200) })
    assert.is_nil(card)
    text = tostring(err)
    assert_one_line(text)
    assert.matches("é…]$", text)
    if utf8 then assert(utf8.len(text), "valid UTF-8") end -- luacheck: ignore 113
    client:close()

    -- the message is bounded and escaped too, and printing twice changes nothing
    local errors = require "pagsmile.issuing.errors"
    local e = errors.new("transport", "line one\nline two " .. ("m"):rep(5000), { order_no = "o1" })
    text = tostring(e)
    assert_one_line(text)
    assert(#text < 500, "tostring is " .. #text .. " bytes")
    assert.matches("line one\\nline two mmm", text, 1, true)
    assert.matches("%[order_no=o1%]$", text)
    assert.equal(text, tostring(e))
  end)
end)
