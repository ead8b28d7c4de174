-- duplex.cluster peer (bench/cluster.sh): servers/duplex.lua's HTTP handler
-- in `workers` processes sharing one inherited listener, or each with its
-- own (reuseport). Usage: duplex_cluster.lua http PORT WORKERS [reuseport]
-- Worker 1 announces the port ("PORT n"); every worker "WORKER id pid".
local duplex = require "duplex"
local core = require "duplex.core"
local common = dofile(arg[0]:gsub("[^/]*$", "") .. "common.lua")
local _, port = common.args()
local workers = tonumber(arg[3]) or 1
local RESP, RESP_CLOSE, wants_close = common.RESP, common.RESP_CLOSE, common.wants_close

-- Once the worker stops (its server closed: a reload or TERM), the next
-- answer says "Connection: close": keep-alive clients move to the other
-- workers without a request lost to a race with an idle close.
local server
local function http(c)
  while true do
    local head = c:readuntil("\r\n\r\n")
    if not head then break end
    if wants_close(head) or duplex.type(server) == "closed server" then
      c:write(RESP_CLOSE)
      break
    end
    if not c:write(RESP) then break end
  end
  c:close()
end

assert(duplex.cluster({
  workers = workers, grace = 5, reuseport = arg[4] == "reuseport",
  listen = { "127.0.0.1", port, { backlog = 4096 } },
}, function(id, servers)
  local _, p = servers[1]:getsockname()
  io.stdout:write("WORKER ", id, " ", core.proc_getpid(), "\n")
  if id == 1 then common.announce(p) end
  io.stdout:flush()
  server = servers[1]
  server:serve(http)
end))
