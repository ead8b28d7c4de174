-- netcat.lua: a netcat-style client. It copies stdin to the socket and the
-- socket to stdout, both at once: two tasks over duplex.stream(0) and
-- duplex.stream(1), whose reads and writes yield like a socket's. When stdin
-- ends the socket is half-closed (the server reads end of stream and may
-- still answer); when the socket ends netcat exits, even if stdin has not.
-- Run: lua5.4 examples/netcat.lua HOST PORT
--   e.g. printf 'GET / HTTP/1.0\r\n\r\n' | lua5.4 examples/netcat.lua 127.0.0.1 8080
--        lua5.4 examples/netcat.lua 127.0.0.1 8080 <file >reply
--   (for a Unix domain socket: HOST unix:/some/path, PORT -)
-- Exit status: 0 when the server ended the connection (or nobody reads our
-- stdout any more), 1 on an error, 2 for bad arguments, 128 + the signal's
-- number after SIGINT, SIGTERM or SIGHUP (which close the connection first).

dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

if #arg ~= 2 then
  io.stderr:write("usage: netcat.lua HOST PORT\n")
  os.exit(2)
end
local host, port = arg[1], tonumber(arg[2])  -- unix:/path: any port

local function fail(msg)
  io.stderr:write("netcat: ", msg, "\n")
  return 1
end

local status = duplex.run(function()
  local sock, err = duplex.connect(host, port, { timeout = 10 })
  if not sock then return fail(err) end
  local rc = 0

  -- Ctrl-C, kill, a closed terminal: end as if the server had (shutdown:
  -- reads see end of stream, writes fail), so that the streams are closed
  -- below; a terminal left non-blocking would upset the shell
  local signals = { INT = 130, TERM = 143, HUP = 129 }
  for name in pairs(signals) do
    duplex.onsignal(name, function()
      if rc == 0 then rc = signals[name] end
      sock:shutdown("rw")
    end)
  end
  local stdin = assert(duplex.stream(0))
  local stdout = assert(duplex.stream(1))

  -- stdin -> socket, in a task of its own; at the end of stdin, half-close
  local up = duplex.spawn(function()
    while true do
      local data, rerr = stdin:readsome()
      if not data then
        if rerr then rc = fail(rerr) end
        break
      end
      local ok, werr, code = sock:write(data)
      if not ok then
        -- the server closed first, or a signal shut the socket down: the
        -- other direction sees that too and ends
        if rc == 0 and code ~= "EPIPE" and code ~= "ECONNRESET" then rc = fail(werr) end
        return
      end
    end
    sock:shutdown("w")
  end)

  -- socket -> stdout, here, until the server ends the connection
  while true do
    local data, rerr = sock:readsome()
    if not data then
      if rerr and rc == 0 then rc = fail(rerr) end
      break
    end
    local ok, werr, code = stdout:write(data)
    if not ok then
      if code ~= "EPIPE" then rc = fail(werr) end   -- EPIPE: nobody reads us
      break
    end
  end
  up:cancel()            -- stdin may still be open: we are done with it
  -- closed, the descriptors get their flags back (O_NONBLOCK off); 0 and 1
  -- themselves stay open
  stdout:close()
  stdin:close()
  sock:close()
  return rc
end)

os.exit(status)
