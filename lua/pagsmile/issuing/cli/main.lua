-- The command line of pagsmile-issuing (docs/CLI.md). Each command is one entry of COMMANDS:
-- `define` adds its arguments to the argparse parser, `run(args, interrupted)` does the work
-- and returns the exit status:
--   0  all completed        1  some rows failed definitely (refused, invalid)
--   2  usage or settings    3  some outcomes unknown or still processing: run it again
-- A failure the command foresees (deps.fail) is one line on stderr with its status.
local deps = require "pagsmile.issuing.cli.deps"
local convert = require "pagsmile.issuing.cli.convert"

local main = {}

local function say(text)
  io.stderr:write("pagsmile-issuing: ", text, "\n")
end

local function version()
  local ok, issuing = pcall(require, "pagsmile.issuing")
  return ok and issuing._VERSION or "pagsmile-issuing (library not found)"
end

-- apply ----------------------------------------------------------------------------------------

local function output_options(cmd)
  cmd:flag("-q --quiet", "No progress and no summary; errors only.")
  cmd:flag("--json", "Events as JSON lines on stdout (start, invalid, row, note, done), nothing on stderr.")
  cmd:option("--log-every", "Without a terminal: one progress line every N rows.", "100")
    :argname("<n>"):convert(convert.whole(1, 1e9))
end

local function wait_options(cmd, what)
  cmd:flag("--wait", what)
  cmd:option("--wait-timeout", "How long --wait waits, in seconds.", "60"):argname("<seconds>")
    :convert(convert.positive)
end

local function define_apply(cmd)
  local settings = require "pagsmile.issuing.cli.settings"
  cmd:summary("Apply for one card (a biz_data JSON object), or one card per row of a file.")
  cmd:description("apply FILE|-  applies for one card: FILE (or stdin) holds one biz_data JSON "
    .. "object; the card is printed as JSON.\n"
    .. "apply --file cards.csv|cards.jsonl --journal PATH  applies for one card per row, "
    .. "recording every order in the journal first, so that running the same command again "
    .. "(after a crash, kill -9 or Ctrl-C) never issues a second card for a row: completed rows "
    .. "are skipped, rows whose outcome may be unknown are settled first. See docs/CLI.md.")
  cmd:argument("input", "A biz_data JSON file, or - for stdin (one card)."):args("?")
  cmd:option("--file", "The rows: CSV with a header of dotted biz_data paths, or JSONL."):argname("<file>")
  cmd:option("--journal", "The journal of this file's run (SQLite): made on the first run, "
    .. "read by every later one."):argname("<path>")
  cmd:option("--format", "The file's format when its name does not say (.csv, .jsonl)."):choices { "csv", "jsonl" }
  cmd:option("--out", "Write every row's result here at the end of each run (.csv or .jsonl).")
    :argname("<file>")
  cmd:option("--concurrency", "Orders in flight at once (1-256; default 8).")
    :argname("<n>"):convert(convert.whole(1, 256))
  cmd:option("--rate", "At most this many requests per second.")
    :argname("<r>"):convert(convert.positive)
  cmd:option("--order-prefix", "Rows without an order_no get PREFIX-<16 characters of the row's "
    .. "hash> (up to 15 characters of A-Z a-z 0-9 _ -).")
    :argname("<prefix>")
  cmd:flag("-n --dry-run", "Check every row and print every error; send nothing.")
  cmd:flag("--skip-invalid", "Apply the valid rows even when some are invalid.")
  wait_options(cmd, "Follow processing orders until they complete.")
  output_options(cmd)
  settings.define(cmd)
end

local BULK_ONLY = { "journal", "format", "out", "concurrency", "rate", "skip_invalid" }

local function run_apply(args, interrupted)
  if args.file and args.input then
    deps.fail(deps.USAGE, "give a biz_data file (one card) or --file (one card per row), not both")
  end
  if args.file then
    args.concurrency = args.concurrency or 8
    return require("pagsmile.issuing.cli.bulk").run(args, interrupted)
  end
  if not args.input then
    deps.fail(deps.USAGE, "apply needs a biz_data file (or - for stdin), or --file with rows")
  end
  for _, name in ipairs(BULK_ONLY) do
    if args[name] then
      deps.fail(deps.USAGE, "--" .. name:gsub("_", "-") .. " goes with --file (one card per row)")
    end
  end
  return require("pagsmile.issuing.cli.cards").apply(args)
end

-- query, notification, keygen ---------------------------------------------------------------

local function define_query(cmd)
  cmd:summary("Print the card of an existing order (Query Apply Result).")
  cmd:argument("order_no", "The order's order_no.")
  wait_options(cmd, "Follow the order until it completes.")
  require("pagsmile.issuing.cli.settings").define(cmd)
end

local function define_notification(cmd)
  cmd:summary("Parse an apply-card callback body and print the card it claims.")
  cmd:description("Reads the raw body the platform POSTed to your callback URL (FILE, or stdin) "
    .. "and prints what it claims. A notification proves nothing about its sender: --confirm "
    .. "asks the platform and prints its card instead (the one to act on).")
  cmd:argument("input", "The body's file, or - for stdin (the default)."):args("?")
  cmd:flag("--confirm", "Ask the platform (Query Apply Result) and print its card.")
  require("pagsmile.issuing.cli.settings").define(cmd)
end

local function define_keygen(cmd)
  cmd:summary("Make your merchant key pair; print the public key for the dashboard.")
  cmd:description("Writes merchant_private.pem (mode 0600) and merchant_public.pem into DIR, "
    .. "never over existing files, and prints the public key's bare Base64 (what the dashboard "
    .. "takes) on stdout.")
  cmd:option("-o --out", "The directory for the two files.", "."):argname("<dir>")
end

-- The commands -------------------------------------------------------------------------------

-- `graceful`: runs under signals.run, Ctrl-C noticed (a bulk run settles what is in flight);
-- `crash`: the status when it fails unforeseen (3 where an order may be in flight).
local COMMANDS = {
  { name = "apply", define = define_apply, run = run_apply, graceful = true, crash = 3 },
  { name = "query", define = define_query, crash = 3,
    run = function(args) return require("pagsmile.issuing.cli.cards").query(args) end },
  { name = "notification", define = define_notification, crash = 1,
    run = function(args) return require("pagsmile.issuing.cli.cards").notification(args) end },
  { name = "keygen", define = define_keygen, crash = 1,
    run = function(args) return require("pagsmile.issuing.cli.keygen").run(args) end },
  { name = "emulator sandbox", crash = 1,
    define = function(cmd) require("pagsmile.issuing.cli.emulator").define(cmd) end,
    run = function(args) require("pagsmile.issuing.cli.emulator").run(args) return 0 end },
}

local function parser_for()
  local argparse = deps.need("argparse", "lua-argparse")
  local parser = argparse("pagsmile-issuing", "Issue cards through the Pagsmile Issuing Card API, "
    .. "and tools around it.")
  parser:command_target("command")
  parser:help_max_width(90)
  parser:epilog("Exit status: 0 all completed, 1 some failed definitely, 2 usage or settings, "
    .. "3 some outcomes unknown or processing (run the same command again). docs/CLI.md has it all.")
  parser:flag("--version", "Show the version and exit."):action(function()
    print(version())
    os.exit(0)
  end)
  local by_name = {}
  for _, c in ipairs(COMMANDS) do
    local cmd = parser:command(c.name)
    c.define(cmd)
    by_name[cmd._name] = c
  end
  return parser, by_name
end

-- Runs a command; a foreseen failure is one line and its status, any other error one line and
-- the command's `crash` status.
local function dispatch(c, args, interrupted)
  local ok, code = xpcall(function() return c.run(args, interrupted) end, function(e)
    if deps.is_failure(e) then return e end
    if type(e) == "string" and e:find("interrupted!", 1, true) then
      return { exit = c.crash, message = "interrupted" }
    end
    return { exit = c.crash, message = tostring(e):match("^[^\n]*"), trace = debug.traceback(tostring(e), 2) }
  end)
  if ok then return code end
  say(code.message)
  if code.trace and os.getenv("PAGSMILE_DEBUG") then io.stderr:write(code.trace, "\n") end
  return code.exit
end

--- Runs the command line `argv` (the script's arg table); returns the exit status.
function main.run(argv)
  local ok, parser, by_name = pcall(parser_for)
  if not ok then
    say(deps.is_failure(parser) and parser.message or tostring(parser))
    return deps.USAGE
  end
  local list = {}
  for i = 1, #argv do list[i] = argv[i] end
  -- argparse's own handler, but with status 2; `p` is the (sub)command whose usage it was.
  parser.error = function(p, msg)
    io.stderr:write(p:get_usage(), "\n\nError: ", msg, "\n")
    os.exit(deps.USAGE)
  end
  local args = parser:parse(list)
  local c = by_name[args.command]
  if c.graceful then
    return require("pagsmile.issuing.cli.signals").run(function(interrupted)
      return dispatch(c, args, interrupted)
    end)
  end
  return dispatch(c, args, function() return false end)
end

return main
