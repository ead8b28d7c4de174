-- echo_server.lua: the plain BSD server loop with blocking calls, no scheduler:
-- listen, then accept clients one after another and send every line back.
-- Run: lua5.4 examples/echo_server.lua [host] [port] [max_clients]   (port 0: any;
--      host unix:/some/path listens on a Unix domain socket)

-- find duplex in this checkout unless LUA_PATH / LUA_CPATH say otherwise
dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

-- A whole number from a string, or nil (math.tointeger, on every Lua).
local function integer(s)
  local n = tonumber(s)
  return n and n % 1 == 0 and n or nil
end

local host = arg[1] or "127.0.0.1"
local port = integer(arg[2] or 0) or error("bad port: " .. arg[2])
local max_clients = arg[3] and integer(arg[3])  -- nil: serve forever

local server = assert(duplex.listen(host, port))
local lhost, lport, family = server:getsockname()
if family == "unix" then
  io.write("listening unix:", lhost, "\n")   -- a Unix domain socket has no port
else
  io.write("listening ", lhost, " ", lport, "\n")
end
io.stdout:flush()  -- whoever started us waits for this line

local served = 0
while not max_clients or served < max_clients do
  local client, err = server:accept()
  if not client then
    io.stderr:write(err, "\n")   -- e.g. out of descriptors: pause, then go on
    duplex.sleep(0.1)
  else
    served = served + 1
    local phost, pport = client:getpeername()
    io.write("client ", served, " from ", pport and phost .. " " .. pport or "a unix socket", "\n")
    io.stdout:flush()
    local lines = 0
    while true do
      local line, rerr = client:read("L")          -- the line with its "\n"
      if not line then                             -- nil: end of stream (or error)
        if rerr then io.stderr:write(rerr, "\n") end
        break
      end
      local ok, werr = client:write(line)
      if not ok then io.stderr:write(werr, "\n"); break end
      lines = lines + 1
    end
    client:close()
    io.write("client ", served, " done, ", lines, " lines echoed\n")
    io.stdout:flush()
  end
end
server:close()
