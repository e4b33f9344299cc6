-- Starts a throwaway Debian nginx (with the Lua module) on a loopback port, in its own prefix
-- directory, for the local emulator (`pagsmile-issuing emulator`), the specs and the demo.
-- One process (master_process off), so shared state and counters are simple and the process
-- is the single worker. Errors are raised as a one-line summary, details on later lines.
local ok_socket, socket = pcall(require, "socket")
if not ok_socket then
  error("the local emulator needs LuaSocket (Debian: apt-get install lua-socket)", 0)
end

local M = {}

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function repo_root()
  local p = io.popen("pwd")
  local dir = p:read("*l")
  p:close()
  return dir
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

M.read_file, M.write_file, M.repo_root = read_file, write_file, repo_root

-- A daemonised process may linger as a zombie until something reaps it: that is gone too.
function M.alive(pid)
  local status = read_file("/proc/" .. pid .. "/status")
  local state = status and status:match("State:%s*(%a)")
  return state ~= nil and state ~= "Z"
end

-- Debian's paths: libnginx-mod-http-lua installs them (and pulls in ndk and lua-resty-core).
M.MODULES = {
  "/usr/lib/nginx/modules/ndk_http_module.so",
  "/usr/lib/nginx/modules/ngx_http_lua_module.so",
}
M.PACKAGES = "nginx libnginx-mod-http-lua"

--- nil, or a one-line message naming the packages when nginx or its Lua module is missing.
function M.missing()
  if not sh("command -v nginx >/dev/null 2>&1") then
    return "nginx is not installed (or not on PATH): the local emulator runs in nginx with "
           .. "its Lua module (Debian/Ubuntu: apt-get install " .. M.PACKAGES .. ")"
  end
  for _, path in ipairs(M.MODULES) do
    local f = io.open(path, "rb")
    if not f then
      return "nginx has no Lua module (" .. path .. " is missing): "
             .. "Debian/Ubuntu: apt-get install " .. M.PACKAGES
    end
    f:close()
  end
  return nil
end

-- package.searchpath for every runtime (5.1 and LuaJIT lack it).
local function search(name, path)
  local file = name:gsub("%.", "/")
  for template in path:gmatch("[^;]+") do
    local candidate = template:gsub("%?", file)
    local f = io.open(candidate, "rb")
    if f then f:close() return candidate end
  end
  return nil
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return repo_root() .. "/" .. path:gsub("^%./", "")
end

--- Where nginx's LuaJIT finds this library, as seen from this process: the directory that
-- holds pagsmile/issuing.lua, and one that holds a pagsmile/issuing/core.so built for
-- LuaJIT or Lua 5.1 (nginx cannot load a 5.3/5.4 build). From a checkout that is lua/ and
-- build/jit/; from a rock it is the tree's share/lua/5.x and lib/lua/5.1. nil, msg if not found.
function M.library_dirs()
  local lua_file = search("pagsmile.issuing", package.path)
  if not lua_file then return nil, "cannot find pagsmile/issuing.lua on package.path" end
  local lua_dir = absolute(lua_file:gsub("/?pagsmile/issuing%.lua$", ""))
  local candidates = {}
  local own_abi = rawget(_G, "jit") or _VERSION == "Lua 5.1"
  for template in package.cpath:gmatch("[^;]+") do
    -- a template that names no version is this runtime's own: only good for LuaJIT/5.1
    local as_jit, n1 = template:gsub("build/[%w.]+/", "build/jit/")
    local as_51, n2 = template:gsub("/5%.%d/", "/5.1/")
    if n1 > 0 then candidates[#candidates + 1] = as_jit end
    if n2 > 0 then candidates[#candidates + 1] = as_51 end
    if own_abi and n1 + n2 == 0 then candidates[#candidates + 1] = template end
  end
  local core_file = search("pagsmile.issuing.core", table.concat(candidates, ";"))
  if not core_file then
    return nil, "the local emulator runs in nginx's LuaJIT and needs pagsmile-issuing built "
                .. "for Lua 5.1 too (luarocks --lua-version=5.1 install pagsmile-issuing)"
  end
  return lua_dir, absolute(core_file:gsub("/?pagsmile/issuing/core%.so$", ""))
end

--- nil if this process could listen on 127.0.0.1:port now, else why not (luasocket's words).
function M.port_taken(port)
  local s, err = socket.bind("127.0.0.1", port)
  if s then s:close() return nil end
  return err or "cannot bind"
end

-- A port nobody listens on right now (the kernel's choice).
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

function M.tmpdir(tag)
  local base = os.getenv("TMPDIR") or "/tmp"
  local p = io.popen("mktemp -d " .. base .. "/pagsmile-" .. (tag or "t") .. ".XXXXXX")
  local dir = p:read("*l")
  p:close()
  assert(dir and dir ~= "", "mktemp failed")
  return dir
end

local function wait_port(port, seconds)
  local deadline = socket.gettime() + seconds
  repeat
    local c = socket.tcp()
    c:settimeout(0.2)
    if c:connect("127.0.0.1", port) then c:close() return true end
    c:close()
    socket.sleep(0.02)
  until socket.gettime() > deadline
  return false
end

-- The first [emerg]/[alert]/[crit]/[error] line of a log, without its time stamp: a one-line cause.
local function first_error(log)
  for line in log:gmatch("[^\n]+") do
    local msg = line:match("%[emerg%]%s*(.*)") or line:match("%[alert%]%s*(.*)")
                or line:match("%[crit%]%s*(.*)") or line:match("%[error%]%s*(.*)")
    if msg then return (msg:gsub("^%d+#%d+: ", ""):gsub("^%*%d+ ", "")) end
  end
  return (log:match("[^\n]+") or "no log")
end

local CONF = [[
load_module ${ndk_module};
load_module ${lua_module};
daemon on;
master_process off;
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log ${log_level};
${main}
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path tmp/body;
  proxy_temp_path tmp/proxy;
  fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi;
  scgi_temp_path tmp/scgi;
  lua_package_path "${lua_dir}/?.lua;${lua_dir}/?/init.lua;${root}/?.lua;;";
  lua_package_cpath "${core_dir}/?.so;;";
  ${http}
}
]]

-- opts.http: the body of the http block (use ${port} and ${prefix} placeholders freely);
-- opts.main: extra main-level directives; opts.port: a fixed port; opts.log_level;
-- opts.prepare(prefix, vars): called before the config is written (make keys, certificates;
-- values it sets in vars become placeholders too);
-- opts.conf: a whole nginx.conf template in place of the built-in one (it must keep
-- `pid logs/nginx.pid;`; opts.http is then unused);
-- opts.env: { NAME = value } in nginx's environment (its config passes them on with `env NAME;`).
-- Returns a server: { port, prefix, url, stop(), error_log() }.
function M.start(opts)
  local missing = M.missing()
  if missing then error(missing, 0) end
  local lua_dir, core_dir = M.library_dirs()
  if not lua_dir then error(core_dir, 0) end
  local taken = opts.port and M.port_taken(opts.port)
  if taken and taken:find("in use", 1, true) then
    error("port " .. opts.port .. " on 127.0.0.1 is in use (choose another, e.g. --port "
          .. M.free_port() .. ")", 0)
  elseif taken then
    error("cannot listen on 127.0.0.1:" .. opts.port .. " (" .. taken .. ")", 0)
  end
  local port = opts.port or M.free_port()
  local prefix = M.tmpdir(opts.name or "nginx")
  assert(sh("mkdir -p " .. prefix .. "/logs " .. prefix .. "/conf " .. prefix .. "/tmp"))
  local vars = { root = repo_root(), port = tostring(port), prefix = prefix,
                 log_level = opts.log_level or "warn", main = opts.main or "",
                 lua_dir = lua_dir, core_dir = core_dir,
                 ndk_module = M.MODULES[1], lua_module = M.MODULES[2] }
  local function fill(s) return (s:gsub("%${([%w_]+)}", function(k) return vars[k] end)) end
  if opts.prepare then
    local ok, err = pcall(opts.prepare, prefix, vars)
    if not ok then
      sh("rm -rf " .. prefix)
      error(err, 0)
    end
  end
  vars.http = fill(opts.http or "")
  vars.main = fill(vars.main)
  write_file(prefix .. "/conf/nginx.conf", fill(opts.conf or CONF))
  for name, text in pairs(opts.files or {}) do write_file(prefix .. "/" .. name, fill(text)) end
  local env = {}
  for name, value in pairs(opts.env or {}) do
    assert(name:match("^[%a_][%w_]*$"), "bad environment variable name")
    env[#env + 1] = name .. "='" .. tostring(value):gsub("'", "'\\''") .. "' "
  end
  table.sort(env)
  local cmd = (#env > 0 and ("env " .. table.concat(env)) or "")
              .. "nginx -q -p " .. prefix .. " -c conf/nginx.conf -e logs/error.log 2>" .. prefix .. "/logs/stderr.log"
  if not sh(cmd) then
    local log = (read_file(prefix .. "/logs/stderr.log") or "") .. (read_file(prefix .. "/logs/error.log") or "")
    if not os.getenv("PAGSMILE_KEEP_TMP") then sh("rm -rf " .. prefix) end
    error("nginx did not start: " .. first_error(log) .. "\nlog:\n" .. log, 0)
  end
  if not wait_port(port, 5) then
    local log = read_file(prefix .. "/logs/error.log") or ""
    error("nginx is not listening on " .. port .. ": " .. first_error(log) .. "\nlog:\n" .. log, 0)
  end
  local server = { port = port, prefix = prefix, url = "http://127.0.0.1:" .. port }
  function server.error_log() return read_file(prefix .. "/logs/error.log") or "" end
  function server.pid() return tonumber((read_file(prefix .. "/logs/nginx.pid") or ""):match("%d+")) end
  function server.stop()
    local pid = server.pid()
    if pid then
      sh("kill -TERM " .. pid .. " 2>/dev/null")
      for _ = 1, 250 do
        if not M.alive(pid) then break end
        socket.sleep(0.02)
      end
      sh("kill -KILL " .. pid .. " 2>/dev/null")
    end
    if not os.getenv("PAGSMILE_KEEP_TMP") then sh("rm -rf " .. prefix) end
  end
  return server
end

return M
