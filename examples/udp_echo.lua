-- udp_echo.lua: a UDP echo server and its client in one file (duplex.udp).
-- The server sends every datagram back to whoever sent it; several tasks
-- wait in recvfrom on the one socket and take turns (each datagram goes to
-- exactly one of them). The client sends each message and waits for its
-- echo, sending again when none comes (UDP may lose datagrams).
-- Run:
--   lua5.4 examples/udp_echo.lua server [host] [port] [count]
--       host default 127.0.0.1, port 0: any (the server prints
--       "listening HOST PORT"), host unix:/some/path for a Unix datagram
--       socket (prints "listening unix:PATH"); it stops after `count`
--       datagrams (default: never) and prints "served N".
--   lua5.4 examples/udp_echo.lua client host port message...
--       prints "echo MESSAGE" for each; exit status 1 if one got no echo.
--       For a Unix server: host unix:/some/path, port - .

-- find duplex in this checkout unless LUA_PATH / LUA_CPATH say otherwise
dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

-- A whole number from a string, or nil (math.tointeger, on every Lua).
local function integer(s)
  local n = tonumber(s)
  return n and n % 1 == 0 and n or nil
end

local WORKERS = 3        -- server tasks waiting on the socket together
local TRIES = 3          -- client: sends of one message before giving up
local WAIT = 1           -- client: seconds to wait for each echo

local function usage()
  io.stderr:write("usage: udp_echo.lua server [host] [port] [count]\n",
                  "       udp_echo.lua client host port message...\n")
  os.exit(2)
end

local function server(host, port, count)
  local sock = assert(duplex.udp(host, port))
  local lhost, lport, family = sock:getsockname()
  if family == "unix" then
    io.write("listening unix:", lhost, "\n")
  else
    io.write("listening ", lhost, " ", lport, "\n")
  end
  io.stdout:flush()      -- whoever started us waits for this line
  local served = 0
  duplex.run(function()
    for _ = 1, WORKERS do
      duplex.spawn(function()
        while not count or served < count do
          local data, from, fport = sock:recvfrom()   -- any size up to 64 KiB
          if not data then
            -- ECANCELED: another worker closed the socket after the last one
            if fport ~= "ECANCELED" then io.stderr:write(from, "\n") end
            return
          end
          served = served + 1
          if from == "" then
            -- an unnamed Unix socket sent it: there is nowhere to answer
            io.stderr:write("datagram from an unnamed socket: not answered\n")
          else
            local ok, err = sock:sendto(data, family == "unix" and "unix:" .. from or from, fport)
            if not ok then io.stderr:write(err, "\n") end
          end
          if count and served >= count then sock:close() end  -- wakes the others
        end
      end)
    end
  end)
  sock:close()
  io.write("served ", served, "\n")
end

local function client(host, port, messages)
  local sock
  if host:match("^unix:") then
    -- a Unix server answers to our own path: bind one, removed on close
    local path = os.tmpname()
    os.remove(path)
    sock = assert(duplex.udp("unix:" .. path .. ".sock"))
    port = nil
  else
    sock = assert(duplex.udp())                 -- reaches IPv4 and IPv6 alike
  end
  local ok, err = sock:connect(host, port)    -- replies from others are filtered out
  if not ok then io.stderr:write(err, "\n"); os.exit(1) end
  sock:settimeout(WAIT)
  local failed = false
  for _, msg in ipairs(messages) do
    local echo, rerr
    for _ = 1, TRIES do
      assert(sock:send(msg))
      echo, rerr = sock:recv()
      -- drop an echo of an earlier message that arrived late
      while echo and echo ~= msg do echo, rerr = sock:recv() end
      if echo then break end
    end
    if echo then
      io.write("echo ", echo, "\n")
    else
      io.stderr:write("no echo for ", msg, ": ", rerr, "\n")
      failed = true
    end
    io.stdout:flush()
  end
  sock:close()
  os.exit(failed and 1 or 0)
end

local mode = arg[1]
if mode == "server" then
  local port = integer(arg[3] or 0)
  local count = arg[4] and integer(arg[4])
  if not port or (arg[4] and not count) then usage() end
  local host = arg[2] or "127.0.0.1"
  server(host, not host:match("^unix:") and port or nil, count)
elseif mode == "client" then
  if #arg < 4 then usage() end
  local port = arg[3] ~= "-" and integer(arg[3]) or nil
  client(arg[2], port, { select(4, (table.unpack or unpack)(arg)) })
else
  usage()
end
