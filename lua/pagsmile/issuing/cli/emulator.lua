-- `pagsmile-issuing emulator` (alias `sandbox`): the local emulator of the Issuing Card API in
-- nginx, in the foreground until Ctrl-C (docs/SANDBOX.md). Start failures are one line on
-- stderr and exit status 1.
local convert = require "pagsmile.issuing.cli.convert"

local emulator = {}

local number_at_least = convert.number_at_least

local function die(msg)
  io.stderr:write("pagsmile-issuing: ", msg, "\n")
  os.exit(1)
end

-- An error raised below as one line, without the "file:line:" a Lua error carries.
local function one_line(err)
  local msg = tostring(err):match("^[^\n]*")
  return (msg:gsub("^[^ ]-%.lua:%d+: ", ""))
end

function emulator.define(cmd)
  cmd:summary("Run the local emulator of the Issuing Card API in the foreground (Ctrl-C stops it).")
  cmd:description("Runs the local emulator of the Pagsmile Issuing Card API in nginx (with its Lua "
    .. "module) on 127.0.0.1, in the foreground, until Ctrl-C. Its control API and settings are "
    .. "in docs/SANDBOX.md.")
  cmd:option("-p --port", "Port to listen on (0: any free port).", "8090"):convert(number_at_least(0))
  cmd:option("-k --keys", "Directory for the key files: made once (private files mode 0600), then "
    .. "reused, so clients keep working across restarts. Without it: new keys in a temporary "
    .. "directory, removed at exit."):argname("<dir>")
  cmd:flag("--tls", "Serve HTTPS with a test CA (its file is printed; kept in <dir>/tls with --keys).")
  cmd:option("--latency-ms", "Delay every answer by this many milliseconds."):argname("<ms>")
    :convert(number_at_least(0))
  cmd:option("--complete-after", "New orders stay processing this many seconds, then complete by "
    .. "themselves and the callback fires."):argname("<seconds>"):convert(number_at_least(0))
  cmd:option("--callback-url", "Where to send card notifications (SPEC.md §7)."):argname("<url>")
  cmd:option("--merchant-public-key", "Seal answers and callbacks for this merchant public key "
    .. "(PEM or Base64), as when you paste yours into the dashboard."):argname("<file>")
end

local function banner(sb, args)
  local lines = {
    "pagsmile-issuing local emulator (nginx pid " .. tostring(sb.server.pid()) .. "): Ctrl-C stops it",
    "  base_url              " .. sb.url,
    "  app_id                " .. sb.app_id,
    "  partner_id            " .. sb.partner_id,
    "  platform_public_key   " .. sb.platform_public_key_file,
  }
  if args.merchant_public_key then
    lines[#lines + 1] = "  merchant key          registered from " .. args.merchant_public_key
                        .. " (use its private key)"
  else
    lines[#lines + 1] = "  merchant_private_key  " .. sb.merchant_private_key_file
  end
  if sb.ca_file then lines[#lines + 1] = "  ca_file               " .. sb.ca_file end
  lines[#lines + 1] = "  control               http://127.0.0.1:" .. sb.control_port
                      .. "/_sandbox/   (docs/SANDBOX.md)"
  lines[#lines + 1] = "  error log             " .. sb.prefix .. "/logs/error.log"
  if not args.keys then
    lines[#lines + 1] = "  (new keys at every start: --keys DIR keeps them)"
  end
  return table.concat(lines, "\n") .. "\n"
end

function emulator.run(args)
  local ok, launch = pcall(require, "pagsmile_emulator.launch")
  if not ok then die(one_line(launch)) end
  local nginx = require "pagsmile_emulator.nginx"
  local merchant_public
  if args.merchant_public_key then
    merchant_public = nginx.read_file(args.merchant_public_key)
    if not merchant_public then die("cannot read " .. args.merchant_public_key) end
  end
  local socket = require "socket"
  local started, sb = pcall(launch.start, {
    port = args.port ~= 0 and args.port or nil, keys_dir = args.keys, tls = args.tls,
    latency_ms = args.latency_ms, complete_after = args.complete_after,
    callback_url = args.callback_url, merchant_public_key = merchant_public,
    stop_with_parent = true,
  })
  if not started then die(one_line(sb)) end
  io.stdout:write(banner(sb, args))
  io.stdout:flush()
  -- Ctrl-C raises "interrupted!" in the interpreter; any other end of this process is
  -- caught by the emulator's own watchdog (it stops once this process is gone).
  local pid = sb.server.pid()
  local waited, err = pcall(function()
    while pid and nginx.alive(pid) do socket.sleep(0.5) end
  end)
  if waited then
    io.stderr:write("pagsmile-issuing: nginx exited; log: ", sb.prefix, "/logs/error.log\n")
    os.exit(1)
  end
  sb:stop()
  io.stdout:write("local emulator stopped\n")
  if not tostring(err):find("interrupted", 1, true) then die(one_line(err)) end
end

return emulator
