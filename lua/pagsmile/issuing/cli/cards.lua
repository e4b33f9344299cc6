-- The one-card commands: `apply FILE|-` (one biz_data JSON object), `query ORDER_NO` and
-- `notification [FILE|-]`. Each prints the card as one JSON object on stdout and returns the
-- exit status: 0 completed (or, for a notification, parsed), 1 refused or invalid, 3 still
-- processing or outcome unknown (query it again later: never apply it under a new order_no).
local deps = require "pagsmile.issuing.cli.deps"
local output = require "pagsmile.issuing.cli.output"
local rows = require "pagsmile.issuing.cli.rows"
local settings = require "pagsmile.issuing.cli.settings"

local cards = {}

local EXIT_OK, EXIT_FAILED, EXIT_AGAIN = 0, 1, 3

local function say(text)
  io.stderr:write("pagsmile-issuing: ", text, "\n")
end

-- The wait options of --wait.
local function wait_opts(args)
  return { timeout = args.wait_timeout, interval = 2 }
end

-- Prints a card or the error, and says what the exit status means.
local function finish(card, err, order_no)
  if card then
    output.card(card)
    if card.completed then return EXIT_OK end
    say("order " .. tostring(card.order_no) .. " is " .. tostring(card.status)
      .. ": follow it with `pagsmile-issuing query " .. tostring(card.order_no) .. " --wait`")
    return EXIT_AGAIN
  end
  if err.card then output.card(err.card) end
  say(tostring(err))
  if err.outcome == "unknown" or err.kind == "timeout" and err.card then
    say("the outcome is unknown: query order " .. tostring(err.order_no or order_no)
      .. " later, or apply again with the same order_no (never a new one)")
    return EXIT_AGAIN
  end
  return EXIT_FAILED
end

--- apply FILE|-: one biz_data object (its order_no, or one derived with --order-prefix).
function cards.apply(args)
  local label = args.input == "-" and "<stdin>" or args.input
  if args.order_prefix then
    local ok, err = rows.check_prefix(args.order_prefix)
    if not ok then deps.fail(deps.USAGE, err) end
  end
  local json = require "pagsmile.issuing.json"
  local biz, err = json.decode(rows.read_text(args.input))
  if type(biz) ~= "table" or biz[1] ~= nil then
    deps.fail(deps.USAGE, label .. ": " .. (biz == nil and ("is not JSON: " .. tostring(err))
      or "is not a JSON object (one biz_data object; use --file for many)"))
  end
  local row = rows.prepare({ { index = 1, line = 1, biz = biz, problems = {} } }, args.order_prefix)[1]
  if not row.valid then
    for _, p in ipairs(row.problems) do say(label .. ": " .. p.message .. " (" .. p.rule .. ")") end
    return EXIT_FAILED
  end
  if args.dry_run then
    say(label .. ": valid (order_no " .. tostring(biz.order_no) .. "); nothing was sent (dry run)")
    return EXIT_OK
  end
  local client = settings.client(args)
  local card
  if args.wait then
    card, err = client:apply_card_and_wait(biz, wait_opts(args))
  else
    card, err = client:apply_card(biz)
  end
  client:close()
  return finish(card, err, biz.order_no)
end

--- query ORDER_NO: the card of an existing order; --wait follows it to completion.
function cards.query(args)
  local client = settings.client(args)
  local card, err
  if args.wait then
    card, err = client:wait_apply_result(args.order_no, wait_opts(args))
  else
    card, err = client:query_apply_result(args.order_no)
  end
  client:close()
  return finish(card, err, args.order_no)
end

--- notification [FILE|-]: a callback body as the platform POSTed it. What it claims, or with
-- --confirm the platform's own card for its order (the one to act on).
function cards.notification(args)
  local body = rows.read_text(args.input or "-")
  local client = settings.client(args)
  local note, err
  if args.confirm then
    note, err = client:confirm_notification(body)
  else
    note, err = client:parse_notification(body)
  end
  client:close()
  if note then
    output.card(note)
    return EXIT_OK
  end
  say(tostring(err))
  return err.retryable and EXIT_AGAIN or EXIT_FAILED
end

return cards
