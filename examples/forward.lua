-- forward.lua: a TCP port forwarder: for each connection accepted, connect to the
-- target and copy both directions at once (two tasks), passing half-closes on.
-- Run: lua5.4 examples/forward.lua listen_port target_host target_port [listen_host]

dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

local listen_port = math.tointeger(tonumber(arg[1] or ""))
local target_host, target_port = arg[2], math.tointeger(tonumber(arg[3] or ""))
local listen_host = arg[4] or "127.0.0.1"
if not (listen_port and target_host and target_port) then
  io.stderr:write("usage: forward.lua listen_port target_host target_port [listen_host]\n")
  os.exit(2)
end

local function log(...)
  io.write(...); io.write("\n"); io.stdout:flush()
end

-- Copy `from` to `to` until `from` ends, then tell `to` there is nothing more
-- (shutdown "w"): a client that half-closes is seen half-closing by the target.
local function pump(from, to)
  local bytes = 0
  while true do
    local data = from:readsome()
    if not data then break end       -- end of stream (or an error)
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
    local phost, pport = client:getpeername()
    local who = phost .. ":" .. pport
    local target, err = duplex.connect(target_host, target_port, { timeout = 10 })
    if not target then
      log(who, ": ", err)
      client:close()
      return
    end
    log(who, " -> ", target_host, ":", target_port)
    local up = duplex.spawn(pump, client, target)   -- client -> target, in a task
    local down = pump(target, client)               -- target -> client, right here
    local _, upbytes = up:join()
    client:close()
    target:close()
    log(who, " closed, ", upbytes, " bytes up, ", down, " bytes down")
  end)
end)
