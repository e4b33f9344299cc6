-- Ctrl-C (SIGINT) during a command: noticed, not fatal, so that a bulk run stops taking rows
-- and lets the orders in flight settle. Plain Lua has no signal API; two ways are used:
--
--   Lua 5.2+   the standalone interpreter's own SIGINT handler sets a hook on the main thread
--              that would raise "interrupted!" the next time that thread runs Lua. The
--              command runs in a coroutine instead, so the main thread stays inside
--              coroutine.resume; `interrupted()` sees the hook (debug.gethook(main) is
--              "external hook") and removes it. Nothing to install.
--   5.1/LuaJIT their main thread cannot be named (and LuaJIT's hooks are global), so luaposix
--              (Debian lua-posix) installs a handler that sets a flag.
--
-- Either way the interpreter's handler, or ours, puts SIGINT back to its default once it
-- fired: a second Ctrl-C ends the process at once (the journal still holds every order).
--   signals.run(fn)  -> fn(interrupted)'s results; interrupted() -> true once Ctrl-C came
local signals = {}

local co_create, co_resume, co_running = coroutine.create, coroutine.resume, coroutine.running
local unpack = table.unpack or unpack

local function pack(...) return { n = select("#", ...), ... } end

local function with_posix(fn)
  local ok, psignal = pcall(require, "posix.signal")
  if not ok then
    -- Without it Ctrl-C ends the process as the interpreter does; nothing is lost (a re-run
    -- settles what was in flight), only the settling waits for that re-run.
    return fn(function() return false end)
  end
  local got = false
  psignal.signal(psignal.SIGINT, function()
    got = true
    psignal.signal(psignal.SIGINT, psignal.SIG_DFL)
  end)
  return fn(function() return got end)
end

local function with_hook(fn, main)
  local got = false
  local function interrupted()
    if not got and debug.gethook(main) == "external hook" then
      debug.sethook(main)
      got = true
    end
    return got
  end
  local results
  local co = co_create(function()
    results = pack(xpcall(function() return fn(interrupted) end, function(e)
      if type(e) == "string" then return debug.traceback(e, 2) end
      return e
    end))
    interrupted()
  end)
  -- A Ctrl-C after the command's last look raises "interrupted!" here, in the main thread,
  -- once resume returns: the command has finished by then, and its results stand.
  pcall(function() co_resume(co) end)
  if not results then error("the command was interrupted", 0) end
  if not results[1] then error(results[2], 0) end
  return unpack(results, 2, results.n)
end

function signals.run(fn)
  local main, is_main = co_running()
  if rawget(_G, "jit") or not main or not is_main then return with_posix(fn) end
  return with_hook(fn, main)
end

return signals
