-- peer.lua: symmetric peers: each process is a server AND a client at once. Each
-- listens, publishes its port in a file, connects to the other's port, then sends
-- N lines out while it reads N lines in, at the same time (duplex.run + spawn).
-- Run, in two terminals (the order does not matter; each waits up to 20 s):
--   lua5.4 examples/peer.lua A /tmp/a.port /tmp/b.port [N]
--   lua5.4 examples/peer.lua B /tmp/b.port /tmp/a.port [N]

dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

-- A whole number from a string, or nil (math.tointeger, on every Lua).
local function integer(s)
  local n = tonumber(s)
  return n and n % 1 == 0 and n or nil
end

local name, my_file, other_file = arg[1], arg[2], arg[3]
local count = integer(arg[4] or 5)
if not (name and my_file and other_file and count) then
  io.stderr:write("usage: peer.lua NAME my_port_file other_port_file [N]\n")
  os.exit(2)
end
local WAIT = 20  -- seconds we wait for the other peer, at most

-- Write "host port" to a temporary file and rename it into place: the other
-- peer sees either no file or a whole one, never half of it.
local function publish(path, host, port)
  local f = assert(io.open(path .. ".tmp", "w"))
  f:write(host, " ", port, "\n")
  f:close()
  assert(os.rename(path .. ".tmp", path))
end

-- Connect to the address in `path`, retrying until `deadline`: the file may not
-- exist yet, or may be left over from an earlier run (connection refused).
local function connect_to(path, deadline)
  local err = "no port file " .. path
  repeat
    local f = io.open(path)
    if f then
      local host, port = (f:read("l") or ""):match("^(%S+) (%d+)$")
      f:close()
      if host then
        local conn, cerr = duplex.connect(host, tonumber(port), { timeout = 5 })
        if conn then return conn end
        err = cerr
      end
    end
    duplex.sleep(0.05)
  until duplex.now() > deadline
  return nil, err
end

local ok, received = duplex.run(function()
  local deadline = duplex.now() + WAIT
  -- listen first, publish second: the other peer can connect (into the listen
  -- queue) even before we call accept, so neither side waits for the other
  local server = assert(duplex.listen("127.0.0.1", 0))
  publish(my_file, server:getsockname())

  local outgoing = assert(connect_to(other_file, deadline))
  local incoming = assert(server:accept(WAIT))
  os.remove(my_file)   -- the other peer is connected: the port file is no longer needed
  server:close()
  outgoing:settimeout(WAIT)
  incoming:settimeout(WAIT)

  -- send on one connection while reading the other: two tasks
  local sender = duplex.spawn(function()
    for i = 1, count do
      assert(outgoing:write(name, " says hello #", i, "\n"))
    end
    outgoing:shutdown("w")   -- tells the other peer: that was all
    return outgoing:read("a") -- wait until the other peer closes too
  end)

  local received = 0
  for line in incoming:lines() do
    received = received + 1
    print(name .. " got: " .. line)
  end
  incoming:close()
  local sent_ok = sender:join(WAIT)
  outgoing:close()
  return sent_ok, received
end)

print(("%s: sent %d lines, received %d"):format(name, ok and count or 0, received))
os.exit(ok and received == count and 0 or 1)
