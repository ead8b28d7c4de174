-- echo_client.lua: the client side of echo_server.lua, with blocking calls:
-- connect, send each line, print the echo; then half-close and wait for EOF.
-- Run: lua5.4 examples/echo_client.lua host port [line ...]   (no lines: read stdin;
--      for a Unix domain socket: host unix:/some/path, port -)

dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

-- A whole number from a string, or nil (math.tointeger, on every Lua).
local function integer(s)
  local n = tonumber(s)
  return n and n % 1 == 0 and n or nil
end

if #arg < 2 then
  io.stderr:write("usage: echo_client.lua host port [line ...]\n")
  os.exit(2)
end
local host, port = arg[1], integer(arg[2])  -- unix:/path: any port, e.g. -

local conn, err = duplex.connect(host, port, { timeout = 5 })
if not conn then io.stderr:write(err, "\n"); os.exit(1) end
conn:settimeout(10)  -- no single read or write may take longer

-- the lines come from the command line, or else from stdin
local function each_line()
  if #arg > 2 then
    local i = 2
    return function() i = i + 1; return arg[i] end
  end
  return io.lines()
end

for line in each_line() do
  local ok, werr = conn:write(line, "\n")
  if not ok then io.stderr:write(werr, "\n"); os.exit(1) end
  local echo, rerr = conn:read("l")
  if not echo then
    io.stderr:write(rerr or "the server closed the connection", "\n")
    os.exit(1)
  end
  print(echo)
end

conn:shutdown("w")             -- "no more lines": the server sees end of stream
local rest, rerr = conn:read("a")  -- and closes its side once done; "" = nothing more
conn:close()
if rest ~= "" then io.stderr:write(rerr or "unexpected trailing data", "\n"); os.exit(1) end
