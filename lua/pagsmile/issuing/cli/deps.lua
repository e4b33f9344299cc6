-- The command's failures that end it, and the modules it needs from the system.
--   deps.fail(code, message)   raises what cli/main.lua turns into one line and exit `code`
--   deps.need(module, package, rock)  the module, or that failure naming the Debian package
--   deps.clock()               seconds, with a fraction when luasocket is there
-- The modules come from Debian packages (lua-lpeg, lua-sql-sqlite3, lua-argparse): they are
-- not rockspec dependencies, since luarocks would download them (DESIGN.md, "Decisions").
local deps = {}

deps.USAGE = 2

local Failure = {}
Failure.__tostring = function(f) return f.message end

function deps.fail(code, message)
  error(setmetatable({ exit = code, message = message }, Failure), 0)
end

function deps.is_failure(v)
  return getmetatable(v) == Failure
end

function deps.need(module, package, rock)
  local ok, m = pcall(require, module)
  if ok then return m end
  deps.fail(deps.USAGE, ("needs the %s module (Debian/Ubuntu: apt-get install %s; or luarocks "
    .. "install %s)"):format(module, package, rock or module))
end

deps.clock = os.time
do
  local ok, socket = pcall(require, "socket")
  if ok and socket.gettime then deps.clock = socket.gettime end
end

return deps
