-- Apply for a card for a new cardholder and print the card and its order status.
--
--   lua examples/apply_card.lua            apply once (apply_card)
--   lua examples/apply_card.lua --wait     apply and follow the order until it completes
--   lua examples/apply_card.lua --batch 20 20 cards at once (apply_cards, 8 in flight)
--
-- Settings come from the environment (`make demo` sets them for the local emulator; the
-- README's "A complete example" says how to set them after `make sandbox`):
--   PAGSMILE_BASE_URL, PAGSMILE_APP_ID, PAGSMILE_PARTNER_ID,
--   PAGSMILE_PLATFORM_PUBLIC_KEY_FILE, PAGSMILE_MERCHANT_PRIVATE_KEY_FILE,
--   PAGSMILE_CA_FILE (optional), PAGSMILE_ORDER_NO (optional)
local issuing = require "pagsmile.issuing"

local function setting(name)
  local v = os.getenv(name)
  if not v or v == "" then
    io.stderr:write("apply_card: set ", name, " (see the comment at the top of this file)\n")
    os.exit(2)
  end
  return v
end

local client, cerr = issuing.new {
  base_url = setting("PAGSMILE_BASE_URL"),
  app_id = setting("PAGSMILE_APP_ID"),
  partner_id = setting("PAGSMILE_PARTNER_ID"),
  platform_public_key_file = setting("PAGSMILE_PLATFORM_PUBLIC_KEY_FILE"),
  merchant_private_key_file = setting("PAGSMILE_MERCHANT_PRIVATE_KEY_FILE"),
  ca_file = os.getenv("PAGSMILE_CA_FILE"),
}
if not client then
  io.stderr:write(tostring(cerr), "\n")
  os.exit(2)
end

-- order_no is the idempotency key of the order: keep it with your own record of the order
-- before calling, so that a crash or a lost answer can be settled with query_apply_result.
local order_no = os.getenv("PAGSMILE_ORDER_NO") or ("DEMO-" .. os.time() .. "-" .. math.random(1000, 9999))

local biz_data = {
  order_no = order_no,
  card_type = 1,
  card_bin = "658704",
  initial_balance = "50.00",
  card_limit = {
    daily_transactions = 20,
    single_amount = "500.00",
    daily_amount = "1000.00",
    monthly_amount = "5000.00",
  },
  holder = {
    first_name = "Ana",
    last_name = "Souza",
    mobile = "+5511987654321",
    email = "ana.souza@example.com",
    id_type = 1,
    id_no = "39053344705",
    birthday = "1990-04-12",
    nationality_code = "BR",
    address = {
      line = "Avenida Paulista, 1578",
      postal_code = "01310200",
      city_name = "Sao Paulo",
      state = "Sao Paulo",
      country_code = "BR",
    },
  },
}

-- Many cards at once: the same order with its own order_no (and holder id_no) per row.
local function batch(n)
  local rows = {}
  for i = 1, n do
    local row = { order_no = ("%s-%03d"):format(order_no, i), card_type = 1 }
    row.holder = {}
    for k, v in pairs(biz_data.holder) do row.holder[k] = v end
    row.holder.id_no = ("%011d"):format(39053344705 + i)
    rows[i] = row
  end
  print(("applying for %d orders, 8 at a time..."):format(n))
  local issued = 0
  local results = client:apply_cards(rows, {
    concurrency = 8,
    on_result = function(i, card, err)
      if card then issued = issued + 1 end
      print(("  %-22s %s"):format(rows[i].order_no, card and (card.status .. " " .. card.card_pan)
        or tostring(err)))
    end,
  })
  print(("%d of %d cards issued"):format(issued, #results))
  client:close()
  os.exit(issued == n and 0 or 1)
end
if arg[1] == "--batch" then batch(tonumber(arg[2]) or 20) end

local wait = arg[1] == "--wait"
local card, err
if wait then
  print(("applying for order %s and waiting for the card (every 0.5 s, at most 30 s)...")
    :format(order_no))
  card, err = client:apply_card_and_wait(biz_data, {
    timeout = 30, interval = 0.5,
    on_update = function(c) print(("  ... order %s is %s"):format(c.order_no, c.status)) end,
  })
else
  print(("applying for order %s..."):format(order_no))
  card, err = client:apply_card(biz_data)
end
if not card then
  io.stderr:write(tostring(err), "\n")
  -- The platform's own words are kept out of messages (they might echo what was sent).
  if err.sub_msg then io.stderr:write("  the platform says: ", err.sub_msg, "\n") end
  client:close()
  os.exit(1)
end

local FIELDS = {
  "order_no", "status", "order_status", "card_id", "card_token", "card_pan", "card_bin",
  "card_scheme", "card_type", "is_share_card", "holder_id", "holder_name", "order_count",
  "request_id",
}
for _, k in ipairs(FIELDS) do
  print(("  %-14s %s"):format(k, tostring(card[k])))
end
client:close()
