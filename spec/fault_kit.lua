-- Shared by spec/50-faults_spec.lua and spec/51-secrets_spec.lua: the table of sandbox
-- faults with the error each must give, and a "runner" nginx that makes client calls on the
-- ngx transport (cosockets) and answers with the outcome as JSON.
local socket = require "socket"
local core = require "pagsmile.issuing.core"
local nginx = require "sandbox.nginx"
local helpers = require "helpers"
local call = require "fault_call"

local kit = {}

kit.APPLY = "/issuing/card/apply"
kit.QUERY = "/issuing/card/query-apply-card-result"

-- The client's deadline in these specs, and the slack allowed past it (a correctness bound:
-- "the call returns near its deadline", not a performance figure).
kit.TIMEOUT = 2
kit.SLACK = 2

-- Every fault of the sandbox, and what a caller must see when it hits every request (the
-- apply and each query that tries to settle it). `processed`: the sandbox creates the order
-- before the fault fires. All of them happen after the request was written, so `sent` is
-- true and a blind resend is never offered (`retryable` false).
kit.FAULTS = {
  { kind = "http_500", error = "protocol", http_status = 500, processed = false },
  { kind = "http_502", error = "protocol", http_status = 502, processed = false },
  { kind = "http_503", error = "protocol", http_status = 503, processed = false },
  { kind = "http_500", after = true, error = "protocol", http_status = 500, processed = true },
  { kind = "http_503", after = true, error = "protocol", http_status = 503, processed = true },
  { kind = "reset_before", error = "transport", processed = false },
  { kind = "reset_after", error = "transport", processed = true },
  { kind = "garbage", error = "protocol", http_status = 200, processed = true },
  { kind = "truncated", error = "transport", processed = true },
  { kind = "wrong_key", error = "protocol", http_status = 200, processed = true },
  { kind = "latency", ms = 3500, error = "timeout", processed = true },
  { kind = "drip", ms = 5000, error = "timeout", processed = true },
}

function kit.label(row)
  return row.kind .. (row.after and " (after processing)" or "")
end

-- The sandbox fault entry for a row; over: fields to add (path, order_no, times).
function kit.fault(row, over)
  local f = { kind = row.kind, after = row.after, ms = row.ms, times = 1 }
  for k, v in pairs(over or {}) do f[k] = v end
  return f
end

function kit.options(sb, over)
  local o = sb:client_options()
  o.timeout, o.connect_timeout, o.max_retries = kit.TIMEOUT, 1, 2
  for k, v in pairs(over or {}) do o[k] = v end
  return o
end

kit.error_view = call.error_view

-- One call on the curl transport, in this process: { card | err, elapsed }.
function kit.run_curl(input)
  return call.run(input, core.monotime)
end

local RUNNER = [[
  client_body_buffer_size 1m;
  client_max_body_size 1m;
  server {
    listen 127.0.0.1:${port};
    location /run {
      content_by_lua_block { require("spec.fault_call").serve() }
    }
  }
]]

-- The setup the fault specs share (give it busted's lazy_setup, lazy_teardown and
-- before_each): a sandbox and a runner started once for the block, every fault cleared
-- before each test. `ready(sb, runner)` hands them to the spec. Returns the two ways to run
-- a call: { name = "curl" | "ngx", run = function(input) -> outcome } (see kit.run_curl).
function kit.fixture(lazy_setup, lazy_teardown, before_each, ready)
  local sb, runner
  lazy_setup(function()
    sb = require("sandbox.launch").start {}
    runner = kit.start_runner()
    ready(sb, runner)
  end)
  lazy_teardown(function()
    if runner then runner.stop() end
    if sb then sb:stop() end
  end)
  before_each(function() assert(sb:faults(nil)) end)
  return {
    { name = "curl", run = function(input) return kit.run_curl(input) end },
    { name = "ngx", run = function(input) return kit.run_ngx(runner, input) end },
  }
end

-- What the sandbox's order book holds for order_no (nil if nothing).
function kit.order_of(sb, order_no)
  return assert(sb:orders())[order_no]
end

function kit.start_runner()
  return nginx.start { name = "runner", http = RUNNER, log_level = "info" }
end

-- The same call made inside the runner nginx on the ngx transport. `elapsed` is measured
-- here, around the whole HTTP exchange with the runner (so it can only be larger).
function kit.run_ngx(runner, input)
  local body = assert(core.json_encode(input))
  local t0 = socket.gettime()
  local code, got = helpers.http("POST", runner.url .. "/run", body, { ["Content-Type"] = "application/json" })
  local elapsed = socket.gettime() - t0
  assert(code == 200, "the runner answered " .. tostring(code) .. ": " .. got)
  local res = assert(core.json_decode(got))
  res.elapsed = elapsed
  return res
end

return kit
