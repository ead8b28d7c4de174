-- forward.lua: a TCP port forwarder: for each connection accepted, connect to the
-- target and copy both directions at once (two tasks), passing half-closes on.
-- client:forward moves the bytes in C (splice(2) for bulk streams).
-- Run: lua5.4 examples/forward.lua listen_port target_host target_port [listen_host]

dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

-- A whole number from a string, or nil (math.tointeger, on every Lua).
local function integer(s)
  local n = tonumber(s)
  return n and n % 1 == 0 and n or nil
end

local listen_port = integer(arg[1] or "")
local target_host, target_port = arg[2], integer(arg[3] or "")
local listen_host = arg[4] or "127.0.0.1"
if not (listen_port and target_host and target_port) then
  io.stderr:write("usage: forward.lua listen_port target_host target_port [listen_host]\n")
  os.exit(2)
end

local function log(...)
  io.write(...); io.write("\n"); io.stdout:flush()
end

-- The bytes a forward moved: its count, or after a failure its fourth result.
local function moved(n, _, _, count) return n or count end

duplex.run(function()
  local server = assert(duplex.listen(listen_host, listen_port))
  local lhost, lport = server:getsockname()
  log("listening ", lhost, " ", lport)

  server:serve(function(client)
    local phost, pport = client:getpeername()
    local who = phost .. ":" .. pport
    local target, err = duplex.connect(target_host, target_port, { timeout = 10 })
    if not target then
      log(who, ": ", err)
      client:close()
      return
    end
    log(who, " -> ", target_host, ":", target_port)
    -- each forward ends when its source ends, and then half-closes its
    -- destination: a client that half-closes is seen half-closing by the target
    local up = duplex.spawn(function() return moved(client:forward(target)) end)
    local down = moved(target:forward(client))       -- right here
    local _, upbytes = up:join()
    client:close()
    target:close()
    log(who, " closed, ", upbytes, " bytes up, ", down, " bytes down")
  end)
end)
