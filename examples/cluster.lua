-- cluster.lua: one HTTP server on every core (duplex.cluster). The master
-- process listens, starts one worker per core by exec of this very
-- program, restarts a worker that dies, drains them all on SIGTERM or ^C,
-- and on SIGHUP starts workers running the code now on disk before the old
-- ones drain: nothing is refused.
-- Run: lua5.4 examples/cluster.lua [host] [port] [workers] [reuseport]
--      then: curl http://127.0.0.1:PORT/   kill -HUP <master pid>   kill <master pid>

-- find duplex in this checkout unless LUA_PATH / LUA_CPATH say otherwise
dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

local host, port = arg[1] or "127.0.0.1", tonumber(arg[2] or 0)
local workers = tonumber(arg[3] or "")     -- nil: one per online CPU
local reuseport = arg[4] == "reuseport"

-- Runs in each worker: its id (1..workers) and the servers made from
-- `listen` (inherited from the master, or its own with reuseport).
local function main(id, servers)
  local server = servers[1]
  local _, p = server:getsockname()
  io.write("worker ", id, " listening ", host, " ", p, "\n")
  io.stdout:flush()
  server:serve(function(client)
    while true do                                  -- HTTP/1.1 keep-alive
      local head = client:readuntil("\r\n\r\n")
      if not head then return end
      local body = "Hello from worker " .. id .. "\n"
      local close = head:find("\n[Cc]onnection:%s*[Cc]lose") ~= nil
      client:write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ", #body,
                   close and "\r\nConnection: close" or "", "\r\n\r\n", body)
      if close then return end
    end
  end)
end

assert(duplex.cluster({
  workers = workers,
  listen = { host, port, { backlog = 1024 } },
  reuseport = reuseport,
  grace = 5,                     -- SIGTERM, SIGHUP: requests in flight get 5 s
}, main))
