-- What the specs of the command line (spec/8x-cli_*) share: the command run as a process on
-- this runtime's interpreter (in the foreground, or in the background to be killed), the
-- settings of an emulator as environment variables, a CSV with every quirk spreadsheets
-- write, and the journal read back with LuaSQL.
local core = require "pagsmile.issuing.core"
local nginx = require "sandbox.nginx"
local helpers = require "helpers"

local kit = {}

kit.INTERP = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d%.%d"))

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
kit.q = q

--- The environment (a "NAME=value ..." string) pointing the command at emulator `sb`.
function kit.env(sb, extra)
  local dir = helpers.tmpdir()
  helpers.write_file(dir .. "/platform_public.pem", sb.platform_public_key)
  helpers.write_file(dir .. "/merchant_private.pem", sb.merchant_private_key)
  local parts = {
    "PAGSMILE_BASE_URL=" .. q(sb.url), "PAGSMILE_APP_ID=" .. q(sb.app_id),
    "PAGSMILE_PARTNER_ID=" .. q(sb.partner_id),
    "PAGSMILE_PLATFORM_PUBLIC_KEY_FILE=" .. q(dir .. "/platform_public.pem"),
    "PAGSMILE_MERCHANT_PRIVATE_KEY_FILE=" .. q(dir .. "/merchant_private.pem"),
  }
  for k, v in pairs(extra or {}) do parts[#parts + 1] = k .. "=" .. q(v) end
  return table.concat(parts, " ")
end

--- The setup the CLI specs share (give it busted's lazy_setup and lazy_teardown): an emulator,
-- the environment pointing the command at it (plus `extra`), and a scratch directory, in the
-- returned table once the setup ran.
function kit.fixture(lazy_setup, lazy_teardown, extra)
  local ctx = {}
  lazy_setup(function()
    ctx.sb = require("sandbox.launch").start {}
    ctx.env = kit.env(ctx.sb, extra)
    ctx.dir = helpers.tmpdir()
  end)
  lazy_teardown(function()
    if ctx.sb then ctx.sb:stop() end
    if ctx.dir then os.execute("rm -rf " .. q(ctx.dir)) end
  end)
  return ctx
end

-- The shell line running the command with `args` (a string) under `env` (after a cd to the
-- checkout): env execs the interpreter, so a background job's $! is the command's pid.
local function command(args, env, stdin)
  return ("cd %s; env -u PAGSMILE_APP_ID -u PAGSMILE_PARTNER_ID -u PAGSMILE_BASE_URL %s %s "
    .. "bin/pagsmile-issuing %s <%s"):format(q(nginx.repo_root()), env or "", kit.INTERP, args,
    stdin and q(stdin) or "/dev/null")
end

-- os.execute's exit status on every runtime (5.1 and LuaJIT give the wait status).
local function exit_code(a, _, c)
  if type(a) == "number" then return a >= 256 and math.floor(a / 256) or a end
  return c
end

--- Runs the command to its end: { code, out, err }.
function kit.run(args, env, stdin)
  local dir = helpers.tmpdir()
  local code = exit_code(os.execute(("%s >%s/out 2>%s/err"):format(command(args, env, stdin), dir, dir)))
  local r = { code = code, out = helpers.read_file(dir .. "/out") or "",
              err = helpers.read_file(dir .. "/err") or "" }
  os.execute("rm -rf " .. q(dir))
  return r
end

--- Starts the command in the background: { pid, dir }. A shell waits for it and writes its
-- exit status (137 after kill -9) for kit.wait.
function kit.start(args, env)
  local dir = helpers.tmpdir()
  local script = ("%s >%s/out 2>%s/err & echo $! >%s/pid; wait $!; echo $? >%s/rc"):format(
    command(args, env), dir, dir, dir, dir)
  os.execute("sh -c " .. q(script) .. " >/dev/null 2>&1 &")
  local pid = helpers.wait_for(function()
    local s = helpers.read_file(dir .. "/pid")
    return s and tonumber(s:match("%d+"))
  end, 10)
  return { pid = pid, dir = dir }
end

--- Waits (at most `seconds`) for a background command to end; fills code, out and err.
function kit.wait(r, seconds)
  local rc = helpers.wait_for(function() return helpers.read_file(r.dir .. "/rc") end, seconds or 60)
  r.code = rc and tonumber(rc:match("%d+"))
  r.out = helpers.read_file(r.dir .. "/out") or ""
  r.err = helpers.read_file(r.dir .. "/err") or ""
  return r.code
end

function kit.signal(r, name)
  os.execute("kill -" .. name .. " " .. r.pid .. " 2>/dev/null")
end

-- Quirky rows ---------------------------------------------------------------------------------

kit.HEADER = {
  "order_no", "card_type", "holder.first_name", "holder.last_name", "holder.mobile",
  "holder.email", "holder.id_type", "holder.id_no", "holder.birthday", "holder.nationality_code",
  "holder.address.line", "holder.address.postal_code", "holder.address.city_name",
  "holder.address.state", "holder.address.country_code", "card_remark", "is_share_card",
  "initial_balance", "card_limit.daily_transactions", "card_limit.single_amount",
  "card_limit.daily_amount", "card_limit.monthly_amount", "# notes for people",
}

local FIRST = { "José", "Zoë", "Ñuño", "Ana", "Ålesund", "Chloé", "李", "Renée" }
local LAST = { 'O"Brien', "Smith, Jr.", "Souza", 'D"Ávila, Neto', "Müller", "Ng" }

--- Row `i` of the quirky file: a table of column → cell (strings).
function kit.row(i)
  local limits = i % 3 == 0
  return {
    order_no = i % 10 == 0 and ("EXPL-" .. i) or "",
    card_type = tostring(1 + i % 3),
    ["holder.first_name"] = FIRST[1 + i % #FIRST],
    ["holder.last_name"] = LAST[1 + i % #LAST],
    ["holder.mobile"] = "+55119876" .. ("%05d"):format(i),
    ["holder.email"] = "user" .. i .. "@example.com",
    ["holder.id_type"] = "1",
    ["holder.id_no"] = ("%011d"):format(39053344705 + i),
    ["holder.birthday"] = "1990-04-12",
    ["holder.nationality_code"] = "BR",
    ["holder.address.line"] = "Avenida Paulista, " .. (1000 + i) .. ', "Bloco B"',
    ["holder.address.postal_code"] = "01310200",
    ["holder.address.city_name"] = "São Paulo",
    ["holder.address.state"] = "São Paulo",
    ["holder.address.country_code"] = "BR",
    card_remark = ('Row %d, "quoted", comma, ção'):format(i),
    is_share_card = ({ "true", "FALSE", "", "0" })[1 + i % 4],
    initial_balance = i % 2 == 0 and "50.00" or "",
    ["card_limit.daily_transactions"] = limits and "20" or "",
    ["card_limit.single_amount"] = limits and "500.00" or "",
    ["card_limit.daily_amount"] = limits and "1000.00" or "",
    ["card_limit.monthly_amount"] = limits and "5000.00" or "",
    ["# notes for people"] = i % 5 == 0 and ("two\r\nlines, and \"quotes\"") or "",
  }
end

local function cell(v)
  if v:find('[,"\r\n]') then return '"' .. v:gsub('"', '""') .. '"' end
  return v
end

--- A CSV of rows 1..n (kit.row), as a spreadsheet writes it: a BOM, CRLF line ends, fields
-- quoted when they hold commas, quotes or line breaks. `eol` "\n" for LF; `over(i, row)`
-- may change a row.
function kit.csv(path, n, eol, over)
  eol = eol or "\r\n"
  local lines = {}
  local function line(cells)
    local out = {}
    for k, v in ipairs(cells) do out[k] = cell(v) end
    lines[#lines + 1] = table.concat(out, ",")
  end
  line(kit.HEADER)
  for i = 1, n do
    local row = kit.row(i)
    if over then over(i, row) end
    local cells = {}
    for k, name in ipairs(kit.HEADER) do cells[k] = row[name] end
    line(cells)
  end
  helpers.write_file(path, "\239\187\191" .. table.concat(lines, eol) .. eol)
end

--- The journal's rows (LuaSQL): row number → { state, order_no, card_id, ... }.
function kit.journal(path)
  local env = require("luasql.sqlite3").sqlite3()
  local conn = assert(env:connect(path))
  local cur = assert(conn:execute("SELECT row, line, order_no, state, card_id, card_token, "
    .. "card_pan, error, attempts FROM rows"))
  local out, n = {}, 0
  while true do
    local r = cur:fetch({}, "a")
    if not r then break end
    out[tonumber(r.row)] = r
    n = n + 1
  end
  cur:close()
  conn:close()
  env:close()
  return out, n
end

--- A results CSV (--out) as a list of { column = value } in file order.
function kit.results(path)
  local csv = require "pagsmile.issuing.cli.csv"
  local text = assert(helpers.read_file(path), "no results file " .. path)
  local list, header = {}, nil
  for _, fields in csv.records(text) do
    if not header then header = fields else
      local r = {}
      for k, name in ipairs(header) do r[name] = fields[k] end
      list[#list + 1] = r
    end
  end
  return list
end

--- The emulator's order book: order_no → card, and how many orders.
function kit.book(sb)
  local orders = assert(sb:orders())
  local n = 0
  for _ in pairs(orders) do n = n + 1 end
  return orders, n
end

kit.sleep = core.sleep

return kit
