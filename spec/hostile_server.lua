-- A scriptable raw-TCP HTTP peer for specs: it writes exactly the bytes a script says, when
-- it says, which nginx will not do (an unsolicited second answer, no status line). Run as its
-- own process with luasocket:  lua5.4 spec/hostile_server.lua
-- It listens on a free loopback port and prints "ready <port>" on stdout. Each request is an
-- HTTP/1.1 head with a Content-Length body (the request's marker); its path picks the script:
--   /echo      200 with the marker as body, kept alive
--   /twice     the same, then 100 ms later an unsolicited second complete answer "stale:<marker>"
--   /nostatus  {"code":"10000"} with no status line, then close
--   /garbage   bytes that are not HTTP, then close
--   /count     the number of connections accepted so far
--   /quit      answers, then the server exits
-- Any path also exits the server after 300 s without a request (a spec that died).
-- Required as a module ("hostile_server"), it returns start(), which runs the server for a spec.
local socket = require "socket"

if ... == "hostile_server" then
  local M = {}
  -- The server needs only luasocket: one fixed interpreter keeps it out of the valgrind and
  -- sanitizer wrappers the spec itself may run under.
  function M.start()
    local pipe = assert(io.popen("lua5.4 spec/hostile_server.lua", "r"))
    local port = tonumber((pipe:read("*l") or ""):match("^ready (%d+)$"))
    if not port then
      pipe:close()
      error("the hostile server did not start")
    end
    local srv = { port = port, url = "http://127.0.0.1:" .. port }
    function srv.stop()
      local c = socket.tcp()
      c:settimeout(2)
      if c:connect("127.0.0.1", port) then
        c:send("POST /quit HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        c:receive("*a")
      end
      c:close()
      pipe:close()
    end
    return srv
  end
  return M
end

local IDLE_LIMIT = 300

local server = assert(socket.bind("127.0.0.1", 0))
server:settimeout(0)
local _, port = server:getsockname()
io.stdout:write("ready ", port, "\n")
io.stdout:flush()

local clients = {}   -- socket -> { buf = unread bytes }
local timed = {}     -- { at, sock, data }: writes scheduled for later
local accepted = 0
local last_request = socket.gettime()
local quitting = false

local function answer(body, extra)
  return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #body .. "\r\n"
         .. (extra or "") .. "\r\n" .. body
end

local function drop(sock)
  clients[sock] = nil
  sock:close()
end

-- Writes all of s (answers are small: a blocking send with a short timeout is enough).
local function send(sock, s)
  sock:settimeout(2)
  local ok = sock:send(s)
  sock:settimeout(0)
  return ok
end

local SCRIPTS = {
  ["/echo"] = function(sock, marker) send(sock, answer(marker)) end,
  ["/twice"] = function(sock, marker)
    send(sock, answer(marker))
    timed[#timed + 1] = { at = socket.gettime() + 0.1, sock = sock, data = answer("stale:" .. marker) }
  end,
  ["/nostatus"] = function(sock)
    send(sock, '{"code":"10000"}')
    drop(sock)
  end,
  ["/garbage"] = function(sock)
    send(sock, "\0\1\2 this is not HTTP \255\254\r\n\r\n")
    drop(sock)
  end,
  ["/count"] = function(sock) send(sock, answer(tostring(accepted))) end,
  ["/quit"] = function(sock)
    send(sock, answer("bye", "Connection: close\r\n"))
    drop(sock)
    quitting = true
  end,
}

-- Serves every complete request in the client's buffer (pipelined ones too).
local function serve(sock)
  local c = clients[sock]
  while c do
    local head_end = c.buf:find("\r\n\r\n", 1, true)
    if not head_end then return end
    local head = c.buf:sub(1, head_end - 1)
    local len = tonumber(head:lower():match("\r\ncontent%-length:%s*(%d+)")) or 0
    if #c.buf < head_end + 3 + len then return end
    local marker = c.buf:sub(head_end + 4, head_end + 3 + len)
    c.buf = c.buf:sub(head_end + 4 + len)
    local path = head:match("^%u+ (%S+) HTTP/1%.[01]")
    local script = SCRIPTS[path]
    last_request = socket.gettime()
    if script then script(sock, marker)
    else send(sock, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n") end
    c = clients[sock]
  end
end

while not quitting and socket.gettime() - last_request < IDLE_LIMIT do
  local watch = { server }
  for sock in pairs(clients) do watch[#watch + 1] = sock end
  local wait = 0.5
  for _, t in ipairs(timed) do wait = math.max(0, math.min(wait, t.at - socket.gettime())) end
  local readable = socket.select(watch, nil, wait)
  for _, sock in ipairs(readable) do
    if sock == server then
      local conn = server:accept()
      if conn then
        conn:settimeout(0)
        accepted = accepted + 1
        clients[conn] = { buf = "" }
      end
    elseif clients[sock] then
      local data, err, partial = sock:receive(65536)
      data = data or partial
      if data and #data > 0 then
        clients[sock].buf = clients[sock].buf .. data
        serve(sock)
      elseif err == "closed" then
        drop(sock)
      end
    end
  end
  local now, later = socket.gettime(), {}
  for _, t in ipairs(timed) do
    if t.at <= now then
      if clients[t.sock] then send(t.sock, t.data) end
    else
      later[#later + 1] = t
    end
  end
  timed = later
end
for sock in pairs(clients) do sock:close() end
server:close()
