-- duplex_pump.lua: the port forwarder as it was before client:forward: each
-- direction a Lua loop of readsome and write (bench/forward.sh compares it
-- with examples/forward.lua, which forwards in C).
-- Run: lua5.4 duplex_pump.lua listen_port target_host target_port [listen_host]

local duplex = require "duplex"

local listen_port = math.tointeger(tonumber(arg[1] or ""))
local target_host, target_port = arg[2], math.tointeger(tonumber(arg[3] or ""))
local listen_host = arg[4] or "127.0.0.1"
if not (listen_port and target_host and target_port) then
  io.stderr:write("usage: duplex_pump.lua listen_port target_host target_port [listen_host]\n")
  os.exit(2)
end

local function log(...)
  io.write(...); io.write("\n"); io.stdout:flush()
end

-- Copy `from` to `to` until `from` ends, then half-close `to`.
local function pump(from, to)
  local bytes = 0
  while true do
    local data = from:readsome()
    if not data then break end
    if not to:write(data) then break end
    bytes = bytes + #data
  end
  to:shutdown("w")
  return bytes
end

duplex.run(function()
  local server = assert(duplex.listen(listen_host, listen_port))
  local lhost, lport = server:getsockname()
  log("listening ", lhost, " ", lport)
  server:serve(function(client)
    local target, err = duplex.connect(target_host, target_port, { timeout = 10 })
    if not target then
      log(err)
      client:close()
      return
    end
    local up = duplex.spawn(pump, client, target)
    pump(target, client)
    up:join()
    client:close()
    target:close()
  end)
end)
