-- The body of `make demo` (see tools/demo).
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "build/5.4/?.so;" .. package.cpath
local launch = require "sandbox.launch"

local sb = launch.start {}
print(("local emulator: %s (a stand-in for the Pagsmile platform, throwaway keys in %s)")
  :format(sb.url, sb.keys_dir))

local env = table.concat({
  "LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;'",
  "LUA_CPATH_5_4='build/5.4/?.so;;'",
  "PAGSMILE_BASE_URL=" .. sb.url,
  "PAGSMILE_APP_ID=" .. sb.app_id,
  "PAGSMILE_PARTNER_ID=" .. sb.partner_id,
  "PAGSMILE_PLATFORM_PUBLIC_KEY_FILE=" .. sb.keys_dir .. "/platform_public.pem",
  "PAGSMILE_MERCHANT_PRIVATE_KEY_FILE=" .. sb.keys_dir .. "/merchant_private.pem",
}, " ")

local function run(title, extra_env, args)
  print("\n== " .. title)
  print("$ lua examples/apply_card.lua " .. args)
  local ok = os.execute(env .. " " .. extra_env .. " lua5.4 examples/apply_card.lua " .. args)
  return ok == true or ok == 0
end

local ok = run("a card for a new cardholder", "", "")
if ok then
  local order_no = ("DEMO-PENDING-%d"):format(os.time())
  sb:pending(order_no, 3)
  print("\n(the emulator keeps order " .. order_no .. " processing for 3 queries)")
  ok = run("a pending order followed to completion", "PAGSMILE_ORDER_NO=" .. order_no, "--wait")
  if ok then ok = run("20 cards at once", "", "--batch 20") end
  if ok then
    local orders = sb:orders()
    local o = orders[order_no]
    print(("\nthe emulator's order book: %s applied %d time(s), queried %d time(s), status %s")
      :format(order_no, o.applies, o.queries, tostring(o.order_status)))
  end
end
sb:stop()
print(ok and "\ndemo finished: the emulator is stopped." or "\ndemo FAILED")
os.exit(ok and 0 or 1)
