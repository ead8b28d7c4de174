-- ftp_client.lua: the client of ftp_server.lua, with plain blocking calls: one
-- command line, one reply line, then raw bytes, checked against the announced size.
-- Run: lua5.4 examples/ftp_client.lua host port get LOCAL REMOTE   (download)
--      lua5.4 examples/ftp_client.lua host port put LOCAL REMOTE   (upload)
--      lua5.4 examples/ftp_client.lua host port size REMOTE

dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

-- A whole number from a string, or nil (math.tointeger, on every Lua).
local function integer(s)
  local n = tonumber(s)
  return n and n % 1 == 0 and n or nil
end

local host, port, command = arg[1], integer(arg[2] or ""), arg[3]
local CHUNK = 65536

local function fail(...)
  io.stderr:write("ftp_client: ", ...)
  io.stderr:write("\n")
  os.exit(1)
end

if not (host and port and (command == "size" and arg[4] or arg[5])) then
  io.stderr:write("usage: ftp_client.lua host port get|put LOCAL REMOTE\n",
                  "       ftp_client.lua host port size REMOTE\n")
  os.exit(2)
end

local conn, cerr = duplex.connect(host, port, { timeout = 5 })
if not conn then fail(cerr) end
conn:settimeout(30)

-- send one command, return the size from the reply "OK <size>"
local function request(...)
  local ok, err = conn:write(...)
  if not ok then fail(err) end
  local reply, rerr = conn:read("l")
  if not reply then fail(rerr or "server closed the connection") end
  local size = reply:match("^OK (%d+)$")
  if not size then fail("server: ", reply) end
  return integer(size)
end

if command == "size" then
  print(arg[4] .. ": " .. request("SIZE ", arg[4], "\n") .. " bytes")

elseif command == "get" then
  local localname, remote = arg[4], arg[5]
  local size = request("GET ", remote, "\n")
  local f = io.open(localname, "wb") or fail("cannot write ", localname)
  local left = size
  while left > 0 do
    local chunk, err = conn:readsome(math.min(left, CHUNK))
    if not chunk then fail("short transfer: ", err or "connection closed") end
    f:write(chunk)
    left = left - #chunk
  end
  f:close()
  print(("got %s -> %s: %d bytes"):format(remote, localname, size))

elseif command == "put" then
  local localname, remote = arg[4], arg[5]
  local f = io.open(localname, "rb") or fail("cannot read ", localname)
  local size = f:seek("end")
  f:seek("set")
  -- the command, then the bytes; the server replies once it has them all
  local ok, err = conn:write("PUT ", remote, " ", size, "\n")
  while ok do
    local chunk = f:read(CHUNK)
    if not chunk then break end
    ok, err = conn:write(chunk)
  end
  f:close()
  if not ok then fail(err) end
  local reply, rerr = conn:read("l")
  if not reply then fail(rerr or "server closed the connection") end
  if reply ~= "OK " .. size then fail("server: ", reply) end
  print(("put %s -> %s: %d bytes"):format(localname, remote, size))

else
  fail("unknown command ", command)
end

conn:write("QUIT\n")
conn:read("l")   -- "OK bye"
conn:close()
