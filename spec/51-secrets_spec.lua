-- Secrets (issue #5): across a run of every sandbox fault on both transports, no error
-- message, tostring(err) or nginx log line (sandbox and client side) holds key material, a
-- full PAN, a cardholder's personal data, an AES session key or biz_data plaintext. The
-- detector proves it can fail by finding secrets planted in a sample first.
local core = require "pagsmile.issuing.core"
local issuing = require "pagsmile.issuing"
local launch = require "sandbox.launch"
local nginx = require "sandbox.nginx"
local helpers = require "helpers"
local kit = require "fault_kit"

local WINDOW = 40 -- a run of this many characters of a key's Base64 counts as key material
local PAN = ("%d"):rep(16)

-- A cardholder whose every value is distinctive enough to be searched for.
local function secret_holder()
  local h = helpers.holder()
  h.first_name, h.last_name = "Zebulonia", "Quartermaine"
  h.mobile, h.email, h.id_no = "+5511912348765", "zq.secret.holder@example.org", "ZQ7741920365"
  h.address.line = "Rua Secreta Escondida, 4711"
  return h
end

-- secrets: { key_windows = set of 40-character slices, strings = { name = text } }
local function find_secrets(text, secrets)
  local found = {}
  for run in text:gmatch("[A-Za-z0-9+/=]+") do
    for i = 1, #run - WINDOW + 1 do
      if secrets.key_windows[run:sub(i, i + WINDOW - 1)] then
        found[#found + 1] = "key material"
        break
      end
    end
  end
  if text:find(PAN) then found[#found + 1] = "a full PAN" end
  for name, s in pairs(secrets.strings) do
    if text:find(s, 1, true) then found[#found + 1] = name end
  end
  table.sort(found)
  return found
end

local function key_windows(pems)
  local set = {}
  for _, pem in pairs(pems) do
    local b64 = helpers.pem_body(pem)
    for i = 1, #b64 - WINDOW + 1 do set[b64:sub(i, i + WINDOW - 1)] = true end
  end
  return set
end

describe("no secret in any error or log line across the fault suite", function()
  local sb, runner, dir
  local texts = {}   -- every message and tostring(err) the suite produced
  local bodies = {}  -- every request body the curl transport sent
  local orders = {}  -- every order_no used
  local holder = secret_holder()

  lazy_setup(function()
    sb = launch.start { log_level = "info" }
    runner = kit.start_runner()
    dir = helpers.tmpdir("secrets")
  end)

  lazy_teardown(function()
    if runner then runner.stop() end
    if sb then sb:stop() end
    if dir then os.execute("rm -rf '" .. dir .. "'") end
  end)

  local function biz()
    local b = helpers.biz { holder = holder, card_limit = helpers.limits(), initial_balance = "77.31",
                            card_remark = "remark-for-the-sweep" }
    orders[#orders + 1] = b.order_no
    return b
  end

  local function recording()
    local real = assert(require("pagsmile.issuing.transport.curl").new())
    return {
      request = function(_, req)
        bodies[#bodies + 1] = req.body
        return real:request(req)
      end,
    }
  end

  local function keep(res)
    if res.err then
      texts[#texts + 1] = res.err.message
      texts[#texts + 1] = res.err.text
    end
    return res
  end

  -- The 16-character AES key of a request, recovered with the platform private key by the
  -- openssl command line (the client never exposes it).
  local function aes_key(body)
    local env = assert(core.json_decode(body))
    helpers.write_file(dir .. "/rk.b64", env.random_key)
    local out, ok = helpers.sh("cd '" .. dir .. "' && base64 -d rk.b64 > rk.bin && openssl pkeyutl"
      .. " -decrypt -inkey platform.pem -pkeyopt rsa_padding_mode:pkcs1 -in rk.bin")
    assert(ok, "openssl could not recover the AES key")
    return out
  end

  it("the detector finds each kind of secret planted in a sample", function()
    local secrets = {
      key_windows = key_windows { sb.keys.merchant_private },
      strings = { email = holder.email, aes_key = "Ab3dEf7hIj1lMn0p" },
    }
    local clean = "pagsmile.issuing transport error: reset [request_id=1 order_no=T-1] 658704******0112"
    assert.same({}, find_secrets(clean, secrets))
    local slice = helpers.pem_body(sb.keys.merchant_private):sub(300, 300 + WINDOW - 1)
    assert.same({ "key material" }, find_secrets(clean .. " x" .. slice .. "y", secrets))
    assert.same({}, find_secrets(clean .. " " .. slice:sub(2) .. " ", secrets)) -- 39 characters are not a find
    assert.same({ "a full PAN" }, find_secrets(clean .. " 6587041234560112", secrets))
    assert.same({ "email" }, find_secrets("to " .. holder.email, secrets))
    assert.same({ "aes_key" }, find_secrets("k=Ab3dEf7hIj1lMn0p;", secrets))
  end)

  it("holds for every fault, on curl and on ngx, and for refused input", function()
    for _, row in ipairs(kit.FAULTS) do
      for _, over in ipairs { { times = 100 }, { path = kit.APPLY } } do
        assert(sb:faults { kit.fault(row, over) })
        keep(kit.run_curl { options = kit.options(sb, { transport = recording() }),
                            call = "apply", biz_data = biz() })
        assert(sb:faults { kit.fault(row, over) })
        keep(kit.run_ngx(runner, { options = kit.options(sb), call = "apply", biz_data = biz() }))
      end
    end
    assert(sb:faults(nil))
    -- connection refused, an unknown order, a stranger's key, and refused biz_data
    local refused = kit.options(sb, { base_url = "http://127.0.0.1:" .. helpers.free_port() })
    keep(kit.run_curl { options = refused, call = "apply", biz_data = biz() })
    keep(kit.run_ngx(runner, { options = refused, call = "apply", biz_data = biz() }))
    keep(kit.run_curl { options = kit.options(sb), call = "query", order_no = "NO-SUCH-ORDER-7" })
    local stranger = kit.options(sb, { merchant_private_key = helpers.keypair("stranger").private_pem })
    keep(kit.run_curl { options = stranger, call = "apply", biz_data = biz() })
    local client = assert(issuing.new(kit.options(sb)))
    for _, bad in ipairs {
      { email = holder.email .. "\1" }, { mobile = holder.mobile .. "99999999999" },
      { id_no = holder.id_no .. "\n" }, { first_name = holder.first_name:rep(9) },
    } do
      local b = biz()
      b.holder = secret_holder()
      for k, v in pairs(bad) do b.holder[k] = v end
      local _, err = client:apply_card(b)
      assert.equal("validation", err.kind)
      keep { err = kit.error_view(err) }
    end
    client:close()

    -- what the sweep must not find
    helpers.write_file(dir .. "/platform.pem", sb.keys.platform_private)
    local strings = {
      first_name = holder.first_name, last_name = holder.last_name, email = holder.email,
      id_no = holder.id_no, mobile = holder.mobile, address = holder.address.line,
      holder_json = assert(core.json_encode(holder)),
      remark = "remark-for-the-sweep",
    }
    for i, body in ipairs(bodies) do
      if i <= 6 then
        local key = aes_key(body)
        assert.matches("^[A-Za-z0-9]+$", key)
        assert.equal(16, #key)
        strings["aes_key " .. i] = key
      end
    end
    local secrets = { key_windows = key_windows(sb.keys), strings = strings }

    -- the sweep has something to sweep: every error of the run, and both nginx logs
    local errors_text = table.concat(texts, "\n")
    assert.is_true(#texts >= 4 * #kit.FAULTS)
    assert.truthy(errors_text:find(orders[1], 1, true))
    assert.truthy(errors_text:find("outcome of the apply is unknown", 1, true))
    assert.truthy(errors_text:find("holder.email", 1, true))
    local sandbox_log, runner_log = sb:error_log(), runner.error_log()
    assert.truthy(sandbox_log:find("[info]", 1, true) or sandbox_log:find("[notice]", 1, true))

    assert.same({}, find_secrets(errors_text, secrets))
    assert.same({}, find_secrets(sandbox_log, secrets))
    assert.same({}, find_secrets(runner_log, secrets))
  end)
end)

-- The calls around the apply (issue 13): the card's full PAN, CVV and ACS password, a KYC
-- document's bytes (and their Base64) and a cardholder's personal data never appear in an
-- error, a log event, tostring or JSON of a result, or either nginx's log, across every
-- fault on both transports.
describe("no secret of the calls around the apply in any error, log event or result text", function()
  local calls = require "support.calls"
  local around = require "support.around"
  local document = require "pagsmile.issuing.document"
  local sb, runner
  local texts = {}

  lazy_setup(function()
    sb = launch.start { log_level = "info" }
    runner = nginx.start { name = "calls-runner", http = calls.CONFIG, log_level = "info" }
  end)
  lazy_teardown(function()
    if runner then runner.stop() end
    if sb then sb:stop() end
  end)

  local RUN = calls.engines(function() return runner end, core.monotime)

  -- Keeps what a call left for a reader: its error's message and text, and its log events.
  local function keep(res)
    if res.err then
      texts[#texts + 1] = res.err.message
      texts[#texts + 1] = res.err.text
    end
    for _, e in ipairs(res.log or {}) do
      -- as a log line would show it (durations and pauses with a few decimals: their full
      -- digits would look like a PAN to the detector)
      local line = {}
      for k, v in pairs(e) do
        line[#line + 1] = k .. "=" .. (type(v) == "number" and ("%.4f"):format(v) or tostring(v))
      end
      texts[#texts + 1] = table.concat(line, " ")
    end
    return res
  end

  it("holds for card details, cardholders, documents and top-ups under every fault", function()
    local client = assert(issuing.new(kit.options(sb)))
    local card = around.card(client, { initial_balance = "30.00" })
    local info = assert(client:query_card_info(card.card_token))
    local secret = info:reveal()
    local marker = "ZQ-DOCUMENT-SECRET-" .. helpers.order_no("D")
    local bytes = marker .. around.png(900) .. marker
    local holder = secret_holder()
    holder.id_no = around.id_no()
    local made = assert(client:create_holder(holder))
    -- what a program prints of the details
    texts[#texts + 1] = tostring(info)
    texts[#texts + 1] = assert(core.json_encode(info))
    local _, verr = client:upload_holder_document { holder_id = made.holder_id, file_type = 1,
      file_name = "scan.gif", file_content = bytes }
    texts[#texts + 1] = verr.message
    client:close()

    for _, row in ipairs(kit.FAULTS) do
      for _, t in ipairs { "curl", "ngx" } do
        local function call(method, arg, path)
          assert(sb:faults { kit.fault(row, { path = path, times = 100 }) })
          keep(RUN[t] { options = kit.options(sb, { timeout = 1 }), method = method, arg = arg,
                        collect_log = true })
        end
        call("query_card_info", card.card_token, "/issuing/card/query-card-info")
        local h = secret_holder()
        h.id_no = around.id_no()
        call("create_holder", h)
        call("recharge", around.topup(sb, card.card_token, "1.00"))
        call("upload_holder_document", { holder_id = made.holder_id, file_type = 1,
          file_name = "passport.png", file_hex = helpers.hex(bytes) })
      end
    end
    assert(sb:faults(nil))

    local b64 = document.base64(bytes)
    local windows = key_windows(sb.keys)
    for i = 1, #b64 - WINDOW + 1 do windows[b64:sub(i, i + WINDOW - 1)] = true end
    local secrets = { key_windows = windows, strings = {
      acs_password = secret.acs_password, cvv_field = '"cvv":"' .. secret.cvv,
      cvv_text = "cvv=" .. secret.cvv, document = marker, first_name = holder.first_name,
      email = holder.email, mobile = holder.mobile, address = holder.address.line,
    } }
    -- the sweep has something to sweep, and would see a secret planted in it. The emulator's
    -- long ids (holder_id in these calls' log events) are 16 digits counted from 2^53, not
    -- PANs (the emulator's PANs start 658704/658705): they are set aside before the sweep.
    secrets.strings.pan = secret.card_pan
    local all = table.concat(texts, "\n"):gsub("900719925474%d%d%d%d", "<id>")
    assert.is_true(#texts > 8 * #kit.FAULTS)
    assert.truthy(all:find("outcome of the cardholder creation is unknown", 1, true))
    assert.truthy(all:find("outcome of the top-up is unknown", 1, true))
    assert.truthy(all:find(card.card_pan, 1, true)) -- the masked PAN is fine
    assert.same({ "a full PAN", "pan" }, find_secrets(all .. " " .. secret.card_pan, secrets))
    assert.same({ "key material" }, find_secrets(b64:sub(100, 100 + WINDOW), secrets))
    assert.same({}, find_secrets(all, secrets))
    assert.same({}, find_secrets(sb:error_log(), secrets))
    assert.same({}, find_secrets(runner.error_log(), secrets))
  end)
end)
