-- Starts a throwaway Debian nginx (with the Lua module) on a free loopback port, in its own
-- prefix directory, for specs, the demo and `make sandbox`. One process (master_process off),
-- so shared state and counters are simple and the process is the single worker.
local socket = require "socket"

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

local CONF = [[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
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
  lua_package_path "${root}/lua/?.lua;${root}/lua/?/init.lua;${root}/?.lua;;";
  lua_package_cpath "${root}/build/jit/?.so;;";
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
  local port = opts.port or M.free_port()
  local prefix = M.tmpdir(opts.name or "nginx")
  assert(sh("mkdir -p " .. prefix .. "/logs " .. prefix .. "/conf " .. prefix .. "/tmp"))
  local vars = { root = repo_root(), port = tostring(port), prefix = prefix,
                 log_level = opts.log_level or "warn", main = opts.main or "" }
  local function fill(s) return (s:gsub("%${([%w_]+)}", function(k) return vars[k] end)) end
  if opts.prepare then
    local ok, err = pcall(opts.prepare, prefix, vars)
    if not ok then
      sh("rm -rf " .. prefix)
      error(err, 2)
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
    error("nginx did not start; log:\n" .. log)
  end
  if not wait_port(port, 5) then
    error("nginx is not listening on " .. port .. "; log:\n" .. (read_file(prefix .. "/logs/error.log") or ""))
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
